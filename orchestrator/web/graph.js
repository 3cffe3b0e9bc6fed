// The task graph as inline SVG, laid out here (no external scripts): layers by longest path
// from the entry tasks, back edges (loops) drawn on the right. Node colours follow task states.
"use strict";

const Graph = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 176, H = 54, GAP_X = 28, GAP_Y = 58, PAD = 20, LOOP_MARGIN = 160, MAX_NODES = 150;

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  function clip(value, size) {
    const text = value === null || value === undefined ? "" : String(value);
    return text.length > size ? text.slice(0, size - 1) + "…" : text;
  }

  const key = (a, b) => a + "\u0000" + b;

  // Back edges by depth-first search from the entries; layers by longest path over the rest.
  function layout(names, edges, entry) {
    const out = new Map(names.map((n) => [n, []]));
    for (const e of edges) out.get(e.source).push(e.target);
    const seen = new Map(), back = new Set();
    for (const root of [...entry.filter((n) => out.has(n)), ...names]) {
      if (seen.has(root)) continue;
      seen.set(root, 1);
      const stack = [[root, 0]];
      while (stack.length) {
        const top = stack[stack.length - 1], targets = out.get(top[0]);
        if (top[1] < targets.length) {
          const target = targets[top[1]++];
          if (seen.get(target) === 1) back.add(key(top[0], target));
          else if (!seen.has(target)) { seen.set(target, 1); stack.push([target, 0]); }
        } else { seen.set(top[0], 2); stack.pop(); }
      }
    }
    const forward = edges.filter((e) => !back.has(key(e.source, e.target)));
    const indegree = new Map(names.map((n) => [n, 0]));
    for (const e of forward) indegree.set(e.target, indegree.get(e.target) + 1);
    const layer = new Map(names.map((n) => [n, 0]));
    const queue = names.filter((n) => indegree.get(n) === 0);
    while (queue.length) {
      const name = queue.shift();
      for (const e of forward) {
        if (e.source !== name) continue;
        layer.set(e.target, Math.max(layer.get(e.target), layer.get(name) + 1));
        indegree.set(e.target, indegree.get(e.target) - 1);
        if (indegree.get(e.target) === 0) queue.push(e.target);
      }
    }
    // Rows in declaration order, then one barycentre pass to untangle edges.
    const rows = [];
    names.forEach((n) => (rows[layer.get(n)] = rows[layer.get(n)] || []).push(n));
    const index = new Map();
    rows.forEach((row, depth) => {
      if (depth > 0) {
        const centre = (n) => {
          const from = forward.filter((e) => e.target === n && index.has(e.source)).map((e) => index.get(e.source));
          return from.length ? from.reduce((a, b) => a + b, 0) / from.length : Infinity;
        };
        const weights = new Map(row.map((n, i) => [n, [centre(n), i]]));
        row.sort((a, b) => (weights.get(a)[0] - weights.get(b)[0]) || (weights.get(a)[1] - weights.get(b)[1]));
      }
      row.forEach((n, i) => index.set(n, i));
    });
    return {rows, back};
  }

  function draw(container, list, note, graph, onSelect) {
    container.replaceChildren();
    list.replaceChildren();
    const problem = graph.error || (graph.nodes.length === 0 ? "no graph for this run" : null);
    if (problem || graph.nodes.length > MAX_NODES) {
      note.textContent = problem || "too many tasks to draw: shown as a list";
      note.hidden = false;
      return listView(list, graph);
    }
    const names = graph.nodes.map((n) => n.name);
    const known = new Set(names);
    const edges = graph.edges.filter((e) => known.has(e.source) && known.has(e.target));
    const {rows, back} = layout(names, edges, graph.entry || []);
    const widest = Math.max(...rows.map((r) => (r ? r.length : 0)));
    const width = PAD * 2 + widest * W + (widest - 1) * GAP_X + (back.size ? LOOP_MARGIN : 0);
    const height = PAD * 2 + rows.length * H + (rows.length - 1) * GAP_Y;
    const at = new Map();
    const rowWidth = (row) => row.length * W + (row.length - 1) * GAP_X;
    rows.forEach((row, depth) => {
      const left = PAD + (widest * W + (widest - 1) * GAP_X - rowWidth(row)) / 2;
      row.forEach((n, i) => at.set(n, {x: left + i * (W + GAP_X), y: PAD + depth * (H + GAP_Y)}));
    });
    const root = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "task graph"},
      svg("defs", {}, svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
        markerHeight: "7", orient: "auto-start-reverse"}, svg("path", {d: "M0,0 L10,5 L0,10 z", class: "arrow"}))));
    let loops = 0;
    for (const e of edges) {
      const a = at.get(e.source), b = at.get(e.target);
      let d, mid;
      if (e.source === e.target) {  // a task that leads to itself: a loop on its right side
        const [x, y] = [a.x + W, a.y];
        d = `M${x},${y + H / 3} C${x + 46},${y - 12} ${x + 46},${y + H + 12} ${x},${y + 2 * H / 3}`;
        mid = {x: x + 40, y: y - 6};
      } else if (back.has(key(e.source, e.target))) {
        const bend = Math.max(a.x, b.x) + W + 30 + 12 * (loops++ % 4);
        d = `M${a.x + W},${a.y + H / 2} C${bend},${a.y + H / 2} ${bend},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
        mid = {x: bend - 6, y: (a.y + b.y + H) / 2};
      } else {
        const [sx, sy, tx, ty] = [a.x + W / 2, a.y + H, b.x + W / 2, b.y];
        d = `M${sx},${sy} C${sx},${sy + GAP_Y / 2} ${tx},${ty - GAP_Y / 2} ${tx},${ty}`;
        mid = {x: (sx + tx) / 2, y: (sy + ty) / 2};
      }
      const path = svg("path", {d, class: "edge", "marker-end": "url(#arrow)"});
      if (e.label) path.append(svg("title", {}, e.label));
      root.append(path);
      if (e.label) root.append(svg("text", {x: mid.x, y: mid.y, class: "edge-label", "text-anchor": "middle"}, clip(e.label, 26)));
    }
    const parts = new Map();
    for (const node of graph.nodes) {
      const p = at.get(node.name);
      const detail = node.command ? "engine command" : [node.action, node.join ? "join " + node.join : ""].filter(Boolean).join(" · ");
      const shape = node.command
        ? svg("ellipse", {cx: p.x + W / 2, cy: p.y + H / 2, rx: W / 2, ry: H / 2})
        : svg("rect", {x: p.x, y: p.y, width: W, height: H, rx: node.join ? 14 : 4});
      const state = svg("text", {x: p.x + W / 2, y: p.y + 47, class: "node-state", "text-anchor": "middle"}, "");
      const title = svg("title", {}, node.name);
      const group = svg("g", {class: "node st-pending" + (node.command ? " command" : ""), "data-task": node.name}, title, shape,
        svg("text", {x: p.x + W / 2, y: p.y + 17, class: "node-name", "text-anchor": "middle"}, clip(node.name, 24)),
        svg("text", {x: p.x + W / 2, y: p.y + 32, class: "node-detail", "text-anchor": "middle"}, clip(detail, 28)),
        state);
      if (onSelect && !node.command) group.addEventListener("click", () => onSelect(node.name));
      root.append(group);
      parts.set(node.name, {group, state, title, base: node.name + (detail ? "\n" + detail : ""), command: node.command});
    }
    container.append(root);
    return {
      update(tasks) {
        const latest = latestByName(tasks);
        for (const [name, part] of parts) {
          const task = latest.get(name);
          if (part.command) continue;
          part.group.setAttribute("class", "node " + Orch.statusClass(task && task.status));
          part.state.textContent = task ? stateLine(task) : "";
          part.title.textContent = part.base + (task ? "\n" + stateLine(task) + (task.error ? "\n" + task.error : "") : "");
        }
      },
    };
  }

  function listView(list, graph) {
    const items = new Map();
    for (const node of graph.nodes) {
      const state = Orch.badge(null);
      const entry = Orch.el("li", {"data-task": node.name}, node.name + (node.action ? " (" + node.action + ") " : " "), state);
      list.append(entry);
      items.set(node.name, state);
    }
    list.hidden = graph.nodes.length === 0;
    return {
      update(tasks) {
        const latest = latestByName(tasks);
        for (const [name, state] of items) Orch.setBadge(state, latest.get(name) ? latest.get(name).status : "pending");
      },
    };
  }

  function latestByName(tasks) {
    const latest = new Map();
    for (const task of tasks || []) latest.set(task.name, task);
    return latest;
  }

  function stateLine(task) {
    const parts = [task.status];
    if (task.attempts > 1) parts.push("×" + task.attempts);
    if (task.started_at) parts.push(Orch.duration(task.started_at, task.finished_at));
    return parts.join(" · ");
  }

  return {draw, layout};
})();

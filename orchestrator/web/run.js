// One run: its summary followed live (server-sent events, polling as a fallback), its task graph,
// and the operations. Every value is inserted as text.
"use strict";

(() => {
  const runId = decodeURIComponent(location.pathname.replace(/^\/runs\//, ""));
  const base = "/api/runs/" + encodeURIComponent(runId);
  const $ = (id) => document.getElementById(id);
  const feedState = $("feed-state"), opResponse = $("op-response"), pageError = $("page-error");
  let view = null, summary = null, source = null, pollTimer = null, lastEvent = 0;

  $("run-id").textContent = runId;

  function render(next) {
    summary = next;
    Orch.setBadge($("run-status"), next.status);
    document.title = next.workflow + " " + next.status + " · Celery Orchestrator";
    $("run-workflow").textContent = next.workflow;
    $("run-started").textContent = Orch.when(next.started_at);
    $("run-finished").textContent = Orch.when(next.finished_at);
    $("run-duration").textContent = Orch.duration(next.started_at, next.finished_at);
    const schedule = next.schedule;  // set when a schedule's due time started this run
    $("run-schedule").textContent = schedule ? schedule.name + " (due " + Orch.when(schedule.due_at) + ")" : "";
    Orch.show($("run-schedule-label"), !!schedule);
    Orch.show($("run-schedule"), !!schedule);
    $("run-error").textContent = next.error || "";
    Orch.show($("run-error-box"), !!next.error);
    $("run-output").textContent = Orch.json(next.output, 20000);
    Orch.show($("run-output-box"), next.output !== null && next.output !== undefined);
    document.querySelector("#tasks tbody").replaceChildren(...next.tasks.map(taskRow));
    if (view) view.update(next.tasks);
  }

  function taskRow(task) {
    const detail = task.error
      ? Orch.el("pre", {class: "error"}, task.error)
      : Orch.el("pre", {}, Orch.json(task.result, 4000));
    return Orch.el("tr", {"data-task": task.name},
      Orch.el("td", {}, task.name), Orch.el("td", {}, Orch.badge(task.status)), Orch.el("td", {}, task.attempts),
      Orch.el("td", {}, task.items === null ? "" : task.items), Orch.el("td", {}, Orch.when(task.started_at)),
      Orch.el("td", {}, Orch.duration(task.started_at, task.finished_at)),
      Orch.el("td", {class: "host"}, task.worker || ""), Orch.el("td", {}, detail));
  }

  // A lifecycle event (the rows of `orchestrator logs`); a reconnected stream repeats old ones.
  function addEvent(event) {
    if (event.id <= lastEvent) return;
    lastEvent = event.id;
    const [scope, status] = event.kind.split(".");
    let what = scope === "workflow" ? "workflow" : event.task;
    if (scope === "task" && event.attempt > 1 && status !== "started") what += " (attempt " + event.attempt + ")";
    document.querySelector("#log tbody").append(Orch.el("tr", {"data-kind": event.kind},
      Orch.el("td", {}, Orch.when(event.at)), Orch.el("td", {}, what), Orch.el("td", {}, Orch.badge(status)),
      Orch.el("td", {}, event.message || "")));
  }

  async function loadLog() {
    const response = await Orch.api("GET", base + "/log?after=" + lastEvent);
    if (response.ok) response.data.forEach(addEvent);
  }

  function fail(message) {
    pageError.textContent = message;
    Orch.show(pageError, true);
  }

  async function loadOnce() {
    const response = await Orch.api("GET", base);
    if (!response.ok) { fail(Orch.describe("load", response)); return null; }
    Orch.show(pageError, false);
    render(response.data);
    return response.data;
  }

  async function loadGraph() {
    const response = await Orch.api("GET", base + "/graph");
    if (!response.ok) { $("graph-note").textContent = Orch.describe("graph", response); $("graph-note").hidden = false; return; }
    view = Graph.draw($("graph"), $("graph-list"), $("graph-note"), response.data, (name) => { $("respond-task").value = name; });
    if (summary) view.update(summary.tasks);
  }

  function stopFollowing() {
    if (source) { source.close(); source = null; }
    if (pollTimer) { clearInterval(pollTimer); pollTimer = null; }
    feedState.textContent = "";
  }

  function follow() {
    stopFollowing();
    if (!window.EventSource) return poll();
    source = new EventSource(base + "/events")  // same origin: sends the session cookie;
    feedState.textContent = "live";
    source.addEventListener("summary", (event) => render(JSON.parse(event.data)));
    source.addEventListener("lifecycle", (event) => addEvent(JSON.parse(event.data)));
    source.addEventListener("end", stopFollowing);
    source.addEventListener("gone", () => { stopFollowing(); loadOnce(); });
    source.addEventListener("timeout", () => { stopFollowing(); follow(); });
    source.addEventListener("error", () => {
      if (source && source.readyState === EventSource.CLOSED) poll();  // refused (e.g. 401): polling signs in
    });
  }

  function poll() {
    stopFollowing();
    feedState.textContent = "polling";
    pollTimer = setInterval(async () => {
      const current = await loadOnce();
      await loadLog();
      if (!current || Orch.TERMINAL.includes(current.status)) stopFollowing();
    }, 1000);
  }

  function body(op) {
    if (op === "rerun") {
      return {from: $("rerun-from").value.split(",").map((s) => s.trim()).filter(Boolean)};
    }
    if (op === "respond") {
      return {task: $("respond-task").value.trim(), data: JSON.parse($("respond-data").value || "null")};
    }
    return undefined;
  }

  async function operate(op) {
    let payload;
    try {
      payload = body(op);
    } catch (error) {
      opResponse.textContent = op + ": data is not valid JSON: " + error.message;
      Orch.show(opResponse, true);
      return;
    }
    opResponse.textContent = op + " …";
    Orch.show(opResponse, true);
    const response = await Orch.api("POST", base + "/" + op, payload);
    opResponse.textContent = Orch.describe(op, response);
    opResponse.className = "response " + (response.ok ? "ok" : "failed");
    const current = await loadOnce();
    if (current && !Orch.TERMINAL.includes(current.status) && !source && !pollTimer) follow();
    else if (!source) loadLog();
  }

  for (const button of document.querySelectorAll("button[data-op]")) {
    button.addEventListener("click", () => operate(button.dataset.op));
  }

  loadOnce().then((first) => {
    loadGraph();
    if (first && !Orch.TERMINAL.includes(first.status)) follow();
    else loadLog();
  });
})();

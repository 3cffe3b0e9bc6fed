"""A workflow's task graph, described once for both formats and drawn as Mermaid or Graphviz dot.

Each format's graph produces a ``GraphView`` (``WorkflowGraph.view()``, ``OrquestaGraph.view()``):
its nodes (tasks with their action and join; engine commands such as ``fail`` as nodes of their
own), its edges with their conditions, and its entry tasks. ``render(view, "mermaid" | "dot")``
draws it and ``GraphView.to_dict()`` is the shape the HTTP API serves, so every reader sees the
same graph. Pure: no I/O.

Names are escaped for each language: a task named ``end`` (a Mermaid keyword) or ``graph`` gets
another node id and keeps its name as the label; labels and conditions are quoted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_DELIMITERS = (("{{", "}}"), ("<%", "%>"), ("{%", "%}"))
_MERMAID_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERMAID_KEYWORDS = {"end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click", "linkstyle",
                     "direction", "call", "href", "callback", "default", "interpolate", "td", "tb", "bt", "lr", "rl"}
_MERMAID_PLAIN = re.compile(r"^[\w ().,=!+-]*$")


@dataclass(frozen=True)
class Node:
    name: str
    action: str | None = None
    join: str | int | None = None  # "all", a number, or None for a task that is not a join
    command: bool = False          # an engine command (fail, noop, continue, retry), not a task


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""  # the condition; empty when the transition fires on any outcome


@dataclass(frozen=True)
class GraphView:
    name: str
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    entry: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"nodes": [{"name": n.name, "action": n.action, "join": n.join, "command": n.command}
                          for n in self.nodes],
                "edges": [{"source": e.source, "target": e.target, "label": e.label} for e in self.edges],
                "entry": list(self.entry)}


def build_view(name: str, tasks: list[Node], edges: list[Edge], entry: list[str]) -> GraphView:
    """The view of tasks and edges; engine commands that edges lead to become nodes, once each."""
    nodes = list(tasks)
    known = {node.name for node in nodes}
    for edge in edges:
        if edge.target not in known:
            known.add(edge.target)
            nodes.append(Node(edge.target, command=True))
    return GraphView(name, tuple(nodes), tuple(edges), tuple(entry))


def condition(*parts: Any) -> str:
    """An edge label: the parts that are text, without their expression delimiters, joined by &."""
    out = []
    for part in parts:
        if not isinstance(part, str):
            continue
        for opening, closing in _DELIMITERS:
            part = part.replace(opening, "").replace(closing, "")
        part = " ".join(part.split())
        if part:
            out.append(part)
    return " & ".join(out)


def render(view: GraphView, fmt: str) -> str:
    if fmt == "mermaid":
        return _mermaid(view)
    if fmt == "dot":
        return _dot(view)
    raise ValueError(f"unknown graph format {fmt!r} (mermaid or dot)")


def _lines(node: Node) -> list[str]:
    lines = [node.name]
    if node.join is not None:
        lines.append(f"join {node.join}")
    if node.action:
        lines.append(node.action)
    return lines


# Mermaid ------------------------------------------------------------------------------------

def _mermaid_ids(view: GraphView) -> dict[str, str]:
    """Names as node ids where Mermaid allows them, else a fresh id (the name stays the label)."""
    ids: dict[str, str] = {}
    taken = {n.name for n in view.nodes if _MERMAID_ID.match(n.name) and n.name.lower() not in _MERMAID_KEYWORDS}
    for number, node in enumerate(view.nodes, 1):
        if node.name in taken:
            ids[node.name] = node.name
            continue
        fresh = f"node{number}"
        while fresh in taken:
            fresh += "_"
        taken.add(fresh)
        ids[node.name] = fresh
    return ids


def _mermaid_text(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
            .replace("|", "#124;"))


def _mermaid(view: GraphView) -> str:
    ids = _mermaid_ids(view)
    lines = ["flowchart TD"]
    for node in view.nodes:
        label = "<br/>".join(_mermaid_text(line) for line in _lines(node))
        if node.command:
            lines.append(f'    {ids[node.name]}(("{label}"))')
        elif node.join is not None:
            lines.append(f'    {ids[node.name]}{{{{"{label}"}}}}')
        else:
            lines.append(f'    {ids[node.name]}["{label}"]')
    for edge in view.edges:
        if not edge.label:
            arrow = " --> "
        elif _MERMAID_PLAIN.match(edge.label):
            arrow = f" -->|{edge.label}| "
        else:
            arrow = f' -->|"{_mermaid_text(edge.label)}"| '
        lines.append(f"    {ids[edge.source]}{arrow}{ids[edge.target]}")
    return "\n".join(lines) + "\n"


# Graphviz dot -------------------------------------------------------------------------------

def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot(view: GraphView) -> str:
    lines = [f"digraph {_dot_text(view.name)} {{", "    rankdir=TB;"]
    for node in view.nodes:
        shape = "circle" if node.command else "hexagon" if node.join is not None else "box"
        label = _dot_text("\n".join(_lines(node)))
        lines.append(f"    {_dot_text(node.name)} [shape={shape}, label={label}];")
    for edge in view.edges:
        label = f" [label={_dot_text(edge.label)}]" if edge.label else ""
        lines.append(f"    {_dot_text(edge.source)} -> {_dot_text(edge.target)}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"

"""The task graph of an Orquesta workflow, composed the way Orquesta composes it.

Nodes are the tasks reachable from the start tasks plus the engine commands they name
(``continue``, ``fail``, ``noop``). Each (task, `do` target) pair of a `next` entry is an edge;
edges between the same two nodes are numbered 0, 1, … in `next` order, which gives the ids
Orquesta uses: ``target__tK`` in a task's satisfied-transition map and ``source__tK`` in routes.
Outbound edges are processed in target-name order.

A *split* task (not a join, referenced by more than one transition) runs once per inbound path
unless it is in a cycle; ``check_graph`` rejects joins under nested splits, which Orquesta
cannot place at one level.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from ..core.errors import Problem
from ..engine.graphview import Edge as ViewEdge
from ..engine.graphview import GraphView, Node, build_view, condition
from ..engine.loader import Positions
from .spec import ENGINE_COMMANDS, RESERVED, OrquestaSpec, RetrySpec, TaskSpec

DEFAULT_RETRY_WHEN = "<% completed() %>"
DEFAULT_RETRY_COUNT = 3


@dataclass(frozen=True)
class Edge:
    """One transition: `source` → `target`, numbered `key` among the edges between them; `ref`
    is the index of the `next` entry it comes from and `when` its condition."""

    source: str
    target: str
    key: int
    ref: int
    when: str | None

    @property
    def id(self) -> str:
        """The id in the source's satisfied-transition map (``target__tK``)."""
        return f"{self.target}__t{self.key}"

    @property
    def backref(self) -> str:
        """The id in routes and in the target's `prev` (``source__tK``)."""
        return f"{self.source}__t{self.key}"


class OrquestaGraph:
    """Composed graph: outbound/inbound edges, start tasks, barriers, splits, cycles, retries."""

    def __init__(self, spec: OrquestaSpec):
        self.spec = spec
        self.tasks = spec.tasks
        self._targets = {name: _next_tasks(task) for name, task in self.tasks.items()}
        referenced = {t for targets in self._targets.values() for t, _, _ in targets}
        self.start = sorted(n for n in self.tasks if n not in referenced)
        self.outbound: dict[str, list[Edge]] = {}
        self.inbound: dict[str, list[Edge]] = {}
        self.retry: dict[str, RetrySpec] = {n: t.retry for n, t in self.tasks.items() if t.retry is not None}
        self._prev_counts: dict[str, int] = {}
        for targets in self._targets.values():
            for target, _, _ in targets:
                self._prev_counts[target] = self._prev_counts.get(target, 0) + 1
        self._compose()
        self._cyclic = self._nodes_in_cycles()

    def _compose(self) -> None:
        queue = deque(self.start)
        seen = set(self.start)
        while queue:
            name = queue.popleft()
            edges = self.outbound.setdefault(name, [])
            self.inbound.setdefault(name, [])
            for target, when, ref in self._targets.get(name, []):
                if target == "retry":
                    self.retry[name] = RetrySpec(DEFAULT_RETRY_COUNT, when or DEFAULT_RETRY_WHEN)
                    continue
                if target not in self.tasks and target not in ENGINE_COMMANDS:
                    continue  # reported by check_graph
                key = sum(1 for e in edges if e.target == target)
                edge = Edge(name, target, key, ref, when)
                edges.append(edge)
                self.inbound.setdefault(target, []).append(edge)
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
        for edges in self.inbound.values():
            edges.sort(key=lambda e: (e.source, e.key))

    def _nodes_in_cycles(self) -> set[str]:
        """Nodes on some cycle (strongly connected components larger than one, or self-loops)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        cyclic: set[str] = set()
        counter = 0
        for root in sorted(self.outbound):
            if root in index:
                continue
            work = [(root, iter(self.outbound.get(root, [])))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on_stack.add(root)
            while work:
                node, edges = work[-1]
                advanced = False
                for edge in edges:
                    nxt = edge.target
                    if nxt == node:
                        cyclic.add(node)
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter
                        counter += 1
                        stack.append(nxt)
                        on_stack.add(nxt)
                        work.append((nxt, iter(self.outbound.get(nxt, []))))
                        advanced = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        cyclic.update(component)
        return cyclic

    # Queries --------------------------------------------------------------------------------

    def task(self, name: str) -> TaskSpec | None:
        return self.tasks.get(name)

    def barrier(self, name: str) -> str | int | None:
        """'*' for `join: all`, N for `join: N`, None for a task that is not a join."""
        task = self.tasks.get(name)
        if task is None or task.join is None:
            return None
        return "*" if task.join == "all" else task.join

    def is_split(self, name: str) -> bool:
        """Not a join, and referenced by more than one transition (of any task)."""
        return self.barrier(name) is None and self._prev_counts.get(name, 0) > 1

    def in_cycle(self, name: str) -> bool:
        return name in self._cyclic

    def has_node(self, name: str) -> bool:
        return name in self.outbound

    def view(self, name: str = "workflow") -> GraphView:
        """Every task (with its action and join, reachable or not) and every transition, in the
        file's order; `do: retry` and the engine commands are nodes of their own."""
        tasks = [Node(n, t.action, t.join) for n, t in self.tasks.items()]
        edges = [ViewEdge(n, target, condition(tr.when))
                 for n, t in self.tasks.items() for tr in t.next for target in tr.do]
        return build_view(name, tasks, edges, self.start)


def _next_tasks(task: TaskSpec) -> list[tuple[str, str | None, int]]:
    """(target, when, transition index) for every `do` entry, sorted by target (stable)."""
    found = [(target, tr.when, tr.index) for tr in task.next for target in tr.do]
    return sorted(found, key=lambda entry: entry[0])


def check_graph(graph: OrquestaGraph, positions: Positions) -> list[Problem]:
    """Whole-workflow problems: unknown targets, no start task, joins under nested splits."""
    problems: list[Problem] = []
    for name, task in graph.tasks.items():
        for tr in task.next:
            for target in tr.do:
                if target not in graph.tasks and target not in RESERVED:
                    problems.append(positions.problem(("tasks", name, "next", tr.index, "do"),
                                                      f"task '{name}': transition to unknown task '{target}'"))
    if graph.tasks and not graph.start:
        problems.append(positions.problem(("tasks",), "no start task: every task is the target of a transition "
                                                      "(a loop needs a task that leads into it)"))
    for name in _ambiguous_joins(graph):
        problems.append(positions.problem(("tasks", name, "join"),
                                          f"task '{name}': the join is unreachable: it joins branches of nested "
                                          f"splits, so the level at which it joins is ambiguous"))
    return problems


def _ambiguous_joins(graph: OrquestaGraph) -> list[str]:
    """Joins whose inbound tasks sit under different sets of split tasks."""
    splits_of: dict[str, set[str]] = {}
    prev_of: dict[str, set[str]] = {}
    seen_paths: dict[tuple[str, str], set[str]] = {}
    queue: deque[tuple[str | None, str, tuple[str, ...]]] = deque((None, s, ()) for s in graph.start)
    while queue:
        prev, name, splits = queue.popleft()
        if name not in graph.tasks:
            continue
        if graph.is_split(name) and not graph.in_cycle(name):
            splits = splits + (name,)
        splits_of.setdefault(name, set()).update(splits)
        if prev is not None:
            prev_of.setdefault(name, set()).add(prev)
        for edge in graph.outbound.get(name, []):
            if edge.target in splits_of and graph.in_cycle(edge.target):
                continue
            key = (name, edge.target)
            known = seen_paths.get(key)
            if known is None or not set(splits) <= known:
                seen_paths.setdefault(key, set()).update(splits)
                queue.append((name, edge.target, splits))
    bad = []
    for name, task in graph.tasks.items():
        if task.join is None or name not in splits_of:
            continue
        if any(splits_of[name] != splits_of.get(p, set()) for p in sorted(prev_of.get(name, ()))):
            bad.append(name)
    return bad


def describe(graph: OrquestaGraph) -> dict[str, Any]:
    """A plain view of the composed graph (for debugging and docs)."""
    return {name: [(e.target, e.key, e.when) for e in edges] for name, edges in graph.outbound.items()}

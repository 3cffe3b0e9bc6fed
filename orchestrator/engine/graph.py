"""The task graph: tasks as nodes, normalised transitions as edges.

Legacy transition fields (on_success, on_failure, on_timeout, on_complete, decision) are turned
into ordinary transitions here, so the conductor only ever sees one kind of edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .graphview import Edge, GraphView, Node, build_view, condition
from .spec import ENGINE_COMMANDS, TaskSpec, WorkflowSpec

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Transition:
    """One `next` entry. It fires when the task ended with `on` (any outcome when None), `when`
    is true and every `unless` is false (how `decision` becomes first-match)."""

    index: int
    do: tuple[str, ...]
    when: str | bool | None = None
    on: str | None = None
    unless: tuple[str | bool, ...] = ()
    publish: tuple[tuple[str, Any], ...] = ()
    path: Path = ()


@dataclass(frozen=True)
class TaskNode:
    name: str
    spec: TaskSpec
    position: int
    transitions: tuple[Transition, ...]
    inbound: frozenset[str] = frozenset()

    @property
    def targets(self) -> set[str]:
        return {t for tr in self.transitions for t in tr.do if t not in ENGINE_COMMANDS}


@dataclass(frozen=True)
class WorkflowGraph:
    spec: WorkflowSpec
    nodes: dict[str, TaskNode]
    entry: tuple[str, ...]
    edges: tuple[tuple[str, str, int], ...] = field(default=())

    @property
    def name(self) -> str:
        return self.spec.name or "workflow"

    def reachable(self) -> set[str]:
        seen: set[str] = set()
        stack = list(self.entry)
        while stack:
            name = stack.pop()
            if name in seen or name not in self.nodes:
                continue
            seen.add(name)
            stack.extend(self.nodes[name].targets)
        return seen

    def view(self, name: str | None = None) -> GraphView:
        """The format-neutral description the renderers and the HTTP API draw."""
        tasks = [Node(n.name, n.spec.action, n.spec.join) for n in self.nodes.values()]
        edges = [Edge(source, target, _edge_label(self.nodes[source].transitions[index]))
                 for source, target, index in self.edges]
        return build_view(name or self.name, tasks, edges, list(self.entry))


def _edge_label(transition: Transition) -> str:
    return condition(transition.on, transition.when)


def transitions_of(task: TaskSpec, position: int) -> tuple[Transition, ...]:
    """`next` entries first, then legacy fields in the spec's order."""
    base: Path = ("tasks", position)
    out: list[Transition] = []
    for i, entry in enumerate(task.next):
        out.append(Transition(len(out), tuple(entry.do), entry.when, None, (), tuple(entry.publish), base + ("next", i, "do")))
    for key, outcome in (("on_success", "succeeded"), ("on_failure", "failed"), ("on_timeout", "timed_out"), ("on_complete", None)):
        targets = getattr(task, key)
        if targets:
            out.append(Transition(len(out), tuple(targets), None, outcome, (), (), base + (key,)))
    earlier: list[str | bool] = []
    for i, decision in enumerate(task.decision or []):
        target = decision.next if decision.default is None else decision.default
        if target is None:
            continue
        when = None if decision.default is not None else decision.when
        out.append(Transition(len(out), (target,), when, "succeeded", tuple(earlier), (), base + ("decision", i)))
        if decision.default is None and decision.when is not None:
            earlier.append(decision.when)
    return tuple(out)


def build_graph(spec: WorkflowSpec, indexes: list[int] | None = None) -> WorkflowGraph:
    """Nodes, edges, inbound sets and entry tasks (those no transition points to). `indexes` are
    the tasks' positions in the file when only some of its tasks are given."""
    indexes = indexes if indexes is not None else list(range(len(spec.tasks)))
    transitions = {task.name: transitions_of(task, i) for i, task in zip(indexes, spec.tasks)}
    inbound: dict[str, set[str]] = {task.name: set() for task in spec.tasks}
    edges: list[tuple[str, str, int]] = []
    for source, trs in transitions.items():
        for tr in trs:
            for target in tr.do:
                edges.append((source, target, tr.index))
                if target in inbound:
                    inbound[target].add(source)
    nodes = {
        task.name: TaskNode(task.name, task, i, transitions[task.name], frozenset(inbound[task.name]))
        for i, task in zip(indexes, spec.tasks)
    }
    entry = tuple(task.name for task in spec.tasks if not inbound[task.name])
    return WorkflowGraph(spec, nodes, entry, tuple(edges))

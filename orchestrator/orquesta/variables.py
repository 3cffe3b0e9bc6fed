"""Variables used before they can be set: Orquesta's context inspection, done as a data flow.

``references(value)`` names the context variables an expression reads (``ctx().x``, ``ctx(x)``,
``ctx("x")``, ``ctx()["x"]``, in YAQL and Jinja), read from the parse tree rather than by pattern,
so a method call such as ``ctx().get(k)`` or a name inside a string literal is not a reference.

``check_variables(spec, positions)`` reports every reference to a variable that is not certain to
be set when the expression is evaluated:

- inputs, then vars, then outputs are evaluated in order, each seeing the ones before it;
- a start task sees the inputs and vars; a transition's ``publish`` entries are evaluated in
  order and reach only the tasks named in the same transition's ``do``;
- a task that is not a join runs once per inbound path, so it sees only what *every* path into it
  sets (a variable published on one branch only is an error in a task both branches reach); a
  join merges its branches and sees what *any* of them sets;
- the output sees every input, var and published name (Orquesta's rule: it is rendered from the
  merge of whatever tasks ended the run).

Orquesta walks the graph breadth first and inspects a task only with the paths that reached it
before its first visit; this check solves the flow equations instead, so it also catches a path
that arrives later (a definition Orquesta accepts and that then fails at run time on that path).
Names starting with ``__`` are private in Orquesta and cannot be referenced.
"""

from __future__ import annotations

import collections.abc  # noqa: F401  (yaql 3.x on Python 3.11 needs it imported first)
import functools
from typing import Any, Iterator

import jinja2
import yaql
from jinja2 import nodes as jn
from yaql.language import exceptions as yaql_exc
from yaql.language import expressions as yx

from ..core.errors import Problem
from ..engine.loader import Positions
from .expressions import JINJA_BLOCK_PATTERN, JINJA_PATTERN, YAQL_PATTERN
from .graph import OrquestaGraph
from .spec import OrquestaSpec, TaskSpec

Path = tuple[Any, ...]

_YAQL = yaql.language.factory.YaqlFactory().create()
_JINJA = jinja2.Environment()


# Which variables an expression reads ---------------------------------------------------------

def references(value: Any) -> list[str]:
    """Variable names read through ``ctx()`` anywhere in a value (maps, keys included, and
    lists are walked), in order of appearance, without repeats. Unparseable expressions are
    skipped: their syntax is reported elsewhere."""
    found: list[str] = []
    for text in texts(value):
        for name in _refs(text):
            if name not in found:
                found.append(name)
    return found


def texts(value: Any) -> Iterator[str]:
    """Every string inside a value: itself, or the keys and values of maps and lists within."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from texts(key)
            yield from texts(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from texts(item)


@functools.lru_cache(maxsize=4096)
def _refs(text: str) -> tuple[str, ...]:
    return tuple(_yaql_refs(text) + _jinja_refs(text))


def _yaql_refs(text: str) -> list[str]:
    names: list[str] = []
    for expr in YAQL_PATTERN.findall(text):
        try:
            tree = _YAQL(expr[2:-2].strip())
        except (yaql_exc.YaqlException, ValueError, TypeError):
            continue
        _walk_yaql(getattr(tree, "expression", tree), names)
    return names


def _is_yaql_ctx(node: Any, args: int) -> bool:
    return isinstance(node, yx.Function) and node.name == "ctx" and len(node.args) == args


def _yaql_name(node: Any) -> str | None:
    if isinstance(node, (yx.KeywordConstant, yx.Constant)) and isinstance(node.value, str):
        return node.value
    return None


def _walk_yaql(node: Any, names: list[str]) -> None:
    if _is_yaql_ctx(node, 1) and _yaql_name(node.args[0]) is not None:
        names.append(_yaql_name(node.args[0]))                       # ctx(x), ctx("x")
    elif isinstance(node, yx.BinaryOperator) and node.name == "#operator_." and _is_yaql_ctx(node.args[0], 0):
        if isinstance(node.args[1], yx.KeywordConstant):
            names.append(node.args[1].value)                         # ctx().x
    elif isinstance(node, yx.IndexExpression) and _is_yaql_ctx(node.args[0], 0) and len(node.args) == 2:
        if _yaql_name(node.args[1]) is not None and isinstance(node.args[1], yx.Constant):
            names.append(node.args[1].value)                         # ctx()["x"]
    for arg in getattr(node, "args", None) or ():
        _walk_yaql(arg, names)


def _jinja_refs(text: str) -> list[str]:
    if not (JINJA_PATTERN.search(text) or JINJA_BLOCK_PATTERN.search(text)):
        return []
    try:
        tree = _JINJA.parse(text)
    except jinja2.TemplateSyntaxError:
        return []
    names: list[str] = []
    callees = {id(call.node) for call in tree.find_all(jn.Call)}
    for node in tree.find_all((jn.Call, jn.Getattr, jn.Getitem)):
        if isinstance(node, jn.Call) and _is_jinja_ctx(node, 1):
            arg = node.args[0]
            if isinstance(arg, jn.Const) and isinstance(arg.value, str):
                names.append(arg.value)                              # ctx("x")
            elif isinstance(arg, jn.Name):
                names.append(arg.name)                               # ctx(x), as Orquesta reads it
        elif isinstance(node, jn.Getattr) and _is_jinja_ctx(node.node, 0) and id(node) not in callees:
            names.append(node.attr)                                  # ctx().x (not ctx().get(...))
        elif isinstance(node, jn.Getitem) and _is_jinja_ctx(node.node, 0):
            if isinstance(node.arg, jn.Const) and isinstance(node.arg.value, str):
                names.append(node.arg.value)                         # ctx()["x"]
    return names


def _is_jinja_ctx(node: Any, args: int) -> bool:
    return (isinstance(node, jn.Call) and isinstance(node.node, jn.Name) and node.node.name == "ctx"
            and len(node.args) == args and not node.kwargs)


# Where they are set --------------------------------------------------------------------------

class _Checker:
    def __init__(self, positions: Positions):
        self.positions = positions
        self.problems: list[Problem] = []

    def value(self, value: Any, known: set[str], path: Path, label: str, why: str) -> None:
        for name in references(value):
            if name.startswith("__"):
                self.problems.append(self.positions.problem(
                    path, f"{label}: variable '{name}' starts with '__': it is private and cannot be referenced"))
            elif name not in known:
                self.problems.append(self.positions.problem(
                    path, f"{label}: variable '{name}' is referenced before assignment ({why})"))

    def rolling(self, pairs: Any, known: set[str], path: Path, label: str, why: str) -> set[str]:
        """One-key entries evaluated in order, each seeing the ones before it."""
        known = set(known)
        for i, (name, value) in enumerate(pairs):
            self.value(value, known, path + (i, name), f"{label}.{name}", why)
            known.add(name)
        return known


def check_variables(spec: OrquestaSpec, graph: OrquestaGraph, positions: Positions) -> list[Problem]:
    """Every reference to a variable that may not be set when it is read (see the module doc)."""
    check = _Checker(positions)
    known: set[str] = set()
    for i, entry in enumerate(spec.input):
        if entry.has_default:
            check.value(entry.default, known, ("input", i, entry.name), f"input.{entry.name}",
                        "only earlier inputs are set")
        known.add(entry.name)
    known = check.rolling(spec.vars, known, ("vars",), "vars", "only inputs and earlier vars are set")
    task_in = _flow(spec, graph, known)
    everything = set(known)
    for name, seen in task_in.items():
        _check_task(check, name, spec.tasks[name], seen, graph)
        for tr in spec.tasks[name].next:
            everything.update(n for n, _ in tr.publish)
    check.rolling(spec.output, everything, ("output",), "output", "no input, var or publish sets it")
    return check.problems


def _check_task(check: _Checker, name: str, task: TaskSpec, known: set[str], graph: OrquestaGraph) -> None:
    base: Path = ("tasks", name)
    label = f"task '{name}'"
    why = ("it is not an input or a var, nor published on every path to this task"
           if graph.barrier(name) is None else "it is not an input or a var, nor published on any branch of this join")
    check.value(task.delay, known, base + ("delay",), f"{label}: delay", why)
    if task.items is not None:
        check.value(task.items.expression, known, base + ("with", "items"), f"{label}: with.items", why)
        check.value(task.items.concurrency, known, base + ("with", "concurrency"), f"{label}: with.concurrency", why)
    check.value(task.action, known, base + ("action",), f"{label}: action", why)
    inline = check.positions.marks.get(base + ("input",)) is None
    if isinstance(task.input, dict):
        for key, value in task.input.items():
            path = base + (("action",) if inline else ("input", key))
            check.value(value, known, path, f"{label}: input.{key}", why)
    else:
        check.value(task.input, known, base + ("input",), f"{label}: input", why)
    if task.retry is not None:
        for key in ("when", "count", "delay"):
            check.value(getattr(task.retry, key), known, base + ("retry", key), f"{label}: retry.{key}", why)
    for tr in task.next:
        where = base + ("next", tr.index)
        what = f"{label}: next[{tr.index}]"
        check.value(tr.when, known, where + ("when",), f"{what}.when", why)
        rolling = set(known)
        for i, (key, value) in enumerate(tr.publish):
            path = where + ("publish", i, key)
            if check.positions.marks.get(path) is None:
                path = where + ("publish",)  # inline `publish: a=1 b=2`
            check.value(value, rolling, path, f"{what}.publish.{key}", why)
            rolling.add(key)


def _flow(spec: OrquestaSpec, graph: OrquestaGraph, start: set[str]) -> dict[str, set[str]]:
    """The variables certain to be set when each reachable task starts: the greatest solution of
    in(task) = ∩ over inbound edges (∪ for a join) of in(source) ∪ published-on-that-edge."""
    reachable = [n for n in spec.tasks if graph.has_node(n)]
    universe = set(start)
    for task in spec.tasks.values():
        for tr in task.next:
            universe.update(n for n, _ in tr.publish)
    published = {(e.source, e.target, e.key): {n for n, _ in spec.tasks[e.source].next[e.ref].publish}
                 for n in reachable for e in graph.inbound.get(n, []) if e.source in spec.tasks}
    task_in = {n: (set(start) if n in graph.start else set(universe)) for n in reachable}
    changed = True
    while changed:
        changed = False
        for name in reachable:
            if name in graph.start:
                continue
            branches = [task_in[e.source] | published[(e.source, e.target, e.key)]
                        for e in graph.inbound.get(name, []) if e.source in task_in]
            if not branches:
                continue
            merged = set.union(*branches) if graph.barrier(name) is not None else set.intersection(*branches)
            if merged != task_in[name]:
                task_in[name] = merged
                changed = True
    return task_in

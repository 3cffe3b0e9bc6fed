"""Read YAML text into plain data while remembering where every key and value stands.

Validation errors carry a path such as ``("tasks", 2, "retry", "count")``; ``Positions.at`` maps
that path back to the 1-based line and column in the file, so every problem names its place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..core.errors import Problem, WorkflowInvalid

try:  # libyaml is ~8x faster; fall back to the pure-Python loader where it is missing
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

Path = tuple[Any, ...]


@dataclass
class Positions:
    """Line/column of each path in a document (of the key, for mapping entries)."""

    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def at(self, path: Path) -> tuple[int | None, int | None]:
        """The place of a path, or of its nearest ancestor that has one."""
        path = tuple(path)
        while True:
            mark = self.marks.get(path)
            if mark is not None:
                return mark
            if not path:
                return None, None
            path = path[:-1]

    def problem(self, path: Path, message: str) -> Problem:
        line, column = self.at(path)
        return Problem(message, line, column)


def load_yaml(text: str, source: str) -> tuple[Any, Positions]:
    """Parse one YAML document into plain data plus the positions of its nodes."""
    data, positions, problems = _parse(text, source)
    if problems:
        raise WorkflowInvalid(source, problems)
    return data, positions


def parse_bounded(text: str) -> Any:
    """A document's plain data under the same limits as load_yaml (nesting, number of values,
    JSON scalars), for a quick look that must never raise (format detection): None when the
    text is not YAML or passes a limit; a value the loader would refuse reads as None."""
    try:
        return _parse(text, "<text>")[0]
    except WorkflowInvalid:
        return None


def _parse(text: str, source: str) -> tuple[Any, Positions, list[Problem]]:
    """Data, positions and the problems found in values; raises WorkflowInvalid when the text
    cannot be read at all (not YAML, over a limit)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        line, column = _place(text, exc.start)
        raise WorkflowInvalid(source, [Problem(f"not valid text: {exc.reason} at character {exc.start}",
                                               line, column)]) from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = exc.problem or exc.context or "not valid YAML"
        raise WorkflowInvalid(source, [Problem(f"not valid YAML: {reason}", line, column)]) from None
    except yaml.reader.ReaderError as exc:
        line, column = _place(text, exc.position)
        raise WorkflowInvalid(source, [Problem(f"not valid YAML: {exc.reason}: character {exc.character!r}",
                                               line, column)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid(source, [Problem(f"not valid YAML: {str(exc).splitlines()[0]}")]) from None
    finally:
        loader.dispose()
    positions = Positions()
    problems: list[Problem] = []
    if node is None:
        return None, positions, problems
    try:
        data = _Builder(loader, positions, problems).build(node, ())
    except _TooBig as exc:
        raise WorkflowInvalid(source, [Problem(str(exc), exc.line, exc.column)]) from None
    return data, positions, problems


MAX_DEPTH = 64          # nesting a workflow never needs; deeper is refused, not recursed into
MAX_NODES = 200_000     # aliases can expand a small file into millions of nodes ("billion laughs")
JSON_SCALARS = (str, int, float, bool, type(None))


def _place(text: str, position: int | None) -> tuple[int | None, int | None]:
    if position is None:
        return None, None
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


class _TooBig(Exception):
    def __init__(self, message: str, node: yaml.Node):
        super().__init__(message)
        self.line, self.column = node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Builds plain data from the node tree, recording positions; refuses recursive aliases,
    absurd nesting or expansion, and scalars that are not JSON (binary, sets, ...)."""

    def __init__(self, loader: Any, positions: Positions, problems: list[Problem]):
        self.loader = loader
        self.positions = positions
        self.problems = problems
        self.nodes = 0
        self.open: set[int] = set()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig(f"the document expands to more than {MAX_NODES} values (aliases?)", node)
        if len(path) > MAX_DEPTH:
            raise _TooBig(f"the document nests deeper than {MAX_DEPTH} levels", node)
        if id(node) in self.open:
            raise _TooBig("a recursive alias (a value that contains itself)", node)
        self.open.add(id(node))
        try:
            return self._build(node, path)
        finally:
            self.open.discard(id(node))

    def _problem(self, node: yaml.Node, message: str) -> None:
        self.problems.append(Problem(message, node.start_mark.line + 1, node.start_mark.column + 1))

    def _build(self, node: yaml.Node, path: Path) -> Any:
        positions = self.positions
        positions.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            try:
                self.loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
            except yaml.YAMLError as exc:
                self._problem(node, f"bad merge key: {getattr(exc, 'problem', None) or exc}")
                return None
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.build(key_node, path + ("<key>",))
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    self._problem(key_node, "a mapping key must be a scalar")
                    continue
                child = path + (key,)
                if key in result:
                    self._problem(key_node, f"duplicate key '{key}'")
                positions.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if node.tag == "tag:yaml.org,2002:timestamp":
            return node.value  # keep dates as written: workflow data must stay JSON
        try:
            value = self.loader.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's scalar constructors raise ValueError, KeyError, ...
            shown = node.value if len(node.value) <= 80 else node.value[:60] + f"… ({len(node.value)} characters)"
            reason = str(getattr(exc, 'problem', None) or exc)
            self._problem(node, f"bad value {shown!r} for tag {node.tag}: {reason[:200]}")
            return None
        if not isinstance(value, JSON_SCALARS):
            self._problem(node, f"a {type(value).__name__} value is not allowed here (workflow data must be JSON)")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self._problem(node, f"{node.value} is not allowed here (workflow data must be JSON: finite numbers)")
            return None
        return value

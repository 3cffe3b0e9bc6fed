"""Read YAML text into plain data while remembering where every key and value stands.

Validation errors carry a path such as ``("tasks", 2, "retry", "count")``; ``Positions.at`` maps
that path back to the 1-based line and column in the file, so every problem names its place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem, WorkflowInvalid

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
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = exc.problem or exc.context or "not valid YAML"
        raise WorkflowInvalid(source, [Problem(f"not valid YAML: {reason}", line, column)]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid(source, [Problem(f"not valid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    positions = Positions()
    problems: list[Problem] = []
    if node is None:
        return None, positions
    data = _construct(loader, node, (), positions, problems)
    if problems:
        raise WorkflowInvalid(source, problems)
    return data, positions


def _construct(loader: Any, node: yaml.Node, path: Path, positions: Positions, problems: list[Problem]) -> Any:
    positions.marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves YAML merge keys (<<)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _construct(loader, key_node, path + ("<key>",), positions, problems)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                problems.append(Problem("a mapping key must be a scalar", key_node.start_mark.line + 1,
                                        key_node.start_mark.column + 1))
                continue
            child = path + (key,)
            if key in result:
                problems.append(Problem(f"duplicate key '{key}'", key_node.start_mark.line + 1,
                                        key_node.start_mark.column + 1))
            positions.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _construct(loader, value_node, child, positions, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(loader, item, path + (i,), positions, problems) for i, item in enumerate(node.value)]
    if node.tag == "tag:yaml.org,2002:timestamp":
        return node.value  # keep dates as written: workflow data must stay JSON
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        problems.append(Problem(f"bad value: {exc.problem}", node.start_mark.line + 1, node.start_mark.column + 1))
        return None

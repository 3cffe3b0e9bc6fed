"""The native workflow format as typed models (Pydantic v2): the file's schema, in one place.

``parse_workflow`` turns YAML text into a ``WorkflowSpec`` or raises ``WorkflowInvalid`` listing
every schema problem with its line and column. Semantic checks that need the whole graph (unknown
targets, unreachable tasks, joins) live in ``validate.py``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import Problem, WorkflowInvalid
from .loader import Positions, load_yaml

ENGINE_COMMANDS = frozenset({"fail", "noop", "continue"})
MAX_SECONDS = 366 * 24 * 3600  # timers are datetimes: a year is far beyond any sane delay or timeout
PARAMETER_TYPES = ("string", "integer", "number", "boolean", "array", "object")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


def _task_list(value: Any) -> Any:
    """`do: a`, `do: "a, b"` and `do: [a, b]` all mean a list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value]
    raise ValueError("must be a task name, a comma-separated string or a list of task names")


def _condition(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool)):
        return value
    raise ValueError("must be an expression string or a boolean")


class ParameterSpec(_Model):
    """One entry of the flat parameter schema."""

    type: Literal["string", "integer", "number", "boolean", "array", "object"] | None = None
    required: bool = False
    default: Any = None
    enum: list[Any] | None = None
    description: str | None = None
    items: dict[str, Any] | None = None

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {}
        if self.type:
            schema["type"] = self.type
        if self.enum is not None:
            schema["enum"] = self.enum
        if self.items is not None:
            schema["items"] = self.items
        return schema


class RetrySpec(_Model):
    count: int = Field(ge=0)
    delay: float = Field(default=0, ge=0, le=MAX_SECONDS)
    backoff: Literal["constant", "linear", "exponential"] = "constant"
    max_delay: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    when: str | bool | None = None

    _when = field_validator("when", mode="before")(_condition)

    def delay_before(self, retry_number: int) -> float:
        """Seconds to wait before retry k (k = 1 for the first retry)."""
        if self.backoff == "linear":
            delay = self.delay * retry_number
        elif self.backoff == "exponential":
            delay = self.delay * 2 ** min(retry_number - 1, 64)
        else:
            delay = self.delay
        return min(delay, MAX_SECONDS if self.max_delay is None else self.max_delay)


class TransitionSpec(_Model):
    when: str | bool | None = None
    publish: list[tuple[str, Any]] = Field(default_factory=list)
    do: list[str] = Field(default_factory=list)

    _when = field_validator("when", mode="before")(_condition)
    _do = field_validator("do", mode="before")(_task_list)

    @field_validator("publish", mode="before")
    @classmethod
    def _publish(cls, value: Any) -> Any:
        """`publish` is a map or a list of one-key maps; kept as ordered (name, template) pairs."""
        if value is None:
            return []
        if isinstance(value, dict):
            return list(value.items())
        if isinstance(value, list):
            pairs = []
            for entry in value:
                if not (isinstance(entry, dict) and len(entry) == 1):
                    raise ValueError("each publish entry must be a one-key map {name: value}")
                pairs.extend(entry.items())
            return pairs
        raise ValueError("must be a map or a list of one-key maps")


class DecisionSpec(_Model):
    when: str | bool | None = None
    next: str | None = None
    default: str | None = None


class TaskSpec(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][\w.-]*$")
    action: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)
    next: list[TransitionSpec] = Field(default_factory=list)
    join: Any = None
    with_items: str | list[Any] | None = None
    concurrency: int | str | None = None
    batch_size: int = Field(default=1, ge=1)
    retry: RetrySpec | None = None
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)
    delay: float | None = Field(default=None, ge=0, le=MAX_SECONDS)
    queue: str | None = None
    when: str | bool | None = None
    description: str | None = None
    # Legacy transition fields, normalised into `next` by the graph builder.
    on_success: list[str] | None = None
    on_failure: list[str] | None = None
    on_timeout: list[str] | None = None
    on_complete: list[str] | None = None
    decision: list[DecisionSpec] | None = None

    _when = field_validator("when", mode="before")(_condition)
    _legacy = field_validator("on_success", "on_failure", "on_timeout", "on_complete", mode="before")(_task_list)

    @field_validator("join", mode="before")
    @classmethod
    def _join(cls, value: Any) -> Any:
        if value is None or value == "all" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be 'all' or a positive integer")

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: Any) -> Any:
        if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("must be a positive integer or an expression")


class WorkflowSpec(_Model):
    version: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    tasks: list[TaskSpec] = Field(min_length=1)
    output_map: dict[str, Any] = Field(default_factory=dict)
    timeout: float | None = Field(default=None, gt=0, le=MAX_SECONDS)

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if str(value) in ("1", "1.0"):
            return "1.0"
        raise ValueError(f"unsupported version {value!r} (expected \"1.0\")")


def parse_workflow(text: str, source: str = "<workflow>", default_name: str | None = None) -> tuple[WorkflowSpec, Positions]:
    """YAML text -> typed spec and positions; raises WorkflowInvalid with every schema problem."""
    data, positions = load_yaml(text, source)
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise WorkflowInvalid(source, [Problem(f"a workflow file must be a mapping, this one is {kind}", 1, 1)])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        error = WorkflowInvalid(source, _problems(exc, data, positions))
        error.partial = _partial(data, positions, default_name)
        raise error from None
    if spec.name is None and default_name:
        spec = spec.model_copy(update={"name": default_name})
    return spec, positions


class PartialWorkflow:
    """What could be read of an invalid file, so the whole-workflow checks still report their
    problems in the same go. Each task is kept without the keys that failed the schema
    (`dropped`, by file index); a task whose name cannot be read is left out and only its name, if
    any, is known (`unreadable`). `complete` says whether the graph is whole: every task kept and
    none lost a transition or its join."""

    def __init__(self, spec: WorkflowSpec, indexes: list[int], unreadable: set[str],
                 dropped: dict[int, frozenset[str]], positions: Positions, whole: bool):
        self.spec = spec
        self.indexes = indexes
        self.unreadable = unreadable
        self.dropped = dropped
        self.positions = positions
        self.complete = whole and not any(keys & GRAPH_KEYS for keys in dropped.values())


GRAPH_KEYS = frozenset({"next", "on_success", "on_failure", "on_timeout", "on_complete", "decision", "join"})
_NO_ACTION = "-"  # stands in for an action that failed the schema; never checked or run


def _salvage(raw: Any) -> tuple[TaskSpec | None, frozenset[str]]:
    """A task, without the keys that make it invalid; None when its name is one of them."""
    try:
        return TaskSpec.model_validate(raw), frozenset()
    except ValidationError as exc:
        if not isinstance(raw, dict):
            return None, frozenset()
        bad = frozenset(e["loc"][0] for e in exc.errors() if e["loc"] and isinstance(e["loc"][0], str))
        if not bad or "name" in bad:
            return None, bad
        kept = {key: value for key, value in raw.items() if key not in bad}
        kept.setdefault("action", _NO_ACTION)
        try:
            return TaskSpec.model_validate(kept), bad
        except ValidationError:
            return None, bad


def _partial(data: dict[str, Any], positions: Positions, default_name: str | None) -> PartialWorkflow | None:
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        return None
    kept: list[TaskSpec] = []
    indexes: list[int] = []
    unreadable: set[str] = set()
    dropped: dict[int, frozenset[str]] = {}
    for i, raw in enumerate(raw_tasks):
        task, bad = _salvage(raw)
        if task is None:
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                unreadable.add(raw["name"])
            continue
        kept.append(task)
        indexes.append(i)
        if bad:
            dropped[i] = bad
    plain = {key: data[key] for key in ("vars", "output_map") if isinstance(data.get(key), dict)}
    parameters = {}
    for name, raw in (data.get("parameters") if isinstance(data.get("parameters"), dict) else {}).items():
        try:
            parameters[name] = ParameterSpec.model_validate(raw)
        except ValidationError:
            pass
    spec = WorkflowSpec.model_construct(version="1.0", name=default_name, description=None, parameters=parameters,
                                        vars=plain.get("vars", {}), tasks=kept,
                                        output_map=plain.get("output_map", {}), timeout=None)
    return PartialWorkflow(spec, indexes, unreadable, dropped, positions, whole=len(kept) == len(raw_tasks))


def _problems(exc: ValidationError, data: Any, positions: Positions) -> list[Problem]:
    problems: dict[tuple[Any, ...], Problem] = {}
    for error in exc.errors():
        path = _real_path(data, error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden":
            message = f"unknown key '{path[-1]}'" + _where(path[:-1])
        elif kind == "missing":
            owner = path[:-1] if path and path[-1] == error["loc"][-1] else path
            message = f"missing required key '{error['loc'][-1]}'" + _where(owner)
        else:
            reason = error["msg"].removeprefix("Value error, ")
            message = f"{_dotted(path)}: {reason}"
        problems.setdefault(path, positions.problem(path, message))
    return list(problems.values())


def _real_path(data: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop Pydantic's union/validator labels from an error location, keeping real keys."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and not any(c in part for c in "[]-"):
            path.append(part)  # a missing key: it names the place's owner
            node = None
    return tuple(path)


def _dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "workflow"


def _where(path: tuple[Any, ...]) -> str:
    return f" in {_dotted(path)}" if path else ""

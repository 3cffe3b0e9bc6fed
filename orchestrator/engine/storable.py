"""Which values can be stored: the one check every boundary uses (action results, run parameters,
rendered inputs, published variables, run outputs; both workflow formats).

Values are kept as JSON in PostgreSQL (jsonb), in Celery messages and in the result backend.
Some Python values have no faithful JSON form or are refused by PostgreSQL: NaN and the
infinities (no JSON number), the NUL character (jsonb and text refuse it), lone UTF-16 surrogates
(not UTF-8), integers longer than Python will turn into text (4,300 digits by default), and
anything that is not data at all. Such a value fails the task (or the run, for parameters and
outputs) at once with an error that names where it sits, instead of failing every retry of the
database write.

Pure: no I/O. The fast path is one strict `json.dumps`, which the callers need anyway for the
size; the value is walked only when that finds something.
"""

from __future__ import annotations

import json
import math
from typing import Any, Callable

from .commands import Command, Dispatch, Event, ExecutionEnded, ItemEnded, RunFinished, TaskEnded, VariablesSet

_LIMIT = "an integer too long to store"


def encode(value: Any, root: str = "$") -> tuple[str | None, str | None]:
    """(the JSON text of `value`, None) when it can be stored, else (None, why not: the problem
    and where, e.g. "NaN at $.stats.mean"; `root` names the value itself, e.g. `params`)."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError) as exc:
        return None, _locate(value, root) or f"not storable as JSON ({exc})"
    if "\\u0000" in text:
        found = _locate(value, root)
        if found:
            return None, found
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, _locate(value, root) or "a lone surrogate character"
    return text, None


def problem(value: Any, root: str = "$") -> str | None:
    """Why `value` cannot be stored, or None."""
    return encode(value, root)[1]


def _locate(value: Any, path: str, depth: int = 0) -> str | None:
    if depth > 200:
        return f"nesting deeper than 200 levels at {path}"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} (JSON has no NaN or Infinity) at {path}"
    if isinstance(value, int):
        try:
            str(value)
        except ValueError:
            return f"{_LIMIT} (about {int(value.bit_length() * 0.30103) + 1:,} digits) at {path}"
        return None
    if isinstance(value, str):
        return _text_problem(value, path)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str):
                found = _text_problem(key, f"{path} (a key)")
                if found:
                    return found
            elif not isinstance(key, (int, float, bool)) and key is not None:
                return f"a {type(key).__name__} key at {path}"
            found = _locate(item, f"{path}.{key}", depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _locate(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    return f"a {type(value).__name__}, which is not JSON data, at {path}"


def _text_problem(text: str, path: str) -> str | None:
    if "\x00" in text:
        return f"a NUL character at {path}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate character (U+{ord(text[exc.start]):04X}) at {path}"
    return None


# A step's commands ------------------------------------------------------------------------------

def checked(commands: list[Command], events: list[Event], more: Callable[[list[Event]], list[Command]],
            again: Callable[[list[Event]], list[Command]] | None = None,
            failing: Callable[[], None] | None = None, log: Callable[[str], None] | None = None) -> list[Command]:
    """A step's `commands` with every value that cannot be stored turned into a failure:

    - a call whose input cannot be stored is not sent; it fails (`more(events)` applies the
      failure to the step's current state and returns the commands that follow);
    - a result or published variables: the event that brought them becomes the failure of its
      call and the step is decided again from the stored state (`again(events)`);
    - the run's output, or a value no single call can be blamed for (or one at a start, where
      nothing can be decided again): the run fails (`failing()` is told first).
    """
    dropped: set[tuple[int, int, int | None]] = set()
    for _ in range(50):  # each round turns one value into a failure
        commands = [c for c in commands if not (isinstance(c, Dispatch) and (c.seq, c.attempt, c.item) in dropped)]
        found = first_unstorable(commands)
        if found is None:
            return commands
        command, why = found
        if log is not None:
            log(why)
        if isinstance(command, Dispatch):
            dropped.add((command.seq, command.attempt, command.item))
            commands = commands + more([TaskEnded(command.seq, command.attempt, "failed", None, why, command.item)])
            continue
        replaced = as_failure(events, command, why) if again is not None else None
        if replaced is None:
            if failing is not None:
                failing()
            return failing_run(commands, why)
        events = replaced
        commands = again(events)
    raise RuntimeError("unstorable values kept coming")


def first_unstorable(commands: list[Any]) -> tuple[Any, str] | None:
    """The first command carrying a value that cannot be stored, and why."""
    for command in commands:
        if isinstance(command, Dispatch):
            why = problem(command.input)
            if why:
                return command, f"task '{command.task}': its input cannot be stored: {why}"
        elif isinstance(command, (ExecutionEnded, ItemEnded)):
            why = problem(command.result)
            if why:
                return command, f"the result cannot be stored: {why}"
        elif isinstance(command, VariablesSet):
            why = problem(command.values)
            if why:
                return command, f"published variables cannot be stored: {why}"
        elif isinstance(command, RunFinished):
            why = problem(command.output)
            if why:
                return command, f"the workflow's output cannot be stored: {why}"
    return None


def as_failure(events: list[Event], command: Any, why: str) -> list[Event] | None:
    """The events again, with the one that produced `command` (a result or published variables
    that cannot be stored) turned into the failure of its call; None when it cannot be pinned
    on one call."""
    if isinstance(command, (ExecutionEnded, ItemEnded)):
        seq, item = command.seq, getattr(command, "item", None)
        keys = [(e.seq, e.item) for e in events if isinstance(e, TaskEnded)]
        match = [i for i, e in enumerate(events) if isinstance(e, TaskEnded) and e.seq == seq
                 and (item is None or e.item == item)]
        if not match and len(keys) == 1:
            match = [next(i for i, e in enumerate(events) if isinstance(e, TaskEnded))]
    elif isinstance(command, VariablesSet):
        match = [i for i, e in enumerate(events) if isinstance(e, TaskEnded)]
    else:
        return None
    if len(match) != 1:
        return None
    index = match[0]
    event = events[index]
    failure = TaskEnded(event.seq, event.attempt, "failed", None, why, event.item)
    if event.status == "failed" and event.result is None and event.error == why:
        return None  # already turned: give up on pinning it
    return [*events[:index], failure, *events[index + 1:]]


def failing_run(commands: list[Any], why: str) -> list[Any]:
    """The step's commands with the run failing instead of finishing with an unstorable output
    (or, when the value cannot be pinned on a call, failing at once): calls this step would
    have sent end unsent."""
    out: list[Any] = []
    for command in commands:
        if isinstance(command, Dispatch):
            out.append(ExecutionEnded(command.seq, command.task, command.attempt, "failed", None, why))
        elif isinstance(command, (ExecutionEnded, ItemEnded)) and problem(command.result):
            out.append(ExecutionEnded(command.seq, getattr(command, "task", ""), getattr(command, "attempt", 1),
                                      "failed", None, why) if isinstance(command, ExecutionEnded)
                       else ItemEnded(command.seq, command.item, "failed", why))
        elif not isinstance(command, (RunFinished, VariablesSet)):
            out.append(command)
    out.append(RunFinished("failed", None, why))
    return out



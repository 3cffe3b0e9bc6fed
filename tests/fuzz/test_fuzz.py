"""Fuzzing the engine's front doors: random and malformed workflow files, parameter values and
templates. Every case must end in a clear validation error or a correct run, never a traceback or a
hung run.

Bugs this fuzzing found have a deterministic reproducer each (the ``test_bug_*`` tests). The
property tests recognise their failure signatures (``KNOWN_BUGS``): a fixed bug whose signature comes
back fails with the bug's name; a bug still open (in ``OPEN_BUGS``, its reproducer marked
``xfail(strict=True)``) is recorded as a Hypothesis event, so the fuzzing stays green and keeps
searching. When an open bug is fixed its reproducer XPASSes, which fails the suite: remove the xfail
mark and the letter from ``OPEN_BUGS`` together.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from orchestrator.engine.commands import SetTimer
from orchestrator.core.errors import (
    ExpressionError,
    ParametersInvalid,
    WorkflowInvalid,
)
from orchestrator.engine.expressions import Evaluator
from orchestrator.engine.params import resolve_parameters
from orchestrator.engine.rehearsal import rehearse, script
from orchestrator.engine.validate import Workflow, load_workflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [p.read_text() for p in sorted((ROOT / "examples").glob("*.yaml"))]
SOURCE = "fuzz.yaml"
# Characters that end a line for YAML, str.splitlines() or a terminal: none may appear in a problem line.
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
EXECUTION_LIMIT = 200
MAX_CALLS = 5000

# FUZZ_SCALE=20 multiplies every example count, for a longer campaign than the ~40 s default.
SCALE = max(1, int(os.environ.get("FUZZ_SCALE", "1")))
LONG = pytest.mark.timeout(120 * SCALE)  # pytest-timeout's 120 s per test, scaled with the campaign
# Python warns while compiling Jinja's code for templates like "{{ 1[0] }}"; they are then errors at run time.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")
FUZZ = {"deadline": None, "database": None, "derandomize": False,
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]}


# Bugs found by fuzzing: each has a reproducer (test_bug_*) below -------------------------------------------

KNOWN_BUGS = {
    "A": "YAML reader errors (control characters) render as two lines",
    "B": "names quoted into a problem line keep their line breaks",
    "C": "recursive YAML aliases / deep nesting raise RecursionError from load_workflow",
    "E": "Evaluator.compile lets errors other than TemplateSyntaxError escape (large templates, constant folding)",
    "F": "templates can return Python internals (functions, classes, range, dict views, Jinja helpers)",
    "G": "with_items concurrency that renders negative leaves the run 'running' forever",
    "H": "with_items concurrency that renders to infinity raises OverflowError from the conductor",
    "I": "a template mapping key that renders to a list/dict raises TypeError (unhashable)",
    "J": "an items schema with an unresolvable $ref raises a jsonschema referencing error",
    "K": "ParametersInvalid messages keep line breaks of parameter names",
    "M": "load_workflow checks a parameter default against an unchecked items schema: jsonschema errors escape",
    "N": "a YAML merge key (<<) with a non-mapping value raises yaml ConstructorError from load_workflow",
    "O": "a !!binary scalar loads as bytes, which a valid workflow then carries into inputs, vars and output",
    "P": "a bad !!int/!!float/!!bool scalar raises ValueError/KeyError/IndexError from load_workflow",
    "Q": "a template can return an int too long for JSON (over 4300 digits): storing it fails, the run hangs",
    "R": "a template can return inf or nan, which JSON (PostgreSQL jsonb, strict parsers) does not accept",
    "S": "width formatting ('%999999999d' % 1, center, format) builds strings far beyond the engine's size cap",
    "T": "the width/size caps are bypassed: '%*d', nested '{:{}}', '%(k)Ns', precision, join with a huge separator",
    "U": "YAML .nan/.inf literals in vars, input, output_map or publish pass validation: non-JSON numbers in a run",
    "V": "a lone surrogate in the workflow text raises UnicodeEncodeError from load_workflow (HTTP API: 500)",
}
OPEN_BUGS: set[str] = set()  # still open: reproducers marked xfail(strict=True)


def has_break(text: str) -> bool:
    return any(b in text for b in BREAKS)


def names_with_breaks(text: str) -> list[str]:
    """Strings of a YAML document (keys and values, and their comma-separated parts) that contain
    a line break, longest first."""
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, KeyError, IndexError, RecursionError):
        return []
    found: set[str] = set()
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and has_break(item):
            found.add(item)
            found.update(part.strip() for part in item.split(",") if has_break(part.strip()))
    return sorted(found, key=len, reverse=True)


def without(message: str, names: list[str]) -> str:
    for name in names:
        message = message.replace(name, "")
    return message


def line_bug(line: str, text: str) -> str | None:
    """The known bug behind a malformed problem line of the file `text`, if any."""
    if "not valid YAML: unacceptable character" in line:
        return "A"
    if has_break(line) and not has_break(without(line, names_with_breaks(text))):
        return "B"
    return None


def raised_in(exc: BaseException, filename: str, function: str | None = None) -> bool:
    """Whether the exception passed through `function` of a file whose path ends with `filename`."""
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename.replace(os.sep, "/").endswith(filename) and function in (None, code.co_name):
            return True
        tb = tb.tb_next
    return False


def exception_bug(exc: BaseException) -> str | None:
    """The known bug behind an unexpected exception, if any."""
    text = str(exc)
    if raised_in(exc, "orchestrator/engine/expressions.py", "compile"):
        return "E"
    if isinstance(exc, UnicodeEncodeError) and raised_in(exc, "orchestrator/engine/loader.py", "load_yaml"):
        return "V"
    if isinstance(exc, RecursionError):
        return "C"
    if isinstance(exc, yaml.constructor.ConstructorError) and "for merging" in text:
        return "N"
    if isinstance(exc, (ValueError, KeyError, IndexError, TypeError)) \
            and raised_in(exc, "orchestrator/engine/loader.py", "_construct") and raised_in(exc, "yaml/constructor.py"):
        return "P"
    if isinstance(exc, OverflowError) and "float infinity to integer" in text:
        return "H"
    if isinstance(exc, TypeError) and "unhashable type" in text:
        return "I"
    if "Referencing" in type(exc).__name__ or type(exc).__module__.startswith("referencing"):
        return "J"
    if type(exc).__name__ == "UnknownType" or isinstance(exc, re.error):
        return "M"
    return None


def known(bug: str) -> None:
    """An open bug is recorded (its xfail reproducer documents it); a fixed one coming back fails."""
    if bug in OPEN_BUGS:
        event(f"open bug {bug}: {KNOWN_BUGS[bug]}")
        return
    pytest.fail(f"fixed bug {bug} is back: {KNOWN_BUGS[bug]}")


# Checks shared by the tests ---------------------------------------------------------------------

def check_problem_lines(exc: WorkflowInvalid, text: str, source: str = SOURCE) -> str | None:
    """Every line is `source[:line:col]: message`, one line each; returns a known bug or None."""
    lines = exc.lines()
    assert lines, "WorkflowInvalid without any problem"
    assert len(lines) == len(exc.problems)
    pattern = re.compile(rf"{re.escape(source)}(:(\d+):(\d+))?: .+")
    for line in lines:
        bug = line_bug(line, text)
        if bug:
            return bug
        assert not has_break(line), f"problem line with a line break: {line!r}"
        match = pattern.fullmatch(line)
        assert match, f"malformed problem line: {line!r}"
        if match.group(1):
            row, col = int(match.group(2)), int(match.group(3))
            assert 1 <= row <= len(text.splitlines()) + 1 and col >= 1, f"place out of the file: {line!r}"
    return None


def load_checked(text: str) -> Workflow | None:
    """load_workflow: a Workflow, or None after checking the WorkflowInvalid lines."""
    note(f"workflow text:\n{text}")
    try:
        return load_workflow(text, SOURCE)
    except WorkflowInvalid as exc:
        bug = check_problem_lines(exc, text)
        if bug:
            known(bug)
        return None
    except Exception as exc:
        bug = exception_bug(exc)
        if bug is None:
            raise
        known(bug)
        return None


def json_like(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(json_like(v) for v in value)
    if isinstance(value, dict):
        return all(k is None or isinstance(k, (str, int, float, bool)) for k in value) and all(
            json_like(v) for v in value.values())
    return False


def assert_json(value: Any) -> None:
    assert json_like(value), f"not JSON-like: {value!r}"
    json.dumps(value, allow_nan=False)  # storable: no inf/nan, no int too long to print


MAX_TEXT = 10_000_000  # the engine's own cap on repeated strings and lists (expressions.MAX_REPEAT)


def json_bug(value: Any) -> str | None:
    """The known bug behind a value that is JSON-like but not storable, if any."""
    try:
        json.dumps(value)
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            return "Q"
        raise
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return "R"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return "T"
    return None


class Bad:
    """Marks an option that makes a workflow invalid; documents drawn in clean mode leave it out."""

    def __init__(self, option: Any):
        self.option = option


MODE = {"clean": False, "deep": False}


def pick(draw, *options: tuple[int, Any]) -> Any:
    """A weighted choice (shrinks towards the first option). An option is a value (copied), a
    prebuilt strategy (drawn) or a zero-argument callable (called: for choices that draw more);
    wrapped in Bad when it makes the workflow invalid."""
    allowed = [(w, o) for w, o in options if w and not (MODE["clean"] and isinstance(o, Bad))]
    roll = draw(st.integers(0, sum(w for w, _ in allowed) - 1))
    for weight, option in allowed:
        if roll < weight:
            option = option.option if isinstance(option, Bad) else option
            if isinstance(option, st.SearchStrategy):
                return draw(option)
            if callable(option):
                return option()
            return copy.deepcopy(option)
        roll -= weight
    raise AssertionError("unreachable")


def choice(draw, values: list[Any]) -> Any:
    """One of a list built at draw time (no new strategy per draw: those are slow to build)."""
    return copy.deepcopy(values[draw(st.integers(0, len(values) - 1))])


# 1. Arbitrary and mutated text ---------------------------------------------------------------

YAML_CHARS = list(":-[]{},#&*!|>'\"%@`?~ \n\t.0123456789") + [
    "\n  ", "{{", "}}", ": ", "- ", "\\", "\r\n", "\x00", "\ufeff", "\x85", "\u2028", "null", "<<", "<<: ", "&a ", "*a",
    "--- ", "...\n", "? ", "%YAML 1.1\n", "!local ", "!!str ", "!!int ", "!!float ", "!!set ", "!!omap ", "!!binary ",
    "!!timestamp ", "!!python/object:os.system ", "2001-12-14t21:59:43.10-05:00", ".inf", ".nan", "0x1F", "1e400"]


@st.composite
def mutated_examples(draw) -> str:
    text = draw(st.sampled_from(EXAMPLES))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "dup_line", "drop_line", "indent", "dedent"]))
        if op in ("insert", "replace"):
            piece = draw(st.one_of(st.sampled_from(YAML_CHARS), st.characters(), st.text(max_size=4)))
            end = pos + draw(st.integers(1, 4)) if op == "replace" else pos
            text = text[:pos] + piece + text[end:]
        elif op == "delete":
            text = text[:pos] + text[pos + draw(st.integers(1, 12)):]
        else:
            lines = text.split("\n")
            i = min(pos * len(lines) // (len(text) + 1), len(lines) - 1)
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            elif op == "indent":
                lines[i] = "  " + lines[i]
            else:
                lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i].lstrip()
            text = "\n".join(lines)
    return text


def spec_bug(workflow: Workflow) -> str | None:
    """What a run stores and sends comes from the spec, so the spec's data must be JSON."""
    try:
        json.dumps(workflow.spec.model_dump(), allow_nan=False)
    except TypeError as exc:
        if "bytes" not in str(exc):
            raise
        return "O"
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        return "U"
    return None


def check_load(text: str) -> None:
    workflow = load_checked(text)
    if workflow is not None:
        assert workflow.spec.tasks and workflow.graph.entry
        bug = spec_bug(workflow)
        if bug:
            known(bug)


@LONG
@settings(max_examples=250 * SCALE, **FUZZ)
@given(st.one_of(st.text(max_size=300),
                 st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t"), max_size=300),
                 st.lists(st.sampled_from(YAML_CHARS) | st.sampled_from(["version", "tasks", "name", "action", "1.0",
                                                                        "a", "b"]), max_size=60).map("".join)))
def test_arbitrary_text(text):
    check_load(text)


@LONG
@settings(max_examples=100 * SCALE, **FUZZ)
@given(st.binary(max_size=300), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_decoded_bytes(data, encoding):
    check_load(data.decode(encoding, errors="replace"))


@LONG
@settings(max_examples=300 * SCALE, **FUZZ)
@given(mutated_examples())
def test_mutated_examples(text):
    check_load(text)


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_examples_themselves_are_valid(index):
    assert load_workflow(EXAMPLES[index], SOURCE)


# 2. Structured random workflows, validated then rehearsed ------------------------------------

TASK_NAMES = ["t0", "t1", "t2", "t3", "t4", "t5"]
COMMANDS = ["fail", "noop", "continue"]
# Template pools: the first of each pair evaluates in any run; RISKY ones fail at run time (undefined
# names, wrong types), which must end the task or run cleanly.
WHEN = [True, False, "{{ succeeded() }}", "{{ failed() }}", "{{ timed_out() }}", "{{ not succeeded() }}",
        "{{ result() }}", "{{ result() is mapping and 'x' in result() }}", "{{ workflow.v | default(0) }}",
        "{{ system.attempt > 1 }}", "{{ length(workflow) > 0 }}", "true", "no", "{{ 't0' in task }}",
        "{{ task.t0.status == 'succeeded' if 't0' in task else false }}", "{{ result() is string }}"]
RISKY_WHEN = ["{{ result().x }}", "{{ task.t0.status == 'succeeded' }}", "{{ 1 / 0 }}", "{{ nope }}"]
BROKEN = ["{{ succeeded( }}", "{% if %}", "{{ }}", "{{ a | }}", "{% for %}", "{{ 'x }}", "{{ result()[ }}"]
PUBLISH = ["{{ result() }}", "{{ system.task_name }}", "{{ {'k': result()} }}", "text", 1, [1, 2],
           "{{ task.t0.result if 't0' in task else none }}", "{{ (workflow.v if workflow.v is sequence else [])[:3] }}",
           "{{ task | length }}", "{{ range(4) | list }}"]
RISKY_PUBLISH = ["{{ index }}", "{{ nope }}", "{{ task.t0.result }}", "{{ (workflow.v | default([]))[:3] + [1] }}"]
INPUT = ["{{ parameters }}", "{{ workflow }}", "{{ system.attempt }}", "plain", 42, {"nested": "{{ task }}"},
         "{{ config }}", "{{ system }}"]
ITEM_INPUT = ["{{ item }}", "{{ index }}", ["{{ item }}", 1], "x {{ item }} y", "{{ index * 2 }}"]
RISKY_INPUT = ["{{ nope }}", "{{ item.x }}", "{{ parameters.missing }}"]
WITH_ITEMS = [[], [1, 2, 3], ["a"], [[1], {"k": 2}], "{{ range(3) | list }}", "{{ (parameters.p | default([1, 2]))[:4] }}",
              "{{ [] }}", "{{ (workflow.v if workflow.v is sequence and workflow.v is not string else [])[:4] }}"]
RISKY_ITEMS = ["{{ 5 }}", "abc", "{{ nope }}", "{{ none }}", "{{ (task.t0.result | default([]))[:4] }}",
               "{{ parameters.p[:4] }}"]
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                    max_leaves=6)
JUNK = st.one_of(st.just(None), st.integers(-2, 3), st.text(max_size=6), st.booleans(), st.lists(st.integers(), max_size=2),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.floats())
PARAMS = {"p": {"type": "array", "default": [1, 2]}, "n": {"type": "integer", "default": 2},
          "flag": {"type": "boolean", "default": True}, "s": {"type": "string", "required": True},
          "e": {"type": "string", "enum": ["a", "b"], "default": "a"}}


CONDITIONS = st.sampled_from(WHEN)
RISKY_CONDITIONS = st.sampled_from(RISKY_WHEN)
LIKELY_WHEN = st.sampled_from([True, "{{ succeeded() }}", "{{ not failed() }}", "{{ system.attempt < 3 }}",
                               "{{ failed() or timed_out() }}", "{{ task | length < 4 }}",
                               "{{ (workflow.w | default(0)) is number }}"])
BROKENS = st.sampled_from(BROKEN)
JINJAISH = st.text(alphabet="{}%#()|.'\" abcx", max_size=12)
JUNK_KEY = st.one_of(st.none(), st.integers(-2, 3), st.text(max_size=4), st.booleans())
PUBLISH_NAMES = st.sampled_from(["v", "w", "x"])
PUBLISHES = st.sampled_from(PUBLISH)
RISKY_PUBLISHES = st.sampled_from(RISKY_PUBLISH)
INPUT_KEYS = st.sampled_from(["msg", "n", "x", "{{ 'k' }}", "k{{ system.attempt }}"])
INPUTS = st.sampled_from(INPUT)
ITEM_INPUTS = st.sampled_from(ITEM_INPUT)
RISKY_INPUTS = st.sampled_from(RISKY_INPUT)
ITEM_SOURCES = st.sampled_from(WITH_ITEMS)
RISKY_ITEM_SOURCES = st.sampled_from(RISKY_ITEMS)
VAR_VALUES = st.sampled_from([[1], [], 0, "{{ parameters.n | default(1) }}", "{{ range(2) | list }}",
                              {"k": "{{ 1 + 1 }}"}, "{{ parameters }}", 1.5, float("nan"), float("inf")])
OUTPUTS = st.sampled_from(["{{ task.t0.result if 't0' in task else none }}", "{{ workflow }}", "{{ task }}",
                           "{{ parameters }}", "static", 5, "{{ task | length }}"])
RISKY_OUTPUTS = st.sampled_from(["{{ task.t1.status }}", "{{ nope }}"])


def condition(draw) -> Any:
    return pick(draw, (30, CONDITIONS), (2, RISKY_CONDITIONS), (2, Bad(BROKENS)), (1, Bad(JUNK)), (1, JINJAISH))


def optional(draw, holder: dict[str, Any], key: str, chance: int, *options: tuple[int, Any]) -> None:
    """Set holder[key] with probability 1/chance, to a weighted choice."""
    if MODE["clean"] and all(isinstance(o, Bad) for _, o in options):
        return
    if not draw(st.integers(0, chance - 1)):
        holder[key] = pick(draw, *options)


def target_list(draw, names: list[str], i: int) -> Any:
    forward = names[i + 1:] or COMMANDS

    back = names[1:i + 1]  # loops back (not to t0, which keeps an entry task)

    def one() -> str:
        return pick(draw, (12, lambda: choice(draw, forward)), (2, lambda: choice(draw, COMMANDS)),
                    ((8 if MODE["deep"] else 2) if back else 0, lambda: choice(draw, back)),
                    (1, lambda: choice(draw, names)), (1, Bad("ghost")))

    listed = [one() for _ in range(draw(st.integers(1 if MODE["deep"] else 0, 2)))]
    return pick(draw, (10, listed), (2, listed[0] if listed else "noop"), (1, ", ".join(listed)), (1, Bad(JUNK)))


def transitions(draw, names: list[str], i: int) -> Any:
    out = []
    for _ in range(draw(st.integers(0, 3))):
        entry: dict[str, Any] = {}
        if draw(st.integers(0, 3)):
            entry["when"] = pick(draw, (1, lambda: condition(draw)), (2 if MODE["deep"] else 0, LIKELY_WHEN))
        if not draw(st.integers(0, 3)):
            pairs = {pick(draw, (5, PUBLISH_NAMES), (1, Bad(JUNK_KEY))):
                     pick(draw, (20, PUBLISHES), (2, RISKY_PUBLISHES), (1, Bad(BROKENS)), (1, JUNK))
                     for _ in range(draw(st.integers(1, 2)))}
            entry["publish"] = pick(draw, (3, pairs), (3, [{k: v} for k, v in pairs.items()]), (1, Bad(JUNK)),
                                    (1, Bad([pairs, pairs])))
        if draw(st.integers(0, 5)) or MODE["deep"]:
            entry["do"] = target_list(draw, names, i)
        optional(draw, entry, "goto", 40, (1, Bad("t1")))
        out.append(entry)
    return pick(draw, (20, out), (1, Bad(JUNK)), (1, Bad({"do": "t1"})))


def retry_spec(draw) -> Any:
    retry: dict[str, Any] = {}
    if draw(st.integers(0, 15)) or MODE["clean"]:
        retry["count"] = pick(draw, (10, st.integers(0, 3)), (1, Bad(-1)), (1, Bad("x")), (1, Bad(1.5)))
    for key, options in (("delay", [(6, 0), (6, 0.5), (3, 2), (1, Bad(-1)), (1, Bad("x"))]),
                         ("backoff", [(5, "constant"), (5, "linear"), (5, "exponential"), (1, Bad("quadratic")),
                                      (1, Bad(3))]),
                         ("max_delay", [(5, 1), (5, 0), (1, Bad(-1))]),
                         ("when", [(5, "{{ 'x' in result() }}"), (5, "{{ true }}"), (3, True), (1, Bad("{{ bad( }}")),
                                   (1, Bad(5))])):
        if draw(st.booleans()):
            retry[key] = pick(draw, *options)
    optional(draw, retry, "tries", 30, (1, Bad(3)))
    return pick(draw, (20, retry), (1, Bad(JUNK)))


def task_spec(draw, names: list[str], i: int) -> Any:
    task: dict[str, Any] = {"name": names[i]}
    if draw(st.integers(0, 40)) or MODE["clean"]:
        task["action"] = pick(draw, (30, "core.echo"), (10, "app.work"), (1, Bad("")), (1, Bad(JUNK)))
    items = not draw(st.integers(0, 3))
    if draw(st.booleans()):
        task["input"] = pick(draw, (20, lambda: {
            pick(draw, (60, INPUT_KEYS), (1, "{{ [1] }}")):
            pick(draw, (10, INPUTS), (10 if items else 0, ITEM_INPUTS), (1, RISKY_INPUTS), (1, Bad(BROKENS)))
            for _ in range(draw(st.integers(0, 3)))}), (1, Bad(JUNK)))
    task["next"] = transitions(draw, names, i)
    optional(draw, task, "join", 8, (3, "all"), (3, 1), (3, 2), (1, 3), (1, Bad(0)), (1, Bad("any")), (1, Bad(True)))
    if items:
        task["with_items"] = pick(draw, (20, ITEM_SOURCES), (2, RISKY_ITEM_SOURCES), (1, Bad(BROKENS)), (1, Bad(JUNK)))
        optional(draw, task, "concurrency", 2, (6, 1), (6, 2), (4, "{{ 2 }}"), (3, "{{ parameters.n | default(2) }}"),
                 (2, "{{ 1.5 }}"), (1, Bad(0)), (1, Bad(-1)), (1, Bad(True)), (1, "x"), (1, "-1"))
        optional(draw, task, "batch_size", 3, (6, 1), (6, 2), (3, 3), (1, Bad(0)), (1, Bad(-1)), (1, "2"),
                 (1, Bad("x")), (1, Bad(1.5)))
    else:
        optional(draw, task, "concurrency", 30, (1, 2))
    optional(draw, task, "retry", 2 if MODE["deep"] else 4, (1, lambda: retry_spec(draw)))
    optional(draw, task, "timeout", 4, (8, 0.5), (8, 1), (4, 30), (1, Bad(0)), (1, Bad(-1)), (1, "10"),
             (1, Bad("abc")), (1, None))
    optional(draw, task, "delay", 6, (6, 0), (6, 0.5), (3, 2), (1, Bad(-1)), (1, Bad("x")))
    optional(draw, task, "queue", 10, (5, "q"), (1, Bad(5)))
    optional(draw, task, "when", 8, (5, True), (5, False), (5, "{{ parameters.flag | default(true) }}"),
             (3, "{{ 1 > 0 }}"), (1, "{{ nope }}"), (1, Bad("{{ bad( }}")), (1, Bad(7)))
    optional(draw, task, "description", 10, (5, "a task"), (1, Bad(5)))
    for key in ("on_success", "on_failure", "on_timeout", "on_complete"):
        optional(draw, task, key, 12, (10, lambda: target_list(draw, names, i)))
    if not draw(st.integers(0, 12)):
        forward = names[i + 1:] or ["noop"]

        def decision() -> dict[str, Any]:
            if draw(st.integers(0, 3)):
                return {"when": condition(draw), "next": choice(draw, forward)}
            return {"default": choice(draw, forward)}

        task["decision"] = pick(draw, (10, lambda: [decision() for _ in range(draw(st.integers(0, 3)))]),
                                (1, Bad(JUNK)), (1, Bad([{"when": True, "next": "t0", "else": "x"}])))
    optional(draw, task, "actoin", 40, (1, Bad("core.echo")))
    optional(draw, task, "colour", 40, (1, Bad("blue")))
    return pick(draw, (60, task), (1, Bad(JUNK)), (1, Bad({})), (1, Bad([task])))


def fit_joins(task_list: list[Any]) -> None:
    """Clean mode: a join only where at least two tasks lead in, and never more than lead in."""
    def names_in(value: Any) -> list[Any]:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",")]
        return value if isinstance(value, list) else []

    inbound: dict[Any, set[int]] = {}
    for i, task in enumerate(task_list):
        if not isinstance(task, dict):
            continue
        found = [t for entry in task.get("next") or [] if isinstance(entry, dict) for t in names_in(entry.get("do"))]
        found += [t for key in ("on_success", "on_failure", "on_timeout", "on_complete") for t in names_in(task.get(key))]
        found += [d.get("next", d.get("default")) for d in task.get("decision") or [] if isinstance(d, dict)]
        for target in found:
            if isinstance(target, str):
                inbound.setdefault(target, set()).add(i)
    for task in task_list:
        if isinstance(task, dict) and "join" in task:
            count = len(inbound.get(task.get("name"), ()))
            if count < 2:
                del task["join"]
            elif isinstance(task["join"], int):
                task["join"] = min(task["join"], count)


@st.composite
def workflow_docs(draw) -> Any:
    """A workflow-shaped document in one of three flavours: clean (only valid choices field by field;
    the graph can still be invalid: unreachable tasks, no entry), deep (clean, plus transitions that
    mostly fire, loops and retries: long runs) or chaotic (junk anywhere)."""
    flavour = draw(st.integers(0, 2))
    MODE["clean"], MODE["deep"] = flavour != 2, flavour == 1
    try:
        return _workflow_doc(draw)
    finally:
        MODE["clean"] = MODE["deep"] = False


def _workflow_doc(draw) -> dict[str, Any]:
    count = draw(st.integers(1, 6))
    names = [pick(draw, (40, f"t{i}"), (2, Bad(lambda: choice(draw, TASK_NAMES))), (1, Bad(lambda: choice(draw, COMMANDS))),
                  (1, Bad(lambda: choice(draw, ["9x", "x y", ""]))), (1, "a.b-c_d"), (1, Bad(JUNK_KEY)))
             for i in range(count)]
    str_names = [n if isinstance(n, str) else "t0" for n in names]
    doc: dict[str, Any] = {}
    if draw(st.integers(0, 40)) or MODE["clean"]:
        doc["version"] = pick(draw, (30, "1.0"), (3, "1"), (3, 1.0), (1, Bad(2)), (1, Bad("2.0")), (1, Bad(JUNK)))
    optional(draw, doc, "name", 5, (5, "fuzzed"), (1, Bad(5)))
    optional(draw, doc, "description", 5, (5, "random"), (1, Bad(["x"])))
    optional(draw, doc, "parameters", 3, (20, lambda: {k: copy.deepcopy(PARAMS[k]) for k in sorted(PARAMS)
                                                       if not draw(st.integers(0, 2))}),
             (1, Bad(JUNK)), (1, Bad({"p": {"type": "tuple"}})), (1, Bad({"p": {"type": "integer", "default": "x"}})),
             (1, Bad({"p": {"typ": "string"}})))
    optional(draw, doc, "vars", 3, (20, lambda: {choice(draw, ["v", "w", "x"]): pick(draw, (20, VAR_VALUES), (1, "{{ nope }}"),
                                                                                     (1, Bad("{{ bad( }}")))
                                                 for _ in range(draw(st.integers(0, 3)))}), (1, Bad(JUNK)))
    task_list = [task_spec(draw, str_names, i) for i in range(count)]
    for task, name in zip(task_list, names):  # keep odd (non-string) names in the file
        if isinstance(task, dict) and "name" in task:
            task["name"] = name
    if MODE["clean"]:
        fit_joins(task_list)
    doc["tasks"] = pick(draw, (40, task_list), (1, Bad(JUNK)), (1, Bad([])), (1, Bad({"t0": {"action": "x"}})))
    optional(draw, doc, "output_map", 2, (20, lambda: {choice(draw, ["out", "vs", "st"]): pick(
        draw, (20, OUTPUTS), (1, RISKY_OUTPUTS), (1, Bad("{{ bad( }}"))) for _ in range(draw(st.integers(0, 3)))}), (1, Bad(JUNK)))
    optional(draw, doc, "timeout", 6, (5, 100), (5, 0.5), (1, Bad(0)), (1, Bad(-1)), (1, Bad("x")))
    optional(draw, doc, "colour", 40, (1, Bad("blue")))
    return doc


def hangable(workflow: Workflow, task: str) -> bool:
    """A 'hang' outcome is only used where a deadline ends it: the task's or the workflow's timeout."""
    node = workflow.graph.nodes[task]
    return bool(node.spec.timeout) or bool(workflow.spec.timeout)


OK_OUTCOME = st.tuples(st.just("ok"), JSON)
FAIL_OUTCOME = st.tuples(st.just("fail"), st.text(max_size=8))


@st.composite
def outcomes(draw, workflow: Workflow) -> dict[str, list[Any]]:
    plan = {}
    for name in workflow.graph.nodes:
        choices: list[tuple[int, Any]] = [(16, OK_OUTCOME), (6, ("echo",)), (4, FAIL_OUTCOME), (2, ("timeout",))]
        if hangable(workflow, name):
            choices.append((2, ("hang",)))
        plan[name] = [pick(draw, *choices) for _ in range(draw(st.integers(1, 3)))]
    return plan


def scripted(plan: dict[str, list[Any]]):
    calls: dict[str, int] = {}

    def behaviour(name: str):
        def outcome(payload, attempt, item):
            n = calls.get(name, 0)
            calls[name] = n + 1
            kind, *value = plan[name][n % len(plan[name])]
            if kind == "ok":
                return value[0]
            if kind == "echo":
                return payload
            if kind == "fail":
                return RuntimeError(value[0] or "boom")
            return "timeout" if kind == "timeout" else "hang"
        return outcome

    return script(**{name: behaviour(name) for name in plan})


VALID_PARAM = {"p": st.lists(JSON, max_size=4), "n": st.integers(1, 3), "flag": st.booleans(), "s": st.text(max_size=5),
               "e": st.sampled_from(["a", "b"])}


@st.composite
def given_params(draw, workflow: Workflow) -> dict[str, Any]:
    """Mostly valid values for the declared parameters; sometimes a wrong one, a missing one or an extra."""
    params = {}
    for name in workflow.spec.parameters:
        value = pick(draw, (14, VALID_PARAM[name]), (3, Bad(None)), (1, Bad(JUNK)))
        if value is not None:
            params[name] = value
    if not draw(st.integers(0, 15)):
        params[draw(st.sampled_from(["extra", "p", "n"]))] = draw(JUNK)
    return params


def check_semantics(workflow: Workflow, report: Any) -> None:
    """What the language guarantees, checked on the report of a finished run."""
    spec = workflow.spec
    if report.sequence and not (report.error or "").startswith("vars."):
        # entry tasks start first, in file order
        assert report.sequence[:len(workflow.graph.entry)] == list(workflow.graph.entry)
    if report.status == "succeeded" and spec.output_map:
        assert isinstance(report.output, dict) and set(report.output) == set(spec.output_map)
    last: dict[int, dict[str, Any]] = {}
    for row in report.executions:
        if row["seq"] not in last or row["attempt"] > last[row["seq"]]["attempt"]:
            last[row["seq"]] = row
    for row in last.values():
        node = workflow.graph.nodes[row["task"]]
        if row["items"] is not None and row["status"] == "succeeded":
            # a with_items task's result is one entry per call, in item order
            assert isinstance(row["result"], list) and len(row["result"]) == row["items"], row
        retry = node.spec.retry
        if (row["items"] is None and row["status"] in ("failed", "timed_out") and retry is not None
                and retry.when is None and not (row["error"] or "").startswith(f"task '{node.name}':")):
            # an action failure is retried exactly retry.count times
            assert row["attempt"] == retry.count + 1, row


def check_run(workflow: Workflow, params: dict[str, Any], plan: dict[str, list[Any]]) -> None:
    note(f"params: {params!r}\noutcomes: {plan!r}")
    try:
        report = rehearse(workflow, params, scripted(plan), execution_limit=EXECUTION_LIMIT, max_calls=MAX_CALLS)
    except ParametersInvalid as exc:
        event("run: ParametersInvalid")
        assert exc.problems and not has_break(str(exc)), str(exc)
        return
    except Exception as exc:
        bug = exception_bug(exc)
        if bug is None:
            raise
        return known(bug)
    note(f"status {report.status}, error {report.error!r}, sequence {report.sequence}")
    if report.status == "running":
        stuck = [e for e in report.state.active.values()
                 if e.items is not None and not e.in_flight and not e.waiting
                 and isinstance(workflow.graph.nodes[e.task].spec.concurrency, str)]
        assert stuck, f"hung run: nothing pending, state {report.state!r}"
        return known("G")
    assert report.status in ("succeeded", "failed")
    event(f"run {report.status}")
    calls = len(report.calls)
    event("calls: " + ("0" if not calls else "1-3" if calls <= 3 else "4-20" if calls <= 20 else "21+"))
    for label, seen in (("retried", any(c.attempt > 1 for c in report.calls)),
                        ("with_items", any(c.item is not None for c in report.calls)),
                        ("deadline timer fired", any(r["status"] == "timed_out" for r in report.executions)),
                        ("loop hit the execution limit", "execution limit" in (report.error or "")),
                        ("workflow timed out", "workflow timed out" in (report.error or ""))):
        if seen:
            event(label)
    if report.status == "failed":
        assert isinstance(report.error, str) and report.error.strip()
    else:
        assert report.error is None
    assert not report.state.active
    assert all(row["status"] not in ("running", None) for row in report.executions), report.executions
    assert len(report.sequence) <= EXECUTION_LIMIT
    for call in report.calls:
        retry = workflow.graph.nodes[call.task].spec.retry
        assert call.attempt <= (retry.count + 1 if retry else 1)
    check_semantics(workflow, report)
    for value in (report.output, report.state.vars):
        bug = json_bug(value) if json_like(value) else None
        if bug:
            return known(spec_bug(workflow) or bug)
        assert_json(value)


@LONG
@settings(max_examples=800 * SCALE, **FUZZ)
@given(workflow_docs(), st.data())
def test_structured_workflows(doc, data):
    event(f"tasks is {type(doc.get('tasks')).__name__}")
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    workflow = load_checked(text)
    event("valid" if workflow is not None else "invalid")
    if workflow is None:
        return
    check_run(workflow, data.draw(given_params(workflow), "params"), data.draw(outcomes(workflow), "outcomes"))


# 3. Parameter schemas and values -------------------------------------------------------------

TYPES = ["string", "integer", "number", "boolean", "array", "object"]
ITEMS = st.one_of(st.fixed_dictionaries({"type": st.sampled_from(TYPES)}), st.just({}),
                  st.fixed_dictionaries({"enum": st.lists(JSON, max_size=3)}),
                  st.just({"type": "array", "items": {"type": "integer"}}), st.just({"minimum": 0}),
                  st.just({"type": "strin"}), st.just({"pattern": "("}), st.just({"minItems": -1}), JUNK)
PARAM_NAMES = st.sampled_from(["a", "b", "items", "x-y", "1"]) | st.text(max_size=4)


@st.composite
def parameter_schemas(draw) -> dict[str, Any]:
    schema = draw(st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(TYPES) | JUNK, "required": st.booleans() | JUNK, "default": JSON,
        "enum": st.lists(JSON, max_size=3) | JUNK, "description": st.text(max_size=5), "items": ITEMS,
        "format": st.just("email")}))
    return pick(draw, (20, st.just(schema)), (1, JUNK))


@st.composite
def parameter_values(draw, names: list[str]) -> Any:
    values = {name: draw(JSON | JUNK) for name in names if draw(st.integers(0, 3))}
    values.update(draw(st.dictionaries(PARAM_NAMES, JSON, max_size=2)))
    return pick(draw, (20, st.just(values)), (1, st.just(None)), (1, st.just({})))


@LONG
@settings(max_examples=300 * SCALE, **FUZZ)
@given(st.dictionaries(PARAM_NAMES, parameter_schemas(), max_size=4), st.data())
def test_parameters(schemas, data):
    doc = {"version": "1.0", "parameters": schemas, "tasks": [{"name": "a", "action": "core.echo"}]}
    workflow = load_checked(yaml.safe_dump(doc, allow_unicode=True))
    event("valid schema" if workflow is not None else "invalid schema")
    if workflow is None:
        return
    given_values = data.draw(parameter_values(list(workflow.spec.parameters)), "values")
    try:
        resolved = resolve_parameters(workflow.spec, given_values, "fuzzed")
    except ParametersInvalid as exc:
        event("ParametersInvalid")
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        if has_break(str(exc)):
            names = [n for n in [*workflow.spec.parameters, *(given_values or {})] if isinstance(n, str) and has_break(n)]
            assert not has_break(without(str(exc), sorted(names, key=len, reverse=True))), f"multi-line message: {exc}"
            return known("K")
        return
    except Exception as exc:
        if exception_bug(exc) == "J":
            return known("J")
        raise
    event("resolved")
    assert isinstance(resolved, dict)
    assert set(resolved) <= set(workflow.spec.parameters)
    assert set(given_values or {}) <= set(resolved)  # every given value was known, kept as given
    for name, value in (given_values or {}).items():
        assert resolved[name] == value


# 4. Expressions ------------------------------------------------------------------------------

ATOMS = ["n", "s", "items", "d", "none", "1", "0", "2.5", "-3", "'str'", "\"q\"", "true", "[1, 2]", "{'a': 1}",
         "parameters", "workflow", "task", "task.t0", "system", "config", "nope", "range(3) | list", "result()",
         "succeeded()", "length(items)", "x", "''", "[]", "{}", "10", "2", "1e308", "'nan' | float", "'%5d'",
         "'{:>4}'", "'%s-%s'"]
LEAKY_ATOMS = ["lipsum", "cycler", "range", "dict", "namespace", "joiner", "succeeded", "result", "length",
               "self", "range(2)", "d.items()", "s.upper", "namespace()", "lipsum()", "cycler(1)"]
ATTRS = [".a", ".x", "['a']", "[0]", "[-1]", "[1:]", ".t0", ".result", ".status", ".__class__", ".__globals__",
         ".__subclasses__()", ".__mro__", ".__init__", ".__dict__", ".__self__", ".__builtins__", ".mro()",
         ".__base__", ".gi_frame", ".f_globals", ".__import__('os')", ".__getattribute__('x')",
         "['__class__']", ".__code__", ".func_globals", ".__reduce__()", ".format('{0.__class__}', 1)",
         ".append(1)", ".update({})", ".pop()", ".get('a')", ".keys() | list", ".upper()"]
FILTERS = ["length", "list", "string", "int", "upper", "default(1)", "map('string') | list", "attr('__class__')",
           "first", "join(',')", "tojson", "sort", "sum", "abs", "reverse | list", "dictsort", "selectattr('a') | list",
           "items | list", "format('x')", "e", "safe", "wordcount", "unique | list", "trim", "replace('a', 'b')",
           "round", "float", "batch(2) | list", "map(attribute='__class__') | list", "attr('mro')", "pprint",
           "xmlattr", "urlize", "indent", "center", "random", "groupby('a') | list", "min", "max", "bool", "nope",
           "center(12)", "format(1)", "format(n, s)", "truncate(3)", "wordwrap(2)", "filesizeformat", "string | length"]
OPS = [" + ", " - ", " * ", " / ", " // ", " % ", " ~ ", " == ", " != ", " < ", " and ", " or ", " in ",
       " not in ", " is ", " is not ", " ** "]
TESTS = ["defined", "none", "mapping", "string", "number", "sequence", "callable", "sameas(1)", "nope"]
FRAGMENTS = ["{{", "}}", "{%", "%}", "{#", "#}", "(", ")", "[", "]", "|", ".", "'", '"', ",", ":", "{{ }}",
             "{% if %}", "{% for x in %}", "{% endfor %}", "{% endif %}", "{{ x | }}", "{{ 1 + }}", "{% raw %}",
             "{% set %}", "{% macro m() %}", "{% import 'os' as os %}", "{% include 'x' %}", "{% extends 'x' %}",
             "{{ 1 }}", " ", "text", "\n", "{%- if true -%}", "{{- n -}}", "\\", "{{ '{{' }}"]


def extend_expression(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(ATTRS)).map("".join),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"{t[0]} | {t[1]}"),
        st.tuples(inner, st.sampled_from(OPS), inner).map("".join),
        st.tuples(inner, st.sampled_from(TESTS)).map(lambda t: f"{t[0]} is {t[1]}"),
        inner.map(lambda e: f"({e})"), inner.map(lambda e: f"[{e}]"), inner.map(lambda e: f"not {e}"),
        inner.map(lambda e: f"length({e})"), inner.map(lambda e: f"{{'k': {e}}}"),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
    )


EXPRESSIONS = st.recursive(st.sampled_from(ATOMS + LEAKY_ATOMS), extend_expression, max_leaves=6)


@st.composite
def templates(draw) -> str:
    expr = EXPRESSIONS
    return pick(draw,
                (10, expr.map(lambda e: f"{{{{ {e} }}}}")),
                (4, st.tuples(st.text(max_size=4), expr, st.text(max_size=4)).map(lambda t: f"{t[0]}{{{{ {t[1]} }}}}{t[2]}")),
                (2, st.tuples(expr, expr).map(lambda t: f"{{{{ {t[0]} }}}}{{{{ {t[1]} }}}}")),
                (2, st.tuples(expr, expr).map(lambda t: f"{{% if {t[0]} %}}a{{% else %}}{{{{ {t[1]} }}}}{{% endif %}}")),
                (2, expr.map(lambda e: f"{{% for y in {e} %}}{{{{ y }}}},{{% endfor %}}")),
                (1, expr.map(lambda e: f"{{% set z = {e} %}}{{{{ z }}}}")),
                (3, st.lists(st.sampled_from(FRAGMENTS) | st.sampled_from(ATOMS) | st.sampled_from(ATTRS),
                             max_size=8).map("".join)),
                (1, st.text(max_size=20)))


def leaked(value: Any) -> bool:
    """A documented leak (known bug F): a callable, class, range, dict view or Jinja helper object."""
    from jinja2.runtime import TemplateReference
    from jinja2.utils import Cycler, Joiner, Namespace

    views = (type({}.keys()), type({}.values()), type({}.items()))
    if callable(value) or isinstance(value, (type, range, Cycler, Joiner, Namespace, TemplateReference) + views):
        return True
    if isinstance(value, list):
        return any(leaked(v) for v in value)
    if isinstance(value, dict):
        return any(leaked(v) for v in value.values())
    return False


def expression_context() -> dict[str, Any]:
    state = {"v": [1, 2], "w": "x"}
    return {"n": 1, "s": "abc", "items": [1, 2, 3], "d": {"a": 1, "b": [1]}, "none": None, "x": {"a": {"a": 1}},
            "parameters": {"p": [1], "who": "bob"}, "workflow": state, "vars": state, "variables": state,
            "task": {"t0": {"status": "succeeded", "result": {"a": 1}, "error": None, "attempts": 1}},
            "system": {"workflow_id": "r", "task_name": "t0", "attempt": 1}, "config": {"k": "v"},
            "succeeded": lambda: True, "failed": lambda: False, "timed_out": lambda: False,
            "result": lambda: {"a": [1, 2]}}


EVALUATOR = Evaluator()


@LONG
@settings(max_examples=2500 * SCALE, **FUZZ)
@given(templates())
def test_expressions(source):
    evaluator = EVALUATOR
    context = expression_context()
    try:
        value = evaluator.evaluate(source, context)
    except ExpressionError as exc:
        event("ExpressionError")
        assert exc.expression == source and exc.reason
        return
    except Exception as exc:
        bug = exception_bug(exc)
        if bug is None:
            raise
        return known(bug)
    if not Evaluator.is_template(source):
        assert value == source
    if leaked(value):
        return known("F")
    event("value")
    bug = json_bug(value) if json_like(value) else None
    if bug:
        return known(bug)
    assert_json(value)
    # Templates can never change the context they read.
    assert context["items"] == [1, 2, 3] and context["d"] == {"a": 1, "b": [1]}
    assert context["workflow"] == {"v": [1, 2], "w": "x"}


# 4b. Budget bombs: compositions of the operations that grow values or take time ----------------

BOMB_SEEDS = ["'a'*{n}", "['x'*{n}]", "range({n})|list", "('a\\n'*{n})", "[1]*{n}", "{{'k': 'v'*{n}}}"]
BOMB_GROWERS = [
    "({e} ~ {e})", "({e} + {e})", "({e} * {k})", "({e}|string|replace('a', 'b'*{k}))", "([{e}, {e}, {e}]|join)",
    "([{e}]*{k})", "({e}|tojson)", "({e}|string|center({n}))", "({e}|string|indent({k}))", "('%s%s' % ({e}, {e}))",
    "({e}|string|wordwrap(1, wrapstring='x'*{k}))", "([{e}, {e}]|sum(start=[]) if {e} is sequence and {e} is not string else {e})",
]
BOMB_TEMPLATES = [
    "{{{{ {e} }}}}", "{{{{ ({e})|length }}}}",
    "{{% for a in range({n}) %}}{{% for b in range({n}) %}}{{{{ '' }}}}{{% endfor %}}{{% endfor %}}{{{{ {e}|length }}}}",
    "{{% set ns = namespace(v={e}) %}}{{% for i in range(30) %}}{{% set ns.v = ns.v ~ ns.v %}}{{% endfor %}}{{{{ ns.v|length }}}}",
    "{{% macro m(x) %}}{{{{ m(x ~ x) }}}}{{% endmacro %}}{{{{ m({e}) }}}}",
]


@st.composite
def budget_bombs(draw) -> str:
    number = st.sampled_from([1, 10, 1000, 100000, 10000000])
    expr = draw(st.sampled_from(BOMB_SEEDS)).format(n=draw(number))
    for _ in range(draw(st.integers(0, 4))):
        expr = draw(st.sampled_from(BOMB_GROWERS)).format(e=expr, k=draw(number), n=draw(number))
    return draw(st.sampled_from(BOMB_TEMPLATES)).format(e=expr, n=draw(st.sampled_from([10, 1000, 100000])))


@LONG
@settings(max_examples=60 * SCALE, **FUZZ)
@given(budget_bombs())
def test_budget_bombs_end_within_the_budget(source):
    """Whatever the composition: a value within the size limit, or a clear ExpressionError, within
    the time budget (0.5 s here, plus slack for a loaded machine); never a MemoryError or a hang."""
    from orchestrator import guard
    from orchestrator.engine import budget

    before = budget.limits()
    guard.install(timeout=0.5, max_bytes=1 << 20)
    started = time.monotonic()
    try:
        value = EVALUATOR.evaluate(source, {})
    except ExpressionError as exc:
        event(exc.reason.split(" in expression")[0][:40])
    else:
        assert budget.size_of(value, 1 << 20) <= 1 << 20
    finally:
        budget.configure(before)
    assert time.monotonic() - started < 30


# 5. The CLI ----------------------------------------------------------------------------------

@st.composite
def malformed_files(draw) -> str:
    return pick(draw, (6, mutated_examples()), (3, workflow_docs().map(lambda d: yaml.safe_dump(d, sort_keys=False))),
                (1, st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("\n\t"),
                            max_size=80)))


@LONG
@settings(max_examples=15 * SCALE, **FUZZ)
@given(malformed_files())
def test_cli_validate(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        env = {k: v for k, v in os.environ.items() if k != "ORCHESTRATOR_DEBUG"}
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "validate", str(path)], capture_output=True,
                              text=True, cwd=ROOT, env=env, timeout=60, check=False)
    note(f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    assert "Traceback" not in proc.stderr
    if "RecursionError" in proc.stderr:
        return known("C")
    assert proc.returncode in (0, 2)
    if proc.returncode == 0:
        assert proc.stdout.strip() == f"{path}: ok" and not proc.stderr
        return
    lines = proc.stderr.splitlines()
    assert lines
    pattern = re.compile(rf"{re.escape(str(path))}(:\d+:\d+)?: .+")
    bad = [line for line in lines if not pattern.fullmatch(line)]
    if bad and "not valid YAML: unacceptable character" in proc.stderr:
        return known("A")
    if bad and not [line for line in without(proc.stderr, names_with_breaks(text.replace("\r\n", "\n").replace(
            "\r", "\n"))).splitlines() if not pattern.fullmatch(line)]:
        return known("B")
    assert not bad, f"malformed stderr lines: {bad}"


# Known bugs: minimal reproducers -------------------------------------------------------------

def lines_of(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as exc:
        load_workflow(text, SOURCE)
    return exc.value.lines()


def assert_clean_lines(lines: list[str]) -> None:
    for line in lines:
        assert re.fullmatch(r"fuzz\.yaml(:\d+:\d+)?: .+", line) and not has_break(line), repr(line)


def test_bug_a_control_character_gives_one_line():
    """A YAML reader error (a control character) rendered str(ReaderError): two lines, no line:column."""
    assert_clean_lines(lines_of('version: "1.0"\x01\ntasks: []\n'))


@pytest.mark.parametrize("text", [
    'version: "1.0"\n"a\\nb": 1\ntasks: [{name: t, action: x}]\n',
    'version: "1.0"\ntasks: [{name: t, action: x, next: [{do: ["a\\u2028b"]}]}]\n',
])
def test_bug_b_names_with_line_breaks_stay_on_one_line(text):
    """Names were quoted raw into problem lines: a key "a\nb" split `unknown key 'a\nb'` over two lines."""
    assert_clean_lines(lines_of(text))


@pytest.mark.parametrize("text", ["a: &a [*a]\n", 'version: "1.0"\nvars: &v {x: *v}\ntasks: [{name: t, action: x}]\n',
                                  "[" * 2000 + "]" * 2000])
def test_bug_c_recursive_or_deep_yaml_is_a_clean_error(text):
    """A recursive alias or ~1000 nested '[' raised RecursionError out of load_workflow (the CLI exited 1)."""
    assert_clean_lines(lines_of(text))


def run_with_time_limit(code: str, seconds: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT,
                          timeout=seconds, check=False)


@pytest.mark.parametrize("text", ["<<: 1\n", 'version: "1.0"\nx: &x 1\ntasks: [{<<: *x, name: a, action: b}]\n',
                                  "a: {<<: [1]}\n"])
def test_bug_n_bad_merge_key_is_a_clean_error(text):
    """A merge key whose value is not a mapping ('<<: 1') raised yaml's ConstructorError out of load_workflow."""
    assert_clean_lines(lines_of(text))


def test_bug_o_binary_scalars_are_refused_or_text():
    """'!!binary' loaded as bytes: a valid workflow whose vars, inputs and output JSON cannot encode."""
    text = textwrap.dedent("""
        version: "1.0"
        vars: {b: !!binary YWJj}
        tasks:
          - {name: a, action: core.echo, input: {x: !!binary YWJj}}
        output_map: {b: "{{ workflow.b }}"}
    """)
    try:
        workflow = load_workflow(text, SOURCE)
    except WorkflowInvalid as exc:
        return assert_clean_lines(exc.lines())
    report = rehearse(workflow, {})
    assert_json(report.state.vars)
    assert_json(report.output)
    assert_json(report.calls[0].input)


@pytest.mark.parametrize("text", ["a: !!float x\n", "a: !!int x\n", "a: !!int\n", "a: !!bool x\n"])
def test_bug_p_bad_tagged_scalars_are_clean_errors(text):
    """PyYAML's scalar constructors raise ValueError/IndexError/KeyError ('!!float x', '!!int', '!!bool x')."""
    assert_clean_lines(lines_of(text))


def test_bug_d_alias_bomb_is_refused_quickly():
    """Aliases expanded without a budget: 8 lines (10^8 nodes) kept load_workflow busy for minutes and GBs."""
    bomb = "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 10)}]\n" for k in range(1, 8))
    proc = run_with_time_limit(f"""
        from orchestrator.core.errors import WorkflowInvalid
        from orchestrator.engine.validate import load_workflow
        try:
            load_workflow({bomb!r}, "fuzz.yaml")
        except WorkflowInvalid as exc:
            print(exc)
    """, 10)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("template", ["{{ 1 if none.a else 2 }}", "{{ 1 if none.__class__ else 2 }}",
                                      "{{ 10 ** 5000 }}", "{{ x" + ".a" * 200 + " }}",
                                      "{{ " + "(" * 70 + "1" + ")" * 70 + " }}", "{{ 1" + " + 1" * 400 + " }}",
                                      "{% if 1 %}" * 100 + "{% endif %}" * 100])
def test_bug_e_compile_errors_are_clean_errors(template):
    """Evaluator.compile caught only TemplateSyntaxError: constant folding (UndefinedError, SecurityError,
    ValueError) and deep templates (RecursionError, SyntaxError, IndentationError) escaped load_workflow."""
    """Fixed: compiling never raises anything but a clean problem; templates that only fail when
    rendered (Jinja no longer constant-folds them) fail the task at run time instead."""
    text = yaml.safe_dump({"version": "1.0", "tasks": [{"name": "t", "action": "x", "input": {"v": template}}]},
                          width=10**6)
    try:
        workflow = load_workflow(text, SOURCE)
    except WorkflowInvalid as exc:
        return assert_clean_lines(exc.lines())
    report = rehearse(workflow, {}, max_calls=MAX_CALLS)
    assert report.status in ("succeeded", "failed")


def test_bug_e2_huge_constant_expression_does_not_hang_validation():
    """Jinja folded '{{ 10 ** 100000000 }}' at compile time: validation ran for minutes."""
    proc = run_with_time_limit("""
        from orchestrator.core.errors import WorkflowInvalid
        from orchestrator.engine.validate import load_workflow
        try:
            load_workflow('version: "1.0"\\ntasks: [{name: t, action: x, input: {v: "{{ 10 ** 100000000 }}"}}]\\n',
                          "fuzz.yaml")
        except WorkflowInvalid as exc:
            print(exc)
    """, 10)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("source", ["{{ lipsum }}", "{{ cycler }}", "{{ s.upper }}", "{{ range(3) }}",
                                    "{{ d.items() }}", "{{ namespace() }}", "{{ succeeded }}"])
def test_bug_f_templates_return_only_json(source):
    """Templates returned Python internals (functions, classes, range, dict views, Jinja helper objects)."""
    try:
        value = Evaluator().evaluate(source, expression_context())
    except ExpressionError:
        return
    assert_json(value)


def rehearse_text(text: str, outcome_script=None, **kwargs):
    workflow = load_workflow(textwrap.dedent(text), SOURCE)
    return rehearse(workflow, {}, outcome_script or script(), execution_limit=EXECUTION_LIMIT, max_calls=MAX_CALLS,
                    **kwargs)


@pytest.mark.parametrize("concurrency", ['"-1"', '"{{ -2 }}"'])
def test_bug_g_negative_concurrency_does_not_hang(concurrency):
    """A concurrency rendering negative dispatched nothing and never finished: the run stayed 'running'."""
    report = rehearse_text(f"""
        version: "1.0"
        tasks:
          - name: a
            action: core.echo
            with_items: [1, 2, 3]
            concurrency: {concurrency}
    """)
    assert report.status in ("succeeded", "failed")


def test_bug_h_infinite_concurrency_fails_the_task():
    """A concurrency rendering inf: int(inf) raised OverflowError out of the conductor."""
    report = rehearse_text("""
        version: "1.0"
        parameters: {x: {type: number, default: 10}}
        tasks:
          - name: a
            action: core.echo
            with_items: [1, 2]
            concurrency: "{{ parameters.x * 1e308 }}"
    """)
    assert report.status in ("succeeded", "failed")


@pytest.mark.parametrize("where", ["input", "vars", "output_map", "publish"])
def test_bug_i_unhashable_rendered_key_is_a_clean_failure(where):
    """A key template rendering a list or dict raised TypeError (unhashable) out of the conductor."""
    task = {"name": "a", "action": "core.echo"}
    doc: dict[str, Any] = {"version": "1.0", "tasks": [task]}
    bad = {"{{ [1] }}": 1}
    if where == "input":
        task["input"] = bad
    elif where == "publish":
        task["next"] = [{"publish": {"x": bad}}]
    else:
        doc[where] = {"x": bad} if where == "vars" else bad
    report = rehearse_text(yaml.safe_dump(doc))
    assert report.status == "failed" and report.error


@pytest.mark.parametrize("items", ['{$ref: "#/nope"}', '{$ref: "http://example.com/s.json"}'])
def test_bug_j_unresolvable_ref_is_a_clean_error(items):
    """An items schema with an unresolvable $ref passed validation, then resolve_parameters raised a referencing error."""
    text = f'version: "1.0"\nparameters: {{p: {{type: array, items: {items}}}}}\ntasks: [{{name: a, action: x}}]\n'
    try:
        workflow = load_workflow(text, SOURCE)
    except WorkflowInvalid:
        return  # refusing the schema at validation is fine too
    with pytest.raises(ParametersInvalid):
        resolve_parameters(workflow.spec, {"p": [1]})


@pytest.mark.parametrize("items", ["{type: strin}", '{pattern: "("}', '{$ref: "#/nope"}'])
def test_bug_m_default_with_bad_items_schema_is_a_clean_error(items):
    """The default was checked against a bad items schema before the schema: UnknownType/re.error escaped."""
    text = f'version: "1.0"\nparameters:\n  a: {{type: array, default: [x], items: {items}}}\n' \
           f'tasks: [{{name: a, action: core.echo}}]\n'
    assert_clean_lines(lines_of(text))


def test_bug_k_parameter_errors_are_one_line():
    """ParametersInvalid quoted names raw: a given key 'x\ny' made the message two lines."""
    workflow = load_workflow('version: "1.0"\ntasks: [{name: a, action: x}]\n', SOURCE)
    with pytest.raises(ParametersInvalid) as exc:
        resolve_parameters(workflow.spec, {"x\ny": 1})
    assert not has_break(str(exc.value))


@pytest.mark.parametrize("field", ["timeout: .inf", "timeout: 1.0e+300", "delay: 1.0e+300",
                                   "retry: {count: 1, delay: .inf}"])
def test_bug_l_timers_fit_a_datetime(field):
    """'timeout: .inf' (or 1e300) passed validation; SetTimer(inf) then overflows `now + timedelta(...)` in the store."""
    text = f"""
        version: "1.0"
        tasks:
          - name: a
            action: core.echo
            {field}
    """
    try:
        workflow = load_workflow(textwrap.dedent(text), SOURCE)
    except WorkflowInvalid:
        return  # refusing the value is the fix
    report = rehearse(workflow, {}, script(a=RuntimeError("x")), max_calls=MAX_CALLS)
    now = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    for timer in report.timers:
        assert isinstance(timer, SetTimer) and math.isfinite(timer.seconds)
        now + datetime.timedelta(seconds=timer.seconds)


@pytest.mark.parametrize("template", ["{{ 10 ** 5000 }}", "{{ 10 ** 4000 * 10 ** 4000 }}"])
def test_bug_q_template_ints_stay_storable(template):
    """An int over 4,300 digits in the run's variables: json.dumps raised, the embedded runtime's insert
    failed and the run stayed 'running'."""
    report = rehearse_text(yaml.safe_dump({"version": "1.0", "tasks": [
        {"name": "a", "action": "core.echo", "next": [{"publish": {"big": template}}]}]}))
    assert report.status in ("succeeded", "failed")
    assert_json(report.state.vars)


@pytest.mark.parametrize("template", ["{{ parameters.x * 1e308 }}", "{{ 'nan' | float }}", "{{ 'inf' | float }}"])
def test_bug_r_templates_return_finite_numbers(template):
    """inf and nan came back from templates; JSON has no such numbers (PostgreSQL jsonb refuses them)."""
    try:
        value = Evaluator().evaluate(template, {"parameters": {"x": 10}})
    except ExpressionError:
        return
    assert_json(value)


@pytest.mark.parametrize("template", ["{{ '%20000000d' % 1 }}", "{{ 'x' | center(20000000) }}",
                                      "{{ '{:20000000}'.format(1) }}", "{{ 'x' | indent(20000000, true) }}",
                                      "{{ '%20000000d' | format(1) }}"])
def test_bug_s_formatting_widths_are_capped(template):
    """Widths were not capped: "{{ '%999999999d' % 1 }}" built a 1 GB string in under a second."""
    try:
        value = Evaluator().evaluate(template, {})
    except ExpressionError:
        return
    assert len(value) <= MAX_TEXT


@pytest.mark.parametrize("template", ["{{ '%*d' % (20000000, 1) }}", "{{ '{:{}}'.format(1, 20000000) }}",
                                      "{{ '%(a)20000000s' % {'a': 1} }}", "{{ '%.20000000f' % 1 }}",
                                      "{{ range(3) | join('x' * 10000000) }}"])
def test_bug_t_size_caps_cannot_be_bypassed(template):
    """The caps on '*', '**' and format widths were per operation and missed widths taken from the
    arguments ('%*d', '{:{}}'), a mapping key before the width, precision, and composition
    (a join with a 10 MB separator)."""
    try:
        value = Evaluator().evaluate(template, {})
    except ExpressionError:
        return
    assert len(value) <= MAX_TEXT


@pytest.mark.parametrize("field", ["vars: {x: .nan}", "output_map: {o: .inf}", "tasks: [{name: a, action: b, input: {v: .inf}}]",
                                   "tasks: [{name: a, action: b, next: [{publish: {z: -.inf}}]}]"])
def test_bug_u_non_finite_yaml_numbers_are_refused(field):
    text = 'version: "1.0"\n' + field + "\n" + ("" if field.startswith("tasks") else "tasks: [{name: a, action: b}]\n")
    try:
        workflow = load_workflow(text, SOURCE)
    except WorkflowInvalid as exc:
        return assert_clean_lines(exc.lines())
    report = rehearse(workflow, {})
    for value in (report.state.vars, report.output, *(call.input for call in report.calls)):
        assert_json(value)


def test_bug_v_lone_surrogate_is_a_clean_error():
    assert_clean_lines(lines_of('\ud800version: "1.0"\ntasks: [{name: a, action: core.echo}]\n'))

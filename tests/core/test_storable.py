"""Which values can be stored (engine/storable.py), and how a step's unstorable values become
failures of their call or run."""

from __future__ import annotations

import json

import pytest

from orchestrator.engine import storable
from orchestrator.engine.commands import (Dispatch, ExecutionEnded, ExecutionStarted, RunFinished, SetTimer, TaskEnded,
                                          VariablesSet)


@pytest.mark.parametrize("value, expected", [
    ({"v": float("nan")}, "nan (JSON has no NaN or Infinity) at $.v"),
    ([1, float("-inf")], "-inf (JSON has no NaN or Infinity) at $[1]"),
    ({"out": "a\x00b"}, "a NUL character at $.out"),
    ({"a\x00": 1}, "a NUL character at $ (a key)"),
    ({"t": ["x", "a\ud800"]}, "a lone surrogate character (U+D800) at $.t[1]"),
    ({"n": 7 ** 6000}, "an integer too long to store (about 5,071 digits) at $.n"),
    ({"f": {1, 2}}, "a set, which is not JSON data, at $.f"),
])
def test_unstorable_values_are_named_with_their_place(value, expected):
    assert storable.problem(value) == expected


@pytest.mark.parametrize("value", [
    None, 0, -1.5, "text with \\u0000 written out", "😀 and é", 2 ** 200, {"nested": [[{"k": [True, None]}]]},
    "\\ud800 written out",
])
def test_storable_values_pass_and_encode_as_json(value):
    text, why = storable.encode(value)
    assert why is None
    assert json.loads(text) == value


def test_a_dispatch_whose_input_cannot_be_stored_fails_its_call_without_sending_it():
    bad = Dispatch(seq=2, task="t", action="core.echo", input={"m": "\x00"})
    commands = [ExecutionStarted(2, "t", 1), bad, SetTimer("lease:2:1:-", 1800)]
    applied = []

    def more(events):
        applied.extend(events)
        return [ExecutionEnded(2, "t", 1, "failed", None, events[0].error)]

    out = storable.checked(commands, [], more)
    assert bad not in out
    assert applied == [TaskEnded(2, 1, "failed", None, "task 't': its input cannot be stored: a NUL character at $.m")]
    assert out[-1].status == "failed"


def test_published_variables_turn_the_event_that_published_them_into_a_failure():
    event = TaskEnded(1, 1, "succeeded", 5)
    decided = []

    def again(events):
        decided.append(events)
        return [ExecutionEnded(1, "t", 1, "failed", None, events[0].error)]

    out = storable.checked([VariablesSet({"x": float("nan")}), ExecutionEnded(1, "t", 1, "succeeded", 5)], [event],
                           lambda extra: [], again)
    assert decided == [[TaskEnded(1, 1, "failed", None, "published variables cannot be stored: nan (JSON has no NaN "
                                                        "or Infinity) at $.x")]]
    assert out == [ExecutionEnded(1, "t", 1, "failed", None, decided[0][0].error)]


def test_an_output_that_cannot_be_stored_fails_the_run():
    told = []
    out = storable.checked([ExecutionEnded(1, "t", 1, "succeeded", 1), RunFinished("succeeded", {"o": "\x00"})],
                           [TaskEnded(1, 1, "succeeded", 1)], lambda extra: [], lambda events: [], lambda: told.append(1))
    assert told == [1]
    assert out[-1] == RunFinished("failed", None, "the workflow's output cannot be stored: a NUL character at $.o")

"""The Orquesta run state: what it keeps (its size does not grow with a run's history), exact
folding of context layers, item results kept outside it, and states of the first stored shape."""

import copy
import json
import random
from collections import deque
from pathlib import Path

import pytest

from orchestrator.engine.commands import (
    Dispatch,
    ExecutionEnded,
    ExecutionStarted,
    ItemsCreated,
    RunFinished,
    SetTimer,
    TaskEnded,
    TimerFired,
)
from orchestrator.engine.conductor import RunInfo
from orchestrator.orquesta import OrquestaConductor, OrquestaState
from orchestrator.formats import state_from_dict
from orchestrator.orquesta.items import flight_add, flight_attempt, flight_calls, flight_count, flight_remove
from orchestrator.orquesta.rehearse import rehearse_waves
from orchestrator.orquesta.shapes import load_state
from orchestrator.orquesta.contexts import Uncomposable, compose, merge

from .helpers import Rows, drive, labels, reloaded, waves, wf

FIRST_SHAPE = json.loads((Path(__file__).parent / "first_shape_states.json").read_text())["cases"]


# The first stored shape ------------------------------------------------------------------------

def _continue(case: dict, rerun: bool = False) -> list:
    """Drive a loaded state on as make_fixtures drove it under the old code (one conductor per
    step, as the supervisor builds them), logging the same commands."""
    workflow, info = wf(case["workflow"]), RunInfo("r", case["inputs"])
    rows = Rows()  # the old run's item rows are not needed: that shape kept values and results
    state = state_from_dict(copy.deepcopy(case["state"]), case["vars"])
    assert isinstance(state, OrquestaState)
    pending = deque(Dispatch(seq, task, None, payload, attempt, item)
                    for seq, task, payload, attempt, item in case.get("pending", []))
    timers = deque(case.get("timers", []))
    log: list = []

    def absorb(commands) -> None:
        rows.absorb(commands)
        for c in commands:
            if isinstance(c, Dispatch):
                pending.append(c)
                log.append(["dispatch", c.seq, c.task, c.input, c.attempt, c.item])
            elif isinstance(c, SetTimer):
                timers.append(c.key)
                log.append(["timer", c.key])
            elif isinstance(c, RunFinished):
                log.append(["finished", c.status, c.output, c.error])
            elif isinstance(c, (ExecutionStarted, ExecutionEnded)) and not rerun:
                log.append([type(c).__name__, c.seq, c.task])

    if rerun:
        absorb(OrquestaConductor(workflow, info, items=rows).rerun(state))
    while pending or timers:
        state = reloaded(state)
        conductor = OrquestaConductor(workflow, info, items=rows)
        if pending:
            call = pending.popleft()
            result = call.input.get("message", call.task)
            absorb(conductor.apply(state, TaskEnded(call.seq, call.attempt, "succeeded", result, None, call.item)))
        else:
            absorb(conductor.apply(state, TimerFired(timers.popleft())))
    return log


@pytest.mark.parametrize("name", ["loop", "items", "join", "delay"])
def test_a_state_of_the_first_shape_loads_and_the_run_goes_on_as_before(name):
    case = FIRST_SHAPE[name]
    assert "sequence" in case["state"] and "records" not in case["state"]
    assert _continue(case) == case["continues"]


def test_a_finished_run_of_the_first_shape_reruns_keeping_its_succeeded_items():
    case = FIRST_SHAPE["items_failed_final"]
    log = _continue(case, rerun=True)
    assert log == case["rerun_continues"]
    assert [entry[5] for entry in log if entry[0] == "dispatch"] == [2, 4]  # 0, 1 and 3 had succeeded


def test_loading_the_first_shape_keeps_only_the_latest_and_terminal_records():
    state = load_state(copy.deepcopy(FIRST_SHAPE["loop"]["state"]))
    assert sorted(state.records) == [1, 5] and state.next_seq == 6
    assert state.record("step", 0)["prev"] == {"step__t0": "step__r0"}
    assert state.links == {"init__r0": ["step__r0"], "step__r0": ["step__r0"]}  # from the steps that left
    assert list(state.active) == [5] and state.has_active()


# What the state keeps --------------------------------------------------------------------------

LOOP = """
version: 1.0
input: [n]
vars:
  - i: 0
  - seen: {count: 0}
output:
  - i: <% ctx(i) %>
  - seen: <% ctx(seen) %>
tasks:
  init:
    action: core.noop
    next: [{do: step}]
  step:
    action: core.echo message=<% ctx(i) %>
    next:
      - when: <% succeeded() and ctx(i) < ctx(n) %>
        publish:
          - i: <% ctx(i) + 1 %>
          - seen: {count: <% ctx(i) %>, last: <% result() %>}
        do: step
"""


def test_a_loop_keeps_the_same_few_records_and_layers_however_long_it_runs():
    sizes = []
    run = drive(LOOP, {"n": 300}, outcome=lambda call: ("succeeded", call.input.get("message")),
                watch=lambda state: sizes.append((len(state.records), len(state.contexts),
                                                  len(json.dumps(state.to_dict())))))
    assert run.finished.status == "succeeded"
    assert run.finished.output == {"i": 300, "seen": {"count": 300, "last": 299}}
    assert len(run.sequence) == 302 and run.state.next_seq == 303
    assert max(records for records, _, _ in sizes) <= 2
    assert max(layers for _, layers, _ in sizes) <= 20
    # layers not yet compacted come and go; nothing grows with the iterations
    assert max(size for _, _, size in sizes[-50:]) <= 1.2 * max(size for _, _, size in sizes[:50])


def test_a_loop_rehearsed_and_rerun_after_it_failed():
    workflow = wf(LOOP)
    first = rehearse_waves(workflow, {"n": 6}, [{"task": "step", "occurrence": 3, "status": "failed"}])
    assert first.status == "failed" and labels(first) == ["init", "step", "step", "step", "step"]
    assert len(first.state.records) + len(first.state.done) == 2  # init, and the last (failed, terminal) step
    second = rehearse_waves(workflow, {"n": 6}, [], previous=first, is_rerun=True)
    assert second.status == "succeeded" and second.output == {"i": 6, "seen": {"count": 6, "last": None}}
    assert labels(second) == ["init"] + ["step"] * 4 + ["step"] * 4


ITEMS = """
version: 1.0
input: [n]
tasks:
  t:
    with:
      items: <% range(ctx(n)) %>
      concurrency: 5
    action: core.echo message=<% item() %>
    next:
      - when: <% succeeded() %>
        publish: out=<% result() %>
output:
  - out: <% ctx().get(out) %>
"""


def test_with_items_values_and_results_stay_out_of_the_state():
    sizes = []
    run = drive(ITEMS, {"n": 300}, outcome=lambda call: ("succeeded", f"r{call.input['message']}"),
                watch=lambda state: sizes.append(len(json.dumps(state.to_dict()))))
    assert run.of(ItemsCreated)[0].values == list(range(300))
    assert run.finished.output == {"out": [f"r{i}" for i in range(300)]}
    assert max(sizes[-20:-1]) <= max(sizes[:20]) + 50  # (the last step publishes the 300 results)


def test_a_rerun_of_a_rerun_keeps_the_results_of_items_from_each_earlier_run():
    workflow = wf(ITEMS)
    results = [{"task": "t", "item_id": i, "result": f"r{i}"} for i in range(8)]
    first = rehearse_waves(workflow, {"n": 8}, [{"task": "t", "occurrence": 0, "item_id": 1, "status": "failed"}]
                           + results)
    assert first.status == "failed"
    second = rehearse_waves(workflow, {"n": 8}, [{"task": "t", "occurrence": 0, "item_id": 6, "status": "failed"}]
                            + results, previous=first, is_rerun=True)
    assert second.status == "failed" and 0 not in [c.item for c in second.calls]
    third = rehearse_waves(workflow, {"n": 8}, results, previous=second, is_rerun=True)
    assert [c.item for c in third.calls] == [6, 7]  # one item per wave: 7 was never reached after 6 failed
    assert third.status == "succeeded" and third.output == {"out": [f"r{i}" for i in range(8)]}


# Context layers --------------------------------------------------------------------------------

def _value(rng: random.Random, depth: int = 0):
    if depth < 2 and rng.random() < 0.5:
        return {rng.choice("abc"): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return rng.choice([1, 2, "s", None, [1]])


def test_compose_is_merging_in_turn_or_refuses():
    rng = random.Random(7)
    composed = refused = 0
    for _ in range(3000):
        base, left, right = (_value(rng) for _ in range(3))
        if not all(isinstance(v, dict) for v in (base, left, right)):
            continue
        in_turn = merge(merge(base, left), right)
        try:
            layer = compose(left, right)
        except Uncomposable:
            refused += 1
            continue
        composed += 1
        assert merge(base, layer) == in_turn, (base, left, right)
    assert composed > 100 and refused > 10


JOIN = """
version: 1.0
vars:
  - d: {keep: 1, x: {p: 1}}
  - s: {a: 1}
output:
  - d: <% ctx(d) %>
  - s: <% ctx(s) %>
tasks:
  start:
    action: core.noop
    next:
      - publish:
          - d: {x: {q: 2}}
        do: [a, b]
  a:
    action: core.noop
    next:
      - publish: [{s: 5}]
        do: a2
  a2:
    action: core.noop
    next:
      - publish:
          - s: {b: 2}
          - d: {y: 3}
        do: j
  b:
    action: core.noop
    next:
      - publish:
          - d: {x: {r: 4}}
        do: j
  j:
    join: all
    action: core.noop
"""


def test_a_join_merges_its_branches_layers_as_listed_even_when_they_cannot_be_folded():
    # s: a mapping, then 5, then a mapping again (which must not merge into the first one)
    run = waves(JOIN)
    assert run.status == "succeeded" and labels(run) == ["start", "a", "b", "a2", "j"]
    assert run.output == {"d": {"keep": 1, "x": {"p": 1, "q": 2, "r": 4}, "y": 3}, "s": {"b": 2}}
    (join,) = [r for r in run.state.records.values() if r["id"] == "j"]
    assert len(join["ctxs"]["in"]) == 3  # the root, then two layers that cannot be one


def test_items_in_flight_as_ranges_behave_as_a_mapping():
    rng = random.Random(3)
    items, model = {"flight": []}, {}
    nxt = 0
    for _ in range(4000):
        if model and rng.random() < 0.5:
            index = rng.choice(sorted(model)) if rng.random() < 0.3 else min(model)
            assert flight_attempt(items, index) == model.pop(index)
            flight_remove(items, index)
        else:
            attempt = 1 if rng.random() < 0.9 else 2
            flight_add(items, nxt, attempt)
            model[nxt] = attempt
            nxt += rng.choice([1, 1, 1, 2])
        assert flight_calls(items) == sorted(model.items())
        assert flight_count(items) == len(model)
        assert all(start < end for start, end, _ in items["flight"])
    assert flight_attempt(items, nxt + 5) is None
    assert len(items["flight"]) < len(model)  # mostly ended in order: few ranges


def _chain(n: int) -> str:
    lines = ["version: 1.0", "output: [{last: <% ctx().get(r1) %>}, {n: <% ctx().get(count) %>}]", "tasks:"]
    for i in range(1, n + 1):
        lines += [f"  t{i}:", "    action: core.echo message=<% ctx().get(count, 0) %>"]
        if i < n:
            lines += ["    next:", f"      - publish: [{{r{i}: <% result() %>}}, {{count: {i}}}]", f"        do: t{i + 1}"]
    return "\n".join(lines) + "\n"


def test_a_chain_of_tasks_that_each_publish_stores_each_value_once():
    big = "x" * 1000
    sizes = []
    run = drive(_chain(60), outcome=lambda call: ("succeeded", big), watch=lambda state: sizes.append(
        len(json.dumps(state.to_dict()))))
    assert run.finished.status == "succeeded" and run.finished.output == {"last": big, "n": 59}
    # every task's context holds all the values published before it: stored whole, that would be
    # 60 * 59 / 2 values; as layers and what composites are made of, about one each
    assert sizes[-1] < 3 * 60 * 1000
    assert [c.input["message"] for c in run.calls] == [0] + list(range(1, 60))


def test_rerunning_an_early_task_of_a_publishing_chain_sees_its_own_context():
    workflow = wf(_chain(8))
    first = rehearse_waves(workflow, {}, [{"task": f"t{i}", "result": f"v{i}"} for i in range(1, 9)])
    assert first.status == "succeeded"
    stored = [k for k, v in enumerate(first.state.contexts) if v is None]
    assert stored  # the finished tasks' composites are kept as their parts
    second = rehearse_waves(workflow, {}, [], previous=first, rerun=[{"task_id": "t3"}], is_rerun=True)
    assert [c.input["message"] for c in second.calls] == [2, 3, 4, 5, 6, 7]
    assert second.status == "succeeded" and second.output == {"last": "v1", "n": 7}

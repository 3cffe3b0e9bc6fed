"""Conducts generated workflows in-process and prints one JSON line per size (used by conductor.py).

Standalone on purpose: it runs either in the project's environment (engines ``ours`` and
``ours-orquesta``) or in the separate environment that holds StackStorm's ``orquesta`` package
(engine ``orquesta``), which must never become a project dependency. It imports nothing from the
``benchmarks`` package.

    python benchmarks/conductor_driver.py ENGINE SHAPE --sizes 100,200 [--stored] [--cap 20]
    python benchmarks/conductor_driver.py orquesta probe      # prints the installed version

Engines:
- ``ours``: the engine's Conductor on our workflow format (orchestrator.engine).
- ``ours-orquesta``: our OrquestaConductor on Orquesta's native format (orchestrator.orquesta).
- ``orquesta``: StackStorm Orquesta's own WorkflowConductor on the same Orquesta text.

Shapes (N = size): ``sequential`` (N distinct tasks, t1 -> t2 -> ... -> tN), ``loop`` (one task
run N times by a counter in a variable, after an init task), ``with_items`` (one task over N
items, all in flight at once), ``splits`` (N chained fork/join pairs: each join forks into two
branches that meet at the next ``join: all``).

Every engine is driven the same way: every call it hands out completes successfully, one event
per completed call in the order the calls were handed out, and after each event the engine is
asked for what to run next (our conductors answer from ``apply``; Orquesta's from
``get_next_tasks()``, as StackStorm's workflow service calls it after every completion). With
``--stored`` the state goes through JSON after every event, as it does in a shell that stores it
between steps (ours: ``state.to_dict()``/``from_dict``, variables kept aside as the store does;
Orquesta: ``conductor.serialize()``/``WorkflowConductor.deserialize``, as StackStorm does).

Timing: ``load`` = parse + validate + build the graph; ``conduct`` = start the run and apply every
event until it ends. A run of size 2 warms the process up first (imports, parser tables). Sizes
run in increasing order; once the sizes measured so far predict that the next one would take
longer than ``--cap`` seconds (see ``predicted``), the remaining sizes are reported as skipped
instead of run.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from collections import deque

SHAPES = ("sequential", "loop", "with_items", "splits")
ENGINES = ("ours", "ours-orquesta", "orquesta")


# --------------------------------------------------------------------------- workflow texts

def ours_text(shape: str, n: int) -> str:
    """Our workflow format (a list of tasks)."""
    if shape == "sequential":
        lines = ['version: "1.0"', "tasks:"]
        for i in range(1, n + 1):
            follow = f", next: [{{do: t{i + 1}}}]" if i < n else ""
            lines.append(f"  - {{name: t{i}, action: core.noop{follow}}}")
        return "\n".join(lines) + "\n"
    if shape == "loop":  # as benchmarks/step_cost.py: `when` sees the counter before the publish
        return ('version: "1.0"\n'
                "vars: {i: 0}\n"
                "tasks:\n"
                "  - {name: init, action: core.noop, next: [{do: step}]}\n"
                "  - name: step\n"
                "    action: core.noop\n"
                "    next:\n"
                '      - publish: [{i: "{{ workflow.i + 1 }}"}]\n'
                f'      - {{when: "{{{{ workflow.i < {n - 1} }}}}", do: step}}\n')
    if shape == "with_items":
        return ('version: "1.0"\n'
                "tasks:\n"
                "  - name: fan\n"
                "    action: core.noop\n"
                f'    with_items: "{{{{ range({n}) | list }}}}"\n'
                '    input: {i: "{{ item }}"}\n')
    if shape == "splits":
        lines = ['version: "1.0"', "tasks:", "  - {name: j0, action: core.noop, next: [{do: [a1, b1]}]}"]
        for k in range(1, n + 1):
            lines.append(f"  - {{name: a{k}, action: core.noop, next: [{{do: j{k}}}]}}")
            lines.append(f"  - {{name: b{k}, action: core.noop, next: [{{do: j{k}}}]}}")
            follow = f", next: [{{do: [a{k + 1}, b{k + 1}]}}]" if k < n else ""
            lines.append(f"  - {{name: j{k}, action: core.noop, join: all{follow}}}")
        return "\n".join(lines) + "\n"
    raise ValueError(shape)


def orquesta_text(shape: str, n: int) -> str:
    """Orquesta's native format (tasks as a mapping), the same shapes."""
    lines = ["version: 1.0"]
    if shape == "sequential":
        lines.append("tasks:")
        for i in range(1, n + 1):
            lines += [f"  t{i}:", "    action: core.noop"]
            if i < n:
                lines += ["    next:", f"      - do: t{i + 1}"]
    elif shape == "loop":
        lines += ["vars:", "  - i: 0", "tasks:",
                  "  init:", "    action: core.noop", "    next:", "      - do: step",
                  "  step:", "    action: core.noop", "    next:",
                  f"      - when: <% ctx(i) < {n - 1} %>", "        publish:",
                  "          - i: <% ctx(i) + 1 %>", "        do: step"]
    elif shape == "with_items":
        lines += ["tasks:", "  fan:", f"    with: <% range({n}) %>", "    action: core.noop",
                  "    input:", "      i: <% item() %>"]
    elif shape == "splits":
        lines += ["tasks:", "  j0:", "    action: core.noop", "    next:", "      - do: [a1, b1]"]
        for k in range(1, n + 1):
            for branch in ("a", "b"):
                lines += [f"  {branch}{k}:", "    action: core.noop", "    next:", f"      - do: j{k}"]
            lines += [f"  j{k}:", "    join: all", "    action: core.noop"]
            if k < n:
                lines += ["    next:", f"      - do: [a{k + 1}, b{k + 1}]"]
    else:
        raise ValueError(shape)
    return "\n".join(lines) + "\n"


def expected_calls(shape: str, n: int) -> int:
    return {"sequential": n, "loop": n + 1, "with_items": n, "splits": 1 + 3 * n}[shape]


# --------------------------------------------------------------------------- our conductors

def run_ours(engine: str, shape: str, n: int, stored: bool) -> dict:
    from orchestrator.engine.commands import Dispatch, RunFinished, TaskEnded
    from orchestrator.engine.conductor import RunInfo

    info = RunInfo("bench", {}, execution_limit=10 ** 9)
    begin = time.perf_counter()
    if engine == "ours":
        from orchestrator.engine.conductor import Conductor
        from orchestrator.engine.state import WorkflowState
        from orchestrator.engine.validate import load_workflow

        conductor = Conductor(load_workflow(ours_text(shape, n), "bench.yaml", default_name="bench"), info)
        apply = conductor.apply
        restore = WorkflowState.from_dict
    else:
        from orchestrator.orquesta import OrquestaConductor, OrquestaState, load

        conductor = OrquestaConductor(load(orquesta_text(shape, n), "bench.yaml", "bench"), info)

        def apply(state, event):  # the supervisor applies Orquesta events with apply_all
            return conductor.apply_all(state, [event])

        restore = OrquestaState.from_dict
    load_s = time.perf_counter() - begin

    begin = time.perf_counter()
    state, commands = conductor.start()
    pending: deque = deque()
    finished = None
    calls = 0

    def absorb(cmds) -> None:
        nonlocal finished
        for command in cmds:
            if isinstance(command, Dispatch):
                pending.append(command)
            elif isinstance(command, RunFinished):
                finished = command

    absorb(commands)
    while pending:
        call = pending.popleft()
        calls += 1
        absorb(apply(state, TaskEnded(call.seq, call.attempt, "succeeded", None, None, call.item)))
        if stored:  # what a step stores and the next one loads (variables are rows of their own)
            state = restore(json.loads(json.dumps(state.to_dict())), state.vars)
    conduct_s = time.perf_counter() - begin
    return {"load": load_s, "conduct": conduct_s, "calls": calls,
            "status": finished.status if finished else "running",
            "error": getattr(finished, "error", None)}


# --------------------------------------------------------------------------- Orquesta's conductor

def import_orquesta():
    """Import orquesta 1.2.0 (the last release on PyPI, 2020) on a current Python.

    It predates Python 3.10/3.11 and networkx 2 (it pins networkx<2): networkx 1.11 imports
    ``fractions.gcd`` (gone in 3.9), both use the ``collections`` ABC aliases (gone in 3.10), and
    orquesta builds one regex with ``(?i)`` in the middle (an error since 3.11). These shims only
    restore what those names and that pattern meant; none is on a hot path."""
    import collections
    import collections.abc
    import fractions
    import warnings

    warnings.simplefilter("ignore")
    if not hasattr(fractions, "gcd"):
        fractions.gcd = math.gcd
    for name in collections.abc.__all__:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    from orquesta.utils import parameters

    if "(?i)" in parameters.REGEX_INLINE_PARAMS[4:]:  # a global flag must lead the pattern
        parameters.REGEX_INLINE_PARAMS = "(?i)" + parameters.REGEX_INLINE_PARAMS.replace("(?i)", "")
    import orquesta
    from orquesta import conducting, events, statuses
    from orquesta.specs import native

    return orquesta, conducting, events, statuses, native


def orquesta_version() -> str:
    try:
        from importlib.metadata import version

        return version("orquesta")
    except Exception:  # noqa: BLE001 - informative only
        return "unknown"


def run_orquesta(shape: str, n: int, stored: bool) -> dict:
    _, conducting, events, statuses, native = import_orquesta()
    begin = time.perf_counter()
    spec = native.WorkflowSpec(orquesta_text(shape, n))
    problems = spec.inspect()
    if problems:
        raise RuntimeError(f"orquesta rejected the {shape} workflow: {str(problems)[:500]}")
    conductor = conducting.WorkflowConductor(spec)
    conductor.graph  # composed here (lazily otherwise), so `load` covers parse, inspect and graph
    load_s = time.perf_counter() - begin

    begin = time.perf_counter()
    conductor.request_workflow_status(statuses.RUNNING)
    pending: deque = deque()   # (task id, route, item id or None)
    results: dict = {}         # (task id, route) -> accumulated item results

    def request_next() -> None:
        for task in conductor.get_next_tasks():
            task_id, route = task["id"], task["route"]
            if "items_count" in task:
                results.setdefault((task_id, route), [None] * task["items_count"])
                for action in task["actions"]:
                    conductor.update_task_state(task_id, route, events.TaskItemActionExecutionEvent(
                        action["item_id"], statuses.RUNNING))
                    pending.append((task_id, route, action["item_id"]))
            else:
                conductor.update_task_state(task_id, route, events.ActionExecutionEvent(statuses.RUNNING))
                pending.append((task_id, route, None))

    request_next()
    calls = 0
    while pending:
        task_id, route, item = pending.popleft()
        calls += 1
        if item is None:
            event = events.ActionExecutionEvent(statuses.SUCCEEDED, result=None)
        else:
            accumulated = results[(task_id, route)]
            accumulated[item] = item
            event = events.TaskItemActionExecutionEvent(item, statuses.SUCCEEDED, result=item,
                                                        accumulated_result=accumulated)
        conductor.update_task_state(task_id, route, event)
        if stored:  # StackStorm stores the conductor after each event and rebuilds it for the next
            conductor = conducting.WorkflowConductor.deserialize(json.loads(json.dumps(conductor.serialize())))
        request_next()
    conduct_s = time.perf_counter() - begin
    errors = conductor.errors
    return {"load": load_s, "conduct": conduct_s, "calls": calls, "status": conductor.get_workflow_status(),
            "error": str(errors)[:300] if errors else None}


# --------------------------------------------------------------------------- main

def measure(engine: str, shape: str, n: int, stored: bool) -> dict:
    if engine == "orquesta":
        return run_orquesta(shape, n, stored)
    return run_ours(engine, shape, n, stored)


def emit(data: dict) -> None:
    print(json.dumps(data), flush=True)


def predicted(times: list[tuple[int, float]], size: int) -> float:
    """Seconds the next size should take, from the last two measured sizes: t ~ size^k with k
    from those two (at least 1; 2 when only one size was measured), or, when k comes out above 3,
    exponential growth (Orquesta's graph walks every path through chained joins)."""
    s1, t1 = times[-1]
    if len(times) < 2:
        return t1 * (size / s1) ** 2
    s0, t0 = times[-2]
    if not (t0 > 0 and t1 > 0 and s1 > s0):
        return t1 * (size / s1) ** 2
    exponent = max(1.0, math.log(t1 / t0) / math.log(s1 / s0))
    if exponent > 3:
        return t1 * (t1 / t0) ** ((size - s1) / (s1 - s0))
    return t1 * (size / s1) ** exponent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("engine", choices=ENGINES)
    parser.add_argument("shape", choices=SHAPES + ("probe",))
    parser.add_argument("--sizes", default="100")
    parser.add_argument("--stored", action="store_true")
    parser.add_argument("--cap", type=float, default=20.0, help="skip sizes predicted to take longer (s)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per size (median); sizes that take "
                                                               "over --repeat-below s run once")
    parser.add_argument("--repeat-below", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.shape == "probe":
        if args.engine == "orquesta":
            import_orquesta()
            emit({"version": orquesta_version(), "python": platform.python_version()})
        else:
            emit({"version": "this checkout", "python": platform.python_version()})
        return 0
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    measure(args.engine, args.shape, 2, args.stored)  # warm-up: imports, parser tables, caches
    measured: list[tuple[int, float]] = []
    for size in sizes:
        if measured:
            guess = predicted(measured, size)
            if guess > args.cap:
                emit({"size": size, "skipped": f"predicted {guess:.1f} s > cap {args.cap:g} s"})
                continue
        runs = []
        for _ in range(max(1, args.rounds)):
            result = measure(args.engine, args.shape, size, args.stored)
            runs.append(result)
            if result["status"] != "succeeded" or result["load"] + result["conduct"] > args.repeat_below:
                break
        result = dict(runs[0])
        result["load"] = statistics.median(r["load"] for r in runs)
        result["conduct"] = statistics.median(r["conduct"] for r in runs)
        result.update(size=size, runs=len(runs), expected_calls=expected_calls(args.shape, size))
        emit(result)
        if result["status"] != "succeeded" or result["calls"] != result["expected_calls"]:
            break  # wrong answers are not timed further
        measured.append((size, result["load"] + result["conduct"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

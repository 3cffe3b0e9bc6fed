"""Every run reaches an end, with the DEFAULT settings users get (no lease, tick, grace, heartbeat
or visibility tuning), on Redis and on RabbitMQ as broker, for both workflow formats.

Two deployments run side by side (one per broker, two prefork workers each); every test runs its
scenario on both at once. Test actions append their call id to an effects file when they finish,
so a call that finished twice leaves two lines. The liveness bound is 60 s from the fault to the
end of every affected run, read from the runs' `finished_at`.

Expression bombs (a template or YAQL expression that never finishes, or builds a huge value) fail
their run within the bound, cancel works while one is being evaluated, a worker restarted in the
middle of one is not pinned again, and other runs go on.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import Cluster, on_both
from .servers import free_port, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600)]

BOUND = 60.0  # seconds from a fault to the end of every run it touched (docs/reliability.md)
GRACE = 30.0  # the default ORCHESTRATOR_OUTBOX_GRACE
SWEEP = 5.0   # the default ORCHESTRATOR_SWEEP_INTERVAL

CHAIN = (["s1", "s2", "s3", "s4", "s5"], {"total": 15})
FANOUT = (["each", "left", "middle", "right", "merge"], {"squares": [i * i for i in range(8)], "merged": 6})
EXPECTED = {"chain": CHAIN, "fanout": FANOUT, "chain-orquesta": CHAIN, "fanout-orquesta": FANOUT}


def tasks_of(summary: dict) -> list[str]:
    # Orquesta's `continue` pseudo-task row is no call (see the report on main's Orquesta rows).
    return [t["name"] for t in summary["tasks"] if t["name"] != "continue"]


def check_mix(cluster: Cluster, runs: list[tuple[str, str]], fault_at: float, finished_before: set[str]) -> None:
    """Every run succeeded with its output within BOUND of the fault, each task recorded once,
    and no call whose outcome was recorded before the fault finished a second time."""
    summaries = cluster.wait([r for r, _ in runs], timeout=BOUND + 30)
    late = []
    for summary, (run_id, workflow) in zip(summaries, runs):
        names, output = EXPECTED[workflow]
        assert summary["status"] == "succeeded", (cluster.broker, workflow, summary)
        assert summary["output"] == output, (cluster.broker, workflow, summary["output"])
        assert tasks_of(summary) == names, (cluster.broker, workflow, summary["tasks"])
        assert all(t["attempts"] == 1 for t in summary["tasks"]), (cluster.broker, summary["tasks"])
        took = cluster.finished_at(run_id) - fault_at
        if took > BOUND:
            late.append((workflow, run_id, round(took, 1)))
    assert not late, f"[{cluster.broker}] runs ended more than {BOUND:.0f} s after the fault: {late}\n{cluster.logs()}"
    counts = cluster.effect_counts()
    again = {call: counts.get(call) for call in finished_before if counts.get(call, 0) != 1}
    assert not again, f"[{cluster.broker}] calls finished before the fault ran again (or left no line): {again}"
    last = max(cluster.finished_at(r) for r, _ in runs) - fault_at
    print(f"[{cluster.broker}] every run ended within {last:.1f} s of the fault (bound {BOUND:.0f} s)")


def start_mix(cluster: Cluster, workflows: list[str], *params: str) -> list[tuple[str, str]]:
    with ThreadPoolExecutor(len(workflows)) as pool:
        ids = list(pool.map(lambda w: cluster.start(w, *params), workflows))
    return list(zip(ids, workflows))


# 1. No call runs twice without a fault, whatever process started the run ---------------------

def _http_start(cluster: Cluster, workflow: str) -> str:
    server = cluster.notes.get("http")
    if server is None:
        import subprocess
        import sys

        port = free_port()
        log = open(cluster.folder / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
                                env={**os.environ, **cluster.env}, cwd=str(cluster.folder), stdout=log, stderr=log)
        cluster.notes["http"] = server = (proc, port)
        try:
            wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/api/runs", timeout=5).status == 200,
                     120, "orchestrator serve")
        except RuntimeError:
            raise AssertionError((cluster.folder / "serve.log").read_text()[-3000:]) from None
    request = urllib.request.Request(f"http://127.0.0.1:{server[1]}/api/runs", method="POST",
                                     data=json.dumps({"workflow": workflow, "params": {}}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["id"]


def _start_every_way(cluster: Cluster, workflows: tuple[str, ...]) -> dict[str, str]:
    """Start each workflow every way; run id -> how it was started."""
    names = list(workflows)

    def cli_start(workflow: str) -> list[tuple[str, str]]:
        return [(cluster.start(workflow), f"{workflow} by start")]

    def cli_run(workflow: str) -> list[tuple[str, str]]:
        result = cluster.cli("run", workflow, "--json")
        assert result.returncode == 0, result.stderr[-2000:]
        return [(json.loads(result.stdout)["id"], f"{workflow} by run")]

    def script_submit() -> list[tuple[str, str]]:  # the script exits as soon as the runs are started
        ids = cluster.python(f"from orchestrator import submit; print(' '.join(submit(w).id for w in {names!r}))")
        return [(run_id, f"{w} by submit()") for run_id, w in zip(ids.split(), names)]

    def script_delay() -> list[tuple[str, str]]:
        ids = cluster.python("from orchestrator.tasks import start_workflow; "
                             f"print(' '.join(start_workflow.delay(w).id for w in {names!r}))")
        return [(run_id, f"{w} by start_workflow.delay()") for run_id, w in zip(ids.split(), names)]

    def http() -> list[tuple[str, str]]:
        return [(_http_start(cluster, w), f"{w} by HTTP") for w in names]

    jobs = [lambda w=w: cli_start(w) for w in names] + [lambda w=w: cli_run(w) for w in names]
    jobs += [script_submit, script_delay, http]
    with ThreadPoolExecutor(len(jobs)) as pool:
        return dict(pair for pairs in pool.map(lambda job: job(), jobs) for pair in pairs)


def test_every_start_path_runs_each_call_once(clusters):
    """CLI `start` and `run`, `submit()` from a script that exits at once, `start_workflow.delay()`
    and HTTP: each run's one call finishes once, and no outbox row is left for the reconciler to
    carry out again (the final check, after the outbox grace, is the test after the next two)."""
    def scenario(cluster: Cluster) -> None:
        started = _start_every_way(cluster, ("once", "once-orquesta"))
        assert len(started) == 10, started
        summaries = cluster.wait(list(started), timeout=120)
        for summary in summaries:
            assert summary["status"] == "succeeded", (cluster.broker, started[summary["id"]], summary)
            assert summary["output"] == {"value": 1}
        wait_for(lambda: not cluster.rows("SELECT id FROM outbox WHERE run_id = ANY(:ids)", ids=list(started)),
                 15, "carried-out outbox rows deleted")
        counts = cluster.effect_counts()
        assert {how: counts.get(f"{run_id}-1-1") for run_id, how in started.items()} == {
            how: 1 for how in started.values()}, cluster.broker
        cluster.notes["start_paths"] = (started, time.time())

    on_both(clusters, scenario)


# 4. Poison calls ---------------------------------------------------------------------------------

def test_poison_call_fails_after_three_deliveries_and_workers_go_on(clusters):
    def scenario(cluster: Cluster) -> None:
        began = time.time()
        poison = [cluster.start("poison"), cluster.start("poison-orquesta")]
        others = start_mix(cluster, ["chain", "chain-orquesta"])
        summaries = cluster.wait(poison, timeout=BOUND + 30)
        counts = cluster.effect_counts()
        for run_id, summary in zip(poison, summaries):
            assert summary["status"] == "failed", (cluster.broker, summary)
            boom = next(t for t in summary["tasks"] if t["name"] == "boom")
            assert "worker lost 3 times running this call" in boom["error"], (cluster.broker, boom)
            assert counts.get(f"{run_id}-1-1") == 3, (cluster.broker, "the poison call ran", counts.get(f"{run_id}-1-1"))
            assert cluster.finished_at(run_id) - began < BOUND, (cluster.broker, "poison run ended too late")
        check_mix(cluster, others, began, set())
        assert all(w.alive() for w in cluster.workers), f"[{cluster.broker}] a worker main process died"
        lost = sum(w.text().count("Worker exited prematurely") for w in cluster.workers)
        assert lost <= 6, f"[{cluster.broker}] {lost} pool processes lost for two poison calls"

    on_both(clusters, scenario)


def test_cancel_during_a_poison_call_says_what_happened(clusters):
    def scenario(cluster: Cluster) -> None:
        def lost() -> int:
            return sum(w.text().count("Worker exited prematurely") for w in cluster.workers)

        before = lost()
        run_id = cluster.start("poison", "-p", "after=5")
        wait_for(lambda: cluster.effect_counts().get(f"{run_id}-1-1", 0) >= 1, 60, "the poison call to start")
        wait_for(lambda: lost() > before, 30, "its worker process to be lost")
        result = cluster.cli("cancel", run_id)
        assert result.returncode == 0, result.stderr
        began = time.time()
        summary = cluster.wait([run_id], timeout=BOUND)[0]
        assert summary["status"] == "canceled", (cluster.broker, summary)
        assert "never started" not in summary["tasks"][0]["error"], (cluster.broker, summary["tasks"])
        assert ("worker was lost" in summary["tasks"][0]["error"] or "interrupted" in summary["tasks"][0]["error"]
                or "worker lost" in summary["tasks"][0]["error"]), (cluster.broker, summary["tasks"])
        assert cluster.finished_at(run_id) - began < BOUND

    on_both(clusters, scenario)


# 5. Unstorable values ----------------------------------------------------------------------------

UNSTORABLE = {
    "result_nan": "result of tests.unstorable cannot be stored: nan (JSON has no NaN or Infinity) at $.v",
    "result_nul": "result of core.shell cannot be stored: a NUL character at $.stdout",
    "result_surrogate": "result of tests.unstorable cannot be stored: a lone surrogate character (U+D800) at $.text",
    "result_bigint": "result of tests.unstorable cannot be stored: an integer too long to store",
    "publish_nul": "published variables cannot be stored: a NUL character at $.bad",
    "input_nul": "task 'input_nul': its input cannot be stored: a NUL character at $.message",
}


def test_unstorable_values_fail_their_task_or_run_within_seconds(clusters):
    def scenario(cluster: Cluster) -> None:
        runs = [r for r, _ in start_mix(cluster, ["unstorable", "unstorable-orquesta"])]
        outputs = [r for r, _ in start_mix(cluster, ["unstorable-output", "unstorable-output-orquesta"])]
        for summary in cluster.wait(runs, timeout=60):
            assert summary["status"] == "failed", (cluster.broker, summary)
            errors = {t["name"]: t["error"] for t in summary["tasks"] if t["name"] != "continue"}
            assert set(errors) == set(UNSTORABLE), (cluster.broker, errors)
            for name, expected in UNSTORABLE.items():
                assert errors[name] and errors[name].startswith(expected), (cluster.broker, name, errors[name])
        for summary in cluster.wait(outputs, timeout=60):
            assert summary["status"] == "failed", (cluster.broker, summary)
            assert summary["error"] == "the workflow's output cannot be stored: a NUL character at $.bad"
        for run_id in runs + outputs:  # from the run's creation, however slow the starting CLI was
            (created, finished), = cluster.rows("SELECT created_at, finished_at FROM workflow_runs WHERE id = :id",
                                                id=run_id)
            assert (finished - created).total_seconds() < 30, (cluster.broker, "not within seconds", run_id)
        result = cluster.cli("start", "unstorable", "-p", "note=NaN")
        assert result.returncode == 2 and "cannot be stored: nan (JSON has no NaN or Infinity) at params.note" in result.stderr
        retried = [line for w in cluster.workers for line in w.text().splitlines()
                   if "orchestrator.supervise" in line and " retry: " in line or "inline failed" in line]
        assert not retried, f"[{cluster.broker}] a step was retried: {retried[:3]}"

    on_both(clusters, scenario)


# 6. Expression bombs ------------------------------------------------------------------------------

# (workflow, parameters, what the run's error says): the nested-range loop, its `~` chain
# and a YAQL range over 10^8 items, in a task's input (evaluated by the worker applying the call
# before it) and in the workflow's vars (evaluated by the starting process). "exceeded 5 s": the
# expression's own budget, or its step's when an earlier evaluation of the step took time too.
BOMBS = [
    ("bomb", ("kind=nested",), ["task 'bomb'", "input", "exceeded 5 s"]),
    ("bomb", ("kind=chain", "where=vars"), ["vars.early", f"value larger than {4 << 20} bytes"]),
    ("bomb-orquesta", ("kind=yaql",), ["task 'bomb_yaql'", "exceeded 5 s"]),
    ("bomb-orquesta", ("kind=chain",), ["task 'bomb_jinja'", f"value larger than {4 << 20} bytes"]),
    ("bomb-orquesta", ("kind=nested", "where=vars"), ["vars early_jinja", "exceeded 5 s"]),
    ("bomb-orquesta", ("kind=yaql", "where=vars"), ["vars early_yaql", "exceeded 5 s"]),
]


def _start_bomb(cluster: Cluster, workflow: str, params: tuple[str, ...]) -> str:
    return cluster.start(workflow, *[arg for p in params for arg in ("-p", p)])


def _no_step_retried(cluster: Cluster) -> None:
    text = "".join(w.text() for w in cluster.workers)
    assert "lock timeout" not in text, f"[{cluster.broker}] a step waited for a lock too long"
    retried = [line for line in text.splitlines() if "orchestrator.supervise" in line and " retry: " in line]
    assert not retried, f"[{cluster.broker}] a step was retried: {retried[:3]}"


def _ran_once(cluster: Cluster, run_ids: list[str]) -> None:
    counts = cluster.effect_counts()
    again = {call: n for call, n in counts.items() if n != 1 and any(call.startswith(f"{r}-") for r in run_ids)}
    assert not again, f"[{cluster.broker}] calls ran more than once: {again}"


def test_expression_bombs_fail_their_run_and_other_runs_go_on(clusters):
    """Each bomb fails its run within the bound with an error naming the task or variable and the
    budget it exceeded, while runs started with them on the same workers finish."""
    def scenario(cluster: Cluster) -> None:
        began = time.time()
        with ThreadPoolExecutor(len(BOMBS) + 4) as pool:
            bombs = [pool.submit(_start_bomb, cluster, w, p) for w, p, _ in BOMBS]
            others = start_mix(cluster, ["chain", "chain-orquesta", "fanout", "fanout-orquesta"])
            bombs = [b.result() for b in bombs]
        summaries = cluster.wait(bombs, timeout=BOUND + 30)
        for run_id, summary, (workflow, params, says) in zip(bombs, summaries, BOMBS):
            assert summary["status"] == "failed", (cluster.broker, workflow, params, summary)
            assert all(part in summary["error"] for part in says), (cluster.broker, workflow, params, summary["error"])
            assert "Traceback" not in summary["error"]
            took = cluster.finished_at(run_id) - began
            assert took < BOUND, (cluster.broker, workflow, params, f"ended {took:.0f} s after its start")
        check_mix(cluster, others, began, set())
        _ran_once(cluster, bombs)
        _no_step_retried(cluster)

    on_both(clusters, scenario)


def test_cancel_while_a_bomb_is_being_evaluated(clusters):
    """The step applying `first` evaluates the bomb with the run's row lock held: a cancel sent
    then waits at most the step's budget (not PostgreSQL's lock timeout) and the run ends canceled."""
    def scenario(cluster: Cluster) -> None:
        gate = cluster.folder / f"gate-{time.monotonic_ns()}"
        try:
            runs = [_start_bomb(cluster, "bomb", ("kind=nested", f"gate={gate}")),
                    _start_bomb(cluster, "bomb-orquesta", ("kind=yaql", f"gate={gate}"))]

            def cancel(run_id: str):
                # the signal: `first` finished, so the step applying it is evaluating the bomb
                wait_for(lambda: any(c.startswith(f"{run_id}-") for c in cluster.effect_counts()), 120,
                         "the first call to finish")
                return cluster.cli("cancel", run_id), time.time()

            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(cancel, runs))
            for run_id, (result, at) in zip(runs, results):
                assert result.returncode == 0, (cluster.broker, result.stdout, result.stderr[-2000:])
                assert "lock timeout" not in result.stderr
                summary = cluster.wait([run_id], timeout=BOUND)[0]
                assert summary["status"] == "canceled", (cluster.broker, summary)
                assert cluster.finished_at(run_id) - at < BOUND
            _ran_once(cluster, runs)
            _no_step_retried(cluster)
        finally:
            gate.touch()

    on_both(clusters, scenario)


def test_a_worker_restarted_during_a_bomb_is_not_pinned_again(clusters):
    """The worker evaluating a bomb dies (its whole process group) and a new one starts: the call
    comes back, the bomb is evaluated once more within its budget and the failure committed, so
    the run fails and nothing keeps a worker process busy; runs started afterwards finish."""
    def scenario(cluster: Cluster) -> None:
        cluster.keep_workers(2)
        run_id = _start_bomb(cluster, "bomb", ("kind=nested",))
        wait_for(lambda: any(c.startswith(f"{run_id}-") for c in cluster.effect_counts()), 120,
                 "the first call to finish")
        call = next(c for c in cluster.effect_counts() if c.startswith(f"{run_id}-"))
        victim = next(w for w in cluster.live_workers() if f"[{call}] received" in w.text())
        fault_at = time.time()
        victim.kill_host()
        print(f"[{cluster.broker}] run {cluster.summary(run_id)['status']} when its worker was killed")
        cluster.keep_workers(2)
        others = start_mix(cluster, ["chain", "chain-orquesta"])
        summary = cluster.wait([run_id], timeout=BOUND + 30)[0]
        assert summary["status"] == "failed", (cluster.broker, summary)
        assert "exceeded 5 s" in summary["error"], (cluster.broker, summary["error"])
        assert cluster.finished_at(run_id) - fault_at < BOUND, cluster.broker
        check_mix(cluster, others, fault_at, set())
        assert cluster.effect_counts()[call] <= 2, (cluster.broker, "the first call ran", cluster.effect_counts()[call])

    on_both(clusters, scenario)


def test_start_paths_still_ran_once_after_the_outbox_grace(clusters):
    """The duplicates of issue 11 appeared ~30 s after a CLI start, when the reconciler carried
    out the starting process's outbox row again: wait past that and count again."""
    def scenario(cluster: Cluster) -> None:
        started, at = cluster.notes["start_paths"]
        time.sleep(max(0.0, at + GRACE + 2 * SWEEP + 2 - time.time()))
        counts = cluster.effect_counts()
        assert {how: counts.get(f"{run_id}-1-1") for run_id, how in started.items()} == {
            how: 1 for how in started.values()}, cluster.broker
        # Only these runs: a test in between kills a worker that may not have deleted an outbox
        # row it received yet, which the reconciler then rightly carries out (sending nothing).
        logs = "".join(w.text() for w in cluster.workers)
        assert [how for run_id, how in started.items() if f"run {run_id} left unpublished" in logs] == [], \
            cluster.broker

    on_both(clusters, scenario)


# Faults while calls are held at a gate --------------------------------------------------------

GATED = ["chain", "fanout", "chain-orquesta", "fanout-orquesta", "chain", "fanout-orquesta"]


def start_gated(cluster: Cluster) -> tuple[list[tuple[str, str]], "os.PathLike"]:
    """Start the mix with a closed gate and return once the gated calls (chain steps from s3, the
    join's left and middle branches) keep every worker process busy: the calls before them have
    finished (some on each worker), the gated ones run, and the calls behind them are reserved
    or queued, until the test opens the gate."""
    gate = cluster.folder / f"gate-{time.monotonic_ns()}"
    try:
        runs = start_mix(cluster, GATED, "-p", f"gate={gate}")
        processes = 2 * len(cluster.live_workers())
        waiting = cluster.folder / "effects.log.waiting"

        def busy() -> bool:
            lines = waiting.read_text().split() if waiting.exists() else []
            return sum(1 for call in lines for r, _ in runs if call.startswith(r)) >= processes

        wait_for(busy, 120, "every worker process to hold a gated call")
    except BaseException:
        gate.touch()  # a failed start must not leave calls holding the workers for the next test
        raise
    time.sleep(1.0)  # the next messages reach the workers' prefetch
    return runs, gate


# 3. Broker loss ----------------------------------------------------------------------------------

def test_redis_restart_that_loses_every_message(clusters):
    """Redis restarted without persistence while calls run, are reserved and are queued: with the
    Redis broker every queued and unacknowledged message is lost (and the chords' join state);
    with RabbitMQ as broker, the result backend's chord join state and call traces are."""
    def scenario(cluster: Cluster) -> None:
        cluster.keep_workers(2)
        runs, gate = start_gated(cluster)
        finished = cluster.finished_calls([r for r, _ in runs])
        fault_at = time.time()
        cluster.redis.restart(down_for=1.0)
        gate.touch()
        check_mix(cluster, runs, fault_at, finished)

    on_both(clusters, scenario)


# 2. Host death -----------------------------------------------------------------------------------

def test_host_death_without_restart(clusters):
    """One of two workers loses its whole process group (main process and pool) while running
    and holding calls, and is never restarted: those calls resume on the other worker."""
    def scenario(cluster: Cluster) -> None:
        cluster.keep_workers(2)
        victim, survivor = cluster.live_workers()[:2]
        runs, gate = start_gated(cluster)
        ids = [r for r, _ in runs]
        if not sum(_holds(victim, r) for r in ids):
            gate.touch()
            raise AssertionError(f"[{cluster.broker}] the victim holds no call")
        finished = cluster.finished_calls(ids)
        fault_at = time.time()
        victim.kill_host()
        gate.touch()
        check_mix(cluster, runs, fault_at, finished)
        assert survivor.alive()

    on_both(clusters, scenario)


def _holds(worker, run_id: str) -> int:
    """How many calls of the run the worker received and has not finished."""
    text = worker.text()
    received = {line.split("[", 1)[1].split("]", 1)[0] for line in text.splitlines()
                if " received" in line and f"[{run_id}-" in line}
    done = {line.split("[", 1)[1].split("]", 1)[0] for line in text.splitlines()
            if " succeeded in " in line and f"[{run_id}-" in line}
    return len(received - done)

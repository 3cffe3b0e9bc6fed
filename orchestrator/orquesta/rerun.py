"""Rerunning a completed Orquesta run from some of its tasks (Orquesta's request_workflow_rerun).

With no tasks named, every *terminal* task that failed is rerun. Each rerun task gets a new
record (with the input context and inbound links of the one it repeats) and is staged; a
with-items task keeps its succeeded items and reruns the others (all of them with
`reset_items`). Terminal tasks that had satisfied transitions are resumed too, so work staged
before the failure (a sibling branch's next task, a ready join) continues.

What follows from a task is found by task and route (OrquestaState.downstream: the kept
records' `prev` and the state's `links`), since executions superseded by later ones are no
longer kept.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from . import items as item_book
from .graph import OrquestaGraph
from ..core.statuses import ABENDED
from .state import OrquestaState, key_of, split_key


def request_rerun(state: OrquestaState, graph: OrquestaGraph, tasks: list[dict[str, Any]] | None) -> None:
    """Prepare `state` for a rerun; raises ValueError for a task that never ran."""
    requests: dict[str, dict[str, Any]] = {}
    for request in tasks or []:
        task_id = request.get("task_id") or request.get("task")
        if not task_id:
            raise ValueError(f"a rerun request needs a task_id: {request!r}")
        route = int(request.get("route") or 0)
        requests[key_of(task_id, route)] = {"task_id": task_id, "route": route,
                                            "reset_items": bool(request.get("reset_items"))}
    unknown = [k for k in requests if k not in state.tasks]
    if unknown:
        raise ValueError(f"cannot rerun tasks that did not run: {', '.join(sorted(unknown))}")
    commands = sorted({r["task_id"] for r in requests.values() if r["task_id"] not in graph.tasks})
    if commands:  # `fail` and the other engine commands are not tasks: nothing to run again
        raise ValueError(f"cannot rerun engine commands: {', '.join(commands)}")
    if not requests:
        candidates = {key_of(r["id"], r["route"]): (r["seq"] - 1, r) for r in state.records.values()
                      if r.get("term") and r.get("status") in ABENDED and r["id"] in graph.tasks}
    else:
        keep = _collapse(state, requests)
        candidates = {k: (state.tasks[k] - 1, state.record(r["task_id"], r["route"]))
                      for k, r in requests.items() if k in keep}
    if not candidates:
        raise ValueError("nothing to rerun: no terminal task failed")
    state.reruns.append([i for i, _ in candidates.values()])
    for key, (_, record) in sorted(candidates.items(), key=lambda kv: (kv[1][1]["id"], kv[1][1]["route"])):
        reset = requests.get(key, {}).get("reset_items", False)
        _rerun_task(state, graph, record, reset)
    for record in state.terminal():
        if any(record["next"].values()):
            record.pop("term", None)
    state.prune()


def _rerun_task(state: OrquestaState, graph: OrquestaGraph, record: dict[str, Any], reset_items: bool) -> None:
    task_id, route = record["id"], record["route"]
    contexts, prev = list(record["ctxs"]["in"]), dict(record["prev"])
    record.pop("term", None)
    state.errors[:] = [e for e in state.errors if e.get("task_id") != task_id]
    state.unstage(task_id, route)
    spec = graph.tasks.get(task_id)
    if spec is not None and spec.items is not None:
        carry = None if reset_items else item_book.carry(record)
        state.stage(task_id, route, contexts, prev, True, carry=carry)
    else:
        state.add_record(task_id, route, contexts, prev)
        state.stage(task_id, route, contexts, prev, True)
    for later in _downstream(state, task_id, route):
        later.pop("term", None)


def _reached(state: OrquestaState, task_id: str, route: int,
             graph: dict[str, set[str]] | None = None) -> set[str]:
    """The task's key and every key staged (transitively) from it."""
    graph = state.downstream() if graph is None else graph
    start = key_of(task_id, route)
    reached = {start}
    queue = deque([start])
    while queue:
        for target in graph.get(queue.popleft(), ()):
            if target not in reached:
                reached.add(target)
                queue.append(target)
    return reached


def _downstream(state: OrquestaState, task_id: str, route: int) -> list[dict[str, Any]]:
    """Records that followed (transitively) from the task's executions on that route."""
    reached = _reached(state, task_id, route)
    return [r for r in state.records.values() if any(source in reached for source in r["prev"].values())]


def _collapse(state: OrquestaState, requests: dict[str, dict[str, Any]]) -> set[str]:
    """Of several requested tasks, drop those whose downstream tasks are all covered by another
    request's (so one branch is not rerun twice)."""
    graph = state.downstream()
    reach = {k: _reached(state, r["task_id"], r["route"], graph) for k, r in requests.items()}
    if len(reach) == 1:
        return set(reach)
    return {k for k, mine in reach.items() if any(mine - other for j, other in reach.items() if j != k)}


def rerun_requests(state: OrquestaState, names: tuple[str, ...]) -> list[dict[str, Any]] | None:
    """Rerun requests from task names (an operator's Rerun event): `name` means the task on every
    route it ran on, `name__rN` one route; no names, every terminal task that failed."""
    if not names:
        return None
    requests: list[dict[str, Any]] = []
    for name in names:
        if name in state.tasks:
            task, route = name.rsplit("__r", 1)
            requests.append({"task_id": task, "route": int(route)})
            continue
        routes = sorted(route for task, route in map(split_key, state.tasks) if task == name)
        requests += [{"task_id": name, "route": r} for r in routes] or [{"task_id": name}]
    return requests

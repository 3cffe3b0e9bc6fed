"""The event generator on its own: only changes are sent, and every stream ends."""

from __future__ import annotations

import asyncio
import json

from orchestrator.http.events import summary_events


def collect(version, read, **kwargs) -> list[tuple[str, object]]:
    async def run():
        return [chunk async for chunk in summary_events(version, read, poll=0.01, **kwargs)]

    events = []
    for chunk in asyncio.run(run()):
        lines = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if line.startswith(("event", "data")))
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_only_changes_are_sent_and_the_terminal_summary_ends_the_stream():
    versions = iter([1, 1, 2, 2, 3, 4])
    summaries = iter([{"status": "running", "n": 1}, {"status": "running", "n": 1},  # version 2: same content
                      {"status": "running", "n": 2}, {"status": "succeeded", "n": 3}])
    events = collect(lambda: next(versions), lambda: next(summaries))
    assert events == [("summary", {"status": "running", "n": 1}), ("summary", {"status": "running", "n": 2}),
                      ("summary", {"status": "succeeded", "n": 3}), ("end", {"status": "succeeded"})]


def test_a_vanished_run_and_the_time_limit_end_the_stream():
    assert collect(lambda: None, lambda: None) == [("gone", {"detail": "run not found"})]
    events = collect(lambda: 1, lambda: {"status": "running"}, limit=0.05)
    assert events[0] == ("summary", {"status": "running"}) and events[-1][0] == "timeout"


def test_lifecycle_events_are_sent_once_each_before_the_summary():
    versions = iter([1, 2])
    summaries = iter([{"status": "running"}, {"status": "succeeded"}])
    log = [{"id": 1, "kind": "workflow.started"}, {"id": 2, "kind": "task.started"}, {"id": 3, "kind": "task.succeeded"},
           {"id": 4, "kind": "workflow.succeeded"}]
    reads = iter([log[:2], log[2:]])
    asked = []

    def read_events(after):
        asked.append(after)
        return next(reads)

    events = collect(lambda: next(versions), lambda: next(summaries), read_events=read_events)
    assert asked == [0, 2]
    assert events == [("lifecycle", log[0]), ("lifecycle", log[1]), ("summary", {"status": "running"}),
                      ("lifecycle", log[2]), ("lifecycle", log[3]), ("summary", {"status": "succeeded"}),
                      ("end", {"status": "succeeded"})]

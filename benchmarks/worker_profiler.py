"""Imported by a benchmark's worker (through ORCHESTRATOR_ACTIONS) to profile part of its life:
cProfile starts in the worker's main thread when the process receives SIGUSR2 (sent by the
benchmark after its warm-up, while the worker is idle) and its stats are written to
BENCH_PROFILE_OUTPUT when the worker shuts down, with the PostgreSQL round trips counted
meanwhile (round_trips.py) in BENCH_PROFILE_OUTPUT + ".pg". Meant for the solo pool, where the
consumer, the tasks and their publishes all run in the main thread. Defines no task."""

from __future__ import annotations

import cProfile
import os
import signal

from celery.signals import worker_shutdown

from .round_trips import PostgresRoundTrips

OUTPUT_ENV = "BENCH_PROFILE_OUTPUT"
START_SIGNAL = signal.SIGUSR2
_profile = cProfile.Profile()
_trips = PostgresRoundTrips()


def _start(_signum, _frame) -> None:
    _trips.install()
    _profile.enable()


signal.signal(START_SIGNAL, _start)


@worker_shutdown.connect
def _stop(**_kwargs) -> None:
    _profile.disable()
    _trips.uninstall()
    _profile.dump_stats(os.environ[OUTPUT_ENV])
    with open(os.environ[OUTPUT_ENV] + ".pg", "w") as out:
        out.write(str(_trips.count))

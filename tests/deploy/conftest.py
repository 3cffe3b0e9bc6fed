"""Fixtures of the deployment tests: the runtime suite's isolated schema, environment and workers."""

from tests.runtime.conftest import (BROKER_URL, DATABASE_URL, REDIS_URL, WorkerProcess,  # noqa: F401
                                    orchestrator_env, pg_schema, worker)

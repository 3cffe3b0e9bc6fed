#!/usr/bin/env bash
# The one command that sets up and runs an example workflow on the embedded default: no broker,
# no database server (SQLite in ./.orchestrator and a Celery worker inside the same process).
# Extra arguments go to `orchestrator run`:  bash scripts/demo.sh --json
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ ! -x .venv/bin/python ]; then
    echo "demo: creating .venv"
    rm -rf .venv
    python3 -m venv .venv || {
        echo "demo: 'python3 -m venv' failed; on Debian/Ubuntu install python3-venv first" >&2
        exit 1
    }
fi

echo "demo: installing the project into .venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/pip install -q -e .

# Embedded mode: no broker and no database server.
unset ORCHESTRATOR_BROKER_URL ORCHESTRATOR_DATABASE_URL

exec .venv/bin/orchestrator run examples/hello.yaml -p name=world "$@"

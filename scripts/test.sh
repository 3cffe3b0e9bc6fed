#!/usr/bin/env bash
# The one command that sets up and runs the whole test suite from a fresh clone:
# local PostgreSQL + Redis (scripts/services.sh), the .venv with the test extras, then pytest.
# Extra arguments go to pytest:  bash scripts/test.sh -k retries -x
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/services.sh

if [ ! -x .venv/bin/python ]; then
    echo "test: creating .venv"
    rm -rf .venv
    if ! python3 -m venv .venv; then
        # Debian ships venv/ensurepip separately.
        echo "test: python3 -m venv failed; installing python3-venv"
        rm -rf .venv
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null ||
            { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; }
        python3 -m venv .venv
    fi
fi

echo "test: installing the project and its test extras into .venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'

export ORCHESTRATOR_TEST_DATABASE_URL="${ORCHESTRATOR_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/orchestrator_test}"
export ORCHESTRATOR_TEST_REDIS_URL="${ORCHESTRATOR_TEST_REDIS_URL:-redis://127.0.0.1:6379}"

# The tests configure their own deployments; a developer's ORCHESTRATOR_* settings must not leak in.
while IFS= read -r name; do
    case "$name" in
        ORCHESTRATOR_TEST_*) ;;
        ORCHESTRATOR_*) unset "$name" ;;
    esac
done < <(compgen -e)
unset ORCHESTRATOR_BROKER_URL ORCHESTRATOR_DATABASE_URL

# Two test processes by default, one per core (a file's tests together, the fault-injection files
# one after the other: tests/conftest.py). ORCHESTRATOR_TEST_PROCESSES=1 runs one, without xdist
# (what `-x` or a debugger wants); any other number runs that many.
processes="${ORCHESTRATOR_TEST_PROCESSES:-2}"
parallel=()
if [ "$processes" != "1" ] && [ "$processes" != "0" ]; then
    parallel=(-n "$processes" --dist loadfile)
fi
echo "test: running pytest ${parallel[*]} $*"
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"

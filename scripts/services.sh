#!/usr/bin/env bash
# Ensure the local services the test suite needs: PostgreSQL on 127.0.0.1:5432 (user postgres, no
# password) with the databases `orchestrator` and `orchestrator_test`, and Redis on 127.0.0.1:6379.
# Installs them from Debian's packages when missing, starts them when down. Safe to run many times.
set -euo pipefail

# The defaults are what the tests expect; the overrides exist to try this script on scratch instances.
PG_HOST=127.0.0.1
PG_PORT=${SERVICES_PG_PORT:-5432}
PG_CLUSTER=${SERVICES_PG_CLUSTER:-main}
REDIS_HOST=127.0.0.1
REDIS_PORT=${SERVICES_REDIS_PORT:-6379}
DATABASES=(orchestrator orchestrator_test)
WAIT_SECONDS=30

export DEBIAN_FRONTEND=noninteractive
export PGCONNECT_TIMEOUT=5

log() { printf 'services: %s\n' "$*"; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# Root commands (apt, pg_hba edits): directly as root, else through sudo when it is available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* yourself"
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null ||
        die "apt-get install $* failed"
}

# psql as the postgres superuser over TCP, never prompting for a password.
pg_psql() {
    psql -X -w -h "$PG_HOST" -p "$PG_PORT" -U postgres "$@"
}

pg_server_installed() {
    command -v pg_ctlcluster >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

pg_version() {
    # The configured cluster's version; else the newest installed server's.
    local version
    version=$(ls /etc/postgresql 2>/dev/null | head -1 || true)
    if [ -z "$version" ]; then
        version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -1 || true)
    fi
    printf '%s' "$version"
}

wait_for() {  # wait_for COMMAND...: retry for up to WAIT_SECONDS
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 1
    done
}

# --- install -----------------------------------------------------------------------------------

if ! pg_server_installed || ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
    log "PostgreSQL server not found; installing"
    apt_install postgresql
    pg_server_installed || die "PostgreSQL still missing after apt-get install postgresql"
fi

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
    log "Redis not found; installing"
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after apt-get install"
fi

# The deployment tests start their own PgBouncer (transaction pooling) and put workers in network
# namespaces (ip netns): both come from Debian's packages. Only installed here, never started.
if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    log "PgBouncer not found; installing"
    apt_install pgbouncer
fi
if ! command -v ip >/dev/null 2>&1; then
    log "ip (iproute2) not found; installing"
    apt_install iproute2
fi

# --- PostgreSQL ----------------------------------------------------------------------------------

PG_VERSION=$(pg_version)
[ -n "$PG_VERSION" ] || die "cannot determine the installed PostgreSQL version"

if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    if [ ! -d "/etc/postgresql/$PG_VERSION/$PG_CLUSTER" ]; then
        log "creating PostgreSQL $PG_VERSION cluster '$PG_CLUSTER' on port $PG_PORT"
        as_root pg_createcluster --port "$PG_PORT" "$PG_VERSION" "$PG_CLUSTER" >/dev/null
    fi
    log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER"
    as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start ||
        log "pg_ctlcluster start returned non-zero (it may already be starting); waiting"
fi

if ! wait_for pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
    die "PostgreSQL is not answering on $PG_HOST:$PG_PORT after ${WAIT_SECONDS}s (see /var/log/postgresql/)"
fi
log "PostgreSQL is up on $PG_HOST:$PG_PORT"

# A fresh Debian cluster asks for passwords over TCP: trust local connections instead.
if ! pg_psql -d postgres -tAc 'SELECT 1' >/dev/null 2>&1; then
    hba="/etc/postgresql/$PG_VERSION/$PG_CLUSTER/pg_hba.conf"
    [ -f "$hba" ] || die "cannot connect as postgres without a password, and $hba does not exist"
    log "password-less connection refused; trusting local connections in $hba"
    marker="# celery-orchestrator: trust local connections for development and tests"
    if ! as_root grep -qF "$marker" "$hba"; then
        tmp=$(mktemp)
        {
            printf '%s\n' "$marker"
            printf 'local   all   all                  trust\n'
            printf 'host    all   all   127.0.0.1/32   trust\n'
            printf 'host    all   all   ::1/128        trust\n'
            as_root cat "$hba"
        } >"$tmp"
        # Rewrite in place (cat >) so the file keeps its owner and mode.
        as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"
        rm -f "$tmp"
    fi
    as_root pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" reload
    pg_ping() { pg_psql -d postgres -tAc 'SELECT 1'; }
    wait_for pg_ping || die "still cannot run 'psql -h $PG_HOST -U postgres' without a password"
fi

for db in "${DATABASES[@]}"; do
    if [ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'")" = "1" ]; then
        log "database $db exists"
    elif pg_psql -d postgres -q -c "CREATE DATABASE \"$db\"" >/dev/null 2>&1 ||
        [ "$(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'")" = "1" ]; then
        log "database $db created"
    else
        die "could not create database $db"
    fi
done

# --- Redis ---------------------------------------------------------------------------------------

redis_up() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }

if ! redis_up; then
    log "starting Redis on $REDIS_HOST:$REDIS_PORT"
    redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
        >/dev/null || log "redis-server returned non-zero; waiting"
fi

if ! wait_for redis_up; then
    die "Redis is not answering on $REDIS_HOST:$REDIS_PORT after ${WAIT_SECONDS}s"
fi
log "Redis is up on $REDIS_HOST:$REDIS_PORT"
log "ready"

#!/usr/bin/env bash
# Makes sure the services Sluice needs answer on 127.0.0.1:
#   RabbitMQ (5672), Redis (6379), PostgreSQL (5432)
# and that PostgreSQL has a database named `sluice`.
#
# For each service: if it answers, say so; else if it is installed, start
# it; else, as root, install it with apt-get and start it; else print what
# to install and fail. Prints one line per service saying what it did.
set -euo pipefail

PG_DB="${SLUICE_PG_DB:-sluice}"
PG_USER="${SLUICE_PG_USER:-postgres}"

log() { printf '%s\n' "services: $*"; }
die() { printf '%s\n' "services: error: $*" >&2; exit 1; }

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    local port="$1"
    # The subshell owns fd 3, so it is closed when the subshell exits.
    (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null
}

# Waits up to $2 seconds for port $1 to answer.
wait_port() {
    local port="$1" timeout="$2" waited=0
    until port_open "$port"; do
        if (( waited >= timeout )); then
            return 1
        fi
        sleep 1
        waited=$(( waited + 1 ))
    done
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

have() { command -v "$1" >/dev/null 2>&1; }

APT_UPDATED=0
apt_install() {
    if (( APT_UPDATED == 0 )); then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL -------------------------------------------------------------

pg_installed() { have pg_ctlcluster && [[ -d /etc/postgresql ]] && [[ -n "$(ls -A /etc/postgresql 2>/dev/null)" ]]; }

pg_start() {
    local version
    # The newest installed cluster version.
    version="$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)"
    [[ -n "$version" ]] || die "no PostgreSQL cluster under /etc/postgresql"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    wait_port 5432 30 || die "PostgreSQL ${version} started but does not answer on 5432"
}

ensure_postgres() {
    if port_open 5432; then
        log "postgresql: already answering on 127.0.0.1:5432"
    elif pg_installed; then
        pg_start
        log "postgresql: was installed but stopped; started it"
    elif is_root; then
        apt_install postgresql
        pg_start
        log "postgresql: was missing; installed with apt-get and started it"
    else
        MISSING+=("postgresql")
        log "postgresql: not installed and not root; cannot install it"
    fi
}

ensure_database() {
    if ! port_open 5432; then
        return 0
    fi
    have psql || die "psql not found (install postgresql-client)"
    local exists
    exists="$(psql -h 127.0.0.1 -U "$PG_USER" -d postgres -Atc \
        "select 1 from pg_database where datname='${PG_DB}'")" \
        || die "cannot query PostgreSQL as ${PG_USER} on 127.0.0.1 (is trust/password auth set up?)"
    if [[ "$exists" == "1" ]]; then
        log "postgresql: database '${PG_DB}' exists"
    else
        createdb -h 127.0.0.1 -U "$PG_USER" "$PG_DB"
        log "postgresql: created database '${PG_DB}'"
    fi
}

# --- Redis ------------------------------------------------------------------

redis_start() {
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
        --save "" --appendonly no --dir /var/lib/redis \
        --logfile /var/log/redis/ci.log
    wait_port 6379 15 || die "redis-server started but does not answer on 6379 (see /var/log/redis/ci.log)"
}

ensure_redis() {
    if port_open 6379; then
        log "redis: already answering on 127.0.0.1:6379"
    elif have redis-server; then
        redis_start
        log "redis: was installed but stopped; started it"
    elif is_root; then
        apt_install redis-server
        # The package may have started its own instance.
        if ! port_open 6379; then
            redis_start
        fi
        log "redis: was missing; installed with apt-get and started it"
    else
        MISSING+=("redis-server")
        log "redis: not installed and not root; cannot install it"
    fi
}

# --- RabbitMQ ---------------------------------------------------------------

rabbitmq_start() {
    rabbitmq-server -detached
    if have rabbitmqctl; then
        # Best effort: the port poll below is what decides.
        timeout 60 rabbitmqctl await_startup >/dev/null 2>&1 || true
    fi
    wait_port 5672 60 || die "rabbitmq-server started but does not answer on 5672 within 60s"
}

ensure_rabbitmq() {
    if port_open 5672; then
        log "rabbitmq: already answering on 127.0.0.1:5672"
    elif have rabbitmq-server; then
        rabbitmq_start
        log "rabbitmq: was installed but stopped; started it"
    elif is_root; then
        apt_install rabbitmq-server
        if ! port_open 5672; then
            rabbitmq_start
        fi
        log "rabbitmq: was missing; installed with apt-get and started it"
    else
        MISSING+=("rabbitmq-server")
        log "rabbitmq: not installed and not root; cannot install it"
    fi
}

# ---------------------------------------------------------------------------

MISSING=()

ensure_rabbitmq
ensure_redis
ensure_postgres

if (( ${#MISSING[@]} > 0 )); then
    die "missing services; as root run: apt-get update && apt-get install -y ${MISSING[*]}"
fi

ensure_database

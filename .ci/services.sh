#!/usr/bin/env bash
# Local PostgreSQL and Redis for the test suite: loopback only, data in a temp directory.
#
#   .ci/services.sh install   install the Debian packages when missing (apt-get; needs root)
#   .ci/services.sh start     start both (idempotent); PostgreSQL gets a role that may create
#                             databases (the tests make one per app instance)
#   .ci/services.sh env       print the export lines for the tests:  eval "$(.ci/services.sh env)"
#   .ci/services.sh status    say what runs
#   .ci/services.sh stop      stop both and delete their data
#
# PostgreSQL runs from its own cluster directory (initdb/pg_ctl as the postgres user when
# run as root), never touching the system clusters. Ports and the directory can be changed
# with SKYPHOT_PG_PORT, SKYPHOT_REDIS_PORT and SKYPHOT_SERVICES_DIR.
set -euo pipefail

DIR="${SKYPHOT_SERVICES_DIR:-${TMPDIR:-/tmp}/skyphot-services}"
PG_PORT="${SKYPHOT_PG_PORT:-55432}"
REDIS_PORT="${SKYPHOT_REDIS_PORT:-56379}"
PG_ROLE=skyphot
PG_PASSWORD=skyphot
PACKAGES=(redis-server postgresql)

say() { echo "services: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

pg_bin() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -n "$dir" ] && [ -x "$dir/$1" ]; then
        echo "$dir/$1"
    elif command -v "$1" >/dev/null; then
        command -v "$1"
    else
        say "PostgreSQL's $1 is not installed (run: $0 install)"
        exit 1
    fi
}

# PostgreSQL refuses to run as root: run its tools as the postgres user then.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

install() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! is_root; then
        say "missing Debian packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]})"
        exit 1
    fi
    say "installing ${missing[*]}"
    # The packages would start system-wide servers (PostgreSQL 'main' cluster, Redis on
    # 6379); we only want the binaries, so forbid service starts during the install.
    local policy=/usr/sbin/policy-rc.d created=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created=1
    fi
    local status=0
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null || status=$?
    if [ -n "$created" ]; then rm -f "$policy"; fi
    return "$status"
}

pg_running() {
    [ -f "$DIR/pg/data/postmaster.pid" ] && as_pg "$(pg_bin pg_ctl)" -D "$DIR/pg/data" status >/dev/null 2>&1
}

start_postgres() {
    if pg_running; then return 0; fi
    mkdir -p "$DIR/pg"
    if is_root; then chown postgres: "$DIR/pg"; fi
    chmod 700 "$DIR/pg"
    if [ ! -f "$DIR/pg/data/PG_VERSION" ]; then
        as_pg "$(pg_bin initdb)" -D "$DIR/pg/data" -U postgres -E UTF8 --auth-local=trust \
            --auth-host=scram-sha-256 >"$DIR/pg/initdb.log" 2>&1 \
            || { cat "$DIR/pg/initdb.log" >&2; exit 1; }
    fi
    # A throw-away test server: durability settings off for speed, loopback only.
    as_pg "$(pg_bin pg_ctl)" -D "$DIR/pg/data" -l "$DIR/pg/server.log" -w -t 60 -o \
        "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR/pg -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >/dev/null || { cat "$DIR/pg/server.log" >&2; exit 1; }
    as_pg "$(pg_bin psql)" -h "$DIR/pg" -p "$PG_PORT" -U postgres -d postgres -q \
        -v ON_ERROR_STOP=1 -c "
        DO \$\$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
            CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
          END IF;
        END \$\$;" >/dev/null
    say "PostgreSQL on 127.0.0.1:$PG_PORT (data in $DIR/pg)"
}

redis_running() {
    [ -f "$DIR/redis/redis.pid" ] && kill -0 "$(cat "$DIR/redis/redis.pid")" 2>/dev/null
}

start_redis() {
    if redis_running; then return 0; fi
    command -v redis-server >/dev/null || { say "redis-server is not installed (run: $0 install)"; exit 1; }
    mkdir -p "$DIR/redis"
    # Append-only file: queued messages survive a restart of the server.
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --protected-mode yes \
        --dir "$DIR/redis" --appendonly yes --save "" --daemonize yes \
        --pidfile "$DIR/redis/redis.pid" --logfile "$DIR/redis/redis.log"
    local i
    for i in $(seq 1 100); do
        if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
            say "Redis on 127.0.0.1:$REDIS_PORT (data in $DIR/redis)"
            return 0
        fi
        sleep 0.1
    done
    cat "$DIR/redis/redis.log" >&2
    say "Redis did not start"
    exit 1
}

stop() {
    if pg_running; then
        as_pg "$(pg_bin pg_ctl)" -D "$DIR/pg/data" -m fast -w -t 30 stop >/dev/null \
            || say "PostgreSQL did not stop cleanly"
    fi
    if redis_running; then
        local pid
        pid=$(cat "$DIR/redis/redis.pid")
        redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || kill "$pid" || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -rf "$DIR"
    say "stopped"
}

env_lines() {
    echo "export SKYPHOT_TEST_POSTGRES_URL=postgresql+psycopg://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
    echo "export SKYPHOT_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0"
}

status() {
    if pg_running; then echo "postgresql: running on 127.0.0.1:$PG_PORT"; else echo "postgresql: stopped"; fi
    if redis_running; then echo "redis: running on 127.0.0.1:$REDIS_PORT"; else echo "redis: stopped"; fi
}

case "${1:-}" in
    install) install ;;
    start) mkdir -p "$DIR"; chmod 755 "$DIR"; start_postgres; start_redis ;;
    stop) stop ;;
    env) env_lines ;;
    status) status ;;
    *) echo "usage: $0 install|start|stop|env|status" >&2; exit 2 ;;
esac

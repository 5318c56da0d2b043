#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the database tests and print only its
# SQLAlchemy URL on stdout. Installs Debian's postgresql package when no server binaries exist.
# Exits non-zero when no server could be started (the PostgreSQL tests are then skipped).
# With INSPECTION_PG_STATE=FILE the server's data folder is written there, for
#   bash scripts/ci_postgres.sh stop DATA    (stops that server and removes its folder)
# which .ci/run calls when the tests end, so repeated runs on one machine leave no server behind.
set -euo pipefail

log() { echo "ci_postgres: $*" >&2; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

# initdb refuses to run as root: use the postgres account when we are root.
if [ "$(id -u)" = 0 ]; then
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

if [ "${1:-}" = stop ]; then
  DATA=${2:?usage: ci_postgres.sh stop DATA}
  case "$DATA" in /tmp/inspection-pg.*) ;; *) log "not a folder this script made: $DATA"; exit 1 ;; esac
  BIN=$(bindir || true)
  if [ -n "$BIN" ] && [ -f "$DATA/postmaster.pid" ]; then
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
  fi
  rm -rf "$DATA" "$DATA.initdb.log"
  exit 0
fi

BIN=$(bindir || true)
if [ -z "$BIN" ]; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq postgresql; } >&2 || { log "installation failed"; exit 1; }
  BIN=$(bindir || true)
  [ -n "$BIN" ] || { log "no PostgreSQL binaries after installation"; exit 1; }
fi

if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --no-create-home postgres >&2
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${INSPECTION_PG_PORT:-54329}
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done

DATA=$(mktemp -d /tmp/inspection-pg.XXXXXX)
[ -n "${INSPECTION_PG_STATE:-}" ] && echo "$DATA" >"$INSPECTION_PG_STATE"
[ "$(id -u)" = 0 ] && chown postgres "$DATA"
as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --no-sync >"$DATA.initdb.log" 2>&1 \
  || { log "initdb failed (see $DATA.initdb.log)"; exit 1; }
as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c fsync=off" start >&2 \
  || { log "the server did not start (see $DATA/server.log)"; exit 1; }
as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres inspection_test >&2 \
  || { log "createdb failed"; exit 1; }
log "server running on 127.0.0.1:$PORT, data in $DATA (stop: pg_ctl -D $DATA stop)"
echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/inspection_test"

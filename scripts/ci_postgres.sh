#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the database tests and print only its
# SQLAlchemy URL on stdout. Installs Debian's postgresql package when no server binaries exist.
# Exits non-zero when no server could be started (the PostgreSQL tests are then skipped).
set -euo pipefail

log() { echo "ci_postgres: $*" >&2; }
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BIN=$(bindir || true)
if [ -z "$BIN" ]; then
  log "installing PostgreSQL from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq postgresql; } >&2 || { log "installation failed"; exit 1; }
  BIN=$(bindir || true)
  [ -n "$BIN" ] || { log "no PostgreSQL binaries after installation"; exit 1; }
fi

# initdb refuses to run as root: use the postgres account when we are root.
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres >&2
  as_pg() { runuser -u postgres -- "$@"; }
else
  as_pg() { "$@"; }
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PORT=${INSPECTION_PG_PORT:-54329}
while ! port_free "$PORT"; do PORT=$((PORT + 1)); done

DATA=$(mktemp -d /tmp/inspection-pg.XXXXXX)
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

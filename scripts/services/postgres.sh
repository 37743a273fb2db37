#!/usr/bin/env bash
# A throwaway PostgreSQL server for the scaled-out test run.
#
#   scripts/services/postgres.sh start   # prints WHARF_TEST_PG_URL=… and writes it to $STATE/postgres.env
#   scripts/services/postgres.sh stop    # stops the server and removes its data
#   scripts/services/postgres.sh pause   # stops the server, keeping its data and port
#   scripts/services/postgres.sh resume  # starts it again on the same data and port
#
# pause/resume are for tests of Wharf while its database is away (dependency-outage.test.ts);
# they only ever touch the cluster of this state directory.
#
# The cluster lives in a mktemp directory (fsync off: it holds nothing worth keeping), listens
# only on 127.0.0.1 at a free port, and trusts every local connection. A wrapper can
# `source "$STATE/postgres.env"` (STATE defaults to .tmp/services in the checkout).
set -euo pipefail
cd "$(dirname "$0")/../.."
state=${WHARF_SERVICES_STATE:-$PWD/.tmp/services}
envfile=$state/postgres.env
pidinfo=$state/postgres.dir

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  # Outside Debian's layout (e.g. Homebrew), initdb is on PATH.
  if command -v initdb >/dev/null; then dirname "$(command -v initdb)"; fi
}

# initdb refuses to run as root, so as root the cluster belongs to the `postgres` user.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

start() {
  if [ -f "$pidinfo" ]; then
    echo "postgres.sh: already started (see $envfile); stop it first" >&2
    exit 1
  fi
  local bin
  bin=$(pg_bin)
  if [ -z "$bin" ]; then
    echo "postgres.sh: installing PostgreSQL" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
    bin=$(pg_bin)
  fi
  local dir port
  dir=$(mktemp -d "${TMPDIR:-/tmp}/wharf-pg-XXXXXX")
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
  port=$(free_port)
  run_server "$bin" "$dir" "$port"
  mkdir -p "$state"
  printf '%s\n%s\n' "$bin" "$dir" >"$pidinfo"
  echo "WHARF_TEST_PG_URL=postgres://postgres@127.0.0.1:$port/postgres" | tee "$envfile"
}

run_server() {
  local bin=$1 dir=$2 port=$3
  # Durability settings off: a test cluster is thrown away, and fsyncs would dominate its time.
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c max_connections=300 \
     -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }
}

started_cluster() {
  if [ ! -f "$pidinfo" ]; then
    echo "postgres.sh: not started (no $pidinfo)" >&2
    exit 1
  fi
  { read -r bin; read -r dir; } <"$pidinfo"
}

# Fast shutdown: sessions are ended (clients see their connections terminated), data is kept.
pause() {
  local bin dir
  started_cluster
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
}

resume() {
  local bin dir port
  started_cluster
  port=$(sed -n 's/^WHARF_TEST_PG_URL=postgres:\/\/[^:]*:\([0-9]*\)\/.*/\1/p' "$envfile")
  run_server "$bin" "$dir" "$port"
}

stop() {
  [ -f "$pidinfo" ] || return 0
  local bin dir
  { read -r bin; read -r dir; } <"$pidinfo"
  if [ -d "$dir/data" ]; then as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true; fi
  rm -rf "$dir" "$pidinfo" "$envfile"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  pause) pause ;;
  resume) resume ;;
  *)
    echo "usage: $0 start|stop|pause|resume" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# A throwaway S3 server for the scaled-out test run: a one-node Ceph cluster (objects in
# RAM) and its RADOS Gateway, the only S3 server installable from Debian that enforces
# SigV4, expiry, Content-MD5 and presigned-POST policies as AWS S3 does.
#
#   scripts/services/ceph.sh start   # prints WHARF_TEST_S3_*=… (and WHARF_TEST_CEPH_CONF, the
#                                    # cluster's ceph.conf for radosgw-admin) to $STATE/ceph.env
#   scripts/services/ceph.sh stop    # stops the daemons and removes the cluster
#   scripts/services/ceph.sh pause   # stops the gateway (S3) only; the cluster keeps its objects
#   scripts/services/ceph.sh resume  # starts the gateway again on the same port
#
# pause/resume are for tests of Wharf while its object store is away (dependency-outage.test.ts):
# restarting the gateway takes seconds where the whole cluster takes many.
#
# Everything lives in a mktemp directory; the monitor and the gateway listen on free ports of
# 127.0.0.1 only. A wrapper can `source "$STATE/ceph.env"` (STATE defaults to .tmp/services
# in the checkout). Objects are kept in memory (memstore, 2 GiB): tests keep theirs small.
set -euo pipefail
cd "$(dirname "$0")/../.."
state=${WHARF_SERVICES_STATE:-$PWD/.tmp/services}
envfile=$state/ceph.env
dirinfo=$state/ceph.dir

log() { echo "ceph.sh: $*" >&2; }

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Polls `check` every 0.2 s for up to $1 seconds.
wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out waiting for $what; logs in $dir/log"
      tail -n 20 "$dir"/log/*.log >&2 || true
      exit 1
    fi
    sleep 0.2
  done
}

install_if_missing() {
  local missing=()
  command -v ceph-mon >/dev/null || missing+=(ceph-mon)
  command -v ceph-osd >/dev/null || missing+=(ceph-osd)
  command -v radosgw >/dev/null || missing+=(radosgw)
  command -v uuidgen >/dev/null || missing+=(uuid-runtime)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

rgw_answers() { curl -s -o /dev/null "$endpoint/"; }

start() {
  if [ -f "$dirinfo" ]; then
    dir=$(cat "$dirinfo")
    endpoint=$(sed -n 's/^WHARF_TEST_S3_ENDPOINT=//p' "$envfile" 2>/dev/null || true)
    if [ -n "$endpoint" ] && rgw_answers; then
      log "already running"
      cat "$envfile"
      return 0
    fi
    log "removing a cluster that is no longer running"
    stop
  fi
  install_if_missing

  dir=$(mktemp -d "${TMPDIR:-/tmp}/wharf-ceph-XXXXXX")
  mkdir -p "$state" "$dir"/{run,log,mon,osd}
  echo "$dir" >"$dirinfo"
  local mon_port rgw_port fsid conf
  mon_port=$(free_port)
  rgw_port=$(free_port)
  fsid=$(uuidgen)
  conf=$dir/ceph.conf
  endpoint=http://127.0.0.1:$rgw_port

  # Auth is off (a throwaway cluster on loopback); `ms mon client mode = crc` keeps clients
  # from hanging on auth error -13 when it is. Size 1 pools, no autoscaler, no manager.
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon initial members = a
mon host = [v2:127.0.0.1:$mon_port]
ms bind msgr1 = false
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc
keyring = /dev/null
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
mon data = $dir/mon/\$id
osd data = $dir/osd/\$id
rgw data = $dir/rgw

[mon.a]
public addrv = [v2:127.0.0.1:$mon_port]

[osd.0]
osd objectstore = memstore
memstore device bytes = 2147483648
osd class dir = /usr/lib/x86_64-linux-gnu/rados-classes
osd class load list = *
osd class default list = *

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw dns name = 127.0.0.1
# Deleted objects' data is freed by RGW's garbage collector, by default two hours after the
# delete: long enough for a few benchmark runs to fill the 2 GiB store with what was already
# deleted (HEALTH_ERR, 1 full osd; every write then hangs). Half a minute here.
rgw gc obj min wait = 30
rgw gc processor period = 30
EOF

  local started=$SECONDS
  ceph-mon -c "$conf" --id a --mkfs --keyring /dev/null >>"$dir/log/setup.log" 2>&1
  ceph-mon -c "$conf" --id a 2>>"$dir/log/setup.log"
  wait_for 60 "the monitor" timeout 10 ceph -c "$conf" -s

  local osd
  osd=$(ceph -c "$conf" osd create)
  ceph -c "$conf" osd crush add "osd.$osd" 1 root=default host=localhost >>"$dir/log/setup.log" 2>&1
  mkdir -p "$dir/osd/$osd"
  ceph-osd -c "$conf" --id "$osd" --mkfs >>"$dir/log/setup.log" 2>&1
  ceph-osd -c "$conf" --id "$osd" 2>>"$dir/log/setup.log"
  wait_for 60 "the OSD" bash -c "ceph -c '$conf' osd stat | grep -q '1 up'"

  radosgw -c "$conf" -n client.rgw.a 2>>"$dir/log/setup.log"
  wait_for 90 "the gateway" rgw_answers

  local access secret
  access=wharf$(openssl rand -hex 8)
  secret=$(openssl rand -hex 20)
  radosgw-admin -c "$conf" -n client.rgw.a user create --uid=wharf-test --display-name="Wharf tests" \
    --access-key="$access" --secret-key="$secret" >>"$dir/log/setup.log" 2>&1
  # A write-only subuser: the credentials Wharf signs upload URLs with in the tests
  # (WHARF_S3_UPLOAD_*), as docs/security.md tells operators to. Its objects belong to the user.
  local upload_access upload_secret
  upload_access=wharfup$(openssl rand -hex 8)
  upload_secret=$(openssl rand -hex 20)
  radosgw-admin -c "$conf" -n client.rgw.a subuser create --uid=wharf-test --subuser=wharf-test:upload \
    --access=write --key-type=s3 --access-key="$upload_access" --secret-key="$upload_secret" \
    >>"$dir/log/setup.log" 2>&1

  cat >"$envfile" <<EOF
WHARF_TEST_S3_ENDPOINT=$endpoint
WHARF_TEST_S3_ACCESS_KEY_ID=$access
WHARF_TEST_S3_SECRET_ACCESS_KEY=$secret
WHARF_TEST_S3_REGION=us-east-1
WHARF_TEST_S3_UPLOAD_ACCESS_KEY_ID=$upload_access
WHARF_TEST_S3_UPLOAD_SECRET_ACCESS_KEY=$upload_secret
WHARF_TEST_CEPH_CONF=$conf
EOF
  log "up in $((SECONDS - started)) s (cluster in $dir)"
  cat "$envfile"
}

started_cluster() {
  if [ ! -f "$dirinfo" ]; then
    log "not started (no $dirinfo)"
    exit 1
  fi
  dir=$(cat "$dirinfo")
  endpoint=$(sed -n 's/^WHARF_TEST_S3_ENDPOINT=//p' "$envfile")
}

pause() {
  started_cluster
  local pidfile=$dir/run/client.rgw.a.pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + 10))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    sleep 0.1
  done
  rm -f "$pidfile"
}

resume() {
  started_cluster
  radosgw -c "$dir/ceph.conf" -n client.rgw.a 2>>"$dir/log/setup.log"
  wait_for 90 "the gateway" rgw_answers
}

stop() {
  [ -f "$dirinfo" ] || return 0
  dir=$(cat "$dirinfo")
  # The gateway first, the OSD, then the monitor: each by the pid file it wrote.
  local pidfile pid pids=()
  for pidfile in "$dir"/run/client.rgw.a.pid "$dir"/run/osd.*.pid "$dir"/run/mon.a.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then pids+=("$pid"); fi
  done
  # Daemons that ignore TERM for 10 s are killed.
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then kill -KILL "$pid" 2>/dev/null || true; break; fi
      sleep 0.1
    done
  done
  case "$dir" in */wharf-ceph-*) rm -rf "$dir" ;; esac
  rm -f "$dirinfo" "$envfile"
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

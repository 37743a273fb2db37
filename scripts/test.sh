#!/usr/bin/env bash
# The whole test suite: static checks once, then the unit and integration tests (real HTTP)
# twice: on the embedded deployment (SQLite, local directory), then on the scaled-out one
# (PostgreSQL, and an S3-compatible store when scripts/services/ceph.sh exists), each started
# here as a throwaway service and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Node that runs Wharf: the one `npm ci` installs (node_modules/.bin/node, Node 26), which
# npm scripts find first on PATH; put first here too, for a direct `bash scripts/test.sh`.
export PATH="$PWD/node_modules/.bin:$PATH"
echo "== node $(node --version) ($(command -v node))"

# The README walkthrough test (test/integration/readme.test.ts) runs its snippets, which use
# jq, curl and openssl; the browser tests drive Debian's Chromium with playwright-core (npm
# never downloads a browser here); the preview tests (test/integration/previews.test.ts) run
# ffmpeg and poppler's pdfinfo/pdftoppm, as a deployment that wants video and PDF previews does;
# the reverse proxy test (test/integration/reverse-proxy.test.ts) runs nginx in front of Wharf.
need=()
for tool in jq curl openssl; do command -v "$tool" >/dev/null || need+=("$tool"); done
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need+=(ffmpeg)
command -v pdftoppm >/dev/null && command -v pdfinfo >/dev/null || need+=(poppler-utils)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
  # Debian's nginx package starts its service on port 80 when installed, and enables it at
  # boot; the test runs an nginx of its own. A policy-rc.d that answers 101 ("not allowed")
  # keeps the package scripts from starting any service (Docker images of Debian ship one);
  # one is put in place for this install only when the machine has none.
  policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\n# scripts/test.sh: no service starts while it installs packages\nexit 101\n' >"$policy"
    chmod 755 "$policy"
  fi
  installed=0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" ||
    installed=$?
  if [ -n "$policy" ]; then rm -f "$policy"; fi
  if [ "$installed" != 0 ]; then exit "$installed"; fi
  if [[ " ${need[*]} " == *" nginx "* ]]; then
    # Not started at boot either (systemd, or Debian's init scripts).
    if command -v deb-systemd-helper >/dev/null; then deb-systemd-helper disable nginx.service || true; fi
    update-rc.d nginx disable >/dev/null 2>&1 || true
  fi
fi

echo "== lint and format (biome)"
npx --no-install biome check .
echo "== typecheck (tsc, strict)"
npx --no-install tsc -p tsconfig.json --noEmit

# Services get a state directory of their own, so this run never stops one a developer started.
export WHARF_SERVICES_STATE
WHARF_SERVICES_STATE=$(mktemp -d "${TMPDIR:-/tmp}/wharf-services-XXXXXX")
services=()
taps=()
cleanup() {
  for service in "${services[@]}"; do "scripts/services/$service.sh" stop || true; done
  rm -rf "$WHARF_SERVICES_STATE" "${taps[@]}"
}
trap cleanup EXIT

total_passed=0
# The runs that had failures (NAME:TAP), reported again at the end.
failing=()
total_failed=0
status=0
summary=()

# run_suite NAME [VAR=value…]: the node:test suite with those variables set.
run_suite() {
  local name=$1
  shift
  local tap
  tap=$(mktemp)
  taps+=("$tap")
  echo "== unit and integration tests on the $name deployment (node:test)"
  env "$@" node --import tsx --test --test-concurrency=2 \
    --test-reporter=spec --test-reporter-destination=stdout \
    --test-reporter=tap --test-reporter-destination="$tap" \
    test/unit/*.test.ts test/integration/*.test.ts || status=1
  local passed failed cancelled skipped
  passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" | tail -1)
  failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" | tail -1)
  cancelled=$(sed -n 's/^# cancelled \([0-9]*\)$/\1/p' "$tap" | tail -1)
  skipped=$(sed -n 's/^# skipped \([0-9]*\)$/\1/p' "$tap" | tail -1)
  passed=${passed:-0}
  # A test cancelled because its suite's before() hook failed did not pass: it counts as failed
  # (node:test reports it apart, and the summary once said "0 failed" of a failing run).
  failed=$((${failed:-0} + ${cancelled:-0}))
  skipped=${skipped:-0}
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  # Skipped tests are not passed ones: each states why it does not apply to this deployment.
  summary+=("$name: $passed passed, $failed failed ($skipped skipped, not counted as passed)")
  if [ "$failed" -gt 0 ]; then failing+=("$name:$tap"); fi
  echo "$name: $passed passed, $failed failed ($skipped skipped)"
}

# start_service NAME: starts it and exports the WHARF_TEST_* lines it prints.
start_service() {
  local out line
  echo "== starting $1"
  out=$("scripts/services/$1.sh" start) || return 1
  services+=("$1")
  while IFS= read -r line; do
    if [[ $line =~ ^WHARF_TEST_[A-Z0-9_]+= ]]; then export "${line?}"; fi
  done <<<"$out"
}

run_suite embedded WHARF_TEST_DEPLOYMENT=embedded

scaled=(postgres)
if [ -x scripts/services/ceph.sh ]; then scaled+=(ceph); fi
started=1
for service in "${scaled[@]}"; do
  if ! start_service "$service"; then
    echo "could not start $service: the scaled-out run fails" >&2
    started=0
    break
  fi
done
if [ "$started" = 1 ]; then
  run_suite scaled WHARF_TEST_DEPLOYMENT=scaled
else
  status=1
  total_failed=$((total_failed + 1))
  summary+=("scaled: not run, a service (${scaled[*]}) did not start")
fi

# Each failing test once more, at the end where a CI log's tail shows it: the spec reporter
# prints failures at the end of each run, which for the embedded run is mid-log.
for entry in "${failing[@]}"; do
  echo "== failing tests on the ${entry%%:*} deployment"
  awk -f scripts/tap-failures.awk "${entry#*:}" | head -n 200 || true
done
echo "== summary"
printf '%s\n' "${summary[@]}"
# One plain closing line, whatever reads this output.
echo "$total_passed passed, $total_failed failed"
exit "$status"

#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, then integration tests over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."

# The README walkthrough test (test/integration/readme.test.ts) runs its snippets, which use
# jq, curl and openssl.
need=()
for tool in jq curl openssl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq "${need[@]}"; fi

echo "== lint and format (biome)"
npx --no-install biome check .
echo "== typecheck (tsc, strict)"
npx --no-install tsc -p tsconfig.json --noEmit

echo "== unit and integration tests (node:test)"
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
status=0
node --import tsx --test --test-concurrency=2 \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$tap" \
  test/unit/*.test.ts test/integration/*.test.ts || status=$?
# One plain closing line, whatever reads this output.
passed=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" | tail -1)
failed=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" | tail -1)
echo "${passed:-0} passed, ${failed:-0} failed"
exit "$status"

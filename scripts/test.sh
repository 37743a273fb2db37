#!/usr/bin/env bash
# The whole test suite: static checks, unit tests, then integration tests over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."

# The README walkthrough test (test/integration/readme.test.ts) runs its snippets, which use jq.
command -v jq >/dev/null || (apt-get update -qq && apt-get install -y -qq jq)

echo "== lint and format (biome)"
npx --no-install biome check .
echo "== typecheck (tsc, strict)"
npx --no-install tsc -p tsconfig.json --noEmit
echo "== unit and integration tests (node:test)"
node --import tsx --test --test-reporter=spec --test-concurrency=2 test/unit/*.test.ts test/integration/*.test.ts

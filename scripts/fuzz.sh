#!/usr/bin/env bash
# Runs every fuzz target for a short while (FUZZTIME, default 10s each).
# CI runs it briefly; run it longer by hand: FUZZTIME=5m scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
t="${FUZZTIME:-10s}"
run() { echo "== $2 ($1) for $t"; go test -run '^$' -fuzz "^$2\$" -fuzztime "$t" "$1"; }
run ./internal/agent/claude FuzzStreamLine
run ./internal/agent/claude FuzzReadLine
run ./internal/api FuzzPostMessage
run ./internal/config FuzzParse
run ./internal/logging FuzzSafeName

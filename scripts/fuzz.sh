#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions (FUZZN, default
# 20000 each). Counts, not durations: a duration-based -fuzztime hits a race
# in Go's fuzz coordinator (go.dev/issue/75804, fixed in Go 1.27) that fails
# a healthy target with "context deadline exceeded" on a loaded machine.
# Longer by hand: FUZZN=2000000 scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n="${FUZZN:-20000}"
run() { echo "== $2 ($1): ${n} executions"; go test -run '^$' -fuzz "^$2\$" -fuzztime "${n}x" -timeout 10m "$1"; }
run ./internal/agent/claude FuzzStreamLine
run ./internal/agent/claude FuzzReadLine
run ./internal/api FuzzPostMessage
run ./internal/api FuzzPostSchedule
run ./internal/channel/slack FuzzRenderSplit
run ./internal/channel/telegram FuzzRenderSplit
run ./internal/channel FuzzInboxName
run ./internal/channel/telegram FuzzParseCallbackData
run ./internal/config FuzzParse
run ./internal/faketelegram FuzzParseHTML
run ./internal/logging FuzzSafeName
run ./internal/permission FuzzSummary

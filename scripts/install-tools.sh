#!/usr/bin/env bash
# Installs the tools the end-to-end tests need into ./tools (nothing global):
# the pinned Claude Code CLI from npm. Safe to run again: it does nothing when
# the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

CLAUDE_CODE_VERSION="${CLAUDE_CODE_VERSION:-2.1.332}"
prefix="tools/claude-code"
bin="$prefix/node_modules/.bin/claude"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null | awk '{print $1}')" = "$CLAUDE_CODE_VERSION" ]; then
  echo "claude-code $CLAUDE_CODE_VERSION already in $prefix"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-tools: npm is required to install @anthropic-ai/claude-code" >&2
  exit 1
fi
mkdir -p "$prefix"
npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error \
  "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION"
"$bin" --version

#!/usr/bin/env bash
# Installs the tools the end-to-end tests need: Chromium (Debian's package,
# when running as root) for the status page's browser tests, bubblewrap
# (likewise) for the agent sandbox, and, into
# ./tools (nothing global), the Claude Code CLI at the version pinned by
# scripts/claude-code/ (package.json and its committed package-lock.json, which holds the
# integrity hash of every package). Safe to run again: it does nothing when
# the pinned version is already there.
#
# npm ci installs exactly what the lockfile says and checks every hash; no
# package's install scripts run (--ignore-scripts). The CLI's own postinstall
# only copies the native binary of this platform over a placeholder; this
# script links that binary instead.
#
# To move the pin: edit the version in scripts/claude-code/package.json, run
#   (cd scripts/claude-code && npm install --package-lock-only --ignore-scripts)
# review the lockfile diff (versions and integrity hashes), run the tests, and
# commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium, for the browser tests of the status page (test/web): Debian's
# package, installed only when it is missing and we are root with apt-get
# (as on CI). Elsewhere install it yourself; the tests skip without it
# (and fail when CI=true).
install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || chromium-browser --version 2>/dev/null)"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: chromium is missing (the browser tests will skip); install it with: apt-get install chromium" >&2
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  chromium --version
}
install_chromium

# bubblewrap, for the agent sandbox (agent.sandbox.mode) and its tests
# (test/security): Debian's package, installed the same way as Chromium.
# Without it the sandbox tests skip (and fail when CI=true).
install_bubblewrap() {
  if command -v bwrap >/dev/null 2>&1; then
    echo "bubblewrap already installed: $(bwrap --version)"
    return 0
  fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: bubblewrap is missing (agents cannot be sandboxed; the sandbox tests will skip); install it with: apt-get install bubblewrap" >&2
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq bubblewrap >/dev/null
  bwrap --version
}
install_bubblewrap

pin_dir="scripts/claude-code"
version=$(sed -n 's/.*"@anthropic-ai\/claude-code": *"\([^"]*\)".*/\1/p' "$pin_dir/package.json" | head -n1)
if [ -z "$version" ]; then
  echo "install-tools: no @anthropic-ai/claude-code version in $pin_dir/package.json" >&2
  exit 1
fi
if [ -n "${CLAUDE_CODE_VERSION:-}" ] && [ "$CLAUDE_CODE_VERSION" != "$version" ]; then
  echo "install-tools: CLAUDE_CODE_VERSION=$CLAUDE_CODE_VERSION, but the pin is $version;" >&2
  echo "  the version comes from $pin_dir only (see the comment at the top of this script to move it)" >&2
  exit 1
fi

prefix="tools/claude-code"
bin="$prefix/node_modules/.bin/claude"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null | awk '{print $1}')" = "$version" ] &&
  cmp -s "$pin_dir/package-lock.json" "$prefix/package-lock.json"; then
  echo "claude-code $version already in $prefix"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "install-tools: npm is required to install @anthropic-ai/claude-code" >&2
  exit 1
fi

# The native package of this platform (what the CLI's postinstall picks).
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) platform=linux-x64 ;;
  Linux-aarch64 | Linux-arm64) platform=linux-arm64 ;;
  Darwin-x86_64) platform=darwin-x64 ;;
  Darwin-arm64) platform=darwin-arm64 ;;
  *) echo "install-tools: no Claude Code native package for $(uname -s) $(uname -m)" >&2; exit 1 ;;
esac
if [ "$(uname -s)" = Linux ] && ldd --version 2>&1 | grep -qi musl; then
  platform="$platform-musl"
fi

rm -rf "$prefix"
mkdir -p "$prefix"
cp "$pin_dir/package.json" "$pin_dir/package-lock.json" "$prefix/"
(cd "$prefix" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)

native="node_modules/@anthropic-ai/claude-code-$platform/claude"
if [ ! -x "$prefix/$native" ]; then
  echo "install-tools: $prefix/$native is missing after npm ci" >&2
  exit 1
fi
ln -sfn "../@anthropic-ai/claude-code-$platform/claude" "$bin"
got=$("$bin" --version | awk '{print $1}')
if [ "$got" != "$version" ]; then
  echo "install-tools: installed claude reports version $got, want $version" >&2
  exit 1
fi
"$bin" --version

#!/usr/bin/env bash
# Installs the official Segment SDKs the real-client tests drive, into tests/sdk/.cache
# (gitignored): segment-analytics-python from PyPI in a venv, @segment/analytics-node from npm.
# Idempotent and quick once installed; the Rust test `serve_sdk` calls it, so
# `cargo test --workspace` (and .ci/run) needs nothing else.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
mkdir -p "$cache"
# Several test processes may call this at once; one installs, the others wait.
exec 9>"$cache/setup.lock"
flock 9

PY_VERSION="2.4.0"
NODE_VERSION="3.1.0"

if [ ! -f "$cache/venv/.installed-$PY_VERSION" ]; then
    rm -rf "$cache/venv"
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install --quiet "segment-analytics-python==$PY_VERSION"
    touch "$cache/venv/.installed-$PY_VERSION"
fi

if [ ! -f "$cache/node/.installed-$NODE_VERSION" ]; then
    rm -rf "$cache/node"
    mkdir -p "$cache/node"
    echo '{"name": "cairn-sdk-tests", "private": true}' > "$cache/node/package.json"
    (cd "$cache/node" && npm install --silent --no-audit --no-fund "@segment/analytics-node@$NODE_VERSION" >/dev/null)
    touch "$cache/node/.installed-$NODE_VERSION"
fi
echo "python: $cache/venv/bin/python"
echo "node modules: $cache/node/node_modules"

#!/usr/bin/env bash
# Installs the real SMTP server the channel tests send email to: `aiosmtpd` from PyPI, in a
# venv under tests/channels/.cache (gitignored). Idempotent and quick once installed; the Rust
# tests of cairn-channels call it, so `cargo test --workspace` needs nothing else.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
mkdir -p "$cache"
# Several test processes may call this at once; one installs, the others wait.
exec 9>"$cache/setup.lock"
flock 9

AIOSMTPD_VERSION="1.4.6"

if [ ! -f "$cache/venv/.installed-$AIOSMTPD_VERSION" ]; then
    rm -rf "$cache/venv"
    python3 -m venv "$cache/venv"
    "$cache/venv/bin/pip" install --quiet "aiosmtpd==$AIOSMTPD_VERSION"
    touch "$cache/venv/.installed-$AIOSMTPD_VERSION"
fi
echo "python: $cache/venv/bin/python"

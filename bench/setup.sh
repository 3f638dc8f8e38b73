#!/usr/bin/env bash
# Creates bench/.venv with the anchor tools pinned in bench/requirements.txt.
# Idempotent: when the venv exists and was built from the same requirements.txt with the same
# Python, it only checks that it still imports and returns in well under a second.
# Needs only PyPI. Override the interpreter with PYTHON=/path/to/python3 (3.11 is what we pin for).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.cairn-bench-stamp"
python="${PYTHON:-python3}"

# cheap check that the anchors are there (importing pm4py itself takes ~1 s)
check='import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("duckdb", "pm4py", "pandas", "pyarrow")))'

die() { echo "bench/setup.sh: error: $*" >&2; exit 1; }

command -v "$python" >/dev/null 2>&1 || die "no '$python' on PATH (set PYTHON=/path/to/python3)"
[ -f "$req" ] || die "missing $req"

want="$(
    {
        sha256sum "$req" | cut -d' ' -f1
        "$python" -c 'import sys; print(sys.version.split()[0])'
    } | tr '\n' ' '
)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$venv/bin/python" -c "$check" >/dev/null 2>&1; then
    exit 0
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "bench/setup.sh: creating $venv" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" \
        || die "'$python -m venv' failed (on Debian: apt-get install python3-venv)"
fi

echo "bench/setup.sh: installing $req" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip \
    || die "could not upgrade pip in $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" \
    || die "pip install -r $req failed"
"$venv/bin/python" -c 'import sys; sys._pm4py_welcome_shown = True; import duckdb, pm4py, pandas, pyarrow' \
    || die "the anchors do not import after installing"
printf '%s' "$want" > "$stamp"
echo "bench/setup.sh: ready ($("$venv/bin/python" -c 'import sys; sys._pm4py_welcome_shown = True; import duckdb, pm4py; print("duckdb", duckdb.__version__, "pm4py", pm4py.__version__)' 2>/dev/null))" >&2

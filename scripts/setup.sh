#!/usr/bin/env bash
# Creates ./.venv and installs netfit into it (editable), with torch pinned by constraints.txt
# so pip takes the CPU build rather than a multi-GB CUDA one. Re-running is cheap.
# Usage: scripts/setup.sh [EXTRAS]   (e.g. all,test: every optional feature and the test tools)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
target="."
[ -n "$extras" ] && target=".[$extras]"
stamp=".venv/.netfit-installed${extras:+-${extras//,/-}}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# An install is current when it is newer than the project's requirements. Without extras, any
# current install will do (the test command's one includes netfit itself), so main.sh after
# test.sh reuses it instead of installing again.
current() { [ -f "$1" ] && [ "$1" -nt pyproject.toml ] && [ "$1" -nt constraints.txt ]; }
if [ -z "$extras" ]; then
    for existing in .venv/.netfit-installed*; do
        current "$existing" && exit 0
    done
fi
if ! current "$stamp"; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$target"
    touch "$stamp"
fi

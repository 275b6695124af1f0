#!/usr/bin/env bash
# Creates ./.venv and installs netfit into it (editable), with torch pinned by constraints.txt
# so pip takes the CPU build rather than a multi-GB CUDA one. Re-running is cheap.
# Usage: scripts/setup.sh [EXTRA]   (EXTRA = test installs the test dependencies too)
set -euo pipefail
cd "$(dirname "$0")/.."
extra="${1:-}"
target="."
[ -n "$extra" ] && target=".[$extra]"
stamp=".venv/.netfit-installed${extra:+-$extra}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Reinstall only when the project's requirements changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$target"
    touch "$stamp"
fi

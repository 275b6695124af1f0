#!/usr/bin/env bash
# Installs netfit with its test extras into ./.venv (if needed) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
exec .venv/bin/python -m pytest "$@"

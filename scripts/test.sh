#!/usr/bin/env bash
# Installs what the test suite needs into ./.venv (netfit with every extra and the test tools) and
# the Debian packages it reads data from, when it can, then runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/setup.sh all,test
exec .venv/bin/python -m pytest "$@"

#!/usr/bin/env bash
# Installs netfit into ./.venv (if needed) and runs the main job: the tutorials' MNIST network
# (784-512-256-10, ReLU, cross-entropy, Adam at 1e-3, batch 64, 10 epochs) on mnist-sample,
# then prints its test accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/netfit train configs/mnist-mlp.toml "$@"

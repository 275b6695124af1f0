#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one call: the engine tests in tests/gpu (graph against
# eager, capture fallback, bf16, device memory; torchrun on NCCL, whose 2-GPU check is skipped
# on a machine with fewer than 2 GPUs) and the benchmarks whose GPU figures are
# recorded in docs/benchmarks.md. Needs netfit importable (pip install -e . or PYTHONPATH=src)
# and Fashion-MNIST's IDX files (NETFIT_DATA_DIR or /usr/share/datasets/fashion-mnist).
# Usage: scripts/gpu-checks.sh [tests|bench|all] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
out="${2:-gpu-results}"
mkdir -p "$out"
py="${PYTHON:-python3}"
status=0
if [ "$what" = tests ] || [ "$what" = all ]; then
    "$py" -m pytest -q -rA tests/gpu -p no:cacheprovider 2>&1 | tee "$out/gpu-tests.log" || status=1
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    data_dir="${NETFIT_DATA_DIR:-/usr/share/datasets/fashion-mnist}"
    "$py" benchmarks/compare.py --device cuda --batch-size 64,512 --epochs 5 --target 0.885 --data-dir "$data_dir" \
        --json "$out/compare-cuda.json" 2>&1 | tee "$out/compare-cuda.log" || status=1
    "$py" benchmarks/gpu_time_to_target.py configs/fashion-mnist-fast.toml --target 0.89 --runs 3 \
        --json "$out/fast-cuda.json" 2>&1 | tee "$out/fast-cuda.log" || status=1
fi
exit "$status"

"""torchrun on CUDA (NCCL, one process per GPU): run them with `bash scripts/gpu-checks.sh`.

One GPU is enough for a job of one process (the NCCL set-up, cuda:LOCAL_RANK); the two-process
check is skipped on machines with fewer than two GPUs.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SPEC = """\
[data]
dataset = "digits"
[model]
hidden = [64, 32]
[train]
epochs = 4
batch_size = 63
device = "cuda"
precision = "fp32"
engine = "{engine}"
"""


def _train(tmp_path: Path, processes: int | None, engine: str = "auto") -> tuple[Path, str]:
    spec = tmp_path / f"spec-{engine}.toml"
    spec.write_text(SPEC.format(engine=engine))
    out = tmp_path / f"out-{processes}-{engine}"
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                             f"--nproc_per_node={processes}"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    done = subprocess.run([sys.executable, *launcher, "-m", "netfit", "train", str(spec), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run, done.stdout + done.stderr


def _losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as f:
        return [float(row["train_loss"]) for row in csv.DictReader(f)]


def test_one_process_job_on_nccl(tmp_path):
    run, _ = _train(tmp_path, 1)
    processes = json.loads((run / "run.json").read_text())["training"]["processes"]
    assert processes == {"world_size": 1, "backend": "nccl"}


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_two_gpus_train_what_one_gpu_trains(tmp_path):
    one, _ = _train(tmp_path, None, "eager")
    two, printed = _train(tmp_path, 2, "graph")
    assert "running eagerly on each GPU" in printed  # DDP is not captured in a CUDA graph
    assert json.loads((two / "run.json").read_text())["training"]["processes"] == {"world_size": 2,
                                                                                  "backend": "nccl"}
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-3)

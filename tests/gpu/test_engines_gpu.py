"""GPU checks of the fast engine: run them on a CUDA machine with `bash scripts/gpu-checks.sh`.

They need real CUDA hardware, so they are skipped on machines without it (CI has none).
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import netfit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def fashion(epochs=2, **train):
    return {"data": {"dataset": "fashion-mnist", "val_fraction": 0.1},
            "train": {"epochs": epochs, "batch_size": 512, "device": "cuda", "print_every": epochs, **train}}


def test_graph_and_eager_loss_curves_agree_in_fp32():
    extra = {"precision": "fp32", "schedule": "one_cycle", "clip_grad_norm": 1.0, "optimizer": "adamw"}
    spec = fashion(epochs=3, **extra)
    spec["model"] = {"batchnorm": True}
    curves = {}
    for engine in ("eager", "graph"):
        run = netfit.fit({**spec, "train": {**spec["train"], "engine": engine}}, out=None, progress=None)
        assert run.history.engine == engine
        curves[engine] = [(r.train_loss, r.val_loss) for r in run.history.epochs]
    assert np.allclose(curves["eager"], curves["graph"], rtol=2e-3, atol=1e-4), curves


def test_augmented_images_are_captured_in_the_graph_and_agree_with_eager():
    spec = fashion(epochs=2, precision="fp32")
    spec["data"] = {**spec["data"], "augment": {"shift": 2, "flip": True}}
    curves = {}
    for engine in ("eager", "graph"):
        run = netfit.fit({**spec, "train": {**spec["train"], "engine": engine}}, out=None, progress=None)
        assert run.history.engine == engine  # no fall-back: the shift and flip are captured with the step
        curves[engine] = [(r.train_loss, r.val_loss) for r in run.history.epochs]
    assert np.allclose(curves["eager"], curves["graph"], rtol=2e-3, atol=1e-4), curves


OPTIMIZERS = {"sgd": ({"name": "sgd", "momentum": 0.9, "nesterov": True}, 0.05), "adam": ("adam", 1e-3),
              "adamw": ("adamw", 1e-3), "rmsprop": ("rmsprop", 1e-3)}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_captures_and_learns(name):
    optimizer, lr = OPTIMIZERS[name]
    run = netfit.fit(fashion(epochs=2, optimizer=optimizer, lr=lr, engine="graph"), out=None, progress=None)
    assert run.history.engine == "graph"
    assert run.metrics["val_accuracy"] > 0.80


def test_capture_impossible_falls_back_to_eager_with_one_line():
    log = io.StringIO()
    spec = fashion(epochs=1, engine="graph")
    spec["model"] = {"module": "custom_module:DataDependentNet"}
    run = netfit.fit(spec, out=None, progress=log)
    assert run.history.engine == "eager"
    notes = [l for l in log.getvalue().splitlines() if "cannot capture" in l]
    assert len(notes) == 1, log.getvalue()
    assert run.metrics["val_accuracy"] > 0.7


def test_bf16_trains_as_well_as_fp32():
    run = netfit.fit(fashion(epochs=3, precision="bf16"), out=None, progress=None)
    assert run.metrics["test_accuracy"] > 0.85


_MEMORY_PROBE = """
import json, torch, netfit
torch.cuda.init()
run = netfit.fit({"data": {"dataset": "fashion-mnist", "val_fraction": 0.1},
                  "train": {"epochs": 2, "batch_size": 512, "device": "cuda"}}, out=None, progress=None)
params = sum(p.numel() for p in run.model.network.parameters())
print(json.dumps({"peak": torch.cuda.max_memory_allocated(), "params": params, "engine": run.history.engine}))
"""


def test_device_memory_is_at_most_twice_the_uint8_data_plus_model_state():
    # cuBLAS keeps a 32 MiB workspace per stream in PyTorch's allocator (one for training, one for
    # the capture stream): library overhead, not what netfit keeps resident, so the probe runs in
    # a fresh process with small workspaces to measure netfit's own peak.
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":16:8", "CUBLASLT_WORKSPACE_SIZE": "16"}
    proc = subprocess.run([sys.executable, "-c", _MEMORY_PROBE], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    data_bytes = 70000 * 784  # every image on the device at some point: train, validation and test, uint8
    state_bytes = result["params"] * 4 * 4  # fp32 weights, gradients and Adam's two moments
    budget = 2 * data_bytes + state_bytes
    print(f"peak device memory {result['peak'] / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB "
          f"({result['engine']} engine)")
    assert result["engine"] == "graph"
    assert result["peak"] <= budget


def test_predictions_on_the_gpu_match_the_cpu():
    from netfit.prepare import prepare

    spec = netfit.Spec.model_validate(fashion(epochs=1))
    run = netfit.fit(spec, out=None, progress=None)
    X = prepare(spec).test.X[:2000].numpy()
    on_gpu = run.model.predict_proba(X)
    run.model.network.cpu()
    on_cpu = run.model.predict_proba(X)
    assert np.allclose(on_gpu, on_cpu, atol=2e-2)

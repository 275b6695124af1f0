"""GPU checks of the fast engine: run them on a CUDA machine with `bash scripts/gpu-checks.sh`.

They need real CUDA hardware, so they are skipped on machines without it (CI has none).
"""

import io

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


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_every_optimizer_captures_and_learns(optimizer):
    run = netfit.fit(fashion(epochs=2, optimizer=optimizer, lr={"sgd": 0.1, "adam": 1e-3, "rmsprop": 1e-3}[optimizer],
                             engine="graph"), out=None, progress=None)
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


def test_device_memory_is_at_most_twice_the_uint8_data_plus_model_state():
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run = netfit.fit(fashion(epochs=2), out=None, progress=None)
    peak = torch.cuda.max_memory_allocated() - base
    data_bytes = 70000 * 784  # train + test images, uint8
    params = sum(p.numel() for p in run.model.network.parameters()) * 4
    budget = 2 * data_bytes + params * 4  # weights, gradients, Adam's two moments
    print(f"peak device memory {peak / 2**20:.1f} MiB, budget {budget / 2**20:.1f} MiB")
    assert peak <= budget


def test_predictions_on_the_gpu_match_the_cpu():
    from netfit.prepare import prepare

    spec = netfit.Spec.model_validate(fashion(epochs=1))
    run = netfit.fit(spec, out=None, progress=None)
    X = prepare(spec).test.X[:2000].numpy()
    on_gpu = run.model.predict_proba(X)
    run.model.network.cpu()
    on_cpu = run.model.predict_proba(X)
    assert np.allclose(on_gpu, on_cpu, atol=2e-2)

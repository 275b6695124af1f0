"""train.precision: what `auto` picks on this CPU and why, and bf16 on the CPU resumes exactly."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import netfit
from netfit import start
from netfit.checkpoint import list_checkpoints


def _blobs(n=480, features=12, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, size=(classes, features))
    y = rng.integers(0, classes, size=n)
    return (centres[y] + rng.normal(0, 1, size=(n, features))).astype(np.float32), y


X, Y = _blobs()


def spec(**train):
    return {"model": {"hidden": [32, 16], "batchnorm": True, "dropout": 0.2},
            "data": {"val_fraction": 0.25, "test_fraction": 0.2},
            "train": {"epochs": 5, "batch_size": 32, "device": "cpu", "optimizer": "adamw", **train}}


def _cpuinfo_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text()
    return set(next(line for line in text.splitlines() if line.startswith("flags")).split())


def test_the_bf16_probe_agrees_with_the_cpu_flags():
    # Two independent sources: torch's kernel dispatch probes and the kernel's own CPU flags.
    flags = _cpuinfo_flags()
    assert start.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_exactly_on_cpus_that_have_it_and_says_so(monkeypatch, capsys, native):
    monkeypatch.setattr(start, "cpu_has_native_bf16", lambda: native)
    run = netfit.fit(spec(epochs=1), X, Y, out=None, progress=sys.stdout)
    line = capsys.readouterr().out.splitlines()[0]
    if native:
        assert "(eager, bf16: auto, native bf16 on this CPU)" in line
    else:
        assert "(eager, fp32: auto, no native bf16 on this CPU)" in line
    # Only the compute is bf16: the weights the run keeps are fp32 either way.
    assert all(p.dtype == torch.float32 for p in run.model.network.parameters())


def test_an_explicit_precision_is_printed_as_given(capsys):
    netfit.fit(spec(epochs=1, precision="fp32"), X, Y, out=None, progress=sys.stdout)
    assert "(eager, fp32)" in capsys.readouterr().out.splitlines()[0]


def test_bf16_on_the_cpu_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    reference = netfit.fit(spec(precision="bf16"), X, Y, out=tmp_path / "ref", progress=None)
    run = netfit.fit(spec(precision="bf16"), X, Y, out=tmp_path / "crash", progress=None)
    # As if the process had died during epoch 4: the final files and later checkpoints never came.
    for name in ("run.json", "model.safetensors", "metrics.csv"):
        (run.run_dir / name).unlink()
    for late in list_checkpoints(run.run_dir)[-2:]:
        shutil.rmtree(late)
    netfit.resume(run.run_dir, X, Y, progress=None)
    a, b = load_file(str(reference.run_dir / "model.safetensors")), load_file(str(run.run_dir / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (reference.run_dir / "metrics.csv").read_text().splitlines()[1:][-1].split(",")[:4] == \
        (run.run_dir / "metrics.csv").read_text().splitlines()[1:][-1].split(",")[:4]

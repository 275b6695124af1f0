"""train.precision: what `auto` picks on this CPU, and why (bf16 resuming exactly is in test_checkpoint.py)."""

import sys
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits

import netfit
from netfit import start


X, Y = load_digits(return_X_y=True)


def spec(**train):
    return {"model": {"hidden": [32]}, "train": {"epochs": 1, "device": "cpu", **train}}


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
    run = netfit.fit(spec(), X, Y, out=None, progress=sys.stdout)
    line = capsys.readouterr().out.splitlines()[0]
    if native:
        assert "(eager, bf16: auto, native bf16 on this CPU)" in line
    else:
        assert "(eager, fp32: auto, no native bf16 on this CPU)" in line
    # Only the compute is bf16: the weights the run keeps are fp32 either way.
    assert all(p.dtype == torch.float32 for p in run.model.network.parameters())


def test_an_explicit_precision_is_printed_as_given(capsys):
    netfit.fit(spec(precision="fp32"), X, Y, out=None, progress=sys.stdout)
    assert "(eager, fp32)" in capsys.readouterr().out.splitlines()[0]

"""One run, many processes: real torchrun jobs of 2 CPU processes on gloo.

What a user relies on: N processes at the same global batch train the network one process
would (within float rounding: the gradient sums run in another order); a job killed outright
resumes to the very weights of a job never interrupted; a rank that fails ends the whole job,
with its message, in bounded time instead of leaving the others waiting.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from netfit.checkpoint import list_checkpoints
from netfit.rundir import is_finished

pytestmark = pytest.mark.slow

TESTS = Path(__file__).parent
TIMEOUT = 240  # seconds for any one job: generous, a loaded machine is many times slower
# 1,294 training rows in batches of 63: every batch splits 32/31 and the last (34 rows) 17/17, so
# the weighting of unequal slices is exercised at every step.
SPEC = """\
[data]
dataset = "digits"
[model]
hidden = [64, 32]
[train]
epochs = {epochs}
batch_size = 63
device = "cpu"
lr = 0.003
"""
# A user's module that raises on rank 1 at its 5th training call: a rank failing mid-epoch.
CRASHING_SPEC = """\
[data]
dataset = "digits"
[model]
module = "custom_module:CrashOnRank"
kwargs = {rank = 1, at = 5}
[train]
epochs = 3
batch_size = 64
device = "cpu"
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR")}
    src = Path(__file__).parents[1] / "src"
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(TESTS), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _command(processes: int | None, *args) -> list[str]:
    """``netfit train *args``, under torchrun with ``processes`` ranks (None: a plain process)."""
    launcher = [] if processes is None else ["-m", "torch.distributed.run", "--standalone",
                                             f"--nproc_per_node={processes}"]
    return [sys.executable, *launcher, "-m", "netfit", "train", *map(str, args)]


def _run(processes: int | None, *args, timeout: float = TIMEOUT, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(processes, *args), capture_output=True, text=True, timeout=timeout,
                          env=_env(**env), stdin=subprocess.DEVNULL)


def _run_dir(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run


def _metrics(run: Path) -> list[dict[str, float]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _train(tmp_path: Path, name: str, processes: int | None, epochs: int = 4) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.format(epochs=epochs))
    done = _run(processes, spec, "--out", tmp_path / name, "--quiet")
    assert done.returncode == 0, done.stderr
    return _run_dir(tmp_path / name)


def test_two_processes_train_what_one_process_trains(tmp_path):
    one = _train(tmp_path, "plain", None)
    two = _train(tmp_path, "two", 2)
    solo = _train(tmp_path, "torchrun-one", 1)
    reference = _metrics(one)
    for run in (two, solo):
        rows = _metrics(run)
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
        for got, want in zip(rows, reference):
            for key in ("train_loss", "val_loss", "val_accuracy"):
                assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (run, key, got["epoch"])
        weights, expected = load_file(run / "model.safetensors"), load_file(one / "model.safetensors")
        for name, tensor in expected.items():
            torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-5)
    processes = json.loads((two / "run.json").read_text())["training"]["processes"]
    assert processes == {"world_size": 2, "backend": "gloo"}
    assert json.loads((solo / "run.json").read_text())["training"]["processes"]["world_size"] == 1
    assert "processes" not in json.loads((one / "run.json").read_text())["training"]


AUGMENTED_SPEC = """\
[data]
dataset = "mnist-sample"
[data.augment]
shift = 2
flip = true
[model]
hidden = [32]
[train]
epochs = 2
batch_size = 99
device = "cpu"
"""


def test_two_processes_augment_every_image_as_one_process_does(tmp_path):
    # The draws are per row, not per step: each rank changes its part of a batch as one process would.
    spec = tmp_path / "augmented.toml"
    spec.write_text(AUGMENTED_SPEC)
    runs = []
    for name, processes in (("one", None), ("two", 2)):
        done = _run(processes, spec, "--out", tmp_path / name, "--quiet")
        assert done.returncode == 0, done.stderr
        runs.append(_run_dir(tmp_path / name))
    for got, want in zip(_metrics(runs[1]), _metrics(runs[0]), strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, got["epoch"])


def _start_and_stop(tmp_path: Path, name: str, signum: int) -> tuple[Path, str]:
    """Start a 2-process job, send ``signum`` to torchrun and its ranks once epoch 2 is checkpointed."""
    out, log = tmp_path / name, tmp_path / f"{name}.err"
    with open(log, "wb") as err:
        job = subprocess.Popen(_command(2, tmp_path / "spec.toml", "--out", out, "--quiet"), stdout=subprocess.DEVNULL,
                               stderr=err, stdin=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            runs = [p for p in out.iterdir() if not p.name.startswith(".")] if out.is_dir() else []
            checkpoints = list_checkpoints(runs[0]) if runs else []
            if checkpoints and checkpoints[-1].name >= "epoch-0002":
                break
            assert job.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no checkpoint of epoch 2 in time"
            time.sleep(0.005)
        if signum == signal.SIGKILL:  # torchrun and every rank at once, as when the machine fails
            for pid in [job.pid, *_descendants(job.pid)]:
                os.kill(pid, signum)
        else:  # torchrun alone: it passes the signal on to the ranks, as it does a scheduler's
            job.send_signal(signum)
        job.wait(TIMEOUT)
    finally:
        ranks = _descendants(job.pid)
        if job.poll() is None:
            job.kill()
            job.wait(TIMEOUT)
        for pid in ranks:  # the test failed half-way: leave no rank running
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    stopped_at = list_checkpoints(runs[0])[-1].name
    assert not is_finished(runs[0]) and stopped_at < f"epoch-{EPOCHS_LONG:04d}", "the signal came too late"
    return runs[0], log.read_text()


def _descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (torchrun starts each rank in a session of its own)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    found = []
    for child in map(int, children):
        found += [child, *_descendants(child)]
    return found


def _resume_matches(run: Path, reference: Path, epochs: int) -> None:
    resumed = _run(2, "--resume", run, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    weights, expected = load_file(run / "model.safetensors"), load_file(reference / "model.safetensors")
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), f"{name} differs from the uninterrupted 2-process run"
    without_times = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _metrics(run)]
    assert without_times == [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _metrics(reference)]
    assert len(without_times) == epochs


EPOCHS_LONG = 15


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted 2-process run of EPOCHS_LONG epochs."""
    return _train(tmp_path_factory.mktemp("reference"), "reference", 2, EPOCHS_LONG)


def test_sigkill_of_the_whole_job_then_resume_gives_the_uninterrupted_weights(tmp_path, reference):
    (tmp_path / "spec.toml").write_text(SPEC.format(epochs=EPOCHS_LONG))
    run, _ = _start_and_stop(tmp_path, "killed", signal.SIGKILL)
    _resume_matches(run, reference, EPOCHS_LONG)


def test_sigterm_stops_every_rank_at_one_step_and_resumes_exactly(tmp_path, reference):
    (tmp_path / "spec.toml").write_text(SPEC.format(epochs=EPOCHS_LONG))
    run, printed = _start_and_stop(tmp_path, "stopped", signal.SIGTERM)
    # The ranks agreed on one step (within 16 steps, or the epoch's end); rank 0 wrote it and alone says so.
    assert printed.count("netfit: stopped by SIGTERM at ") == 1, printed
    assert str(list_checkpoints(run)[-1]) in printed
    _resume_matches(run, reference, EPOCHS_LONG)


def test_a_rank_that_fails_ends_the_job_with_its_message(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(CRASHING_SPEC)
    started = time.monotonic()
    done = _run(2, spec, "--out", tmp_path / "out", timeout=120, NETFIT_DIST_TIMEOUT_S="30")
    took = time.monotonic() - started
    assert done.returncode != 0
    assert "rank 1: internal error: RuntimeError: CrashOnRank: rank 1 fails at training call 5" in done.stderr
    assert took < 60, f"the job took {took:.0f} s to end"
    # Nothing worth keeping was written: no run folder is left behind.
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


def test_early_stopping_and_r2_agree_with_one_process(tmp_path):
    # Regression (R^2 from all-reduced squared errors) with early stopping, decided on every rank alike.
    config = Path(__file__).parents[1] / "configs" / "regression-mlp.toml"
    runs = {}
    for processes in (None, 2):
        out = tmp_path / f"out-{processes}"
        done = _run(processes, config, "--set", "train.device=cpu", "--out", out, "--quiet")
        assert done.returncode == 0, done.stderr
        runs[processes] = _run_dir(out)
    one, two = (json.loads((runs[p] / "run.json").read_text()) for p in (None, 2))
    assert two["training"]["stopped_early"] and one["training"]["stopped_early"]
    assert two["training"]["best_epoch"] == one["training"]["best_epoch"]
    assert two["training"]["epochs_run"] == one["training"]["epochs_run"] < 100
    for key, value in one["metrics"].items():
        assert two["metrics"][key] == pytest.approx(value, rel=1e-4), key
    for got, want in zip(_metrics(runs[2]), _metrics(runs[None])):  # each epoch's figures, from sharded sums
        for key in ("train_loss", "val_loss", "val_r2"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (key, got["epoch"])

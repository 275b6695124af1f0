"""Checkpoints: contents, exact resume, refusal of anything damaged, storage faults, the NaN guard.

The kill-and-resume tests with real processes and signals are in test_kill_resume.py.
"""

import errno
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError
from netfit.checkpoint import list_checkpoints, read_checkpoint
from netfit.cli import main
from netfit.storage import SEAL_KEY, dump_sealed_json


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


def weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "model.safetensors"))


def assert_identical(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 5-epoch run that every resumed run must match bit for bit."""
    return netfit.fit(spec(), X, Y, out=tmp_path_factory.mktemp("ref"), progress=None).run_dir


def test_checkpoint_holds_weights_optimizer_rng_counters_spec_and_hashes(tmp_path):
    run = netfit.fit(spec(epochs=3), X, Y, out=tmp_path, progress=None)
    names = [p.name for p in list_checkpoints(run.run_dir)]
    assert names == ["epoch-0001", "epoch-0002", "epoch-0003"]
    latest = read_checkpoint(run.run_dir / "checkpoints" / "epoch-0003")
    body = latest.body
    assert (body["epochs_done"], body["steps_into_epoch"], body["global_step"]) == (3, 0, 3 * body["steps_per_epoch"])
    assert body["spec"]["train"]["epochs"] == 3 and len(body["spec_sha256"]) == 64 and len(body["data_sha256"]) == 64
    assert set(body["files"]) == {"weights.safetensors", "state.safetensors"}
    assert set(body["rng"]) == {"python", "numpy"}
    assert {"rng.torch_cpu", "rng.shuffle"} <= set(latest.tensors)
    assert any(k.endswith(".exp_avg_sq") for k in latest.tensors)  # AdamW's second moments
    assert [r["epoch"] for r in body["history"]] == [1, 2, 3]
    best = read_checkpoint(run.run_dir / "checkpoints" / "best")
    assert best.body["epoch"] == run.history.best_epoch and best.body["metric"] == "val_accuracy"


def test_only_the_last_k_checkpoints_are_kept(tmp_path):
    run = netfit.fit(spec(keep_checkpoints=2, checkpoint_every=2), X, Y, out=tmp_path, progress=None)
    # every 2 epochs, and at the end: 2, 4, 5; the last two stay
    assert [p.name for p in list_checkpoints(run.run_dir)] == ["epoch-0004", "epoch-0005"]
    assert not [p for p in (run.run_dir / "checkpoints").iterdir() if p.name.startswith(".")]


def test_extending_a_finished_run_matches_an_uninterrupted_one(tmp_path, reference):
    short = netfit.fit(spec(epochs=3), X, Y, out=tmp_path, progress=None)
    resumed = netfit.resume(short.run_dir, X, Y, epochs=5, progress=None)
    assert resumed.run_dir == short.run_dir
    assert_identical(weights(resumed.run_dir), weights(reference))
    rows = (resumed.run_dir / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert netfit.load(resumed.run_dir).metrics["epochs"] == 5


def test_resume_from_an_older_checkpoint_after_a_crash_is_exact(tmp_path, reference):
    run = netfit.fit(spec(), X, Y, out=tmp_path, progress=None)
    # As if the process had died during epoch 4: the final files and later checkpoints never came.
    for name in ("run.json", "model.safetensors", "metrics.csv"):
        (run.run_dir / name).unlink()
    for late in list_checkpoints(run.run_dir)[-2:]:
        shutil.rmtree(late)
    with pytest.raises(NetfitError, match="has not finished training.*--resume"):
        netfit.load(run.run_dir)
    netfit.resume(run.run_dir, X, Y, progress=None)
    assert_identical(weights(run.run_dir), weights(reference))


def test_bf16_on_the_cpu_resumes_exactly(tmp_path):
    # precision auto picks bf16 on CPUs with native bf16: a crash there must resume as exactly as in fp32.
    reference = netfit.fit(spec(precision="bf16"), X, Y, out=tmp_path / "ref", progress=None)
    run = netfit.fit(spec(precision="bf16"), X, Y, out=tmp_path / "crash", progress=None)
    for name in ("run.json", "model.safetensors", "metrics.csv"):
        (run.run_dir / name).unlink()
    for late in list_checkpoints(run.run_dir)[-2:]:
        shutil.rmtree(late)
    netfit.resume(run.run_dir, X, Y, progress=None)
    assert_identical(weights(run.run_dir), weights(reference.run_dir))
    assert (run.run_dir / "metrics.csv").read_text().splitlines()[-1].split(",")[:4] == \
        (reference.run_dir / "metrics.csv").read_text().splitlines()[-1].split(",")[:4]


def test_early_stopping_state_survives_a_resume(tmp_path):
    es = {"early_stopping": {"metric": "val_loss", "patience": 2}, "epochs": 12, "lr": 0.05}
    whole = netfit.fit(spec(**es), X, Y, out=tmp_path / "a", progress=None)
    assert whole.history.stopped_early
    part = netfit.fit(spec(**{**es, "epochs": whole.history.best_epoch + 1}), X, Y, out=tmp_path / "b",
                      progress=None)
    resumed = netfit.resume(part.run_dir, X, Y, epochs=12, progress=None)
    assert resumed.history.stopped_early and resumed.history.best_epoch == whole.history.best_epoch
    assert_identical(weights(resumed.run_dir), weights(whole.run_dir))


# ----------------------------------------------------------------------------- damaged runs


def _flip(path, at=0.5):
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x01
    path.write_bytes(bytes(data))


def _reseal(path, edit):
    body = json.loads(path.read_text())
    body.pop(SEAL_KEY)
    edit(body)
    path.write_bytes(dump_sealed_json(body))


def _latest(run_dir):
    return list_checkpoints(run_dir)[-1]


DAMAGE = {
    "checkpoint weights truncated": lambda r: (_latest(r) / "weights.safetensors").write_bytes(
        (_latest(r) / "weights.safetensors").read_bytes()[:200]),
    "checkpoint weights byte flipped": lambda r: _flip(_latest(r) / "weights.safetensors"),
    "optimizer state byte flipped": lambda r: _flip(_latest(r) / "state.safetensors", 0.9),
    "optimizer state deleted": lambda r: (_latest(r) / "state.safetensors").unlink(),
    "garbage appended to state": lambda r: (_latest(r) / "state.safetensors").write_bytes(
        (_latest(r) / "state.safetensors").read_bytes() + b"\0" * 16),
    "state.json edited": lambda r: (_latest(r) / "state.json").write_text(
        (_latest(r) / "state.json").read_text().replace('"epochs_done": 3', '"epochs_done": 4')),
    "state.json truncated": lambda r: (_latest(r) / "state.json").write_text(
        (_latest(r) / "state.json").read_text()[:300]),
    "state.json resealed with another spec": lambda r: _reseal(
        _latest(r) / "state.json", lambda b: b["spec"]["model"].update(hidden=[64, 16])),
    "state.json resealed with other file hashes": lambda r: _reseal(
        _latest(r) / "state.json", lambda b: b["files"]["weights.safetensors"].update(sha256="0" * 64)),
    "state.json from another checkpoint": lambda r: shutil.copy(
        list_checkpoints(r)[0] / "state.json", _latest(r) / "state.json"),
    "best weights byte flipped": lambda r: _flip(r / "checkpoints" / "best" / "weights.safetensors"),
    "final weights byte flipped": lambda r: _flip(r / "model.safetensors"),
    "final weights truncated": lambda r: (r / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}"),
    "metrics.csv edited": lambda r: (r / "metrics.csv").write_text("epoch\n1\n"),
    "run.json edited": lambda r: (r / "run.json").write_text(
        (r / "run.json").read_text().replace('"epochs": 3', '"epochs": 30')),
    "run.json truncated": lambda r: (r / "run.json").write_text((r / "run.json").read_text()[:100]),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_every_damaged_or_edited_file_is_refused_by_resume_load_and_the_cli(tmp_path, capsys, damage):
    run = netfit.fit(spec(epochs=3), X, Y, out=tmp_path, progress=None)
    DAMAGE[damage](run.run_dir)
    with pytest.raises(NetfitError):
        netfit.resume(run.run_dir, X, Y, epochs=5, progress=None)
    with pytest.raises(NetfitError):
        netfit.load(run.run_dir)
    assert main(["evaluate", str(run.run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netfit: error: ") and err.count("\n") == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- spec changes on resume


def test_resume_refuses_a_different_spec_but_takes_epochs_and_lr(tmp_path, capsys):
    run = netfit.fit(spec(epochs=2), X, Y, out=tmp_path, progress=None)
    with pytest.raises(NetfitError, match=r"model\.hidden"):
        netfit.resume(run.run_dir, X, Y, epochs=3, spec={**spec(epochs=3), "model": {"hidden": [8]}}, progress=None)
    with pytest.raises(NetfitError, match="already trained 2 epochs"):
        netfit.resume(run.run_dir, X, Y, progress=None)
    with pytest.raises(NetfitError, match="training rows differ"):
        netfit.resume(run.run_dir, X[::-1].copy(), Y[::-1].copy(), epochs=3, progress=None)
    assert main(["train", "--resume", str(run.run_dir), "--set", "model.hidden=[8]"]) == 2
    assert "only train.epochs and train.lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run.run_dir), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "--out does not apply" in capsys.readouterr().err
    resumed = netfit.resume(run.run_dir, X, Y, epochs=3, lr=3e-4, progress=None)
    assert resumed.spec.train.lr == 3e-4 and len(resumed.history.epochs) == 3


def test_a_run_being_trained_is_locked(tmp_path):
    from netfit.rundir import run_lock

    run = netfit.fit(spec(epochs=1), X, Y, out=tmp_path, progress=None)
    with run_lock(run.run_dir):
        with pytest.raises(NetfitError, match="another netfit process"):
            netfit.resume(run.run_dir, X, Y, epochs=2, progress=None)


# ----------------------------------------------------------------------------- storage faults


def test_a_write_failing_part_way_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, reference):
    from netfit import checkpoint

    real = checkpoint.write_durably

    def disk_fills_up(path, data):
        # The third checkpoint's optimizer state: half of it lands, then the disk is full.
        if path.parent.name.startswith(".epoch-0003.partial-") and path.name == "state.safetensors":
            with open(path, "wb") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_durably", disk_fills_up)
    with pytest.raises(NetfitError, match="No space left on device.*last good checkpoint .*epoch-0002.* is intact"):
        netfit.fit(spec(), X, Y, out=tmp_path, progress=None)
    monkeypatch.setattr(checkpoint, "write_durably", real)
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in list_checkpoints(run_dir)] == ["epoch-0001", "epoch-0002"]
    assert not [p for p in (run_dir / "checkpoints").iterdir() if ".partial-" in p.name]
    assert not (run_dir / "run.json").exists()
    netfit.resume(run_dir, X, Y, progress=None)
    assert_identical(weights(run_dir), weights(reference))


def test_a_folder_that_stops_being_writable_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, reference):
    import tempfile

    real_mkdtemp = tempfile.mkdtemp

    def refuse_third(*args, prefix="", **kwargs):
        # Runs as root ignore permission bits, so the refusal is injected where the folder is made.
        if prefix.startswith(".epoch-0003."):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkdtemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse_third)
    with pytest.raises(NetfitError, match="Permission denied.*epoch-0002 is intact.*writable.*--resume"):
        netfit.fit(spec(), X, Y, out=tmp_path, progress=None)
    monkeypatch.undo()
    (run_dir,) = tmp_path.iterdir()
    # A process killed mid-write leaves a staging folder: ignored, and cleared by the resume.
    (run_dir / "checkpoints" / ".epoch-0003.partial-x").mkdir()
    assert [p.name for p in list_checkpoints(run_dir)] == ["epoch-0001", "epoch-0002"]
    netfit.resume(run_dir, X, Y, progress=None)
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert_identical(weights(run_dir), weights(reference))


def test_a_failing_final_write_leaves_a_resumable_run(tmp_path, monkeypatch):
    from netfit import rundir

    def no_space(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    run = netfit.fit(spec(epochs=2), X, Y, out=tmp_path, progress=None)
    monkeypatch.setattr(rundir, "write_atomic", no_space)
    with pytest.raises(NetfitError, match="checkpoints are intact"):
        netfit.resume(run.run_dir, X, Y, epochs=3, progress=None)
    monkeypatch.undo()
    # The run is unfinished now, not inconsistent; its last checkpoint is the end of epoch 3.
    assert list_checkpoints(run.run_dir)[-1].name == "epoch-0003"
    with pytest.raises(NetfitError, match="has not finished"):
        netfit.load(run.run_dir)
    # Training had ended: the resume only writes the final files, without a step of training.
    finished = netfit.resume(run.run_dir, X, Y, progress=None)
    assert netfit.load(run.run_dir).metrics["epochs"] == 3
    assert [r.epoch for r in finished.history.epochs] == [1, 2, 3]
    with pytest.raises(NetfitError, match="already trained 3 epochs"):
        netfit.resume(run.run_dir, X, Y, progress=None)
    netfit.resume(run.run_dir, X, Y, epochs=4, progress=None)
    assert netfit.load(run.run_dir).metrics["epochs"] == 4


def test_a_run_killed_after_early_stopping_but_before_its_final_files_is_finished_by_resume(tmp_path):
    es = {"early_stopping": {"metric": "val_loss", "patience": 2}, "epochs": 12, "lr": 0.05}
    run = netfit.fit(spec(**es), X, Y, out=tmp_path, progress=None)
    assert run.history.stopped_early
    expected = weights(run.run_dir)
    (run.run_dir / "run.json").unlink()
    netfit.resume(run.run_dir, X, Y, progress=None)
    assert_identical(weights(run.run_dir), expected)  # the best epoch's weights, as before
    with pytest.raises(NetfitError, match="stopped early"):
        netfit.resume(run.run_dir, X, Y, progress=None)


class Killed(BaseException):
    """Stands for SIGKILL at one exact instant: nothing after it runs, no handler sees it."""


def test_a_kill_while_an_old_checkpoint_is_being_deleted_leaves_every_visible_one_whole(tmp_path, monkeypatch,
                                                                                       reference):
    from netfit import checkpoint

    real = checkpoint.remove_tree

    def killed_half_way(path):
        # Deleting epoch-0001 (at epoch 4, keeping 3): one file is gone, then the process dies.
        if "epoch-0001" not in path.name:
            return real(path)
        next(path.rglob("state.json")).unlink()
        raise Killed

    monkeypatch.setattr(checkpoint, "remove_tree", killed_half_way)
    with pytest.raises(Killed):
        netfit.fit(spec(), X, Y, out=tmp_path, progress=None)
    monkeypatch.undo()
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in list_checkpoints(run_dir)] == ["epoch-0002", "epoch-0003", "epoch-0004"]
    for path in list_checkpoints(run_dir):
        read_checkpoint(path)
    netfit.resume(run_dir, X, Y, progress=None)
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".")]
    assert_identical(weights(run_dir), weights(reference))


def test_a_kill_between_setting_aside_the_best_weights_and_renaming_the_new_ones_puts_the_old_back(
        tmp_path, monkeypatch, reference):
    import os

    from netfit.checkpoint import Checkpointer
    from netfit.spec import spec_from_dict

    real_rename = os.rename

    def killed_before_the_new_best_lands(src, dst):
        src = Path(src)
        if src.name.startswith(".best.partial-") and list(src.parent.glob(".best.replaced-*/best")):
            raise Killed  # the old best/ is set aside; the new one never lands
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", killed_before_the_new_best_lands)
    with pytest.raises(Killed):
        netfit.fit(spec(), X, Y, out=tmp_path, progress=None)
    monkeypatch.undo()
    (run_dir,) = tmp_path.iterdir()
    folder = run_dir / "checkpoints"
    assert not (folder / "best").exists() and [p for p in folder.iterdir() if ".best.replaced-" in p.name]
    written = list_checkpoints(run_dir)[-1]
    checkpoints = Checkpointer(run_dir, spec_from_dict(spec()), "", 1)
    checkpoints.clear_leftovers()
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in list_checkpoints(run_dir)] + ["best"])
    best = read_checkpoint(folder / "best")
    assert best.body["epoch"] <= read_checkpoint(written).body["epochs_done"]  # the old best, whole
    resumed = netfit.resume(run_dir, X, Y, progress=None)
    assert_identical(weights(run_dir), weights(reference))
    assert read_checkpoint(folder / "best").body["epoch"] == resumed.history.best_epoch


def test_an_output_path_under_a_regular_file_is_refused_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["train", "--set", "data.dataset=digits", "--out", str(blocker / "runs")]) == 2
    assert "choose a writable folder" in capsys.readouterr().err
    assert blocker.read_text() == "not a folder"


# ----------------------------------------------------------------------------- the NaN guard


def nan_spec(**train):
    return {"model": {"module": "custom_module:NaNAt", "kwargs": {"inputs": 12, "classes": 4}},
            "data": {"val_fraction": 0.25}, "train": {"epochs": 4, "batch_size": 36, "device": "cpu", **train}}


@pytest.fixture
def nan_at(monkeypatch):
    from custom_module import NaNAt

    def set_calls(*calls):
        monkeypatch.setattr(NaNAt, "bad_calls", set(calls))

    return set_calls


def test_a_nonfinite_loss_stops_with_epoch_step_and_causes_and_keeps_the_last_good_checkpoint(tmp_path, nan_at):
    nan_at(2 * 10 + 4)  # 360 training rows / 36 = 10 steps an epoch: epoch 3, step 4
    with pytest.raises(NetfitError, match=r"NaN or infinite at epoch 3, step 4 of 10; likely causes: a learning "
                                          r"rate too high .*epoch-0002.* is kept"):
        netfit.fit(nan_spec(), X, Y, out=tmp_path, progress=None)
    (run_dir,) = tmp_path.iterdir()
    assert [p.name for p in list_checkpoints(run_dir)] == ["epoch-0001", "epoch-0002"]
    good = read_checkpoint(run_dir / "checkpoints" / "epoch-0002")
    assert all(torch.isfinite(t).all() for t in good.weights.values())
    nan_at()  # the cause is gone: the run resumes from the good checkpoint and finishes
    netfit.resume(run_dir, X, Y, lr=3e-4, progress=None, module=__import__("custom_module").NaNAt)
    assert len(netfit.load(run_dir, module=__import__("custom_module").NaNAt).metrics) > 0


def test_a_nonfinite_loss_in_the_first_epoch_leaves_no_run_behind(tmp_path, nan_at):
    nan_at(3)
    with pytest.raises(NetfitError, match="epoch 1, step 3 of 10.*no checkpoint had been written yet"):
        netfit.fit(nan_spec(), X, Y, out=tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_skip_step_skips_bad_steps_and_trains_on(tmp_path, nan_at):
    import io

    nan_at(5, 17, 18)
    lines = io.StringIO()
    run = netfit.fit(nan_spec(on_nonfinite="skip_step", lr=1e-2), X, Y, out=tmp_path, progress=lines)
    out = lines.getvalue()
    assert "epoch 1: skipped 1 steps" in out and "epoch 2: skipped 2 steps" in out
    assert all(torch.isfinite(t).all() for t in run.model.network.state_dict().values())
    assert run.metrics["val_accuracy"] > 0.9


def test_a_skipped_step_changes_neither_weights_nor_optimizer_state():
    from netfit.step import train_step

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(net.parameters())
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    train_step(net, torch.nn.CrossEntropyLoss(), opt, x, y)
    before = ({k: v.clone() for k, v in net.state_dict().items()},
              {i: {k: v.clone() for k, v in s.items()} for i, s in opt.state_dict()["state"].items()})
    x[0, 0] = float("inf")
    loss, finite = train_step(net, torch.nn.CrossEntropyLoss(), opt, x, y, skip_nonfinite=True)
    assert not bool(finite)
    assert_identical(before[0], net.state_dict())
    for i, s in opt.state_dict()["state"].items():
        assert_identical(before[1][i], s)


def test_a_signal_at_an_epoch_boundary_keeps_every_epoch_in_the_checkpoints_history(tmp_path, monkeypatch):
    import contextlib

    import netfit.train as train_module

    class Stop:
        """A stop request that arrives just as the last step of epoch 2 ends (10 steps an epoch)."""

        name, signum, requested = "SIGTERM", 15, False

    stop, steps = Stop(), []
    real_step = netfit.progress.Progress.advance

    def step(self, done):
        steps.append(done)
        stop.requested = len(steps) >= 20
        real_step(self, done)

    monkeypatch.setattr(netfit.progress.Progress, "advance", step)
    monkeypatch.setattr(train_module, "stop_on_signals", lambda enabled=True: contextlib.nullcontext(stop))
    # No validation, lines every 5 epochs, checkpoints only at the end: epoch 2 is still on the device.
    run_spec = {**spec(print_every=5, checkpoint_every=0, batch_size=48), "data": {"val_fraction": 0.0}}
    with pytest.raises(netfit.TrainingInterrupted):
        netfit.fit(run_spec, X, Y, out=tmp_path, progress=None)
    (run_dir,) = tmp_path.iterdir()
    state = read_checkpoint(list_checkpoints(run_dir)[-1]).training_state()
    assert state.epochs_done == 2 and [r.epoch for r in state.history] == [1, 2]

"""Run folders are data, never code: every value read from one is checked before it is used.

Each crafted file here is re-sealed (its seal recomputed, and the hashes of any file it lists),
so it gets past the seal and has to be caught by the schemas of ``runformat.py``, the tensor
checks of ``checkpoint.py``, the size and depth bounds of ``storage.py``, the signing key, the
run id, or the lock. Each refusal must be one line naming the file and the field, exit code 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as dump_tensors

import netfit
from netfit import NetfitError
from netfit.checkpoint import list_checkpoints
from netfit.cli import main
from netfit.storage import dump_sealed_json

KEY, OTHER_KEY = "a-key-of-32-characters-for-tests", "another-key-that-is-long-enough"
SEALS = ("sha256_of_body", "hmac_sha256_of_body")
TIMEOUT = 120  # seconds for any one process
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # children run this checkout's netfit


# ----------------------------------------------------------------------------- runs and editing helpers


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A small labelled CSV: 240 rows, 6 features, 3 text classes."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, size=(3, 6))
    y = rng.integers(0, 3, size=240)
    X = centres[y] + rng.normal(size=(240, 6))
    path = tmp_path_factory.mktemp("data") / "table.csv"
    lines = ["f0,f1,f2,f3,f4,f5,label"] + [",".join(f"{v:.4f}" for v in row) + f",{'abc'[c]}"
                                           for row, c in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def spec(table: Path, **train) -> dict:
    return {"model": {"hidden": [16]},
            "data": {"path": str(table), "target": "label", "val_fraction": 0.2, "test_fraction": 0.2},
            "train": {"epochs": 3, "batch_size": 16, "device": "cpu", "optimizer": "adam", **train}}


def train(table: Path, out: Path, **options) -> Path:
    return netfit.fit(spec(table, **options), out=out, progress=None).run_dir


@pytest.fixture(scope="module")
def template(table, tmp_path_factory) -> Path:
    """One finished 3-epoch run, never changed: tests edit copies of it."""
    return train(table, tmp_path_factory.mktemp("template"))


@pytest.fixture
def run(template, tmp_path) -> Path:
    return Path(shutil.copytree(template, tmp_path / "run"))


def reseal(path: Path, edit) -> None:
    """Apply ``edit`` to a sealed JSON body and seal it again, as someone editing on purpose would."""
    body = json.loads(path.read_text())
    for seal in SEALS:
        body.pop(seal, None)
    edit(body)
    path.write_bytes(dump_sealed_json(body))


def rehash(body: dict, name: str, data: bytes) -> None:
    """Record ``data`` as the new content of file ``name`` in a JSON's ``files`` listing."""
    digest = hashlib.sha256(data).hexdigest()
    entry = body["files"][name]
    body["files"][name] = {"sha256": digest, "bytes": len(data)} if isinstance(entry, dict) else digest


def set_hash(body: dict, name: str, value: str) -> None:
    """Write ``value`` where a JSON's ``files`` listing keeps the hash of file ``name``."""
    if isinstance(body["files"][name], dict):
        body["files"][name]["sha256"] = value
    else:
        body["files"][name] = value


def edit_tensors(folder: Path, tensors_file: str, json_file: str, edit) -> None:
    """Edit a safetensors file, then re-hash it in the JSON that lists it and re-seal that JSON."""
    tensors = load_tensors((folder / tensors_file).read_bytes())
    edit(tensors)
    data = dump_tensors(tensors)
    (folder / tensors_file).write_bytes(data)
    reseal(folder / json_file, lambda body: rehash(body, tensors_file, data))


def latest(run_dir: Path) -> Path:
    return list_checkpoints(run_dir)[-1]


def state(run_dir: Path, edit) -> None:
    reseal(latest(run_dir) / "state.json", edit)


def tensors(run_dir: Path, edit) -> None:
    edit_tensors(latest(run_dir), "state.safetensors", "state.json", edit)


def snapshot(run_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def cli(*args, env=None, timeout=TIMEOUT, limit_memory: int | None = None) -> subprocess.CompletedProcess:
    """``netfit ARGS`` as a real process running this checkout's code."""
    def cap():
        if limit_memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_memory, limit_memory))

    return subprocess.run([sys.executable, "-m", "netfit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, preexec_fn=cap, stdin=subprocess.DEVNULL)


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("netfit: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- crafted values, named by field


CHECKPOINT_CASES = {
    "history row with an extra key": (
        lambda r: state(r, lambda b: b["history"][0].update(extra=1)),
        r"state\.json: unknown key 'history\[0\]\.extra'"),
    "truncated torch RNG state": (
        lambda r: tensors(r, lambda t: t.update({"rng.torch_cpu": t["rng.torch_cpu"][:100].clone()})),
        r"state\.safetensors: tensor 'rng\.torch_cpu' is uint8 of shape \(100,\), but torch's CPU generator"),
    "truncated shuffle generator state": (
        lambda r: tensors(r, lambda t: t.update({"rng.shuffle": t["rng.shuffle"][:16].clone()})),
        r"tensor 'rng\.shuffle' is uint8 of shape \(16,\), but this generator's state is uint8 of shape"),
    "epochs_done as text": (
        lambda r: state(r, lambda b: b.update(epochs_done=str(b["epochs_done"]))),
        r'state\.json: epochs_done = "3": Input should be a valid integer'),
    "steps_into_epoch of a million": (
        lambda r: state(r, lambda b: b.update(steps_into_epoch=10**6)),
        r"state\.json: steps_into_epoch = 1000000: must be below steps_per_epoch"),
    "negative global_step": (
        lambda r: state(r, lambda b: b.update(global_step=-1)),
        r"state\.json: global_step = -1: Input should be greater than or equal to 0"),
    "negative early-stopping counter": (
        lambda r: state(r, lambda b: b["best"].update(waited=-2)),
        r"state\.json: best\.waited = -2: Input should be greater than or equal to 0"),
    "counters that disagree": (
        lambda r: state(r, lambda b: b.update(global_step=b["global_step"] + 1)),
        r"state\.json: global_step = \d+: must be epochs_done \* steps_per_epoch \+ steps_into_epoch"),
    "history out of order": (
        lambda r: state(r, lambda b: b["history"].reverse()),
        r"state\.json: history holds epochs \[3, 2, 1\]: must be 1, 2, \.\.\."),
    "history cut short": (
        lambda r: state(r, lambda b: b.update(history=b["history"][:2])),
        r"state\.json: history holds epochs \[1, 2\]: must be 1, 2, \.\.\. up to epochs_done \(3\)"),
    "NaN in a history row": (
        lambda r: state(r, lambda b: b["history"][1].update(train_loss=float("nan"))),
        r"state\.json: history\[1\]\.train_loss = NaN: Input should be a finite number"),
    "Python RNG state cut short": (
        lambda r: state(r, lambda b: b["rng"]["python"][1].pop()),
        r"state\.json: rng\.python = .*is not Python's random state"),
    "NumPy RNG of another kind": (
        lambda r: state(r, lambda b: b["rng"]["numpy"].__setitem__(0, "PCG64")),
        r"state\.json: rng\.numpy = .*is not NumPy's random state"),
    "optimizer class other than the spec's": (
        lambda r: state(r, lambda b: b["optimizer"].update({"class": "SGD"})),
        r"state\.json: optimizer\.class = 'SGD', but the spec trains with 'adam'"),
    "optimizer state of the wrong shape": (
        lambda r: tensors(r, lambda t: t.update({"optimizer.0.exp_avg": torch.zeros(3)})),
        r"tensor 'optimizer\.0\.exp_avg' is float32 of shape \(3,\), but parameter 0 is float32 of shape \(16, 6\)"),
    "optimizer state missing a moment": (
        lambda r: tensors(r, lambda t: t.pop("optimizer.1.exp_avg_sq")),
        r"the optimizer state of parameter 1 holds exp_avg, step; Adam needs exp_avg, exp_avg_sq, step"),
    "a step count that was never run": (
        lambda r: tensors(r, lambda t: t.update({"optimizer.0.step": torch.tensor(1e9)})),
        r"tensor 'optimizer\.0\.step' = 1e\+09, not a count of steps"),
    "a tensor no checkpoint has": (
        lambda r: tensors(r, lambda t: t.update({"payload": torch.zeros(4)})),
        r"tensor 'payload' is not part of a checkpoint"),
    "unknown top-level key": (
        lambda r: state(r, lambda b: b.update(note="hello")),
        r"state\.json: unknown key 'note'"),
    "files listing another file": (
        lambda r: state(r, lambda b: b["files"].update({"evil.py": b["files"]["weights.safetensors"]})),
        r"state\.json: files: must list exactly weights\.safetensors, state\.safetensors"),
    "a spec value of the wrong type": (
        lambda r: state(r, lambda b: (b["spec"]["train"].update(batch_size="16"),
                                      b.update(spec_sha256=hashlib.sha256(json.dumps(
                                          b["spec"], sort_keys=True).encode()).hexdigest()))),
        r"state\.json \(spec\): train\.batch_size = '16': Input should be a valid integer"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_a_crafted_checkpoint_is_refused_by_resume_and_load_naming_the_field(run, case):
    edit, pattern = CHECKPOINT_CASES[case]
    edit(run)
    before = snapshot(run)
    with pytest.raises(NetfitError, match=pattern):
        netfit.resume(run, epochs=4, progress=None)
    if "wrong shape" not in case and "truncated shuffle" not in case:  # those need the network to see
        with pytest.raises(NetfitError, match=pattern):
            netfit.load(run)
    assert snapshot(run) == before  # nothing on disk was touched


RUN_CASES = {
    "metrics of the wrong type": (
        lambda b: b["metrics"].update(test_accuracy="high"),
        r'run\.json: metrics\.test_accuracy = "high": Input should be a valid number'),
    "epochs_run as text": (
        lambda b: b["training"].update(epochs_run="2"),
        r'run\.json: training\.epochs_run = "2": Input should be a valid integer'),
    "more epochs than the spec": (
        lambda b: b["training"].update(epochs_run=30),
        r"run\.json: training\.epochs_run = 30: more than the spec's train\.epochs \(3\)"),
    "unknown top-level key": (
        lambda b: b.update(note="hello"),
        r"run\.json: unknown key 'note'"),
    "a hash that is not hex": (
        lambda b: set_hash(b, "metrics.csv", "Z" * 64),
        r"run\.json: files\.metrics\.csv\.sha256 = \"ZZZ"),
    "a preparation missing a key": (
        lambda b: b["preparation"].pop("input_scaler"),
        r"run\.json.*preparation.*input_scaler"),  # Preparation.from_dict words the rest
    "a preparation that is not an object": (
        lambda b: b.update(preparation=[1, 2]),
        r"run\.json: preparation = \[1, 2\]"),
}


@pytest.mark.parametrize("case", RUN_CASES)
def test_a_crafted_run_json_is_refused_by_load_naming_the_field(run, case):
    edit, pattern = RUN_CASES[case]
    reseal(run / "run.json", edit)
    with pytest.raises(NetfitError, match=pattern):
        netfit.load(run)


@pytest.mark.parametrize("command, case", [
    ("evaluate", "metrics of the wrong type"),
    ("evaluate", "history row with an extra key"),
    ("resume", "truncated torch RNG state"),
    ("resume", "steps_into_epoch of a million"),
    ("resume", "optimizer state of the wrong shape"),
])
def test_the_cli_refuses_crafted_runs_in_one_line_with_exit_2(run, command, case):
    if case in RUN_CASES:
        edit, pattern = RUN_CASES[case]
        reseal(run / "run.json", edit)
    else:
        edit, pattern = CHECKPOINT_CASES[case]
        edit(run)
    before = snapshot(run)
    args = ("evaluate", run) if command == "evaluate" else ("train", "--resume", run, "--set", "train.epochs=4")
    proc = cli(*args)
    assert_one_line_exit_2(proc)
    assert re.search(pattern, proc.stderr), proc.stderr
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- bounded reading


def test_a_run_json_of_100000_nested_arrays_is_refused_in_milliseconds(run):
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    start = time.perf_counter()
    with pytest.raises(NetfitError, match=r"run\.json nests more than 100 levels deep"):
        netfit.load(run)
    assert time.perf_counter() - start < 1.0
    assert_one_line_exit_2(cli("evaluate", run), "nests more than")


def test_a_state_json_larger_than_any_netfit_writes_is_refused_unread(run):
    with open(latest(run) / "state.json", "r+b") as f:
        f.truncate(65 * 2**20)  # sparse: costs no disk, and must cost no memory either
    with pytest.raises(NetfitError, match=r"state\.json' is 68\.2 MB, more than a run file can be"):
        netfit.resume(run, epochs=4, progress=None)


@pytest.mark.parametrize("replacement", ["FIFO", "/dev/zero", "10 GB sparse file"])
def test_weights_replaced_by_a_fifo_a_device_or_a_huge_file_are_refused_at_once(run, replacement):
    weights = run / "model.safetensors"
    weights.unlink()
    if replacement == "FIFO":
        os.mkfifo(weights)
    elif replacement == "/dev/zero":
        weights.symlink_to("/dev/zero")
    else:
        with open(weights, "wb") as f:
            f.truncate(10 * 2**30)
    # A 3 GB address space: reading the replacement whole would fail with MemoryError (exit 1).
    proc = cli("evaluate", run, timeout=60, limit_memory=3 * 2**30)
    assert_one_line_exit_2(proc, "model.safetensors")
    if replacement == "10 GB sparse file":
        assert "is 10,737,418,240 bytes, but" in proc.stderr


# ----------------------------------------------------------------------------- signed runs


def test_a_signed_run_loads_with_its_key_and_an_unsigned_run_without_one(table, template, tmp_path, monkeypatch):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    signed = train(table, tmp_path)
    for path in [signed / "run.json", signed / "run-id.json", latest(signed) / "state.json",
                 signed / "checkpoints" / "best" / "state.json"]:
        body = json.loads(path.read_text())
        assert "hmac_sha256_of_body" in body and "sha256_of_body" not in body
    model = netfit.load(signed)
    resumed = netfit.resume(signed, epochs=4, progress=None)  # a resume with the key keeps signing
    assert "hmac_sha256_of_body" in json.loads((latest(signed) / "state.json").read_text())
    assert len(resumed.history.epochs) == 4 and model.classes == ["a", "b", "c"]
    monkeypatch.delenv("NETFIT_SIGNING_KEY")
    netfit.load(template)


def test_a_signed_run_is_refused_without_the_key(table, tmp_path, monkeypatch):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    signed = train(table, tmp_path)
    monkeypatch.delenv("NETFIT_SIGNING_KEY")
    with pytest.raises(NetfitError, match="is signed; set NETFIT_SIGNING_KEY to the key it was signed with"):
        netfit.load(signed)
    with pytest.raises(NetfitError, match="is signed; set NETFIT_SIGNING_KEY"):
        netfit.resume(signed, epochs=4, progress=None)


def _zero_weights(run_dir: Path) -> None:
    edit_tensors(run_dir, "model.safetensors", "run.json",
                 lambda t: t.update({k: torch.zeros_like(v) for k, v in t.items()}))


def test_zeroed_weights_pass_a_plain_seal_but_not_a_signed_one(table, template, tmp_path, monkeypatch):
    # What a plain seal does not do: an unsigned run edited on purpose and re-sealed loads, and
    # predicts one class for every row. This is why signing exists.
    unsigned = Path(shutil.copytree(template, tmp_path / "unsigned"))
    _zero_weights(unsigned)
    X = np.random.default_rng(1).normal(size=(50, 6))
    assert len(set(netfit.load(unsigned).predict(X).tolist())) == 1

    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    signed = train(table, tmp_path / "signed")
    monkeypatch.delenv("NETFIT_SIGNING_KEY")
    _zero_weights(signed)  # re-hashed and re-sealed by someone without the key: a plain SHA-256 seal
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    with pytest.raises(NetfitError, match=r"run\.json is not signed with NETFIT_SIGNING_KEY"):
        netfit.load(signed)
    proc = cli("evaluate", signed, env={**ENV, "NETFIT_SIGNING_KEY": KEY})
    assert_one_line_exit_2(proc, "is not signed with NETFIT_SIGNING_KEY")


def test_zeroed_weights_signed_with_another_key_are_refused(table, tmp_path, monkeypatch):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    signed = train(table, tmp_path)
    monkeypatch.setenv("NETFIT_SIGNING_KEY", OTHER_KEY)
    _zero_weights(signed)
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    with pytest.raises(NetfitError, match=r"run\.json does not carry a valid signature under NETFIT_SIGNING_KEY"):
        netfit.load(signed)


def test_a_signed_checkpoint_edited_and_resealed_without_the_key_is_refused_on_resume(table, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    signed = train(table, tmp_path)
    monkeypatch.delenv("NETFIT_SIGNING_KEY")
    edit_tensors(latest(signed), "weights.safetensors", "state.json",
                 lambda t: t.update({k: torch.zeros_like(v) for k, v in t.items()}))
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    with pytest.raises(NetfitError, match=r"epoch-0003/state\.json is not signed with NETFIT_SIGNING_KEY"):
        netfit.resume(signed, epochs=4, progress=None)


def test_an_unsigned_run_is_refused_when_a_key_is_set(template, monkeypatch):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", KEY)
    with pytest.raises(NetfitError, match="is not signed with NETFIT_SIGNING_KEY"):
        netfit.load(template)


@pytest.mark.parametrize("key", ["short", ""])
def test_a_signing_key_shorter_than_16_bytes_is_refused(template, monkeypatch, capsys, key):
    monkeypatch.setenv("NETFIT_SIGNING_KEY", key)
    assert main(["evaluate", str(template)]) == 2
    err = capsys.readouterr().err
    assert f"NETFIT_SIGNING_KEY is {len(key)} bytes; a signing key needs at least 16" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------- checkpoints belong to their run


def test_another_runs_checkpoints_swapped_in_are_refused_naming_both_runs(table, tmp_path):
    # Same spec, same data, same seed: the two runs' checkpoints differ only in the run they name.
    a, b = train(table, tmp_path / "a"), train(table, tmp_path / "b")
    shutil.rmtree(a / "checkpoints")
    shutil.copytree(b / "checkpoints", a / "checkpoints")
    with pytest.raises(NetfitError) as resume_refused:
        netfit.resume(a, epochs=4, progress=None)
    with pytest.raises(NetfitError) as load_refused:
        netfit.load(a)
    id_a = json.loads((a / "run-id.json").read_text())["run_id"]
    id_b = json.loads((b / "run-id.json").read_text())["run_id"]
    named = f"checkpoint {a / 'checkpoints' / 'epoch-0001'} belongs to run {id_b}, not to run {id_a} ({a})"
    assert named in str(resume_refused.value) and named in str(load_refused.value)
    assert_one_line_exit_2(cli("train", "--resume", a, "--set", "train.epochs=4"), str(id_b), str(id_a))


def test_another_runs_run_json_swapped_in_is_refused(table, tmp_path):
    a, b = train(table, tmp_path / "a"), train(table, tmp_path / "b")
    shutil.copy(b / "run.json", a / "run.json")
    with pytest.raises(NetfitError, match=r"run\.json belongs to run [0-9a-f]{32}, not to run [0-9a-f]{32}"):
        netfit.load(a)


def test_a_run_of_the_older_format_is_refused_with_train_it_again(run):
    no_id = Path(shutil.copytree(run, run.parent / "no-id"))
    reseal(run / "run.json", lambda b: b.update(format="netfit-run/1"))
    with pytest.raises(NetfitError, match=r"run\.json was made by an older netfit \(netfit-run/1.*train it again"):
        netfit.load(run)
    state(run, lambda b: b.update(format="netfit-checkpoint/1"))
    (run / "run.json").unlink()
    with pytest.raises(NetfitError, match=r"state\.json was made by an older netfit.*train it again"):
        netfit.resume(run, epochs=4, progress=None)
    (no_id / "run-id.json").unlink()  # the old format had no identity file
    with pytest.raises(NetfitError, match="has no run-id.json: it was made by an older netfit"):
        netfit.load(no_id)


# ----------------------------------------------------------------------------- the lock


def test_deleting_lock_files_does_not_let_a_second_process_train_the_run(table, tmp_path):
    spec_file = tmp_path / "spec.toml"
    # No validation part (so no best/ to write every epoch): A trains a few seconds past its first checkpoint.
    spec_file.write_text(f'[model]\nhidden = [16]\n[data]\npath = "{table}"\ntarget = "label"\nval_fraction = 0\n'
                         "[train]\nepochs = 40\nbatch_size = 16\ndevice = \"cpu\"\ncheckpoint_every = 5\n")
    out = tmp_path / "out"
    go = tmp_path / "go"
    # B imports torch and netfit before A starts, then waits: its attempt lands while A trains.
    b_code = ("import pathlib, sys, time; import netfit.api; from netfit.cli import main\n"
              f"go = pathlib.Path({str(go)!r})\n"
              "while not go.exists(): time.sleep(0.01)\n"
              "sys.exit(main(['train', '--resume', go.read_text(), '--quiet']))\n")
    b = subprocess.Popen([sys.executable, "-c", b_code], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    a = subprocess.Popen([sys.executable, "-m", "netfit", "train", str(spec_file), "--out", str(out), "--quiet"],
                         env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not list(out.glob("*/checkpoints/epoch-*")):  # A holds the lock once it writes a checkpoint
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (run_dir,) = out.iterdir()
        for lock in run_dir.rglob(".lock"):
            lock.unlink()
        go.write_text(str(run_dir))
        _, b_err = b.communicate(timeout=TIMEOUT)
        a_still_training = a.poll() is None
        _, a_err = a.communicate(timeout=TIMEOUT)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
    assert b.returncode == 2 and "is being trained by another netfit process" in b_err, b_err
    assert a_still_training, "A finished before B was refused: B's refusal was not the lock's doing"
    assert a.returncode == 0, a_err
    assert netfit.load(run_dir).metrics["epochs"] == 40


# ----------------------------------------------------------------------------- the tables the checks rely on


def test_the_optimizer_state_table_matches_what_each_registered_optimizer_keeps():
    from netfit.optim import OPTIMIZERS, build_optimizer
    from netfit.runformat import OPTIMIZER_STATE
    from netfit.spec import TrainSpec

    assert set(OPTIMIZER_STATE) == set(OPTIMIZERS.names())
    for name in OPTIMIZERS.names():
        for extra in ({}, {"momentum": 0.9}):
            try:
                options = TrainSpec(optimizer={"name": name, **extra}).optimizer
            except ValueError:
                continue  # this optimizer has no momentum
            net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))
            optimizer = build_optimizer(net.parameters(), options, 0.01, 0.0)
            net(torch.randn(5, 3)).sum().backward()
            optimizer.step()
            torch_class, keys = OPTIMIZER_STATE[name]
            assert type(optimizer).__name__ == torch_class
            kept = optimizer.state_dict()["state"]
            assert all(set(s) == keys(options) for s in kept.values()) and (bool(kept) == bool(keys(options)))


def test_history_rows_have_exactly_the_fields_of_an_epoch_record():
    from dataclasses import fields

    from netfit.runformat import HistoryRow
    from netfit.history import EpochRecord

    assert list(HistoryRow.model_fields) == [f.name for f in fields(EpochRecord)]

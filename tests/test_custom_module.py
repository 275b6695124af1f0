"""A user's own model.module: checked against its data and loss before the first step, shown by
summary, and never imported because a run folder names it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import netfit
from netfit import NetfitError
from netfit.cli import main
from netfit.storage import SEAL_KEY, dump_sealed_json

TESTS = Path(__file__).resolve().parent


def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    return load_breast_cancer(return_X_y=True)


def _digits():
    from sklearn.datasets import load_digits

    return load_digits(return_X_y=True)


def test_the_tutorials_softmax_network_is_refused_before_the_first_step(fashion_mnist):
    spec = {"model": {"module": "custom_module:TutorialSoftmaxNet"},
            "data": {"dataset": "fashion-mnist", "data_dir": str(fashion_mnist)}, "train": {"epochs": 3}}
    with pytest.raises(NetfitError, match=r"returns probabilities .*ends in softmax.*cross_entropy applies "
                                          r"log-softmax itself.*model.allow_probability_outputs = true"):
        netfit.fit(spec, out=None, progress=None, on_epoch_end=_no_epoch_may_run)


def _no_epoch_may_run(record, network):
    raise AssertionError("a step ran before the check")


def test_an_expert_who_means_it_can_train_a_softmax_network():
    X, y = _digits()
    spec = {"model": {"module": "custom_module:TutorialSoftmaxNet", "kwargs": {"inputs": 64},
                      "allow_probability_outputs": True}, "train": {"epochs": 1}}
    run = netfit.fit(spec, X, y, out=None, progress=None)
    assert run.metrics["epochs"] == 1


def test_a_sigmoid_ending_network_is_refused_for_bce():
    X, y = _breast_cancer()
    spec = {"model": {"module": "custom_module:SigmoidNet"}, "train": {"loss": "bce", "epochs": 1}}
    with pytest.raises(NetfitError, match=r"inside \[0, 1\].*ends in sigmoid.*bce applies the sigmoid itself"):
        netfit.fit(spec, X, y, out=None, progress=None)


def test_a_logits_network_passes_the_check_and_trains_as_before():
    X, y = _digits()
    spec = {"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64}}, "train": {"epochs": 2}}
    first = netfit.fit(spec, X, y, out=None, progress=None)
    second = netfit.fit(spec, X, y, out=None, progress=None)
    # The check draws its noise from a generator of its own: training is as reproducible as ever.
    assert first.history.epochs[-1].train_loss == second.history.epochs[-1].train_loss


def test_a_module_of_the_wrong_input_width_is_refused_naming_both_widths():
    X, y = _digits()
    spec = {"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 784}}, "train": {"epochs": 1}}
    with pytest.raises(NetfitError, match=r"cannot take rows of 64 features \(its first Linear layer takes 784\)"):
        netfit.fit(spec, X, y, out=None, progress=None)


def test_a_module_of_the_wrong_output_width_is_refused_naming_the_classes():
    X, y = _digits()
    spec = {"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64, "classes": 3}},
            "train": {"epochs": 1}}
    with pytest.raises(NetfitError, match=r"returns outputs of shape \(\d+, 3\).*10 classes needs \(rows, 10\)"):
        netfit.fit(spec, X, y, out=None, progress=None)


@pytest.mark.parametrize("key, value", [("hidden", [64]), ("activation", "tanh"), ("batchnorm", True),
                                        ("dropout", 0.5), ("input", 64), ("output", 10), ("init", "kaiming")])
def test_layer_keys_next_to_a_module_are_refused_not_ignored(key, value):
    with pytest.raises(NetfitError, match=rf"model.{key} describes netfit's own layers .*custom_module:TinyNet"):
        netfit.spec.spec_from_dict({"model": {"module": "custom_module:TinyNet", key: value}})


def test_a_spec_with_a_module_reads_back_as_itself():
    spec = netfit.spec.spec_from_dict({"model": {"module": "custom_module:TinyNet", "kwargs": {"width": 4}}})
    assert netfit.spec.spec_from_dict(spec.to_dict()) == spec


def test_summary_shows_a_custom_module(capsys, tmp_path):
    spec = tmp_path / "custom.toml"
    spec.write_text('[model]\nmodule = "custom_module:TinyNet"\nkwargs = {inputs = 64, width = 8}\n'
                    '[data]\ndataset = "digits"\n')
    assert main(["summary", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "body.0" in out and "Linear" in out and f"{64 * 8 + 8:,}" in out
    assert f"total trainable parameters: {64 * 8 + 8 + 8 * 10 + 10:,}" in out


def test_summary_of_a_custom_module_run_needs_trust(capsys, tmp_path):
    X, y = _digits()
    run = netfit.fit({"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64}}, "train": {"epochs": 1}},
                     X, y, out=tmp_path, progress=None)
    assert main(["summary", str(run.run_dir)]) == 2
    assert "--trust-module" in capsys.readouterr().err
    assert main(["summary", str(run.run_dir), "--trust-module"]) == 0
    assert "body.2" in capsys.readouterr().out


# ----------------------------------------------------------------------------- no code from a run folder


def _reseal_checkpoint_spec(checkpoint: Path, model: dict) -> None:
    """Edit the spec a checkpoint records, with every hash recomputed, as someone crafting a run would."""
    from netfit.checkpoint import spec_hash

    state = checkpoint / "state.json"
    body = json.loads(state.read_text())
    body.pop(SEAL_KEY)
    edited = netfit.spec.spec_from_dict({**body["spec"], "model": model})
    body["spec"], body["spec_sha256"] = edited.to_dict(), spec_hash(edited)
    state.write_bytes(dump_sealed_json(body))


def test_resume_never_imports_a_module_that_a_checkpoint_names(tmp_path):
    X, y = _digits()
    np.savez(tmp_path / "digits.npz", X=X, y=y)
    out = tmp_path / "runs"
    code = main(["train", "--set", f"data.path={tmp_path / 'digits.npz'}", "--set", "model.hidden=[8]",
                 "--set", "train.epochs=3", "--out", str(out), "--quiet"])
    assert code == 0
    (run_dir,) = out.iterdir()
    (run_dir / "run.json").unlink()  # an unfinished run, resumable from its checkpoints
    marker = tmp_path / "code-ran"
    for checkpoint in (run_dir / "checkpoints").iterdir():
        _reseal_checkpoint_spec(checkpoint, {"module": "subprocess:Popen",
                                             "kwargs": {"args": ["touch", str(marker)]}})
    proc = subprocess.run([sys.executable, "-m", "netfit", "train", "--resume", str(run_dir),
                           "--set", "train.epochs=4"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert not marker.exists(), "a module named in a run folder was imported and run"
    assert proc.returncode == 2, proc.stderr
    assert "subprocess:Popen" in proc.stderr and "--trust-module" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_resume_of_a_custom_module_run_takes_the_class_or_trust(tmp_path):
    from custom_module import TinyNet

    X, y = _digits()
    spec = {"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64}}, "train": {"epochs": 2}}
    run = netfit.fit(spec, X, y, out=tmp_path, progress=None)
    with pytest.raises(NetfitError, match="never imports code named in a run folder"):
        netfit.resume(run.run_dir, X, y, epochs=3, progress=None)
    netfit.resume(run.run_dir, X, y, epochs=3, progress=None, module=TinyNet)
    netfit.resume(run.run_dir, X, y, epochs=4, progress=None, trust_module=True)
    netfit.resume(run.run_dir, X, y, epochs=5, progress=None, spec={**spec, "train": {"epochs": 5}})
    assert len(netfit.load(run.run_dir, trust_module=True).metrics) > 0

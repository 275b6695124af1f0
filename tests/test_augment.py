"""data.augment: random shifts and mirror flips of training images.

What a user relies on: each image is moved and mirrored exactly as documented (checked against a
pixel-by-pixel reference); the draws come from the seed and the epoch alone, so a run stopped
mid-epoch resumes to the very weights of an uninterrupted one; only training images change;
and data that are not images are refused in one line before anything trains.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError
from netfit.augment import ImageAugment
from netfit.checkpoint import list_checkpoints, read_checkpoint
from netfit.prepare import prepare
from netfit.spec import AugmentSpec

CPU = torch.device("cpu")


def _reference(image: torch.Tensor, dy: int, dx: int, mirrored: bool) -> torch.Tensor:
    """out[i, j] = image[i + dy, j' + dx] with j' = W-1-j when mirrored, else j; black outside the image."""
    h, w, c = image.shape
    out = torch.zeros_like(image)
    for i in range(h):
        for j in range(w):
            si, sj = i + dy, (w - 1 - j if mirrored else j) + dx
            if 0 <= si < h and 0 <= sj < w:
                out[i, j] = image[si, sj]
    return out


@pytest.mark.parametrize("shape", [(5, 7, 1), (4, 6, 3)])
@pytest.mark.parametrize("shift,flip", [(2, True), (1, False), (0, True)])
def test_each_image_is_shifted_and_mirrored_as_drawn(shape, shift, flip):
    h, w, c = shape
    rows = 40
    images = torch.randint(1, 256, (rows, h, w, c), dtype=torch.uint8)
    augment = ImageAugment(AugmentSpec(shift=shift, flip=flip), shape, rows, seed=3, device=CPU)
    augment.begin_epoch(1)
    batch = torch.tensor([7, 0, 39, 12, 5])
    stored = images[batch].reshape(len(batch), -1)
    before = stored.clone()
    out = augment(stored, batch).view(len(batch), h, w, c)
    assert torch.equal(stored, before)  # the stored rows are never written
    padded = w + 2 * shift
    for k, row in enumerate(batch.tolist()):
        offset, mirrored = int(augment.offsets[row]), bool(augment.mirrored[row])
        dy = round(offset / padded)
        dx = offset - dy * padded
        assert abs(dy) <= shift and abs(dx) <= shift
        assert mirrored is False or flip
        assert torch.equal(out[k], _reference(images[row], dy, dx, mirrored)), (row, dy, dx, mirrored)


def test_draws_cover_every_shift_and_depend_only_on_seed_and_epoch():
    shape, rows = (28, 28, 1), 5000
    make = lambda seed: ImageAugment(AugmentSpec(shift=2, flip=True), shape, rows, seed, CPU)  # noqa: E731
    a, b, other_seed = make(0), make(0), make(1)
    a.begin_epoch(3)
    b.begin_epoch(2)
    b.begin_epoch(3)  # what came before does not matter: a resumed run draws epoch 3 afresh
    other_seed.begin_epoch(3)
    assert torch.equal(a.offsets, b.offsets) and torch.equal(a.mirrored, b.mirrored)
    assert not torch.equal(a.offsets, other_seed.offsets)
    padded = 28 + 4
    dy = torch.round(a.offsets / padded).long()
    dx = a.offsets - dy * padded
    assert sorted(dy.unique().tolist()) == sorted(dx.unique().tolist()) == [-2, -1, 0, 1, 2]
    assert 0.45 < a.mirrored.float().mean().item() < 0.55
    first = a.offsets.clone()
    a.begin_epoch(4)
    assert (a.offsets != first).float().mean() > 0.5  # a fresh draw every epoch


MNIST = {"model": {"hidden": [64], "dropout": 0.1}, "data": {"dataset": "mnist-sample", "val_fraction": 0.1},
         "train": {"epochs": 2, "batch_size": 100, "device": "cpu", "checkpoint_every": 1}}


def _with_augment(**augment):
    return {**MNIST, "data": {**MNIST["data"], "augment": augment}}


def test_augmented_training_differs_and_resumes_mid_epoch_to_the_same_weights(tmp_path, cut_at_step):
    spec = _with_augment(shift=2, flip=True)
    plain = netfit.fit(MNIST, out=tmp_path / "plain", progress=None)
    reference = netfit.fit(spec, out=tmp_path / "whole", progress=None)
    assert reference.history.epochs[0].train_loss > plain.history.epochs[0].train_loss  # the images did change
    run_dir = cut_at_step(spec, tmp_path / "cut", 72 + 30)  # 72 steps an epoch (7,200 training rows): epoch 2, step 30
    state = read_checkpoint(list_checkpoints(run_dir)[-1]).training_state()
    assert (state.epochs_done, state.steps_into_epoch) == (1, 30)
    resumed = netfit.resume(run_dir, progress=None)
    for name, tensor in reference.model.network.state_dict().items():
        assert torch.equal(tensor, resumed.model.network.state_dict()[name]), name
    # Validation and test images are never changed: the same weights score the same on them.
    assert resumed.metrics["test_accuracy"] == reference.metrics["test_accuracy"]
    assert resumed.history.epochs[-1].val_loss == pytest.approx(reference.history.epochs[-1].val_loss, rel=1e-6)


def test_validation_and_test_images_are_scored_unchanged(tmp_path):
    run = netfit.fit(_with_augment(shift=3, flip=True), out=tmp_path, progress=None)
    data = prepare(run.spec)  # the same split, read again
    network = run.model.network.eval()
    with torch.no_grad():
        logits = network(data.test.inputs(slice(None)))
    accuracy = (logits.argmax(1) == data.test.y).sum().item() / len(data.test)
    assert accuracy == pytest.approx(run.metrics["test_accuracy"], abs=1e-9)


def test_data_that_are_not_images_are_refused_before_training():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    not_images = r"data\.augment moves and mirrors images, but the rows of .* are not images of a known height"
    with pytest.raises(NetfitError, match=not_images):
        netfit.fit({"data": {"augment": {"flip": True}}, "train": {"epochs": 1}}, X, y, progress=None)
    with pytest.raises(NetfitError, match=r"shift = 28 would move images of height 28 and width 28 out of sight"):
        netfit.fit(_with_augment(shift=28), progress=None)
    # Left at its defaults, [data.augment] changes nothing and is accepted anywhere.
    netfit.fit({"data": {"augment": {"shift": 0, "flip": False}}, "train": {"epochs": 1}}, X, y, progress=None)


def test_the_cli_refuses_augmenting_a_table_in_one_line(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[data]\ndataset = "diabetes"\n[data.augment]\nshift = 1\n[train]\nepochs = 1\n')
    done = subprocess.run([sys.executable, "-m", "netfit", "train", str(spec), "--out", str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.augment" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_negative_shift_is_a_spec_error():
    with pytest.raises(NetfitError, match=r"data\.augment\.shift"):
        netfit.fit(_with_augment(shift=-1), progress=None)


def test_augmented_images_stay_uint8_and_scale_as_the_others():
    # A shifted image of an IDX dataset is still 0..255 pixels: the fitted scaler applies unchanged.
    images = np.arange(2 * 28 * 28, dtype=np.int64).reshape(2, 784) % 256
    stored = torch.from_numpy(images.astype(np.uint8))
    augment = ImageAugment(AugmentSpec(shift=1), (28, 28, 1), 2, 0, CPU)
    augment.begin_epoch(1)
    out = augment(stored, torch.arange(2))
    assert out.dtype == torch.uint8 and out.shape == (2, 784)


@pytest.mark.parametrize("shape", [(120, 12, 10), (120, 9, 16, 3), (120, 36, 64)])
def test_arrays_of_images_are_augmented_with_their_own_height_width_and_channels(shape):
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, shape, dtype=np.uint8), np.repeat(np.arange(3), 40)
    spec = {"model": {"hidden": [8]}, "data": {"augment": {"shift": 2, "flip": True}}, "train": {"epochs": 1}}
    netfit.fit(spec, X, y, out=None, progress=None)
    too_far = min(shape[1], shape[2])
    spec["data"]["augment"]["shift"] = too_far
    with pytest.raises(NetfitError, match=f"would move images of height {shape[1]} and width {shape[2]} out of sight"):
        netfit.fit(spec, X, y, out=None, progress=None)


def test_flattened_rows_of_pixels_are_refused_they_could_be_any_shape():
    # 2,304 pixels are 48x48, or 36x64, or 24x96: netfit will not guess which.
    X, y = np.zeros((60, 2304), dtype=np.uint8), np.repeat(np.arange(3), 20)
    spec = {"data": {"augment": {"shift": 1}}, "train": {"epochs": 1}}
    with pytest.raises(NetfitError, match=r"array of shape \(n, height, width\[, channels\]\)"):
        netfit.fit(spec, X, y, out=None, progress=None)


def test_numpy_files_of_images_keep_their_shape_and_flat_ones_are_refused(tmp_path):
    rng = np.random.default_rng(0)
    images, y = rng.integers(0, 256, (90, 12, 10), dtype=np.uint8), np.repeat(np.arange(3), 30)
    np.savez(tmp_path / "images.npz", X=images, y=y)
    np.savez(tmp_path / "flat.npz", X=images.reshape(90, -1), y=y)
    spec = lambda name, shift: {"model": {"hidden": [8]}, "train": {"epochs": 1},  # noqa: E731
                                "data": {"path": str(tmp_path / name), "augment": {"shift": shift}}}
    netfit.fit(spec("images.npz", 9), out=None, progress=None)
    with pytest.raises(NetfitError, match="would move images of height 12 and width 10 out of sight"):
        netfit.fit(spec("images.npz", 10), out=None, progress=None)
    with pytest.raises(NetfitError, match="the rows of flat.npz are not images of a known height and width"):
        netfit.fit(spec("flat.npz", 1), out=None, progress=None)


def test_idx_images_keep_their_shape_whatever_the_scaling():
    netfit.fit({**_with_augment(shift=1), "train": {**MNIST["train"], "epochs": 1}, "model": {"hidden": [8]},
                "data": {**_with_augment(shift=1)["data"], "scaling": "standardize"}}, out=None, progress=None)


def test_mirroring_handwriting_is_cautioned_in_one_line():
    log = io.StringIO()
    netfit.fit({**_with_augment(flip=True), "train": {**MNIST["train"], "epochs": 1}}, out=None, progress=log)
    lines = log.getvalue().splitlines()
    assert "netfit: training images change every epoch: mirror flips" in lines
    assert sum("caution: mnist-sample is handwriting" in line for line in lines) == 1

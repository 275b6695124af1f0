"""Image folders end to end, on real MNIST digits written as PNG and JPEG files into class folders."""

import json
import os
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import netfit
from netfit.cli import main
from netfit.data.formats import FORMATS, infer_format, read_idx_pair
from netfit.data.images import read_image_folder
from netfit.errors import NetfitError
from netfit.preparation import Preparation

MNIST = Path("/work/shared/datasets/mnist-t10k")
PER_CLASS = 100
SMALL = {"model": {"hidden": [64]}, "train": {"epochs": 4, "batch_size": 32}}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits():
    """The first PER_CLASS MNIST test digits of each class: X (n, 784) uint8 and y int64, class by class."""
    X, y, *_ = read_idx_pair(MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz")
    rows = np.concatenate([np.flatnonzero(y == c)[:PER_CLASS] for c in range(10)])
    return X[rows], y[rows]


def write_folder(root: Path, X: np.ndarray, y: np.ndarray, jpeg_every: int = 0) -> Path:
    """Write each row as root/<label>/<index>.png (every ``jpeg_every``-th as .jpg); names sort in row order."""
    for i, (pixels, label) in enumerate(zip(X, y)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".jpg" if jpeg_every and i % jpeg_every == 0 else ".png"
        Image.fromarray(pixels.reshape(28, 28)).save(folder / f"{i:05d}{suffix}", quality=95)
    return root


@pytest.fixture(scope="module")
def png_folder(digits, tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("png") / "digits", *digits)


@pytest.fixture(scope="module")
def png_run(png_folder, tmp_path_factory):
    """A small run trained on the PNG folder, shared by the read-only tests below."""
    spec = {**SMALL, "data": {"path": str(png_folder), "test_fraction": 0.2}}
    return netfit.fit(spec, out=tmp_path_factory.mktemp("runs"), progress=None).run_dir


def one_line_error(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netfit: error: "), err
    return lines[0]


# ----------------------------------------------------------------------------- reading


def test_png_folder_gives_the_idx_pixels_and_class_folder_labels(digits, png_folder):
    images = read_image_folder(png_folder)
    assert images.X.dtype == np.uint8 and images.X.shape == (10 * PER_CLASS, 784)
    np.testing.assert_array_equal(images.X, digits[0])  # PNG is lossless: the very same pixels
    assert images.y.tolist() == [str(v) for v in digits[1]]
    assert (images.geometry.height, images.geometry.width, images.geometry.mode) == (28, 28, "L")
    assert not images.geometry.resized


def test_jpeg_files_are_read_beside_png(digits, tmp_path):
    folder = write_folder(tmp_path / "mixed", *digits, jpeg_every=4)
    images = read_image_folder(folder)
    jpeg = np.array([p.suffix == ".jpg" for p in images.files])
    assert jpeg.sum() == len(jpeg) // 4
    np.testing.assert_array_equal(images.X[~jpeg], digits[0][~jpeg])
    # JPEG is lossy: close to the original pixels, not equal.
    error = np.abs(images.X[jpeg].astype(int) - digits[0][jpeg]).mean()
    assert 0 < error < 5


def test_infer_format_tells_image_folders_from_idx_folders(png_folder, tmp_path, write_idx):
    assert infer_format(png_folder) == "images"
    assert infer_format(png_folder / "3") == "images"  # images directly in the folder
    assert infer_format(png_folder / "3" / "00300.png") == "images"
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    assert infer_format(tmp_path) == "idx"
    assert "images" in FORMATS.names()


def test_hidden_entries_are_skipped_and_other_files_listed_once(digits, tmp_path, capsys):
    folder = write_folder(tmp_path / "d", digits[0][:20], np.array([0] * 10 + [1] * 10))
    (folder / ".DS_Store").write_text("x")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / "0" / "notes.txt").write_text("x")
    images = read_image_folder(folder)
    assert len(images.X) == 20 and sorted(set(images.y.tolist())) == ["0", "1"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipping 1 file" in err and "notes.txt" in err


def test_resize_to_image_size(digits, tmp_path):
    folder = write_folder(tmp_path / "d", digits[0][:20], np.array([0] * 10 + [1] * 10))
    Image.fromarray(digits[0][0].reshape(28, 28)).resize((40, 32)).save(folder / "1" / "big.png")
    images = read_image_folder(folder, size=[16, 12])
    assert images.X.shape == (21, 16 * 12)
    assert images.geometry.resized and (images.geometry.height, images.geometry.width) == (16, 12)
    expected = np.asarray(Image.fromarray(digits[0][0].reshape(28, 28)).resize((12, 16), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(images.X[0], expected.reshape(-1))


def test_one_rgb_image_makes_an_auto_folder_rgb(digits, tmp_path, capsys):
    folder = write_folder(tmp_path / "d", digits[0][:20], np.array([0] * 10 + [1] * 10))
    Image.fromarray(np.full((28, 28, 3), (200, 30, 30), np.uint8)).save(folder / "1" / "red.png")
    images = read_image_folder(folder)
    assert images.geometry.mode == "RGB" and images.X.shape == (21, 28 * 28 * 3)
    gray = images.X[0].reshape(28, 28, 3)
    np.testing.assert_array_equal(gray[..., 0], digits[0][0].reshape(28, 28))  # grey: R = G = B
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    assert "as RGB" in capsys.readouterr().err
    assert read_image_folder(folder, mode="L").X.shape == (21, 784)


# ----------------------------------------------------------------------------- training, predict, evaluate


def test_png_folder_trains_as_well_as_the_same_rows_from_idx(digits, png_folder, tmp_path, capsys, write_idx):
    idx = tmp_path / "idx"
    idx.mkdir()
    write_idx(idx / "t10k-images-idx3-ubyte.gz", digits[0].reshape(-1, 28, 28))
    write_idx(idx / "t10k-labels-idx1-ubyte.gz", digits[1].astype(np.uint8))
    settings = ["--set", "model.hidden=[64]", "--set", "train.epochs=4", "--set", "train.batch_size=32",
                "--set", "data.test_fraction=0.2", "--out", tmp_path / "runs", "--json", "--quiet"]
    accuracy = {}
    for name, path in (("png", png_folder), ("idx", idx)):
        code, out, _ = run_cli(capsys, "train", "--set", f"data.path={json.dumps(str(path))}", *settings)
        assert code == 0
        accuracy[name] = json.loads(out)["metrics"]["test_accuracy"]
    # Same pixels, same order, same split and seed: the same network, up to float summation order.
    assert accuracy["png"] > 0.8
    assert abs(accuracy["png"] - accuracy["idx"]) <= 0.01, accuracy


def test_predict_on_a_folder_and_on_single_files(capsys, png_run, png_folder, tmp_path):
    code, out, _ = run_cli(capsys, "predict", png_run, png_folder)
    assert code == 0
    rows = out.strip().splitlines()
    assert rows[0] == "path,prediction" and len(rows) == 1 + 10 * PER_CLASS
    right = sum(Path(path).parent.name == label for path, label in (r.split(",") for r in rows[1:]))
    assert right / (len(rows) - 1) > 0.8

    files = [png_folder / "3" / "00300.png", png_folder / "7" / "00700.png"]
    code, out, _ = run_cli(capsys, "predict", png_run, *files, "--proba", "-o", tmp_path / "p.csv")
    assert code == 0
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0].startswith("path,prediction,proba_0,") and len(rows) == 3
    assert [r.split(",")[0] for r in rows[1:]] == [str(f) for f in files]
    assert abs(sum(float(v) for v in rows[1].split(",")[2:]) - 1) < 1e-4
    line = one_line_error(capsys, "predict", png_run, files[0], "-o", tmp_path / "p.csv")
    assert "already exists" in line and "--force" in line


def test_python_predict_takes_paths_and_uint8_arrays(png_run, png_folder, digits):
    model = netfit.load(png_run)
    file = png_folder / "3" / "00300.png"
    by_path = model.predict(str(file))
    by_array = model.predict(digits[0][[300]].reshape(1, 28, 28))
    assert by_path.tolist() == by_array.tolist() and len(by_path) == 1
    assert model.predict([file, png_folder / "7"]).shape == (1 + PER_CLASS,)
    with pytest.raises(NetfitError, match=r"shape \(14, 56\).*\(28, 28, 1\)"):
        model.predict(digits[0][:2].reshape(2, 14, 56))


def test_evaluate_scores_an_image_folder_and_the_test_part(capsys, png_run, png_folder):
    code, out, _ = run_cli(capsys, "evaluate", png_run, "--data", png_folder, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["report"]["rows"] == 10 * PER_CLASS and report["metrics"]["accuracy"] > 0.8
    code, out, _ = run_cli(capsys, "evaluate", png_run, "--json")
    assert code == 0 and json.loads(out)["report"]["rows"] == 2 * PER_CLASS


def test_a_resized_run_resizes_new_images(digits, tmp_path, capsys):
    folder = write_folder(tmp_path / "d", digits[0][::5], digits[1][::5])
    spec = {"model": {"hidden": [16]}, "train": {"epochs": 1}, "data": {"path": str(folder), "image_size": [14, 14]}}
    run_dir = netfit.fit(spec, out=tmp_path / "runs", progress=None).run_dir
    saved = json.loads((run_dir / "run.json").read_text())["preparation"]
    assert saved["image"] == {"height": 14, "width": 14, "mode": "L", "resized": True}
    assert saved["input_size"] == 196
    Image.fromarray(digits[0][0].reshape(28, 28)).resize((50, 40)).save(tmp_path / "big.png")
    code, out, _ = run_cli(capsys, "predict", run_dir, tmp_path / "big.png")
    assert code == 0 and len(out.strip().splitlines()) == 2


def test_test_path_images_are_read_with_the_training_geometry(digits, tmp_path):
    train = write_folder(tmp_path / "train", digits[0][::5], digits[1][::5])
    test = write_folder(tmp_path / "test", digits[0][1::50], digits[1][1::50])
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(test / "0" / "big-colour.png")
    spec = {"model": {"hidden": [16]}, "train": {"epochs": 1},
            "data": {"path": str(train), "test_path": str(test), "image_size": [20, 20]}}
    run = netfit.fit(spec, out=None, progress=None)
    assert run.model.preparation.image.features == 400  # grey, though the test part holds a colour image
    assert run.metrics["test_accuracy"] >= 0


def test_an_image_run_refuses_images_of_another_size_when_it_was_not_resized(capsys, png_run, tmp_path):
    Image.fromarray(np.zeros((30, 20), np.uint8)).save(tmp_path / "odd.png")
    line = one_line_error(capsys, "predict", png_run, tmp_path / "odd.png")
    assert "odd.png" in line and "20x30" in line and "28x28" in line
    # A run's size is fixed: the fix is to resize the file or to train again, not to set data.image_size.
    assert "training images are 28x28; resize it to 28x28, or train again with data.image_size" in line


def test_evaluate_refuses_a_class_the_run_never_saw(capsys, png_run, digits, tmp_path):
    write_folder(tmp_path / "d", digits[0][:3], np.array(["cat"] * 3))
    assert "'cat' does not appear in the training rows" in one_line_error(capsys, "evaluate", png_run, "--data",
                                                                            tmp_path / "d")


# ----------------------------------------------------------------------------- bad folders: exit 2, one line


@pytest.fixture
def small_folder(digits, tmp_path):
    return write_folder(tmp_path / "d", digits[0][::50], digits[1][::50])  # 2 images per class


def train_error(capsys, folder: Path, *extra) -> str:
    return one_line_error(capsys, "train", "--set", f"data.path={json.dumps(str(folder))}", "--set",
                          "train.epochs=1", "--out", folder.parent / "runs", *extra)


def test_corrupt_png_is_named(capsys, small_folder):
    junk, truncated = small_folder / "4" / "00008.png", small_folder / "5" / "00010.png"
    good = junk.read_bytes()
    junk.write_bytes(b"not an image")  # refused from its header, in the first pass over the files
    line = train_error(capsys, small_folder)
    assert "00008.png" in line and "not a PNG or JPEG" in line
    junk.write_bytes(good)
    truncated.write_bytes(truncated.read_bytes()[:100])  # a valid header, the pixels cut off
    line = train_error(capsys, small_folder)
    assert "00010.png" in line and "damaged" in line


def test_folder_without_class_subfolders(capsys, digits, tmp_path):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(digits[0][i].reshape(28, 28)).save(folder / f"{i}.png")
    assert "not in class subfolders" in train_error(capsys, folder)


def test_image_of_another_size_without_image_size(capsys, small_folder):
    Image.fromarray(np.zeros((32, 30), np.uint8)).save(small_folder / "9" / "odd.png")
    line = train_error(capsys, small_folder)
    assert "odd.png" in line and "30x32" in line and "28x28" in line and "data.image_size" in line
    code, _, _ = run_cli(capsys, "train", "--set", f"data.path={json.dumps(str(small_folder))}", "--set",
                         "data.image_size=[28,28]", "--set", "train.epochs=1", "--out", small_folder.parent / "runs",
                         "--quiet")
    assert code == 0


def test_class_folder_without_images(capsys, small_folder):
    (small_folder / "empty").mkdir()
    (small_folder / "empty" / "readme.txt").write_text("x")
    line = train_error(capsys, small_folder)
    assert "class folder" in line and "empty" in line and "holds no" in line


def test_decompression_bomb_is_refused_from_its_header(capsys, small_folder):
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 68 bytes that claim 100000 x 100000 grey pixels: 10 GB once decoded.
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
            + chunk(b"IEND", b""))
    (small_folder / "2" / "bomb.png").write_bytes(bomb)
    line = train_error(capsys, small_folder)
    assert "bomb.png" in line and "decompression bomb" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_named_like_an_image_is_refused_without_blocking(capsys, small_folder):
    os.mkfifo(small_folder / "1" / "x.png")
    line = train_error(capsys, small_folder)
    assert "x.png" in line and "FIFO" in line


def test_image_size_on_a_table_is_refused(capsys, tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n")
    line = train_error(capsys, tmp_path / "t.csv", "--set", "data.target=y", "--set", "data.image_size=[8,8]")
    assert "data.image_size" in line


def test_without_pillow_the_message_says_what_to_install(monkeypatch, small_folder):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(NetfitError, match=r"pip install 'netfit\[images\]'"):
        read_image_folder(small_folder)


def test_saved_image_geometry_must_fit_the_input_size(png_run):
    prep = json.loads((png_run / "run.json").read_text())["preparation"]
    assert Preparation.from_dict(prep).image.features == 784
    for change in ({"height": 27}, {"mode": "RGB"}, {"height": "28"}, {"resized": 1}, {"width": 0}):
        bad = {**prep, "image": {**prep["image"], **change}}
        with pytest.raises(NetfitError, match="image"):
            Preparation.from_dict(bad)


def test_the_report_draws_an_image_folders_mistakes_as_the_files_look(png_run):
    """The digits' files are white ink on black: the page's worst mistakes must not show them inverted."""
    import base64
    import io
    import re

    page = (png_run / "report.html").read_text(encoding="utf-8")
    found = re.search(r'id="fig-mistakes"[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert found, "no worst-mistakes pictures on the page"
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(found.group(1)))).convert("L"))
    # Drawn as stored, the black backgrounds fill much of the grid; inverted (gray_r) about 8% of it is dark.
    assert (pixels < 64).mean() > 0.3, f"only {(pixels < 64).mean():.0%} of the pictures is dark: drawn inverted"

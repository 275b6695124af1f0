"""The run report: drawn by a real browser, small, escaped, rebuilt by `netfit report`, honest about what it lacks."""

import base64
import csv
import hashlib
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import netfit
from netfit.cli import main
from netfit.report import REPORT, write_report

from browser import assert_drawn, browser_figures

TRAINING_FIGURES = {"fig-loss", "fig-metric", "fig-lr", "fig-time"}
EVIL_CLASS = "<script>alert(1)</script>"
EVIL_COLUMN = '<img src=x onerror="alert(2)">'
SIZE_BUDGET = 512 * 1024  # bytes of report.html for an MNIST run (measured: about 130 kB)


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def listed_files(run_dir: Path) -> dict[str, str]:
    """Every file of a run but the report, by content."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != REPORT}


CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """The shipped MNIST spec, trained by `netfit train` (2 of its epochs): training writes the page itself."""
    import contextlib

    out = tmp_path_factory.mktemp("mnist")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", str(CONFIGS / "mnist-mlp.toml"), "--set", "train.epochs=2", "--out", str(out)]) == 0
    (run_dir,) = out.iterdir()
    assert f"netfit: report: {run_dir / REPORT}" in printed.getvalue()
    model = netfit.load(run_dir)
    return netfit.api.Run(run_dir, model.spec, model.metrics, None, model)


def _write_csv(path: Path, columns: list[str], X: np.ndarray, y: np.ndarray) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow([*columns, "target"])
        writer.writerows([*row, label] for row, label in zip(X.tolist(), y.tolist()))
    return path


def _diabetes_csv(folder: Path) -> Path:
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    return _write_csv(folder / "diabetes.csv", data.feature_names, data.data, data.target)


def _regression_spec(table: Path) -> dict:
    """The shipped regression spec on diabetes as a CSV with a test part, so the page has predictions to draw."""
    spec = netfit.load_spec(CONFIGS / "regression-mlp.toml").to_dict()
    spec["data"] = {"path": str(table), "target": "target", "val_fraction": 0.2, "test_fraction": 0.2}
    spec["train"].update(epochs=10, task="regression")
    return spec


@pytest.fixture(scope="module")
def diabetes_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diabetes")
    return netfit.fit(_regression_spec(_diabetes_csv(folder)), out=folder / "runs", progress=None)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    """Breast cancer as text labels and column names that are markup: a run folder is untrusted data."""
    from sklearn.datasets import load_breast_cancer

    folder = tmp_path_factory.mktemp("cancer")
    data = load_breast_cancer()
    columns = [EVIL_COLUMN if c == "mean radius" else str(c) for c in data.feature_names]
    # "$...$" would be TeX to matplotlib: it must be drawn as written, not fail to parse.
    labels = np.where(data.target == 1, "benign $\\frac{a}{0$ & co", EVIL_CLASS)
    path = _write_csv(folder / "cancer.csv", columns, data.data, labels)
    spec = {"model": {"hidden": [16]}, "data": {"path": str(path), "target": "target", "test_fraction": 0.25},
            "train": {"epochs": 3}}
    return netfit.fit(spec, out=folder / "runs", progress=None)


# ----------------------------------------------------------------------------- a real browser draws every plot


@pytest.mark.parametrize("which, expected", [
    ("mnist_run", TRAINING_FIGURES | {"fig-confusion", "fig-mistakes"}),
    ("binary_run", TRAINING_FIGURES | {"fig-confusion", "fig-roc", "fig-pr"}),
    ("diabetes_run", TRAINING_FIGURES | {"fig-scatter", "fig-residuals"}),
])
def test_a_real_browser_draws_every_plot(request, tmp_path, which, expected):
    run = request.getfixturevalue(which)
    page = tmp_path / REPORT
    shutil.copy(run.run_dir / REPORT, page)  # the probe's copy sits beside it, outside the run folder
    assert_drawn(browser_figures(page, tmp_path), expected)


def test_the_browser_check_fails_on_a_blank_or_missing_plot(mnist_run, tmp_path):
    """The check above is not vacuous: a blank figure and a missing one are both caught."""
    from PIL import Image

    page = tmp_path / REPORT
    text = (mnist_run.run_dir / REPORT).read_text(encoding="utf-8")
    white = io.BytesIO()
    Image.new("RGB", (480, 272), "white").save(white, format="PNG")
    blank = base64.b64encode(white.getvalue()).decode()
    broken = re.sub(r'(id="fig-lr"[^>]*src="data:image/png;base64,)[^"]+', lambda m: m.group(1) + blank, text)
    broken = re.sub(r'<figure><img id="fig-time"[^>]*></figure>', "", broken)
    page.write_text(broken, encoding="utf-8")
    figures = browser_figures(page, tmp_path)
    with pytest.raises(AssertionError, match="figures drawn"):
        assert_drawn(figures, TRAINING_FIGURES | {"fig-confusion", "fig-mistakes"})
    with pytest.raises(AssertionError, match="fig-lr is blank"):
        assert_drawn(figures, TRAINING_FIGURES - {"fig-time"} | {"fig-confusion", "fig-mistakes"})


# ----------------------------------------------------------------------------- what the page holds


def test_mnist_report_is_small_and_complete(mnist_run):
    text = (mnist_run.run_dir / REPORT).read_text(encoding="utf-8")
    assert len(text.encode()) < SIZE_BUDGET, f"report.html is {len(text.encode()):,} bytes"
    assert "<script" not in text and "http://" not in text and "https://" not in text  # no code, nothing fetched
    accuracy = mnist_run.metrics["test_accuracy"]
    assert f"accuracy {accuracy:.4f}" in text  # the page's figure is the run's own
    assert "7,200 train, 800 validation, 2,000 test" in text
    assert "Most confused pairs" in text and "Worst mistakes" in text and 'id="missing"' not in text
    assert "dataset = &quot;mnist-sample&quot;" in text  # the spec, as TOML
    assert "535,818" in text  # parameters of 784-512-256-10
    assert "torch" in text and "eager" in text


def test_the_page_training_writes_counts_every_part(tmp_path):
    """The page `netfit train` writes names the rows of each part, as the page `netfit report` rebuilds does."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    run = netfit.fit({"model": {"hidden": [16]}, "data": {"test_fraction": 0.2}, "train": {"epochs": 1}}, X, y,
                     out=tmp_path, progress=None)
    text = (run.run_dir / REPORT).read_text(encoding="utf-8")
    assert "<th>rows</th><td>1,294 train, 144 validation, 359 test</td>" in text


def test_everything_from_the_run_folder_is_escaped(binary_run):
    text = (binary_run.run_dir / REPORT).read_text(encoding="utf-8")
    assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text  # the class name, shown as text
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in text  # the column name
    assert "benign $\\frac{a}{0$ &amp; co" in text


def test_training_can_hand_over_the_test_part_it_holds(mnist_run, tmp_path):
    """The encoded test part training holds gives the same figures as the part read again from the data."""
    held = (mnist_run.run_dir / REPORT).read_text(encoding="utf-8")  # training's page, from the part it held
    reread = write_report(mnist_run.run_dir, output=tmp_path / REPORT).read_text("utf-8")
    figures = re.compile(r"2,000 rows: accuracy [0-9.]+, macro F1 [0-9.]+")
    assert figures.search(reread).group() == figures.search(held).group()
    for name in ("confusion", "mistakes"):  # the same pictures, byte for byte
        image = re.compile(rf'id="fig-{name}"[^>]*src="([^"]+)"')
        assert image.search(reread).group(1) == image.search(held).group(1)


def test_in_memory_arrays_report_predictions_only_when_given(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    run = netfit.fit({"model": {"hidden": [16]}, "data": {"test_fraction": 0.2}, "train": {"epochs": 1}}, X, y,
                     out=tmp_path, progress=None)
    text = write_report(run.run_dir).read_text(encoding="utf-8")
    assert re.search(r'id="missing">Predictions are not shown: this run was trained on in-memory arrays\.<', text)
    assert 'id="fig-loss"' in text and 'id="fig-confusion"' not in text
    text = write_report(run.run_dir, run.model, (X[:300], y[:300])).read_text(encoding="utf-8")
    assert 'id="fig-confusion"' in text and "300 rows: accuracy" in text and 'id="missing"' not in text


def test_a_custom_module_is_imported_only_when_trusted(tmp_path):
    spec = {"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64}},
            "data": {"dataset": "digits"}, "train": {"epochs": 1}}
    run = netfit.fit(spec, out=tmp_path, progress=None)
    text = write_report(run.run_dir).read_text(encoding="utf-8")
    assert "Predictions are not shown: the run uses your own module &#x27;custom_module:TinyNet&#x27;" in text
    assert "--trust-module" in text and 'id="fig-loss"' in text and 'id="fig-confusion"' not in text
    text = write_report(run.run_dir, trust_module=True).read_text(encoding="utf-8")
    assert 'id="fig-confusion"' in text and 'id="missing"' not in text


# ----------------------------------------------------------------------------- netfit report


def test_netfit_report_rebuilds_the_page_of_a_run_made_without_one(capsys, mnist_run, tmp_path):
    run_dir = tmp_path / "old-run"
    shutil.copytree(mnist_run.run_dir, run_dir)
    (run_dir / REPORT).unlink(missing_ok=True)  # as every run made before reports existed
    before = listed_files(run_dir)
    code, out, err = run_cli(capsys, "report", run_dir)
    assert code == 0 and err == "" and out.strip() == f"wrote {run_dir / REPORT}"
    assert 'id="fig-confusion"' in (run_dir / REPORT).read_text(encoding="utf-8")
    assert listed_files(run_dir) == before  # the run's own files are never touched
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary file left
    # The extra file is no damage: the run still loads, evaluates, and resumes-checks its checkpoints.
    netfit.load(run_dir)
    assert run_cli(capsys, "evaluate", run_dir)[0] == 0
    assert run_cli(capsys, "report", run_dir)[0] == 0  # and the page is rebuilt over itself


def test_a_run_whose_data_is_gone_or_changed_still_gets_a_page(capsys, tmp_path):
    table = _diabetes_csv(tmp_path)
    run = netfit.fit(_regression_spec(table), out=tmp_path / "runs", progress=None)
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # one row fewer: other rows in the test part
    assert run_cli(capsys, "report", run.run_dir)[0] == 0
    text = (run.run_dir / REPORT).read_text(encoding="utf-8")
    assert "Predictions are not shown: the run&#x27;s test data has changed since training" in text
    assert 'id="fig-loss"' in text and 'id="fig-scatter"' not in text
    table.unlink()
    assert run_cli(capsys, "report", run.run_dir)[0] == 0
    text = (run.run_dir / REPORT).read_text(encoding="utf-8")
    note = re.search(r'id="missing">([^<]*)<', text).group(1)
    assert "Predictions are not shown" in note and "diabetes.csv" in note
    assert 'id="fig-lr"' in text and "Spec" in text


def test_report_o_refuses_an_existing_file_without_force(capsys, diabetes_run, tmp_path):
    target = tmp_path / "page.html"
    target.write_text("keep me")
    code, out, err = run_cli(capsys, "report", diabetes_run.run_dir, "-o", target)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "already exists" in err and "--force" in err
    assert target.read_text() == "keep me"
    code, out, err = run_cli(capsys, "report", diabetes_run.run_dir, "-o", target, "--force")
    assert code == 0 and 'id="fig-scatter"' in target.read_text(encoding="utf-8")


@pytest.mark.parametrize("case, message", [
    ("not a folder", r"does not exist or is not a folder"),
    ("not a run", r"is not a netfit run"),
    ("unfinished", r"has not finished training .*netfit train --resume"),
    ("under a file", r"cannot write .*choose a writable file with -o FILE"),
    ("into another run", r"is inside run folder .*choose a path outside it"),
])
def test_report_bad_input_is_one_line_and_exit_2(capsys, mnist_run, tmp_path, case, message):
    run_dir, extra = mnist_run.run_dir, []
    if case == "not a folder":
        run_dir = tmp_path / "nothing-here"
    elif case == "not a run":
        run_dir = tmp_path
    elif case == "unfinished":
        run_dir = tmp_path / "unfinished"
        shutil.copytree(mnist_run.run_dir, run_dir)
        (run_dir / "run.json").unlink()
    elif case == "under a file":
        (tmp_path / "a-file").write_text("")
        extra = ["-o", tmp_path / "a-file" / "report.html"]
    else:
        extra = ["-o", mnist_run.run_dir / "checkpoints" / "page.html"]
    before = listed_files(mnist_run.run_dir)
    code, out, err = run_cli(capsys, "report", run_dir, *extra)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert re.search(message, err), err
    assert listed_files(mnist_run.run_dir) == before


def test_an_early_stopped_run_marks_the_epoch_it_kept(diabetes_run, binary_run, tmp_path):
    """Early stopping restores an earlier epoch: the page says which, not only how many epochs ran."""
    spec = _regression_spec(Path(diabetes_run.spec.data.path))
    spec["train"].update(epochs=60, lr=0.05, early_stopping={"metric": "val_loss", "patience": 3})
    run = netfit.fit(spec, out=tmp_path, progress=None)
    kept = run.history.best_epoch
    assert run.history.stopped_early and kept < len(run.history.epochs)
    text = (run.run_dir / REPORT).read_text(encoding="utf-8")
    assert f"<div class=tile><b>{kept}</b><span>kept epoch (best)</span></div>" in text
    assert "kept epoch" not in (binary_run.run_dir / REPORT).read_text(encoding="utf-8")  # no early stopping

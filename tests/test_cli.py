"""The CLI end to end: train, evaluate, predict, summary, init, and every bad input -> exit 2."""

import gzip
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from netfit.cli import main

DIGITS_SMALL = ["--set", "data.dataset=digits", "--set", "model.hidden=[32]", "--set", "train.epochs=2"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One small trained run on the digits table, shared by the read-only tests below."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["train", *DIGITS_SMALL, "--out", str(out), "--json", "--quiet"])
    assert code == 0
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def test_train_json_reports_run_dir_and_metrics(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "train", *DIGITS_SMALL, "--out", tmp_path, "--json")
    assert code == 0
    result = json.loads(out)  # stdout is exactly one JSON object
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == tmp_path
    assert {"model.safetensors", "run.json", "metrics.csv"} <= {p.name for p in run_dir.iterdir()}
    assert 0.0 <= result["metrics"]["test_accuracy"] <= 1.0
    assert "val_accuracy" in result["metrics"]
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,val_accuracy,lr,epoch_time_s"
    assert len(rows) == 3


def test_runs_are_never_overwritten(capsys, tmp_path):
    for _ in range(2):
        assert run_cli(capsys, "train", *DIGITS_SMALL, "--out", tmp_path, "--quiet")[0] == 0
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left behind


def test_evaluate_reports_classification_metrics(capsys, digits_run):
    code, out, _ = run_cli(capsys, "evaluate", digits_run, "--json")
    assert code == 0
    result = json.loads(out)
    report = result["report"]
    assert len(report["per_class"]) == 10 and len(report["confusion"]) == 10
    assert sum(map(sum, report["confusion"])) == report["rows"] > 300
    saved = json.loads((digits_run / "run.json").read_text())["metrics"]
    assert result["metrics"]["test_accuracy"] == pytest.approx(saved["test_accuracy"])
    code, out, _ = run_cli(capsys, "evaluate", digits_run)
    assert "precision" in out and "confusion matrix" in out


def test_predict_writes_labels_and_probabilities(capsys, digits_run, tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    np.save(tmp_path / "rows.npy", X[:20])
    target = tmp_path / "pred.csv"
    code, _, _ = run_cli(capsys, "predict", digits_run, tmp_path / "rows.npy", "-o", target, "--proba")
    assert code == 0
    lines = target.read_text().splitlines()
    assert lines[0].split(",")[:2] == ["prediction", "proba_0"]
    assert len(lines) == 21
    probs = np.array([[float(v) for v in l.split(",")[1:]] for l in lines[1:]])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_summary_of_spec_and_run(capsys, digits_run, tmp_path):
    code, out, _ = run_cli(capsys, "summary", digits_run)
    assert code == 0 and "hidden1.linear" in out and f"{64 * 32 + 32:,}" in out
    spec = tmp_path / "s.toml"
    spec.write_text('[model]\ninput = 784\noutput = 10\n[data]\ndataset = "mnist-sample"\n')
    code, out, _ = run_cli(capsys, "summary", spec)
    assert code == 0 and "total trainable parameters: 535,818" in out


def test_init_writes_a_spec_and_refuses_to_clobber(capsys, tmp_path):
    target = tmp_path / "netfit.toml"
    assert run_cli(capsys, "init", target)[0] == 0
    text = target.read_text()
    target.write_text(text + "# my edits\n")
    code, _, err = run_cli(capsys, "init", target)
    assert code == 2 and "already exists" in err
    assert target.read_text().endswith("# my edits\n")


@pytest.mark.parametrize("command", ["", "train", "evaluate", "predict", "summary", "init", "schema"])
def test_help_everywhere(capsys, command):
    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--help"])
    assert done.value.code == 0
    assert "usage: netfit" in capsys.readouterr().out


# ----------------------------------------------------------------------------- bad input


def _idx_images(n, rows=4, cols=4, magic=0x803):
    return struct.pack(">IIII", magic, n, rows, cols) + bytes(n * rows * cols)


def _idx_labels(n, magic=0x801):
    return struct.pack(">II", magic, n) + bytes(n)


def _write_idx_pair(folder: Path, images: bytes, labels: bytes) -> Path:
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return folder


def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_CSV = "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"


def bad_train_cases(tmp: Path):
    """(name, extra CLI args, words the one-line message must contain)."""
    nan = np.array([[1.0, np.nan], [2.0, 3.0], [1.0, 1.0], [0.0, 1.0]])
    np.savez(tmp / "nan.npz", X=nan, y=np.array([0, 1, 0, 1]))
    np.savez(tmp / "inf.npz", X=np.where(np.isnan(nan), np.inf, nan), y=np.array([0, 1, 0, 1]))
    np.savez(tmp / "empty.npz", X=np.zeros((0, 3)), y=np.zeros(0))
    np.savez(tmp / "labels.npz", X=np.ones((4, 2)), y=np.array([0, 1, 2, 12]))
    truncated = _idx_images(10)[:-7]
    return [
        ("truncated IDX", ["--set", f'data.path="{_write_idx_pair(tmp / "trunc", truncated, _idx_labels(10))}"'],
         ["truncated"]),
        ("wrong magic", ["--set", f'data.path="{_write_idx_pair(tmp / "magic", _idx_images(10, magic=0x1234), _idx_labels(10))}"'],
         ["magic"]),
        ("count mismatch", ["--set", f'data.path="{_write_idx_pair(tmp / "count", _idx_images(10), _idx_labels(9))}"'],
         ["10", "9"]),
        ("non-numeric cell", ["--set", f'data.path="{_csv(tmp / "text.csv", GOOD_CSV.replace("5,6", "5,abc"))}"',
                              "--set", "data.target=y"], ["abc", "b"]),
        ("missing value", ["--set", f'data.path="{_csv(tmp / "gap.csv", GOOD_CSV.replace("3,4", "3,"))}"',
                           "--set", "data.target=y"], ["missing", "b"]),
        ("missing target column", ["--set", f'data.path="{_csv(tmp / "t.csv", GOOD_CSV)}"',
                                   "--set", "data.target=label"], ["label"]),
        ("labels outside class range", ["--set", f'data.path="{tmp / "labels.npz"}"', "--set", "model.output=3",
                                        "--set", "train.task=classification"], ["12", "class range"]),
        ("NaN features", ["--set", f'data.path="{tmp / "nan.npz"}"'], ["NaN"]),
        ("infinite features", ["--set", f'data.path="{tmp / "inf.npz"}"'], ["infinite"]),
        ("empty dataset", ["--set", f'data.path="{tmp / "empty.npz"}"'], ["no rows"]),
        ("unknown spec key", ["--set", "train.learning_rate=0.1"], ["train.learning_rate"]),
        ("negative learning rate", ["--set", "train.lr=-0.001"], ["train.lr", "-0.001"]),
        ("hidden size zero", ["--set", "model.hidden=[64,0]"], ["model.hidden[1]"]),
        ("unwritable output folder", ["--out", str(_csv(tmp / "a-file", "x") / "runs")], ["cannot write"]),
    ]


def test_every_bad_input_exits_2_with_one_line_and_touches_nothing(capsys, tmp_path, digits_run):
    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()
    out = digits_run.parent
    before = snapshot(out)
    failures = []
    for name, args, words in bad_train_cases(cases_dir):
        argv = ["train", "--set", "train.epochs=1", "--set", "data.dataset=digits", "--out", str(out), *args]
        if any("data.path" in a for a in args):
            argv[argv.index("data.dataset=digits")] = "data.val_fraction=0"
        code, stdout, stderr = run_cli(capsys, *argv)
        lines = stderr.strip().splitlines()
        if code != 2 or len(lines) != 1 or "Traceback" in stderr or not all(w in lines[0] for w in words):
            failures.append(f"{name}: exit {code}, stderr {stderr!r}")
    assert not failures, "\n".join(failures)
    assert snapshot(out) == before


def test_predict_with_wrong_width_exits_2(capsys, digits_run, tmp_path):
    np.save(tmp_path / "wide.npy", np.zeros((3, 784)))
    code, _, err = run_cli(capsys, "predict", digits_run, tmp_path / "wide.npy")
    assert code == 2 and "784" in err and "64" in err and len(err.strip().splitlines()) == 1


def test_debug_shows_the_traceback(capsys):
    code, _, err = run_cli(capsys, "train", "--set", "train.lr=-1", "--debug")
    assert code == 2 and "Traceback" in err


def test_tampered_run_is_refused(capsys, tmp_path):
    assert run_cli(capsys, "train", *DIGITS_SMALL, "--out", tmp_path, "--quiet")[0] == 0
    (run_dir,) = list(tmp_path.iterdir())
    weights = run_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "evaluate", run_dir)
    assert code == 2 and "hash" in err


def test_entry_point_runs_as_a_real_process(tmp_path):
    exe = Path(sys.executable).with_name("netfit")
    proc = subprocess.run([str(exe), "train", "--set", "train.lr=-1"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ""})
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "train.lr" in proc.stderr


# ----------------------------------------------------------------------------- paths and outputs


def _iris_csv(path: Path, rows: slice = slice(None)) -> Path:
    from sklearn.datasets import load_iris

    d = load_iris()
    lines = [",".join([*d.feature_names, "species"])]
    lines += [",".join([*map(str, x), str(t)]) for x, t in zip(d.data[rows], d.target[rows])]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_run_means_the_same_data_from_any_folder(capsys, tmp_path, monkeypatch):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir(), elsewhere.mkdir()
    monkeypatch.chdir(home)
    _iris_csv(home / "good.csv")
    code, out, _ = run_cli(capsys, "train", "--set", "data.path=good.csv", "--set", "data.target=species",
                           "--set", "data.test_fraction=0.2", "--set", "model.hidden=[8]", "--set", "train.epochs=2",
                           "--out", tmp_path / "runs", "--json", "--quiet")
    assert code == 0
    run_dir = json.loads(out)["run_dir"]
    assert json.loads((Path(run_dir) / "run.json").read_text())["spec"]["data"]["path"] == str(home / "good.csv")
    # Another folder with another good.csv: the run still means its own file.
    monkeypatch.chdir(elsewhere)
    _iris_csv(elsewhere / "good.csv", slice(0, 100, 2))
    code, out, _ = run_cli(capsys, "evaluate", run_dir, "--json")
    assert code == 0 and json.loads(out)["report"]["rows"] == 30
    # The run's own file with its columns in another order holds the same data.
    lines = [line.split(",") for line in (home / "good.csv").read_text().splitlines()]
    (home / "good.csv").write_text("".join(",".join(row[::-1]) + "\n" for row in lines))
    code, again, _ = run_cli(capsys, "evaluate", run_dir, "--json")
    assert code == 0 and json.loads(again)["metrics"] == json.loads(out)["metrics"]
    # The run's own file changed: its "test part" is no longer the one it was tested on.
    _iris_csv(home / "good.csv", slice(0, 140))
    code, _, err = run_cli(capsys, "evaluate", run_dir)
    assert code == 2 and "test data has changed since training" in err and "--data FILE" in err


def test_predict_never_writes_over_a_run_or_an_existing_file(capsys, digits_run, tmp_path):
    from sklearn.datasets import load_digits

    np.save(tmp_path / "rows.npy", load_digits().data[:5])
    before = snapshot(digits_run)
    code, _, err = run_cli(capsys, "predict", digits_run, tmp_path / "rows.npy", "-o", digits_run / "model.safetensors",
                           "--force")
    assert code == 2 and "inside run folder" in err
    existing = tmp_path / "mine.csv"
    existing.write_text("precious\n")
    code, _, err = run_cli(capsys, "predict", digits_run, tmp_path / "rows.npy", "-o", existing)
    assert code == 2 and "already exists" in err and "--force" in err
    assert existing.read_text() == "precious\n" and snapshot(digits_run) == before
    assert run_cli(capsys, "predict", digits_run, tmp_path / "rows.npy", "-o", existing, "--force")[0] == 0
    assert existing.read_text().startswith("prediction")


def test_force_never_replaces_a_fifo_or_a_device_with_a_file(capsys, digits_run, tmp_path):
    # -o is written to a temporary file renamed onto the path: --force on /dev/null (as root) or on a
    # named pipe used to replace that node with a regular file, and a reader of the pipe waited forever.
    from sklearn.datasets import load_digits

    np.save(tmp_path / "rows.npy", load_digits().data[:5])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for command in (["predict", digits_run, tmp_path / "rows.npy"], ["schema"]):
        code, _, err = run_cli(capsys, *command, "-o", fifo, "--force")
        assert code == 2 and "is a FIFO (named pipe), not a regular file" in err and err.count("\n") == 1
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_schema_needs_force_to_replace_a_file(capsys, tmp_path):
    existing = tmp_path / "schema.json"
    existing.write_text("mine\n")
    code, _, err = run_cli(capsys, "schema", "-o", existing)
    assert code == 2 and "--force" in err and existing.read_text() == "mine\n"
    assert run_cli(capsys, "schema", "-o", existing, "--force")[0] == 0
    assert json.loads(existing.read_text())["title"] == "netfit spec"


@pytest.mark.parametrize("command", ["evaluate {run}", "predict {run} {rows}", "schema"])
def test_a_reader_that_goes_away_is_not_an_internal_error(digits_run, tmp_path, command):
    from sklearn.datasets import load_digits

    np.save(tmp_path / "rows.npy", np.tile(load_digits().data, (20, 1)))  # far more output than a pipe holds
    line = command.format(run=digits_run, rows=tmp_path / "rows.npy")
    proc = subprocess.run(f"set -o pipefail; {sys.executable} -m netfit {line} | head -2", shell=True,
                          executable="/bin/bash", capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert len(proc.stdout.splitlines()) == 2
    assert proc.stderr == "", proc.stderr
    assert proc.returncode in (0, 141)  # 141: ended like any Unix tool whose reader left (SIGPIPE)


def test_evaluate_on_an_idx_folder_uses_its_test_part(capsys, tmp_path, write_idx):
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    for part, rows in (("train", 60), ("t10k", 12)):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (rows, 4, 4), dtype=np.uint8))
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(rows, dtype=np.uint8) % 2)
    code, out, _ = run_cli(capsys, "train", "--set", f"data.path={folder}", "--set", "model.hidden=[4]",
                           "--set", "train.epochs=1", "--out", tmp_path / "runs", "--json", "--quiet")
    assert code == 0
    code, out, _ = run_cli(capsys, "evaluate", json.loads(out)["run_dir"], "--data", folder, "--json")
    result = json.loads(out)
    assert code == 0 and result["report"]["rows"] == 12 and result["data"].endswith("(t10k part)")

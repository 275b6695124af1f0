"""netfit export: ONNX, TorchScript and pt2 files that read raw rows (and category codes) and agree with netfit,
their metadata, the self-check, refusals."""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import netfit
from netfit import NetfitError
from netfit.cli import main
from netfit.exporter import PROBA_TOLERANCE, VALUE_TOLERANCE, RawRowsNetwork, run_file

README = Path(__file__).resolve().parents[1] / "README.md"
FORMATS = ["onnx", "torchscript", "pt2"]
BATCHES = [1, 7, 1000]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits classification run and a diabetes regression run, both with a test part, trained once."""
    out = tmp_path_factory.mktemp("runs")
    digits = netfit.fit({"data": {"dataset": "digits"}, "model": {"hidden": [32]}, "train": {"epochs": 2}},
                        out=out, progress=None)
    diabetes = netfit.fit({"data": {"dataset": "diabetes", "val_fraction": 0.2}, "model": {"hidden": [16, 8]},
                           "train": {"epochs": 5, "loss": "mse"}}, out=out, progress=None)
    return {"digits": digits.run_dir, "diabetes": diabetes.run_dir}


def raw_test_rows(run_dir: Path) -> np.ndarray:
    from netfit.evaluation import load_test_part

    return np.asarray(load_test_part(netfit.load(run_dir)).X, dtype=np.float32)


def batches(rows: np.ndarray):
    """Batches of 1, 7 and 1,000 raw rows (the test rows repeated to reach 1,000)."""
    many = np.resize(rows, (1000, rows.shape[1]))
    return [many[:n] for n in BATCHES]


@pytest.mark.parametrize("format", FORMATS)
def test_a_classification_export_gives_netfits_labels_and_probabilities_on_raw_rows(runs, tmp_path, format):
    target = tmp_path / f"digits.{format}"
    result = netfit.export(runs["digits"], format, target)
    assert result.path == target and target.is_file() and result.checked_on == "the run's test part"
    assert result.rows_checked == 359 and result.max_difference <= PROBA_TOLERANCE
    model = netfit.load(runs["digits"])
    for rows in batches(raw_test_rows(runs["digits"])):
        logits, proba = run_file(target, format, rows)
        assert logits.shape == proba.shape == (len(rows), 10)
        labels = np.array(model.classes)[proba.argmax(axis=1)].astype(model.predict(rows).dtype)
        np.testing.assert_array_equal(labels, model.predict(rows))  # every row, every batch size
        np.testing.assert_allclose(proba, model.predict_proba(rows), atol=PROBA_TOLERANCE, rtol=0)


@pytest.mark.parametrize("format", FORMATS)
def test_a_regression_export_gives_values_in_the_targets_units(runs, tmp_path, format):
    target = tmp_path / f"diabetes.{format}"
    netfit.export(runs["diabetes"], format, target)
    model = netfit.load(runs["diabetes"])
    for rows in batches(raw_test_rows(runs["diabetes"])):
        (values,) = run_file(target, format, rows)
        assert values.shape == (len(rows), 1)
        expected = model.predict(rows)
        assert np.abs(expected).mean() > 20  # in the target's units (25..346), not standardized ones
        np.testing.assert_allclose(values[:, 0], expected, rtol=VALUE_TOLERANCE, atol=VALUE_TOLERANCE)


def test_the_exported_files_carry_classes_features_and_the_output_contract(runs, tmp_path):
    import onnx

    netfit.export(runs["digits"], "onnx", tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(props["netfit.classes"]) == [str(i) for i in range(10)]
    assert len(json.loads(props["netfit.feature_names"])) == 64
    assert json.loads(props["netfit.outputs"]) == ["logits", "probabilities"]
    assert props["netfit.version"] == netfit.__version__ and props["netfit.task"] == "classification"

    netfit.export(runs["diabetes"], "torchscript", tmp_path / "m.pt")
    extra = {"netfit.json": ""}
    with warnings.catch_warnings():  # torch.jit is deprecated in torch 2.13 but still loads
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(tmp_path / "m.pt"), _extra_files=extra)
    meta = json.loads(extra["netfit.json"])
    assert meta["netfit.task"] == "regression" and json.loads(meta["netfit.outputs"]) == ["predictions"]
    assert json.loads(meta["netfit.feature_names"])[:3] == ["age", "sex", "bmi"]
    assert json.loads(meta["netfit.inputs"]) == {"rows": json.loads(meta["netfit.feature_names"]), "codes": [],
                                                 "categories": {}, "unseen_code": -1, "missing_code": -2}

    netfit.export(runs["digits"], "pt2", tmp_path / "m.pt2")
    extra = {"netfit.json": ""}
    program = torch.export.load(str(tmp_path / "m.pt2"), extra_files=extra)
    meta = json.loads(extra["netfit.json"])
    assert json.loads(meta["netfit.classes"]) == [str(i) for i in range(10)] and meta["netfit.task"] == "classification"
    # The batch axis is symbolic in the saved program, not the 2 rows it was traced with.
    (rows,) = [n for n in program.graph.nodes if n.op == "placeholder" and n.name == "rows"]
    assert not isinstance(rows.meta["val"].shape[0], int) and rows.meta["val"].shape[1] == 64


def test_a_binary_run_without_a_test_part_is_checked_on_random_rows_in_its_range(tmp_path):
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    run = netfit.fit({"model": {"hidden": [8]}, "train": {"epochs": 3, "task": "binary"}}, X, y, out=tmp_path,
                     progress=None)
    assert run.model.task == "binary"
    result = netfit.export(run.run_dir, "onnx", tmp_path / "b.onnx")
    assert result.checked_on == "random rows in the training range" and result.rows_checked == 1000
    logits, proba = run_file(tmp_path / "b.onnx", "onnx", X[:7].astype(np.float32))
    assert logits.shape == (7, 1) and proba.shape == (7, 2)
    np.testing.assert_allclose(proba, run.model.predict_proba(X[:7]), atol=PROBA_TOLERANCE, rtol=0)
    from netfit.exporter import _random_rows

    drawn = _random_rows(run.model)  # where the training rows lay, not N(0, 1) for features in the thousands
    assert np.all(np.abs(drawn.mean(axis=0) - X.mean(axis=0)) < 0.2 * X.std(axis=0) + 1e-6)
    given = netfit.export(run.run_dir, "torchscript", tmp_path / "b.pt", rows=X[:50])
    assert given.checked_on == "the rows given" and given.rows_checked == 50


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("run", ["digits", "diabetes"])
def test_a_file_that_disagrees_with_netfit_is_removed_and_refused(runs, tmp_path, monkeypatch, format, run):
    exact = RawRowsNetwork.forward

    def slightly_off(self, rows, codes=None):
        # A scaling mistake of 1%: small enough to hide in a glance at the outputs.
        return exact(self, rows * 1.01, codes)

    monkeypatch.setattr(RawRowsNetwork, "forward", slightly_off)
    target = tmp_path / "wrong.out"
    with pytest.raises(NetfitError, match="disagrees with netfit.*it was removed"):
        netfit.export(runs[run], format, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def readme_code(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def readme_file_inputs():
    """The README's ``file_inputs`` recipe, the way a user without netfit builds a file's inputs."""
    code = readme_code("### Running an exported file without netfit").split("# ONNX, with onnxruntime", 1)[0]
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    return scope["file_inputs"]


def file_metadata(path: Path, format: str) -> dict[str, str]:
    if format == "onnx":
        import onnx

        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    extra = {"netfit.json": ""}
    if format == "pt2":
        torch.export.load(str(path), extra_files=extra)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.load(str(path), _extra_files=extra)
    return json.loads(extra["netfit.json"])


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """Mixed-column tables from scikit-learn's wine and diabetes, with missing cells, and a run on each.

    wine (classification, text labels): numbers with missing cells (imputed), a binned alcohol
    column as strings (one-hot, missing cells imputed) and the hue as strings with 12 values
    (above embed_above = 5: an embedding). diabetes (regression): numbers, the sex as strings and
    the bmi binned into strings. bands: only categorical columns, so ``rows`` has width 0.
    Each comes with rows to check on that hold values unseen in training and missing cells.
    """
    import pyarrow as pa
    from sklearn.datasets import load_diabetes, load_wine

    wine, diabetes = load_wine(), load_diabetes()
    w = {f"x{i}": wine.data[:, i].copy() for i in range(1, 6)}
    w["x1"][::17] = np.nan
    band = np.array(["low", "mid", "high"])[np.digitize(wine.data[:, 0], [12.5, 13.5])].astype(object)
    band[::23] = None
    w["alcohol_band"] = band
    w["hue"] = np.array([f"h{int(v * 10)}" for v in wine.data[:, 10]], dtype=object)
    d = {name: diabetes.data[:, i] for i, name in enumerate(diabetes.feature_names) if name not in ("sex", "bmi")}
    d["sex"] = np.where(diabetes.data[:, 1] > 0, "f", "m").astype(object)
    d["bmi"] = np.array(["thin", "normal", "heavy", "obese"])[np.digitize(diabetes.data[:, 2], [-0.03, 0.0, 0.05])]
    labels = np.array(wine.target_names)[wine.target]
    imputing = {"missing": {"numeric": "impute", "categorical": "impute"}, "categorical": {"embed_above": 5}}
    specs = {
        "wine": ({"data": imputing, "model": {"hidden": [16]}, "train": {"epochs": 5}}, w, labels),
        "diabetes": ({"model": {"hidden": [16]}, "train": {"epochs": 5, "loss": "mse"}}, d, diabetes.target),
        "bands": ({"data": imputing, "model": {"hidden": [8]}, "train": {"epochs": 5}},
                  {"alcohol_band": w["alcohol_band"], "hue": w["hue"]}, labels),
    }
    found, out = {}, tmp_path_factory.mktemp("tables")
    for name, (spec, columns, y) in specs.items():
        run = netfit.fit(spec, pa.table(columns), y, out=out, progress=None)
        check = dict(columns)
        check[list(columns)[-1]] = np.where(np.arange(len(y)) % 11 == 0, "never seen", columns[list(columns)[-1]])
        if name != "diabetes":  # a run that refuses missing cells is checked on rows netfit reads
            check["hue"] = np.where(np.arange(len(y)) % 13 == 5, None, check["hue"])
        found[name] = (run.model, pa.table({k: pa.array(list(v)) for k, v in check.items()}))
    return found


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("run", ["wine", "diabetes", "bands"])
def test_categorical_columns_are_one_hot_encoded_in_the_graph(tables, tmp_path, format, run):
    model, check = tables[run]
    target = tmp_path / f"{run}{netfit.exporter.FORMATS[format]}"
    result = netfit.export(model, format, target, rows=check)
    assert result.checked_on == "the rows given" and result.rows_checked == check.num_rows
    inputs = json.loads(file_metadata(target, format)["netfit.inputs"])
    encoder = model.preparation.encoder
    assert inputs["codes"] == [c.name for c in encoder.columns if c.kind == "categorical"]
    assert inputs["categories"]["sex" if run == "diabetes" else "alcohol_band"] == \
        (["f", "m"] if run == "diabetes" else ["high", "low", "mid"])
    file_inputs = readme_file_inputs()
    many = check.take(np.resize(np.arange(check.num_rows), 1000))
    for n in BATCHES:
        rows = many.slice(0, n)
        feeds = file_inputs(rows, inputs)
        assert feeds["rows"].dtype == np.float32 and feeds["codes"].dtype == np.int64
        assert feeds["rows"].shape == (n, len(inputs["rows"])) and feeds["codes"].shape == (n, len(inputs["codes"]))
        outputs = run_file(target, format, feeds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", netfit.errors.UnseenValuesWarning)
            expected = model.predict(rows)
            proba = None if run == "diabetes" else model.predict_proba(rows)
        if run == "diabetes":
            np.testing.assert_allclose(outputs[0][:, 0], expected, rtol=VALUE_TOLERANCE, atol=VALUE_TOLERANCE)
            continue
        labels = np.array(model.classes, dtype=object)[outputs[1].argmax(axis=1)]
        np.testing.assert_array_equal(labels, expected)  # every row, every batch size
        np.testing.assert_allclose(outputs[1], proba, atol=PROBA_TOLERANCE, rtol=0)
    codes = file_inputs(many, inputs)["codes"]
    assert (codes == -1).any() and ((codes == -2).any() or run == "diabetes")  # unseen and missing were checked


def test_rows_netfit_refuses_are_refused_before_a_file_is_written(tables, tmp_path):
    import pyarrow as pa

    model, check = tables["diabetes"]  # trained with missing cells refused (the default)
    ages = check["age"].to_pylist()
    ages[3] = None
    holed = check.set_column(check.column_names.index("age"), "age", pa.array(ages))
    with pytest.raises(NetfitError, match=r"1 missing value\(s\) in numeric column 'age', the first at row 3"):
        netfit.export(model, "onnx", tmp_path / "d.onnx", rows=holed)
    assert list(tmp_path.iterdir()) == []


def test_the_readme_recipe_runs_each_format_without_netfit(tables, tmp_path, monkeypatch):
    model, check = tables["wine"]
    monkeypatch.chdir(tmp_path)
    for format, name in [("onnx", "model.onnx"), ("torchscript", "model.pt"), ("pt2", "model.pt2")]:
        netfit.export(model, format, name, rows=check)
    code = readme_code("### Running an exported file without netfit")
    assert "netfit" not in code.replace("netfit.inputs", "").replace("netfit.json", "").replace(
        "netfit.classes", "")  # onnxruntime, torch and pyarrow only
    scope = {"table": check}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        exec(compile(code, str(README), "exec"), scope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", netfit.errors.UnseenValuesWarning)
        proba, labels = model.predict_proba(check), model.predict(check)
    for _, probabilities in (scope["onnx_out"], scope["script_out"], scope["program_out"]):
        probabilities = np.asarray(probabilities)
        np.testing.assert_allclose(probabilities, proba, atol=PROBA_TOLERANCE, rtol=0)
        np.testing.assert_array_equal(np.array(scope["classes"], dtype=object)[probabilities.argmax(axis=1)], labels)


def test_the_readme_reads_a_csv_with_number_like_categories_as_netfit_does(tmp_path, capsys):
    # Read by pyarrow's defaults, zip "01" became the integer 1 and grade "2.5" the float 2.5, which
    # match no category: every row got the "unseen" bucket and the file's answers differed from
    # `netfit predict` on the same CSV, silently. The README's read_csv_rows reads them as text.
    import pandas as pd

    rng = np.random.default_rng(3)
    zips, grades = rng.choice(["01", "02", "10", "007"], 120), rng.choice(["1.0", "2.5", "3.0"], 120)
    x = rng.normal(size=120)
    y = np.where(x + (zips == "01") * 1.5 + (grades == "2.5") > 0.7, "yes", "no")
    (tmp_path / "t.csv").write_text("zip,grade,x,y\n" + "".join(f"{a},{b},{c},{d}\n"
                                                                 for a, b, c, d in zip(zips, grades, x, y)))
    (tmp_path / "rows.csv").write_text("zip,grade,x\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(zips, grades, x)))
    spec = {"data": {"path": str(tmp_path / "t.csv"), "target": "y", "columns": {"zip": "categorical",
                                                                                  "grade": "categorical"}},
            "model": {"hidden": [8]}, "train": {"epochs": 5, "lr": 1e-2}}
    run = netfit.fit(spec, out=tmp_path / "runs", progress=None)
    netfit.export(run.run_dir, "onnx", tmp_path / "z.onnx")
    assert main(["predict", str(run.run_dir), str(tmp_path / "rows.csv"), "--proba",
                 "-o", str(tmp_path / "p.csv")]) == 0
    capsys.readouterr()
    scope: dict = {}
    exec(compile(readme_code("### Running an exported file without netfit").split("# ONNX, with onnxruntime", 1)[0],
                 str(README), "exec"), scope)
    inputs = json.loads(file_metadata(tmp_path / "z.onnx", "onnx")["netfit.inputs"])
    feeds = scope["file_inputs"](scope["read_csv_rows"](tmp_path / "rows.csv", inputs), inputs)
    assert (feeds["codes"] >= 0).all()  # every value found among the categories
    expected = pd.read_csv(tmp_path / "p.csv")
    np.testing.assert_allclose(run_file(tmp_path / "z.onnx", "onnx", feeds)[1],
                               expected[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5, rtol=0)


def test_a_run_with_text_columns_is_refused_naming_them(tmp_path):
    import pyarrow as pa
    from sklearn.datasets import load_wine

    data = load_wine()
    words = np.array(["dry red wine", "sweet fruity white", "an oaky full body"])
    columns = {"x0": data.data[:, 0], "note": words[data.target], "colour": np.array(["a", "b"])[data.target % 2]}
    run = netfit.fit({"model": {"hidden": [8]}, "train": {"epochs": 1}}, pa.table(columns), data.target,
                     out=None, progress=None)
    with pytest.raises(NetfitError, match=r"cannot be exported: its text columns note become bags of words") as err:
        netfit.export(run.model, "onnx", tmp_path / "w.onnx")
    assert "\n" not in str(err.value) and not (tmp_path / "w.onnx").exists()


def test_missing_onnxruntime_names_the_extra(runs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(NetfitError, match=r"needs the onnxruntime package.*pip install 'netfit\[export\]'"):
        netfit.export(runs["digits"], "onnx", tmp_path / "m.onnx")
    assert netfit.export(runs["digits"], "torchscript", tmp_path / "m.pt").path.is_file()  # torch alone


def test_cli_writes_checks_and_prints_one_line(runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(runs["digits"]), "--format", "onnx"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and re.fullmatch(
        rf"wrote {runs['digits'].name}\.onnx \(onnx\); checked on 359 rows of the run's test part: same labels, "
        r"max probability difference \d\.\de[-+]\d\d", out[0]), out
    np.save(tmp_path / "rows.npy", raw_test_rows(runs["diabetes"])[:9])
    assert main(["export", str(runs["diabetes"]), "--format", "torchscript", "-o", "d.pt",
                 "--rows", "rows.npy"]) == 0
    assert "checked on 9 rows of the rows given: max relative difference" in capsys.readouterr().out


def test_cli_bad_inputs_are_one_line_and_exit_2(runs, tmp_path, capsys):
    existing = tmp_path / "there.onnx"
    existing.write_text("keep me")
    np.save(tmp_path / "narrow.npy", np.zeros((3, 5)))
    cases = [
        (["export", str(tmp_path / "nope"), "--format", "onnx"], "does not exist or is not a folder"),
        (["export", str(tmp_path), "--format", "onnx", "-o", str(tmp_path / "x.onnx")], "not a netfit run"),
        (["export", str(runs["digits"]), "--format", "onnx", "-o", str(existing)], "already exists"),
        (["export", str(runs["digits"]), "--format", "onnx", "-o", str(runs["digits"] / "m.onnx")],
         "inside run folder"),
        (["export", str(runs["digits"]), "--format", "onnx", "-o", "/proc/netfit/m.onnx"], "cannot write"),
        (["export", str(runs["digits"]), "--format", "pt3"], "invalid choice"),
        (["export", str(runs["digits"]), "--format", "onnx", "-o", str(tmp_path / "y.onnx"), "--rows",
          str(tmp_path / "narrow.npy")], r"shape \(rows, 64\)"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert captured.out == "" and re.search(expected, captured.err), (argv, captured.err)
        assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert existing.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.npy", "there.onnx"]


def test_export_never_replaces_a_fifo_with_a_file(runs, tmp_path, capsys):
    # The file is written beside the path and renamed onto it: --force on a FIFO would replace the pipe.
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    assert main(["export", str(runs["digits"]), "--format", "torchscript", "-o", str(fifo), "--force"]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err
    with pytest.raises(NetfitError, match="not a regular file"):
        netfit.export(runs["digits"], "torchscript", fifo, force=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_cli_rows_from_csv_and_parquet_are_read_as_predict_reads_them(runs, tables, tmp_path, capsys):
    import pyarrow.csv
    import pyarrow.parquet

    model, check = tables["wine"]
    # Reordered, with a column the run does not use: matched by name, as netfit predict matches them.
    shuffled = check.select(list(reversed(check.column_names))).append_column("comment", check["hue"])
    pyarrow.parquet.write_table(shuffled, tmp_path / "rows.parquet")
    pyarrow.csv.write_csv(shuffled, tmp_path / "rows.csv")
    for name in ("rows.parquet", "rows.csv"):
        argv = ["export", str(model.run_dir), "--format", "onnx", "-o", str(tmp_path / "w.onnx"), "--force",
                "--rows", str(tmp_path / name)]
        assert main(argv) == 0, name
        captured = capsys.readouterr()
        assert f"checked on {check.num_rows} rows of the rows given: same labels" in captured.out
        assert "ignoring 1 column the model does not use: comment" in captured.err

    diabetes = raw_test_rows(runs["diabetes"])
    names = json.loads((runs["diabetes"] / "run.json").read_text())["preparation"]["feature_names"]
    columns = {n: diabetes[:, i] for i, n in enumerate(names) if n != "bmi"}
    pyarrow.csv.write_csv(pyarrow.table(columns), tmp_path / "no_bmi.csv")
    argv = ["export", str(runs["diabetes"]), "--format", "pt2", "-o", str(tmp_path / "d.pt2"), "--rows",
            str(tmp_path / "no_bmi.csv")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "'bmi'" in captured.err and captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "d.pt2").exists()


CSV_DECIMALS = 6  # netfit predict --proba writes probabilities as f"{p:.6f}"


def test_exports_reproduce_netfit_predict_through_the_cli(tables, tmp_path, capsys):
    """The issue's acceptance: train from CSV, predict to CSV, export, run each file on the same raw CSV rows."""
    import csv

    import pyarrow.csv
    from sklearn.datasets import load_diabetes, load_wine

    _, wine = tables["wine"]
    _, diabetes = tables["diabetes"]
    cases = {"wine": (wine.append_column("label", pyarrow.array(np.array(load_wine().target_names)[
                          load_wine().target])), ["--set", "data.missing.numeric=impute", "--set",
                                                  "data.missing.categorical=impute"]),
             "diabetes": (diabetes.append_column("label", pyarrow.array(load_diabetes().target)),
                          ["--set", "train.task=regression"])}
    for name, (table, options) in cases.items():
        data = tmp_path / f"{name}.csv"
        pyarrow.csv.write_csv(table, data)  # missing cells are empty, unseen values plain text
        assert main(["train", "--set", f"data.path={data}", "--set", "data.target=label", "--set",
                     "data.test_fraction=0.2", "--set", "model.hidden=[16]", "--set", "train.epochs=5", *options,
                     "--out", str(tmp_path / "runs"), "--json", "--quiet"]) == 0
        run_dir = Path(json.loads(capsys.readouterr().out)["run_dir"])
        classes = json.loads((run_dir / "run.json").read_text())["preparation"]["classes"]
        predicted = tmp_path / f"{name}-preds.csv"
        assert main(["predict", str(run_dir), str(data), "-o", str(predicted),
                     *(["--proba"] if classes else [])]) == 0
        with open(predicted, newline="") as f:
            header, *lines = list(csv.reader(f))
        raw = pyarrow.csv.read_csv(data, convert_options=pyarrow.csv.ConvertOptions(strings_can_be_null=True))
        assert len(lines) == raw.num_rows == table.num_rows
        for format in FORMATS:
            target = tmp_path / f"{name}{netfit.exporter.FORMATS[format]}"
            assert main(["export", str(run_dir), "--format", format, "-o", str(target)]) == 0
            assert "of the run's test part" in capsys.readouterr().out
            inputs = json.loads(file_metadata(target, format)["netfit.inputs"])
            outputs = run_file(target, format, readme_file_inputs()(raw, inputs))
            if classes is None:  # float32 values are written at their own precision: no rounding to allow for
                written = np.array([float(line[0]) for line in lines])
                np.testing.assert_allclose(outputs[0][:, 0], written, rtol=VALUE_TOLERANCE, atol=VALUE_TOLERANCE)
                continue
            labels = np.array(classes)[outputs[1].argmax(axis=1)]
            assert labels.tolist() == [line[0] for line in lines]  # every row
            written = np.array([[float(v) for v in line[1:]] for line in lines])
            assert header[1:] == [f"proba_{c}" for c in classes]
            np.testing.assert_allclose(outputs[1], written, atol=PROBA_TOLERANCE + 0.5 * 10 ** -CSV_DECIMALS, rtol=0)


def test_the_readme_snippet_loads_the_weights_in_plain_pytorch(runs):
    section = README.read_text().split("### Loading the weights in plain PyTorch, without netfit", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "netfit" not in code.replace("run_dir", "")  # plain PyTorch and safetensors only
    rows = raw_test_rows(runs["digits"])
    scope = {"run_dir": str(runs["digits"]), "rows": rows}
    exec(compile(code, str(README), "exec"), scope)
    with torch.no_grad():
        expected = netfit.load(runs["digits"]).logits(rows)
    torch.testing.assert_close(scope["logits"].detach(), expected, atol=1e-5, rtol=1e-5)


def test_an_image_run_reads_raw_pixels(tmp_path):
    run = netfit.fit({"data": {"dataset": "mnist-sample"}, "model": {"hidden": [32]}, "train": {"epochs": 1}},
                     out=tmp_path, progress=None)
    assert run.model.preparation.input_scaler.method == "divide_by_255"
    result = netfit.export(run.run_dir, "onnx", tmp_path / "mnist.onnx")
    assert result.rows_checked == 2000 and result.checked_on == "the run's test part"
    pixels = raw_test_rows(run.run_dir)[:7]
    assert pixels.max() == 255  # the 0..255 pixels themselves go in, not 0..1
    _, proba = run_file(tmp_path / "mnist.onnx", "onnx", pixels)
    np.testing.assert_allclose(proba, run.model.predict_proba(pixels), atol=PROBA_TOLERANCE, rtol=0)


def test_a_custom_module_run_exports_only_with_trust(tmp_path, capsys):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    run = netfit.fit({"model": {"module": "custom_module:TinyNet", "kwargs": {"inputs": 64}}, "train": {"epochs": 1}},
                     X, y, out=tmp_path / "runs", progress=None)
    argv = ["export", str(run.run_dir), "--format", "torchscript", "-o", str(tmp_path / "tiny.pt")]
    assert main(argv) == 2 and "--trust-module" in capsys.readouterr().err
    assert not (tmp_path / "tiny.pt").exists()
    assert main([*argv, "--trust-module"]) == 0
    assert "checked on 1000 rows of random rows in the training range" in capsys.readouterr().out
    (_, proba) = run_file(tmp_path / "tiny.pt", "torchscript", X[:7].astype(np.float32))
    np.testing.assert_allclose(proba, run.model.predict_proba(X[:7]), atol=PROBA_TOLERANCE, rtol=0)

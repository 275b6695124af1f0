"""The column encoder: types, missing cells, categories, and the first layer that reads its rows.

Real tables from scikit-learn (wine, diabetes) with a categorical column made from real values
(binned), text made of the wine cultivar's own measurements spelled out, and missing cells.
"""

import copy
import io
import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from sklearn.datasets import load_diabetes, load_wine

import netfit
from netfit import NetfitError
from netfit.errors import UnseenValuesWarning
from netfit.encoder import ColumnEncoder, fit_encoder, infer_column_types
from netfit.features import InputLayout, TableBatch
from netfit.model import TableInput
from netfit.preparation import Preparation
from netfit.spec import DataSpec

QUIET = {"progress": None}


def wine_table(missing: bool = False):
    data = load_wine()
    X, y = data.data.astype(np.float32), data.target
    names = [n.replace("/", "_") for n in data.feature_names]
    columns = {name: X[:, i].copy() for i, name in enumerate(names)}
    # A real categorical column: alcohol binned into named bands.
    bands = np.array(["low", "mid", "high", "very high"])
    columns["alcohol_band"] = bands[np.digitize(X[:, 0], [12.5, 13.0, 13.7])]
    if missing:
        columns["magnesium"][[3, 50, 120]] = np.nan
    table = pa.table({k: pa.array(v, from_pandas=True) for k, v in columns.items()})
    return table, y


def test_types_are_inferred_from_values_and_data_columns_overrides_them():
    table = pa.table({"x": [1.0, 2.0, 3.0], "color": ["red", "blue", "red"],
                      "review": ["a fine wine indeed", "not good at all", "would buy it again"],
                      "zip": ["10115", "80331", "10115"]})
    assert infer_column_types(table, {}, "t") == {"x": "numeric", "color": "categorical", "review": "text",
                                                   "zip": "categorical"}
    assert infer_column_types(table, {"review": "categorical", "x": "ignore"}, "t")["review"] == "categorical"
    with pytest.raises(NetfitError, match="data.columns names 'colour'.*did you mean 'color'"):
        infer_column_types(table, {"colour": "categorical"}, "t")


def test_a_column_of_ids_is_refused_with_the_choices_to_make():
    ids = [f"id-{i}" for i in range(3000)]
    with pytest.raises(NetfitError) as err:
        infer_column_types(pa.table({"customer": ids}), {}, "t")
    message = str(err.value)
    assert "3,000 distinct" in message and 'data.columns.customer = "ignore", "categorical" or "text"' in message


def test_the_printed_line_and_the_run_of_a_mixed_table():
    table, y = wine_table()
    printed = io.StringIO()
    run = netfit.fit({"model": {"hidden": [16]}, "train": {"epochs": 30, "lr": 0.01},
                      "data": {"categorical": {"embed_above": 2}}}, table, y, out=None, progress=printed)
    out = printed.getvalue()
    assert "columns: 13 numeric, 1 categorical (alcohol_band: 4 values embedded)" in out
    assert run.metrics["val_accuracy"] > 0.85
    layout = run.model.preparation.layout
    assert layout.embeddings == ((5, 3),) and layout.dense == 13  # 4 values and the unseen code 0


def test_missing_cells_are_refused_naming_the_row_or_filled_with_training_medians():
    table, y = wine_table(missing=True)
    with pytest.raises(NetfitError) as err:
        netfit.fit({"train": {"epochs": 1}}, table, y, out=None, **QUIET)
    assert "3 missing value(s) in numeric column 'magnesium', the first at row 3" in str(err.value)
    assert 'data.missing.numeric = "impute"' in str(err.value)
    # Test rows held out of the same rows still count, and the row is the table's own, not the training part's.
    with pytest.raises(NetfitError) as err:
        netfit.fit({"train": {"epochs": 1}, "data": {"test_fraction": 0.5}}, table, y, out=None, **QUIET)
    assert "3 missing value(s) in numeric column 'magnesium', the first at row 3 " in str(err.value)
    spec = {"model": {"hidden": [8]}, "train": {"epochs": 1}, "data": {"missing": {"numeric": "impute"}}}
    run = netfit.fit(spec, table, y, out=None, **QUIET)
    column = next(c for c in run.model.preparation.encoder.columns if c.name == "magnesium")
    assert column.indicator and column.fill == pytest.approx(98.0, abs=3)
    # The median is the training rows' own: the validation rows are not in it.
    keep, _ = netfit.data.split_rows(len(y), 0.1, 0)
    train_values = table.column("magnesium").to_numpy(zero_copy_only=False)[keep]
    assert column.fill == pytest.approx(float(np.nanmedian(train_values)))


def test_a_value_unseen_in_training_gets_the_unseen_bucket():
    table, y = wine_table()
    for embed_above in (16, 2):  # one-hot, then an embedding
        spec = {"model": {"hidden": [8]}, "train": {"epochs": 2},
                "data": {"categorical": {"embed_above": embed_above}}}
        model = netfit.fit(spec, table, y, out=None, **QUIET).model
        rows = table.slice(0, 2).to_pydict()
        rows["alcohol_band"] = ["astronomical", "low"]
        features, unseen = model.preparation.encoder.transform(pa.table(rows), "new rows")
        assert unseen == {"alcohol_band": 1}
        if embed_above == 2:
            assert features.codes[:, 0].tolist()[0] == 0 and features.codes[:, 0].tolist()[1] > 0
        else:
            one_hot = features.dense[:, 13:17]
            assert one_hot[0].sum() == 0 and one_hot[1].sum() == 1
        with pytest.warns(UnseenValuesWarning, match="'alcohol_band': 1"):
            assert len(model.predict(pa.table(rows))) == 2


def test_table_input_is_one_linear_over_the_whole_row():
    torch.manual_seed(0)
    layout = InputLayout(dense=3, embeddings=((4, 2),), vocabulary=5)
    layer = TableInput(layout, 6)
    dense = torch.randn(2, 3)
    codes = torch.tensor([[1], [3]])
    # Row 0 has tokens 0 (x2.0) and 4 (x0.5); row 1 has none.
    batch = TableBatch(dense, codes, torch.tensor([0, 4]), torch.tensor([0, 2]), torch.tensor([2.0, 0.5]))
    bag = torch.zeros(2, 5)
    bag[0, 0], bag[0, 4] = 2.0, 0.5
    row = torch.cat([dense, layer.embeddings[0](codes[:, 0]), bag], dim=1)
    weight = torch.cat([layer.dense.weight, layer.bag.weight.T], dim=1)
    assert row.shape[1] == layout.width
    torch.testing.assert_close(layer(batch), row @ weight.T + layer.dense.bias)


def test_a_saved_encoder_reads_back_and_an_edited_one_is_refused():
    table, y = wine_table()
    prep = netfit.fit({"model": {"hidden": [4]}, "train": {"epochs": 1}}, table, y, out=None, **QUIET) \
        .model.preparation
    saved = json.loads(json.dumps(prep.to_dict()))
    assert Preparation.from_dict(copy.deepcopy(saved)).to_dict() == saved
    for edit, words in [
        (lambda p: p["encoder"]["columns"][0].update(scale=0.0), "scale positive"),
        (lambda p: p["encoder"]["columns"][-1].update(values=["low", "low"]), "lists a value twice"),
        (lambda p: p["encoder"]["columns"][-1].update(values=["a"]), "does not agree with input_size"),
        (lambda p: p["encoder"]["columns"][-1].update(kind="text"), "columns"),
        (lambda p: p["encoder"].update(ngrams=3), "ngrams"),
        (lambda p: p.update(input_scaler={"method": "divide_by_255", "shift": [0.0], "scale": [255.0]}),
         "does not agree"),
    ]:
        raw = copy.deepcopy(saved)
        edit(raw)
        with pytest.raises(NetfitError) as err:
            Preparation.from_dict(raw, source="run.json")
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_run_of_a_mixed_table_resumes_and_loads_as_itself(tmp_path):
    table, y = wine_table()
    spec = {"model": {"hidden": [8]}, "train": {"epochs": 2, "checkpoint_every": 1}}
    first = netfit.fit(spec, table, y, out=tmp_path, **QUIET)
    resumed = netfit.resume(first.run_dir, table, y, epochs=3, **QUIET)
    assert len(resumed.history.epochs) == 3
    loaded = netfit.load(first.run_dir)
    np.testing.assert_array_equal(loaded.predict(table), resumed.model.predict(table))
    other = table.set_column(0, "alcohol", pa.array(np.zeros(len(y), np.float32)))
    with pytest.raises(NetfitError, match="training rows differ"):
        netfit.resume(first.run_dir, other, y, epochs=4, **QUIET)


def test_predict_names_a_missing_column():
    table, y = wine_table()
    model = netfit.fit({"model": {"hidden": [4]}, "train": {"epochs": 1}}, table, y, out=None, **QUIET).model
    with pytest.raises(NetfitError, match="column 'alcohol_band' is missing"):
        model.predict(table.drop_columns(["alcohol_band"]))


def test_a_custom_module_cannot_read_categories():
    table, y = wine_table()
    spec = {"model": {"module": "custom_module:TwoLayer", "kwargs": {"inputs": 14, "outputs": 3}},
            "data": {"categorical": {"embed_above": 2}}, "train": {"epochs": 1}}
    with pytest.raises(NetfitError, match="model.module reads a plain tensor"):
        netfit.fit(spec, table, y, out=None, **QUIET)


def test_numbers_with_holes_train_through_the_encoder_from_plain_arrays():
    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    X[::17, 2] = np.nan
    spec = {"model": {"hidden": [16]}, "train": {"epochs": 20, "lr": 0.01}, "data": {"missing": {"numeric": "impute"}}}
    run = netfit.fit(spec, X, y, out=None, **QUIET)
    assert run.model.preparation.encoder.describe() == "10 numeric (1 with missing cells filled)"
    assert run.metrics["val_r2"] > 0.2
    assert np.isfinite(run.model.predict(X[:20])).all()


def test_fit_encoder_keeps_statistics_of_the_rows_it_is_given():
    table = pa.table({"x": [1.0, 2.0, 3.0, 100.0], "c": ["a", "b", "b", "z"]})
    spec = DataSpec()
    encoder = fit_encoder(table.slice(0, 3), {"x": "numeric", "c": "categorical"}, spec, "standardize", "t")
    x, c = encoder.columns
    assert x.shift == pytest.approx(2.0) and c.values == ("a", "b")
    assert isinstance(ColumnEncoder.from_dict(encoder.to_dict(), "t"), ColumnEncoder)

"""Text and mixed tables: bag-of-words on real text (Debian's package descriptions), categories,
missing cells, and what is fitted on training rows only.

The text rows come from this machine's package lists (``debian_text.py``); a machine without them
fails here with the command that fetches them. The mixed table is scikit-learn's wine data with a
few columns turned into categories and some cells removed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from debian_text import NotEnoughText, load_debian_text
from sklearn.datasets import load_wine
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

import netfit
from netfit.encoder import fit_encoder
from netfit.data import split_rows
from netfit.errors import NetfitError
from netfit.spec import DataSpec

# A small network and few epochs keep the module well under a minute on two cores; the benchmark
# (benchmarks/text_bow.py) runs the full-size comparison.
TEXT_SPEC = {"model": {"hidden": [64], "dropout": 0.5},
             "data": {"missing": {"text": "empty"}},
             "train": {"batch_size": 128, "epochs": 8, "lr": 3e-3, "device": "cpu", "checkpoint_every": 0}}


@pytest.fixture(scope="module")
def debian():
    # 5 sections, 3,000 rows: about 2,400 train and 600 test descriptions.
    try:
        return load_debian_text(sections=5, min_rows=300, max_rows=3000)
    except NotEnoughText as err:
        pytest.fail(str(err), pytrace=False)


def table(text) -> pa.Table:
    return pa.table({"description": pa.array(list(text), pa.string())})


@pytest.fixture(scope="module")
def text_run(debian, tmp_path_factory):
    return netfit.fit(TEXT_SPEC, X=table(debian.train_text), y=debian.train_label,
                      out=tmp_path_factory.mktemp("runs"), progress=None)


def encoder_of(run) -> "netfit.encoder.ColumnEncoder":
    return run.model.preparation.encoder


# ----------------------------------------------------------------------------- real text


def test_text_model_beats_the_majority_class_and_nears_tfidf_logistic_regression(debian, text_run):
    predicted = text_run.model.predict(table(debian.test_text))
    accuracy = float(np.mean(predicted == debian.test_label))
    _, counts = np.unique(debian.test_label, return_counts=True)
    majority = counts.max() / counts.sum()

    vectorizer = TfidfVectorizer()
    logistic = LogisticRegression(max_iter=1000).fit(vectorizer.fit_transform(debian.train_text), debian.train_label)
    reference = float(np.mean(logistic.predict(vectorizer.transform(debian.test_text)) == debian.test_label))

    assert accuracy > majority + 0.35, f"netfit {accuracy:.3f}, majority class {majority:.3f}"
    # The benchmark holds netfit to 2 points on 34,000 rows; on 2,400 rows and 8 short epochs, 5.
    assert accuracy > reference - 0.05, f"netfit {accuracy:.3f}, TF-IDF + logistic regression {reference:.3f}"


def test_vocabulary_comes_from_training_rows_only(debian, text_run):
    vocabulary = set(encoder_of(text_run).columns[0].vocabulary)
    train_tokens = set(CountVectorizer().fit(debian.train_text).vocabulary_)
    test_only = set(CountVectorizer().fit(debian.test_text).vocabulary_) - train_tokens
    assert len(test_only) > 50  # real descriptions: many names appear in one package only
    assert not vocabulary & test_only
    assert vocabulary <= train_tokens


@pytest.mark.parametrize("ngrams, max_tokens", [(1, 20_000), (1, 300), (2, 2_000)])
def test_idf_and_weights_are_scikit_learns(debian, ngrams, max_tokens):
    texts = debian.train_text[:800]
    spec = DataSpec(text={"max_tokens": max_tokens, "ngrams": ngrams})
    encoder = fit_encoder(table(texts), {"description": "text"}, spec, "standardize", "t")
    column = encoder.columns[0]
    reference = TfidfVectorizer(max_features=max_tokens, ngram_range=(1, ngrams)).fit(texts)

    order = [reference.vocabulary_[token] for token in column.vocabulary]
    assert sorted(column.vocabulary) == sorted(reference.vocabulary_)
    np.testing.assert_allclose(column.idf, reference.idf_[order], rtol=1e-6)

    rows = debian.test_text[:50]
    features, _ = encoder.transform(table(rows), "rows")
    ours = _bag_matrix(features, len(column.vocabulary))
    np.testing.assert_allclose(ours, reference.transform(rows).toarray()[:, order], atol=1e-6)


def _bag_matrix(features, width: int) -> np.ndarray:
    dense = np.zeros((len(features), width), np.float32)
    indptr = features.bag_indptr.numpy()
    for row in range(len(features)):
        entries = slice(indptr[row], indptr[row + 1])
        dense[row, features.bag_indices[entries].numpy()] = features.bag_values[entries].numpy()
    return dense


def test_saved_run_predicts_the_same_labels_after_load(debian, text_run):
    rows = table(debian.test_text)
    loaded = netfit.load(text_run.run_dir)
    np.testing.assert_array_equal(loaded.predict(rows), text_run.model.predict(rows))
    np.testing.assert_allclose(loaded.predict_proba(rows), text_run.model.predict_proba(rows), atol=1e-6)
    assert encoder_of(text_run) == loaded.preparation.encoder


def test_unseen_tokens_empty_and_missing_text_read_as_an_empty_bag(text_run):
    rows = pa.table({"description": pa.array(["qzxv wpfkj", "", None, "Python 3 module for parsing"],
                                             pa.string())})
    logits = text_run.model.logits(rows)
    # No token the model knows: all three rows are the empty bag, and get its one answer.
    torch.testing.assert_close(logits[0], logits[1])
    torch.testing.assert_close(logits[0], logits[2])
    predicted = text_run.model.predict(rows)
    assert set(predicted) <= set(text_run.model.classes)
    assert predicted[3] == "python"


def test_missing_text_is_refused_naming_row_and_column_unless_read_as_empty(debian, tmp_path):
    texts = list(debian.train_text[:300])
    spec = {"model": {"hidden": [8]}, "train": {"epochs": 1, "device": "cpu"}}
    run = netfit.fit(spec, X=table(texts), y=debian.train_label[:300], out=None, progress=None)
    rows = pa.table({"description": pa.array(["GNU tools", "a library", None], pa.string())})
    with pytest.raises(NetfitError) as refused:
        run.model.predict(rows)
    message = str(refused.value)
    assert "\n" not in message
    assert "'description'" in message and "row 2" in message and 'data.missing.text = "empty"' in message

    texts[5] = None
    with pytest.raises(NetfitError, match=r"text column 'description', the first at row 5"):
        netfit.fit(spec, X=table(texts), y=debian.train_label[:300], out=None, progress=None)
    spec["data"] = {"missing": {"text": "empty"}}
    netfit.fit(spec, X=table(texts), y=debian.train_label[:300], out=None, progress=None)


def test_ngrams_2_adds_pairs_of_adjacent_words(debian):
    texts = table(debian.train_text[:500])
    words = fit_encoder(texts, {"description": "text"}, DataSpec(), "none", "t").columns[0].vocabulary
    pairs = fit_encoder(texts, {"description": "text"}, DataSpec(text={"ngrams": 2}), "none", "t")
    vocabulary = pairs.columns[0].vocabulary
    assert set(words) < set(vocabulary)
    assert "development files" in vocabulary and "development" in vocabulary
    bag, _ = pairs.transform(pa.table({"description": ["Development files"]}), "row")
    assert {vocabulary[i] for i in bag.bag_indices.tolist()} == {"development", "files", "development files"}


@pytest.mark.parametrize("weighting, values", [("counts", [2.0, 1.0]), ("binary", [1.0, 1.0])])
def test_weighting_counts_and_binary(debian, weighting, values):
    spec = DataSpec(text={"weighting": weighting})
    encoder = fit_encoder(table(debian.train_text[:500]), {"description": "text"}, spec, "none", "t")
    column = encoder.columns[0]
    assert column.idf is None
    bag, _ = encoder.transform(pa.table({"description": ["Perl module: a Perl interface"]}), "row")
    got = {column.vocabulary[i]: v for i, v in zip(bag.bag_indices.tolist(), bag.bag_values.tolist())}
    assert got == {"perl": values[0], "module": values[1], "interface": values[1]}  # "a": one letter, no token


# ----------------------------------------------------------------------------- a mixed table


WINE_SPEC = {"model": {"hidden": [32]},
             "data": {"val_fraction": 0.1, "test_fraction": 0.25, "split_seed": 3,
                      "missing": {"numeric": "impute", "categorical": "impute"}},
             "train": {"epochs": 20, "batch_size": 16, "device": "cpu", "checkpoint_every": 0}}


def wine_parts(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows netfit fits statistics on, and its validation rows: what WINE_SPEC's splits give."""
    kept, _ = split_rows(n, WINE_SPEC["data"]["test_fraction"], WINE_SPEC["data"]["split_seed"])
    train, val = split_rows(len(kept), WINE_SPEC["data"]["val_fraction"], WINE_SPEC["data"]["split_seed"])
    return kept[train], kept[val]


def wine_table(seed: int = 0) -> tuple[dict, np.ndarray]:
    """Wine with two categorical columns (3 and 20 values, from binned real values) and missing cells.

    The validation rows get a magnesium of 300 and a proline bin of their own, so a statistic that
    reads them would show.
    """
    data = load_wine()
    X, y = data.data, data.target
    rng = np.random.default_rng(seed)
    alcohol_level = np.array(["low", "mid", "high"])[np.digitize(X[:, 0], np.quantile(X[:, 0], [1 / 3, 2 / 3]))]
    edges = np.quantile(X[:, 12], np.linspace(0, 1, 21)[1:-1])
    proline_bin = np.array([f"p{i:02d}" for i in np.digitize(X[:, 12], edges)], dtype=object)
    columns = {name: X[:, i].tolist() for i, name in enumerate(data.feature_names) if i not in (0, 12)}
    _, val = wine_parts(len(y))
    magnesium = columns["magnesium"]
    for row in val:
        magnesium[row] = 300.0
    proline_bin[val] = "p-val"
    for row in rng.choice(len(y), 20, replace=False):
        magnesium[row] = None
    levels = alcohol_level.astype(object)
    levels[rng.choice(len(y), 10, replace=False)] = None
    columns.update(alcohol_level=levels.tolist(), proline_bin=proline_bin.tolist())
    return columns, y


@pytest.fixture(scope="module")
def wine_run(tmp_path_factory):
    columns, y = wine_table()
    return netfit.fit(WINE_SPEC, X=columns, y=y, out=tmp_path_factory.mktemp("runs"), progress=None)


def test_mixed_table_learns_and_encodes_each_column_its_way(wine_run):
    columns = {c.name: c for c in encoder_of(wine_run).columns}
    assert columns["alcohol_level"].embedding is None  # 3 values: one-hot
    assert columns["proline_bin"].embedding is not None  # 20 values, above embed_above = 16: embedded
    assert columns["magnesium"].indicator and not columns["ash"].indicator
    layout = encoder_of(wine_run).layout
    assert layout.embeddings == ((len(columns["proline_bin"].values) + 1, columns["proline_bin"].embedding),)
    # 10 plain numeric + magnesium's indicator + 3 one-hot + alcohol_level's indicator
    assert layout.dense == 11 + 1 + 3 + 1
    assert wine_run.metrics["test_accuracy"] > 0.85


def test_embed_above_decides_one_hot_or_embedding():
    columns, y = wine_table()
    spec = DataSpec(missing={"numeric": "impute", "categorical": "impute"}, categorical={"embed_above": 100})
    types = {name: "numeric" for name in columns} | {"alcohol_level": "categorical", "proline_bin": "categorical"}
    encoder = fit_encoder(columns, types, spec, "standardize", "wine")
    assert [c.embedding for c in encoder.columns if c.kind == "categorical"] == [None, None]
    bins = len(set(columns["proline_bin"]))
    assert encoder.layout.embeddings == () and encoder.layout.dense == 11 + 1 + 3 + 1 + bins


def test_mixed_table_statistics_come_from_training_rows_only(wine_run):
    columns, y = wine_table()
    rows, _ = wine_parts(len(y))
    fitted = {c.name: c for c in encoder_of(wine_run).columns}

    magnesium = np.array([np.nan if v is None else v for v in columns["magnesium"]])
    assert fitted["magnesium"].fill == pytest.approx(np.nanmedian(magnesium[rows]))
    assert np.nanmedian(magnesium[rows]) != np.nanmedian(magnesium)  # the check can tell them apart
    filled = np.where(np.isnan(magnesium[rows]), np.nanmedian(magnesium[rows]), magnesium[rows])
    assert fitted["magnesium"].shift == pytest.approx(filled.mean(), rel=1e-6)

    bins = np.array(columns["proline_bin"], dtype=object)
    assert fitted["proline_bin"].values == tuple(sorted(set(bins[rows])))
    assert "p-val" not in fitted["proline_bin"].values
    levels = [v for v in np.array(columns["alcohol_level"], dtype=object)[rows] if v is not None]
    values, counts = np.unique(levels, return_counts=True)
    assert fitted["alcohol_level"].fill == values[np.argmax(counts)]


def test_unseen_categories_get_the_unseen_bucket_and_missing_cells_are_filled(wine_run):
    columns, y = wine_table()
    rows = {name: values[:3] for name, values in columns.items()}
    rows["alcohol_level"] = ["very high", None, "low"]
    rows["proline_bin"] = ["p99", "p00", "p01"]
    rows["magnesium"] = [None, 100.0, 100.0]
    encoder = encoder_of(wine_run)
    features, unseen = encoder.transform(rows, "rows")
    assert unseen == {"alcohol_level": 1, "proline_bin": 1}
    assert features.codes[0].tolist() == [0]  # the unseen bucket of the embedding
    assert features.codes[1].tolist() != [0]

    fitted = {c.name: c for c in encoder.columns}
    names = [c.name for c in encoder.columns]
    at = names.index("alcohol_level")  # the dense slots before it: one (or two) per numeric column
    start = sum(1 + c.indicator for c in encoder.columns[:at])
    one_hot = features.dense[:, start:start + 3]
    indicator = features.dense[:, start + 3]
    assert one_hot[0].tolist() == [0, 0, 0]  # never seen in training: all zeros
    assert one_hot[1].tolist() == [1.0 if v == fitted["alcohol_level"].fill else 0.0
                                   for v in fitted["alcohol_level"].values]
    assert indicator.tolist() == [0, 1, 0]

    m = sum(1 + c.indicator for c in encoder.columns[:names.index("magnesium")])
    magnesium = fitted["magnesium"]
    assert features.dense[0, m].item() == pytest.approx((magnesium.fill - magnesium.shift) / magnesium.scale)
    assert features.dense[:, m + 1].tolist() == [1, 0, 0]

    assert len(wine_run.model.predict(rows)) == 3
    loaded = netfit.load(wine_run.run_dir)
    np.testing.assert_array_equal(loaded.predict(rows), wine_run.model.predict(rows))


def test_a_dict_of_columns_that_is_no_table_is_refused_naming_the_column(text_run):
    with pytest.raises(NetfitError, match=r"column 'description' is 'GNU tools', not a list of cells"):
        text_run.model.predict({"description": "GNU tools"})
    with pytest.raises(NetfitError, match=r"column 'section' has 1 cells but column 'description' has 2"):
        text_run.model.predict({"description": ["GNU tools", "a library"], "section": ["libs"]})

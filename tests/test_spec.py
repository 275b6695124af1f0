"""The spec: TOML, Python and --set all validate through the same models, with actionable errors."""

import json
import re
from pathlib import Path

import pytest

from netfit import NetfitError, Spec
from netfit.spec import apply_overrides, load_spec, spec_from_dict, spec_json_schema

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_are_the_tutorial_network():
    spec = Spec(data={"dataset": "mnist-sample"})
    assert spec.model.hidden == [512, 256]
    assert spec.model.activation == "relu"
    assert spec.train.optimizer.name == "adam"
    assert spec.train.lr == 1e-3 and spec.train.batch_size == 64


def test_optimizer_as_name_or_table():
    by_name = spec_from_dict({"data": {"dataset": "digits"}, "train": {"optimizer": "sgd"}})
    by_table = spec_from_dict({"data": {"dataset": "digits"},
                               "train": {"optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True}}})
    assert by_name.train.optimizer.momentum == 0.0
    assert by_table.train.optimizer.momentum == 0.9 and by_table.train.optimizer.nesterov


@pytest.mark.parametrize("raw, expected", [
    ({"train": {"lrr": 1e-3}}, "did you mean 'train.lr'"),
    ({"train": {"lr": -0.1}}, "train.lr = -0.1"),
    ({"model": {"hidden": [128, 0]}}, "model.hidden[1] = 0"),
    ({"model": {"activaton": "relu"}}, "did you mean 'model.activation'"),
    ({"model": {"activation": "swish"}}, "'relu'"),
    ({"train": {"optimizer": {"name": "adam", "momentum": 0.9}}}, "unknown key 'train.optimizer.momentum'"),
    ({"train": {"optimizer": {"name": "sgd", "momentun": 0.9}}}, "did you mean 'train.optimizer.momentum'"),
    ({"train": {"optimizer": "adamx"}}, "unknown name 'adamx'"),
    ({"train": {"optimizer": {"name": "sgd", "nesterov": True}}}, "nesterov = true needs momentum > 0"),
    ({"train": {"loss": "mse", "task": "classification"}}, "does not fit task"),
    ({"data": {"dataset": "digits", "path": "x.csv"}}, "not both"),
    ({"datta": {}}, "did you mean 'data'"),
    ({"data": {"val_fraction": 1.5}}, "data.val_fraction = 1.5"),
])
def test_bad_values_are_named_with_what_is_allowed(raw, expected):
    raw = {"data": {"dataset": "digits"}, **raw} if "data" not in raw else raw
    with pytest.raises(NetfitError) as err:
        spec_from_dict(raw)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_overrides_parse_toml_values_and_extend_shorthand_tables():
    raw = apply_overrides({"train": {"optimizer": "sgd"}}, [
        "train.lr=3e-4", "model.hidden=[256,128]", "train.optimizer.momentum=0.9", "data.dataset=digits",
        "model.batchnorm=true"])
    spec = spec_from_dict(raw)
    assert spec.train.lr == 3e-4
    assert spec.model.hidden == [256, 128]
    assert spec.train.optimizer.name == "sgd" and spec.train.optimizer.momentum == 0.9
    assert spec.data.dataset == "digits" and spec.model.batchnorm is True


def test_override_without_equals_sign_is_refused():
    with pytest.raises(NetfitError, match="section.key=value"):
        apply_overrides({}, ["train.lr"])


def test_toml_file_with_relative_paths(tmp_path):
    (tmp_path / "spec.toml").write_text('[data]\npath = "table.csv"\ntarget = "y"\n[train]\nepochs = 3\n')
    spec = load_spec(tmp_path / "spec.toml", ["train.epochs=4"])
    assert spec.data.path == tmp_path / "table.csv"  # relative to the spec file, not the cwd
    assert spec.train.epochs == 4


def test_malformed_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nlr = 1\n")
    with pytest.raises(NetfitError, match="not valid TOML"):
        load_spec(bad)


def test_spec_round_trips_through_dict_and_toml(tmp_path):
    spec = spec_from_dict({"data": {"dataset": "digits"}, "train": {"optimizer": {"name": "sgd", "momentum": 0.5},
                                                                     "early_stopping": {"patience": 3}}})
    assert Spec.model_validate(spec.to_dict()) == spec
    (tmp_path / "s.toml").write_text(spec.to_toml())
    assert load_spec(tmp_path / "s.toml") == spec


def test_shipped_configs_validate():
    configs = sorted((ROOT / "configs").glob("*.toml"))
    assert {c.name for c in configs} >= {"mnist-mlp.toml", "regression-mlp.toml", "fashion-mnist.toml"}
    for path in configs:
        load_spec(path)


def test_starter_spec_validates(tmp_path):
    from netfit.starter import STARTER_SPEC

    (tmp_path / "s.toml").write_text(STARTER_SPEC)
    assert load_spec(tmp_path / "s.toml").data.dataset == "mnist-sample"


def test_json_schema_is_generated_and_shipped_copy_is_current():
    schema = spec_json_schema()
    assert set(schema["properties"]) == {"model", "data", "train", "tune"}
    shipped = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    assert shipped == schema, "docs/spec.schema.json is stale: run `netfit schema -o docs/spec.schema.json`"


@pytest.mark.parametrize("raw, expected", [
    ({"model": {"batchnorm": "yes"}}, "model.batchnorm = 'yes'"),
    ({"train": {"epochs": True}}, "train.epochs = True"),
    ({"train": {"lr": "0.5"}}, "train.lr = '0.5'"),
    ({"model": {"hidden": [2.0]}}, "model.hidden[0] = 2.0"),
    ({"train": {"optimizer": {"name": "adam", "betas": ["0.5", 0.9]}}}, "betas[0] = '0.5'"),
])
def test_values_of_the_wrong_type_are_refused_not_converted(raw, expected):
    with pytest.raises(NetfitError, match=re.escape(expected)):
        spec_from_dict(raw)


def test_paths_and_betas_still_come_as_text_and_lists():
    spec = spec_from_dict({"data": {"path": "x.csv"}, "train": {"optimizer": {"name": "adam", "betas": [0.5, 0.9]},
                                                              "lr": 1}})
    assert str(spec.data.path) == "x.csv" and spec.train.optimizer.betas == (0.5, 0.9) and spec.train.lr == 1.0


@pytest.mark.parametrize("value", [3e-4, 64, True, "cosine", [512, 256], {"name": "cosine", "warmup_epochs": 0.5},
                                   {"name": "cross_entropy", "label_smoothing": 0.1}])
def test_toml_value_reads_back_through_set_as_the_same_value(value):
    # netfit tune writes each trial's values into the spec this way, tables (train.schedule) included.
    from netfit.spec import apply_overrides, toml_value

    assert apply_overrides({"train": {}}, [f"train.x={toml_value(value)}"])["train"]["x"] == value

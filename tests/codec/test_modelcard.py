import pytest
import yaml

from testbed.zoo import ModelCardError, load_card
from testbed.core.paths import shipped_models


def test_every_shipped_card_loads():
    models = shipped_models()
    assert "jscc-v1" in models
    for name, d in models.items():
        card = load_card(d / "model_card.yaml")
        assert card.name == name


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.pop("sha256"), "sha256"),
    (lambda d: d.update(extra_key=1), "extra_key"),
    (lambda d: d.update(snr_range_db=[20, 0]), "snr_range_db"),
    (lambda d: d["operating_points"].append({"symbols_per_location": 999, "cbr": 1.0}), "999"),
    (lambda d: d.update(encoder={"file": "encoder.onnx"}), "encoder"),
    # wrong types: a clear error naming the key, never a TypeError traceback
    (lambda d: d.update(snr_range_db=["0", 20]), "snr_range_db"),
    (lambda d: d.update(snr_range_db=[True, 20]), "snr_range_db"),
    (lambda d: d.update(max_symbols_per_location="48"), "max_symbols_per_location"),
    (lambda d: d.update(max_symbols_per_location=True), "max_symbols_per_location"),
    (lambda d: d["operating_points"][0].update(symbols_per_location=True), "symbols_per_location"),
    (lambda d: d["operating_points"][0].update(cbr="fast"), "cbr"),
    (lambda d: d.update(training="none"), "training"),
    (lambda d: d.update(name=3), "name"),
])
def test_card_errors_name_key(tmp_path, tiny_model_dir, mutate, needle):
    from tests.helpers import assert_card_refused

    assert_card_refused(tiny_model_dir / "model_card.yaml", tmp_path, mutate, needle)


def test_card_not_yaml(tmp_path):
    p = tmp_path / "model_card.yaml"
    p.write_text("a: [unclosed")
    with pytest.raises(ModelCardError, match="not valid YAML"):
        load_card(p)


@pytest.mark.parametrize("name,kinds", [("jscc-v1", {"codec"}), ("akb-v1", {"codec", "akb", "scheduler"})])
def test_shipped_cards_record_their_training_lineage(name, kinds):
    """Every stage: its number or name, the exact `testbed train` command and its steps, oldest first."""
    card = load_card(shipped_models()[name] / "model_card.yaml")
    lineage = card.training["lineage"]
    assert lineage and all(st["command"].startswith("testbed train ") and st["steps"] > 0 for st in lineage)
    assert {st["command"].split()[2] for st in lineage} == kinds
    assert [st["stage"] for st in lineage][:3] == [1, 2, 3]   # both start from codec v1 stages 1-3
    assert "init_from" not in lineage[0] and all("init_from" in st for st in lineage[1:3])
    assert all("command" not in rec for rec in (card.training, card.training.get("codec", {}),
                                               card.training.get("scheduler", {})))


@pytest.mark.parametrize("lineage,needle", [
    ("stage 1, then stage 2", "training.lineage must be a non-empty list"),
    ([], "training.lineage must be a non-empty list"),
    (["testbed train codec"], "training.lineage[0] must be a mapping"),
    ([{"stage": 1, "steps": 3}], "training.lineage[0] must be a mapping with a 'command' string"),
    ([{"stage": 1, "command": "testbed train codec", "steps": 3}, {"stage": 2, "command": "testbed train codec"}],
     "training.lineage[1]: missing key(s) steps"),
    ([{"stage": 1, "command": "testbed train codec", "steps": "3000"}], "training.lineage[0].steps must be an integer"),
    ([{"stage": 1.5, "command": "testbed train codec", "steps": 3}], "training.lineage[0].stage must be"),
    ([{"stage": 1, "command": "testbed train codec", "steps": 3, "shipped": "best.pt"}],
     "training.lineage[0].shipped must be a mapping"),
    ([{"stage": 1, "command": "testbed train codec", "steps": 3, "resumed": [7]}], "training.lineage[0].resumed"),
    ([{"stage": 1, "command": "testbed train codec", "steps": 3, "comand": "x"}],
     "training.lineage[0]: unknown key(s) comand"),
])
def test_malformed_lineage_is_refused_naming_file_and_key(tmp_path, tiny_model_dir, lineage, needle):
    d = yaml.safe_load((tiny_model_dir / "model_card.yaml").read_text())
    d["training"]["lineage"] = lineage
    p = tmp_path / "model_card.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ModelCardError) as e:
        load_card(p)
    assert str(p) in str(e.value) and needle in str(e.value)

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
    d = yaml.safe_load((tiny_model_dir / "model_card.yaml").read_text())
    mutate(d)
    p = tmp_path / "model_card.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ModelCardError) as e:
        load_card(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_card_not_yaml(tmp_path):
    p = tmp_path / "model_card.yaml"
    p.write_text("a: [unclosed")
    with pytest.raises(ModelCardError, match="not valid YAML"):
        load_card(p)

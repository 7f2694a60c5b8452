"""`testbed train pack`: the training images re-encoded to fit a size budget."""
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import run_cli, smooth_image, write_png
from testbed.core.trainpack import MANIFEST, build_pack


@pytest.fixture()
def folders(tmp_path):
    tr, va = tmp_path / "train", tmp_path / "val"
    tr.mkdir()
    va.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        a = smooth_image(64, 96, seed=i).astype(np.int16) + rng.integers(-20, 20, (64, 96, 3))
        write_png(tr / f"t{i}.png", np.clip(a, 0, 255).astype(np.uint8))
    for i in range(3):
        write_png(va / f"v{i}.png", smooth_image(40, 48, seed=10 + i))
    return tr, va


def test_pack_fits_its_budget_and_records_what_it_did(tmp_path, folders):
    tr, va = folders
    out = tmp_path / "pack"
    full = build_pack(tr, out, val=va, val_images=2, budget_mb=1.0)
    small = build_pack(tr, tmp_path / "small", budget_mb=0.008)
    m = json.loads((out / MANIFEST).read_text())
    assert m == json.loads(json.dumps(full))
    assert sorted(p.name for p in (out / "train").iterdir()) == [f"t{i}.webp" for i in range(4)]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["v0.png", "v1.png"]
    size = sum(p.stat().st_size for p in (tmp_path / "small").rglob("*") if p.suffix in (".webp", ".png"))
    assert size <= 0.008e6 and 50 < small["train"]["quality"]
    # a smaller budget gives a lower quality and a lower fidelity, both on record
    assert small["train"]["quality"] < full["train"]["quality"]
    assert small["train"]["psnr_vs_source_db"]["mean"] < full["train"]["psnr_vs_source_db"]["mean"]
    # validation images are lossless
    a = np.asarray(Image.open(out / "val" / "v0.png").convert("RGB"))
    assert np.array_equal(a, np.asarray(Image.open(va / "v0.png").convert("RGB")))


def test_pack_refusals(tmp_path, folders):
    tr, va = folders
    build_pack(tr, tmp_path / "p", budget_mb=1.0)
    with pytest.raises(ValueError, match="exists; pass --force"):
        build_pack(tr, tmp_path / "p", budget_mb=1.0)
    build_pack(tr, tmp_path / "p", budget_mb=1.0, force=True)
    with pytest.raises(ValueError, match="do not fit even at WebP quality"):
        build_pack(tr, tmp_path / "q", budget_mb=0.001)
    with pytest.raises(ValueError, match="validation images alone"):
        build_pack(tr, tmp_path / "q", val=va, budget_mb=0.001)
    with pytest.raises(ValueError, match="--budget-mb"):
        build_pack(tr, tmp_path / "q", budget_mb=float("nan"))
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.tmp").exists()


def test_cli(tmp_path, folders):
    tr, va = folders
    r = run_cli("train", "pack", "--data", str(tr), "--val", str(va), "--val-images", "1", "--out",
                str(tmp_path / "p"), "--budget-mb", "1", "--json")
    m = json.loads(r.stdout)
    assert m["train"]["images"] == 4 and m["val"]["images"] == 1
    r = run_cli("train", "pack", "--data", str(tr), "--out", str(tmp_path / "p"), check=False)
    assert r.returncode == 2 and "exists; pass --force" in r.stderr

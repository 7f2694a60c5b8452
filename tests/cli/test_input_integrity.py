"""Model integrity (the card's sha256, a corrupt kb.npz), `eval --record-in-card` refusing a
partial evaluation, the file system (an unwritable --out, a path through a file, a full disk, a
SigMF data "file" that is a folder) and image modes converted by their real range."""
import errno
import io
import json
import logging
import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.helpers import REPO, run_cli, smooth_image, write_png


def _copy(model_dir, dest):
    shutil.copytree(model_dir, dest)
    return dest


def _card(d):
    return yaml.safe_load((d / "model_card.yaml").read_text())


def _write_card(d, doc):
    (d / "model_card.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture()
def images(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        write_png(d / f"{i}.png", smooth_image(48, 64, seed=i))
    return d


# -- the card's sha256 --------------------------------------------------------------------------

def test_card_sha256_is_checked_against_the_graphs(tmp_path, tiny_model_dir):
    from testbed.core.codecs import ModelError
    from testbed.zoo import open_codec

    assert open_codec("jscc-v1").sha256 == _card(REPO / "models" / "jscc-v1")["sha256"]
    m = _copy(tiny_model_dir, tmp_path / "m")
    doc = _card(m)
    good = doc["sha256"]
    doc["sha256"] = ("0" if good[0] != "0" else "1") + good[1:]
    _write_card(m, doc)
    with pytest.raises(ModelError, match=r"model_card.yaml: key 'sha256' .* is not the model's identity"):
        open_codec(m)
    r = run_cli("eval", "--model", m, "--data", REPO / "samples" / "kodim15.png", "--snr-db", "10",
                "--out", tmp_path / "run", check=False)
    assert r.returncode == 2 and str(m / "model_card.yaml") in r.stderr and "sha256" in r.stderr
    assert not (tmp_path / "run").exists()
    # graphs swapped, their own hashes updated, the identity left: refused too
    doc["sha256"] = good
    doc["encoder"]["sha256"], doc["decoder"]["sha256"] = doc["decoder"]["sha256"], doc["encoder"]["sha256"]
    os.replace(m / "encoder.onnx", m / "tmp.onnx")
    os.replace(m / "decoder.onnx", m / "encoder.onnx")
    os.replace(m / "tmp.onnx", m / "decoder.onnx")
    _write_card(m, doc)
    with pytest.raises(ModelError, match="identity"):
        open_codec(m)


@pytest.mark.slow
def test_a_corrupt_kb_is_named_not_a_traceback(tmp_path):
    """A kb.npz that is not a zip, truncated, empty or with a meta of the wrong shape."""
    from testbed.core.codecs import ModelError
    from testbed.zoo import open_codec

    src = REPO / "models" / "akb-v1"
    m = tmp_path / "akb"
    m.mkdir()
    for f in src.iterdir():
        (m / f.name).symlink_to(f) if f.suffix == ".onnx" else shutil.copy(f, m / f.name)
    kb = (m / "kb.npz").read_bytes()
    buf = io.BytesIO()
    np.savez(buf, vectors=np.zeros((4, 8), np.float32), meta=np.array("[1, 2]"))
    for content in (b"garbage", kb[: len(kb) // 2], b"PK\x03\x04" + b"x" * 64, b"", buf.getvalue()):
        (m / "kb.npz").write_bytes(content)
        with pytest.raises(ModelError) as e:
            open_codec(m)
        assert str(m) in str(e.value)
    r = run_cli("eval", "--model", m, "--data", REPO / "samples" / "kodim15.png", "--snr-db", "10",
                "--out", tmp_path / "run", check=False)
    assert r.returncode == 2 and str(m) in r.stderr and "Traceback" not in r.stderr


# -- eval --record-in-card ----------------------------------------------------------------------

def test_record_in_card_refuses_a_partial_evaluation_unless_forced(tmp_path, tiny_model_dir, images):
    m = _copy(tiny_model_dir, tmp_path / "m")

    def ev(data, snrs, *extra, out):
        return run_cli("eval", "--model", m, "--data", data, "--snr-db", snrs, "--cbr", str(2 / 768),
                       "--no-separation", "--out", tmp_path / out, "--record-in-card", "set", *extra, check=False)

    assert ev(images, "0,10", out="full").returncode == 0
    key = "set/awgn/cbr=0.0026"
    full = _card(m)["evaluation"][key]
    assert full["n_images"] == 3 and set(full["psnr_db"]) == {"0", "10"}
    card_text = (m / "model_card.yaml").read_text()
    for data, snrs, needle in ((images / "0.png", "0,10", "1 images"), (images, "10", "lacks SNR 0 dB")):
        r = ev(data, snrs, out=f"partial-{snrs}")
        assert r.returncode == 2 and "--force-record" in r.stderr and needle in r.stderr, r.stderr[-600:]
        assert "Traceback" not in r.stderr and (m / "model_card.yaml").read_text() == card_text
        assert (tmp_path / f"partial-{snrs}" / "results.csv").exists()   # the run's results are kept
    assert ev(images, "0,10,20", out="more").returncode == 0          # more SNRs: recorded
    assert set(_card(m)["evaluation"][key]["psnr_db"]) == {"0", "10", "20"}
    assert ev(images / "0.png", "10", "--force-record", out="forced").returncode == 0
    assert _card(m)["evaluation"][key]["n_images"] == 1
    help_text = run_cli("eval", "--help").stdout
    assert "--force-record" in help_text


# -- the file system ----------------------------------------------------------------------------

def _eval(out, model, *extra):
    return run_cli("eval", "--model", model, "--data", REPO / "samples" / "kodim15.png", "--snr-db", "10",
                   "--no-separation", "--out", out, *extra, check=False)


def _no_tmp(folder):
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_out_through_a_file_or_unwritable_is_named(tmp_path, tiny_model_dir, monkeypatch):
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile", tmp_path / "afile" / "run"):
        r = _eval(out, tiny_model_dir)
        assert r.returncode == 2 and str(out) in r.stderr and "Traceback" not in r.stderr, r.stderr[-500:]
    import pathlib

    real_mkdir = pathlib.Path.mkdir
    target = tmp_path / "locked" / "run"

    def mkdir(self, *a, **kw):
        if self == target:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    r = _eval(target, tiny_model_dir)
    assert r.returncode == 2 and f"--out {target}: cannot write there (Permission denied)" in r.stderr


def test_a_full_disk_is_named_and_leaves_no_temporary_files(tmp_path, tiny_model_dir, monkeypatch):
    from testbed.core.runlog import CsvLog, OutputError, write_bytes_atomic

    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    f = tmp_path / "kept.json"
    f.write_text("old")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OutputError, match=f"{f}: cannot write \\(No space left on device\\)"):
        write_bytes_atomic(f, b"new")
    assert f.read_text() == "old" and not _no_tmp(tmp_path)
    with pytest.raises(OutputError, match="results.csv: cannot write"):
        CsvLog(tmp_path / "results.csv", ["a"])
    monkeypatch.setattr(os, "fsync", real_fsync)

    real_replace = os.replace

    def replace(src, dst, *a, **kw):
        if str(dst).endswith("summary.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    r = _eval(tmp_path / "run", tiny_model_dir)
    assert r.returncode == 2 and "summary.json: cannot write (No space left on device)" in r.stderr
    assert "Traceback" not in r.stderr and not _no_tmp(tmp_path / "run")


def test_a_sigmf_data_folder_is_refused_not_a_hang(tmp_path, tiny_model_dir):
    from testbed.phy.config import OfdmConfig

    meta = {"global": {"core:datatype": "cf32_le", "core:sample_rate": 1e6,
                       "testbed:settings": {"model": str(tiny_model_dir), "model_sha256": "ab" * 32,
                                            "ofdm": OfdmConfig().to_dict(), "images": []}},
            "captures": [], "annotations": []}
    (tmp_path / "rec.sigmf-meta").write_text(json.dumps(meta))
    (tmp_path / "rec.sigmf-data").mkdir()
    (tmp_path / "rec.sigmf-data" / "x").write_bytes(bytes(64))
    r = run_cli("replay", tmp_path / "rec.sigmf-meta", "--out", tmp_path / "run", check=False, timeout=60)
    assert r.returncode == 2 and "rec.sigmf-data: not a regular file" in r.stderr
    assert not (tmp_path / "run").exists()


# -- image modes --------------------------------------------------------------------------------

def _png16(path, arr):
    """A 16-bit RGB PNG (Pillow cannot write one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_image_modes_are_converted_by_their_real_range(tmp_path, caplog):
    from testbed.core.images import load_rgb

    g = smooth_image(20, 24)[:, :, 0]
    Image.fromarray(g.astype(np.int32), "I").save(tmp_path / "i32-8bit.tif")
    Image.fromarray(g.astype(np.int32) * 4, "I").save(tmp_path / "i32-10bit.tif")
    Image.fromarray(g.astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    rgb = smooth_image(20, 24, seed=3)
    _png16(tmp_path / "rgb16.png", rgb.astype(np.uint16) * 257)
    f = g.astype(np.float32) / 255
    f[0, 0] = np.nan
    Image.fromarray(f, "F").save(tmp_path / "float.tif")
    with caplog.at_level(logging.WARNING):
        assert np.array_equal(load_rgb(tmp_path / "i32-8bit.tif")[:, :, 0], g)   # 0..255 stays 0..255
        assert np.abs(load_rgb(tmp_path / "i32-10bit.tif")[:, :, 1].astype(int) - g).max() <= 1
        assert np.abs(load_rgb(tmp_path / "gray16.png")[:, :, 2].astype(int) - g).max() <= 1
        assert np.abs(load_rgb(tmp_path / "rgb16.png").astype(int) - rgb).max() <= 1
        fl = load_rgb(tmp_path / "float.tif")
        assert fl[0, 0, 0] == 0 and np.abs(fl[1:, :, 0].astype(int) - g[1:]).max() <= 1
    text = caplog.text
    assert "i32-8bit.tif: 32-bit integer image with 8-bit values (0.." in text
    assert "i32-10bit.tif: 32-bit integer image with 10-bit values" in text and "precision reduced" in text
    assert "gray16.png: 16-bit image converted to 8 bits (precision reduced)" in text
    assert "rgb16.png: 16-bit RGB image converted to 8 bits (precision reduced)" in text
    assert "float.tif: 1 non-finite pixel value(s) set to 0" in text

"""Bad input gets a clear error or warning naming the file, key or value."""
import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.helpers import SAMPLES, run_cli, smooth_image, write_png
from testbed.core.images import ImageInputError, list_images, load_rgb


def test_corrupt_file_is_named(tmp_path):
    f = tmp_path / "broken.png"
    f.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    with pytest.raises(ImageInputError, match="broken.png"):
        load_rgb(f)
    t = tmp_path / "truncated.png"
    t.write_bytes((SAMPLES / "kodim15.png").read_bytes()[:5000])
    with pytest.raises(ImageInputError, match="truncated.png"):
        load_rgb(t)


def test_oversized_image_is_named_not_fatal(tmp_path, monkeypatch):
    """Pillow's decompression-bomb guard (images over ~179 MP) becomes a named, skippable error."""
    f = write_png(tmp_path / "huge.png", smooth_image(32, 32))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # 1024 px is then over twice the limit
    with pytest.raises(ImageInputError, match="huge.png.*too large"):
        load_rgb(f)


def test_conversions_warn_and_give_rgb(tmp_path, caplog):
    g = smooth_image(40, 50)
    cases = {
        "gray.png": Image.fromarray(g[:, :, 0], "L"),
        "rgba.png": Image.fromarray(np.dstack([g, np.full(g.shape[:2], 128, np.uint8)]), "RGBA"),
        "gray16.png": Image.fromarray(g[:, :, 0].astype(np.uint16) * 257),
        "palette.png": Image.fromarray(g).convert("P"),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
    with caplog.at_level(logging.WARNING):
        for name in cases:
            arr = load_rgb(tmp_path / name)
            assert arr.shape == (40, 50, 3) and arr.dtype == np.uint8, name
    text = caplog.text
    assert "gray.png: grayscale" in text and "rgba.png: alpha channel dropped" in text
    assert "gray16.png" in text and "8 bits" in text
    # 16-bit data is scaled, not truncated
    assert abs(int(load_rgb(tmp_path / "gray16.png")[5, 5, 0]) - int(g[5, 5, 0])) <= 1


def test_tiny_image_warns_but_works(tmp_path, caplog, tiny_model_dir):
    write_png(tmp_path / "tiny.png", smooth_image(5, 9))
    with caplog.at_level(logging.WARNING):
        arr = load_rgb(tmp_path / "tiny.png")
    assert "tiny.png: 9x5 is smaller than the codec's 16x16 block" in caplog.text
    from testbed.codec.runtime import OnnxCodec

    c = OnnxCodec(tiny_model_dir)
    out = c.decode(c.encode_k(arr, 10.0, 6), 10.0, 5, 9)
    assert out.shape == (5, 9, 3)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(ImageInputError, match="no images found"):
        list_images(tmp_path / "empty")
    with pytest.raises(ImageInputError, match="nowhere"):
        list_images(tmp_path / "nowhere")


def _eval(model, data, *extra, tmp_path):
    return run_cli("eval", "--model", model, "--data", data, "--snr-db", "10", "--out", tmp_path / "run",
                   "--no-separation", *extra, check=False)


def test_eval_skips_and_names_corrupt_files_and_handles_odd_sizes(tmp_path, tiny_model_dir):
    d = tmp_path / "mixed"
    d.mkdir()
    write_png(d / "odd.png", smooth_image(37, 53))
    write_png(d / "rgba.png", np.dstack([smooth_image(20, 20), np.full((20, 20), 9, np.uint8)]), "RGBA")
    (d / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    p = _eval(tiny_model_dir, d, tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "bad.jpg" in p.stderr and "rgba.png: alpha channel dropped" in p.stderr
    assert "2 images" in p.stdout


def test_eval_errors_exit_2_and_name_the_problem(tmp_path, tiny_model_dir):
    (tmp_path / "empty").mkdir()
    p = _eval(tiny_model_dir, tmp_path / "empty", tmp_path=tmp_path)
    assert p.returncode == 2 and "no images found" in p.stderr and "empty" in p.stderr

    only_bad = tmp_path / "onlybad"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"nope")
    p = _eval(tiny_model_dir, only_bad, tmp_path=tmp_path)
    assert p.returncode == 2 and "onlybad" in p.stderr

    p = _eval(tmp_path / "no-such-model", SAMPLES, tmp_path=tmp_path)
    assert p.returncode == 2 and "no-such-model" in p.stderr

    p = run_cli("eval", "--model", tiny_model_dir, "--data", SAMPLES, "--snr-db", "ten", check=False)
    assert p.returncode == 2 and "'ten'" in p.stderr

    p = run_cli("eval", "--model", tiny_model_dir, "--data", SAMPLES, "--channel", "rician", check=False)
    assert p.returncode == 2 and "rician" in p.stderr

    p = run_cli("eval", "--model", tiny_model_dir, "--data", SAMPLES, "--cbr", "0.5", check=False)
    assert p.returncode == 2 and "CBR 0.5" in p.stderr


def test_mismatched_model_files_are_detected(tmp_path, tiny_model_dir, shipped_model):
    m = tmp_path / "mixed-model"
    shutil.copytree(tiny_model_dir, m)
    shutil.copy(shipped_model / "decoder.onnx", m / "decoder.onnx")
    p = _eval(m, SAMPLES, tmp_path=tmp_path)
    assert p.returncode == 2
    assert "decoder.onnx" in p.stderr and "does not match the model card" in p.stderr

    (m / "decoder.onnx").unlink()
    p = _eval(m, SAMPLES, tmp_path=tmp_path)
    assert p.returncode == 2 and "decoder.onnx" in p.stderr and "missing" in p.stderr


def test_card_errors_name_file_and_key(tmp_path, tiny_model_dir):
    m = tmp_path / "badcard"
    shutil.copytree(tiny_model_dir, m)
    card = m / "model_card.yaml"
    card.write_text(card.read_text().replace("snr_range_db:", "snr_rnge_db:"))
    p = _eval(m, SAMPLES, tmp_path=tmp_path)
    assert p.returncode == 2
    assert "model_card.yaml" in p.stderr and "snr_rnge_db" in p.stderr


def test_snr_outside_trained_range_warns(tmp_path, tiny_model_dir):
    p = run_cli("eval", "--model", tiny_model_dir, "--data", SAMPLES / "kodim15.png", "--snr-db=-5,10,27",
                "--no-separation", "--out", tmp_path / "run")
    assert p.returncode == 0
    assert "SNR -5 dB is outside the model's trained range 0..20 dB" in p.stderr
    assert "SNR 27 dB is outside" in p.stderr
    assert "SNR 10 dB is outside" not in p.stderr

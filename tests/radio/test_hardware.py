"""Tests on attached radios. Marked `hardware`; each skips itself when `iio_info -S usb` /
`uhd_find_devices --args type=b200` find no radio of its kind (USB only: no network scan)."""
import json

import pytest

from tests.helpers import SAMPLES, run_cli

pytestmark = pytest.mark.hardware


@pytest.fixture(scope="module")
def radios():
    from testbed.cli.doctor import scan_radios

    return scan_radios(network=False)


@pytest.fixture(scope="module")
def pluto_cfg(radios, tmp_path_factory):
    plutos = [r for r in radios if r["kind"] == "iio" and "pluto" in r.get("description", "").lower()]
    if not plutos:
        pytest.skip("no ADALM-Pluto found by `iio_info -S usb`")
    p = tmp_path_factory.mktemp("hw") / "pluto.yaml"
    text = open("firmware_configs/pluto.yaml").read().replace("uri: ip:192.168.2.1", f"uri: {plutos[0]['uri']}")
    p.write_text(text)
    return p


@pytest.fixture(scope="module")
def usrp_cfg(radios):
    if not [r for r in radios if r["kind"] == "uhd"]:
        pytest.skip("no USB USRP found by `uhd_find_devices --args type=b200`")
    return "firmware_configs/usrp_b210.yaml"


def test_pluto_config_applies_and_reads_back(pluto_cfg):
    from testbed.link.configs import load_config
    from testbed.radio.pluto import apply_config

    r = apply_config(load_config(pluto_cfg))
    assert r["mismatches"] == []


def test_pluto_full_duplex_link_check(pluto_cfg):
    r = json.loads(run_cli("link-check", "--config", pluto_cfg, "--json").stdout)
    assert r["snr_db"] > 10 and abs(r["cfo_hz"]) < 5000   # one radio: TX and RX share the reference


def test_pluto_ota_end_to_end(pluto_cfg, tmp_path):
    s = json.loads(run_cli("ota", "--config", pluto_cfg, "--images", SAMPLES, "--record", "--out", tmp_path,
                           "--json").stdout)
    r = s["results"][0]
    assert r["n_images"] == 3 and r["frames_lost"] < r["frames_sent"] and r["psnr_db"] > 15
    rep = json.loads(run_cli("replay", s["recordings"][0], "--out", tmp_path / "replay", "--json").stdout)
    assert abs(rep["results"][0]["psnr_db"] - r["psnr_db"]) < 0.1


def test_usrp_ota_end_to_end(usrp_cfg, tmp_path):
    s = json.loads(run_cli("ota", "--config", usrp_cfg, "--images", SAMPLES, "--out", tmp_path, "--json").stdout)
    assert s["results"][0]["psnr_db"] > 15

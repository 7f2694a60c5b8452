"""ADALM-Pluto without GNU Radio (pyadi-iio and pylibiio): scan, apply a config and read it back,
a single-Pluto full-duplex link check, and the two-radio CFO calibration."""
from __future__ import annotations

import logging
import time

import numpy as np

from . import analysis
from .config import PlutoConfig

log = logging.getLogger(__name__)


def scan_plutos() -> list[dict]:
    """Plutos found by the libiio scan (USB and, where the backend is built in, network)."""
    try:
        import iio
    except ImportError:
        return []
    try:
        ctxs = iio.scan_contexts()
    except Exception as e:  # libiio raises OSError variants when no backend answers
        log.info("libiio scan failed: %s", e)
        return []
    found = []
    for uri, desc in ctxs.items():
        if "pluto" not in desc.lower() and "adalm" not in desc.lower():
            continue
        info = {"uri": uri, "description": desc}
        try:
            ctx = iio.Context(uri)
            info["serial"] = ctx.attrs.get("hw_serial", "")
            info["firmware"] = ctx.attrs.get("fw_version", "")
            phy = ctx.find_device("ad9361-phy")
            t = phy.find_channel("temp0") if phy is not None else None
            if t is not None and "input" in t.attrs:
                info["temperature_c"] = float(t.attrs["input"].value) / 1000.0
        except Exception as e:
            info["error"] = str(e)
        found.append(info)
    return found


def firmware_ok(version: str, minimum: str) -> bool:
    def parse(v):
        v = v.strip().lstrip("v").split("-")[0]
        return tuple(int(p) for p in v.split(".")[:2])

    try:
        return parse(version) >= parse(minimum)
    except ValueError:
        return False


def settings(cfg: PlutoConfig) -> list[tuple[str, object]]:
    """pyadi-iio attributes in the order they are set (gain mode before gain)."""
    return [
        ("sample_rate", int(cfg.sample_rate)),
        ("rx_rf_bandwidth", int(cfg.rf_bandwidth)), ("tx_rf_bandwidth", int(cfg.rf_bandwidth)),
        ("rx_lo", int(cfg.rx_lo)), ("tx_lo", int(cfg.tx_lo)),
        ("gain_control_mode_chan0", cfg.rx_gain_mode),
        *([("rx_hardwaregain_chan0", float(cfg.rx_gain_db))] if cfg.rx_gain_mode == "manual" else []),
        ("tx_hardwaregain_chan0", -float(cfg.tx_attenuation_db)),
        ("rx_buffer_size", int(cfg.buffer_size)),
    ]


def compare(wanted: list[tuple[str, object]], read: dict) -> list[str]:
    """Differences between what was set and what the radio reports (the radio rounds: tolerances)."""
    bad = []
    for key, v in wanted:
        r = read.get(key)
        if isinstance(v, str):
            ok = r == v
        else:
            tol = 0.5 if "gain" in key else 10.0 if key.endswith("_lo") else max(1.0, abs(float(v)) * 1e-3)
            ok = r is not None and abs(float(r) - float(v)) <= tol
        if not ok:
            bad.append(f"{key}: set {v!r}, radio reports {r!r}")
    return bad


def open_pluto(uri: str, cfg: PlutoConfig):
    import adi

    sdr = adi.Pluto(uri)
    fw = sdr._ctx.attrs.get("fw_version", "")
    if fw and not firmware_ok(fw, cfg.min_firmware):
        raise RuntimeError(f"{uri}: firmware {fw} is older than {cfg.min_firmware} (min_firmware in the config)")
    return sdr


def receives(cfg: PlutoConfig, uri: str) -> bool:
    """Whether the Pluto at ``uri`` is the receiver (``rx_uri``, or the only Pluto)."""
    return uri == (cfg.rx_uri or cfg.uri)


def write_xo_correction(ctx, hz: float) -> None:
    """Set the AD9361's reference-clock correction on a libiio context (pyadi-iio: ``sdr._ctx``)."""
    ctx.find_device("ad9361-phy").attrs["xo_correction"].value = str(int(round(hz)))


def set_xo_correction(uri: str, hz: float) -> None:
    """Set it on the Pluto at ``uri`` through libiio (for the GNU Radio path, whose gr-iio blocks
    have no setter for it); call before the radio's blocks are created."""
    import iio

    write_xo_correction(iio.Context(uri), hz)


def apply_config(cfg: PlutoConfig, uri: str | None = None) -> dict:
    """Apply ``cfg`` to the Pluto at ``uri`` (default cfg.uri) and read every value back.
    ``xo_correction`` (measured for the receiving Pluto) is applied to the receiver only; with
    one Pluto, that is the one."""
    uri = uri or cfg.uri
    sdr = open_pluto(uri, cfg)
    if cfg.xo_correction and receives(cfg, uri):   # first: the LO and sample rate derive from it
        write_xo_correction(sdr._ctx, cfg.xo_correction)
    wanted = settings(cfg)
    for key, v in wanted:
        setattr(sdr, key, v)
    read = {key: getattr(sdr, key) for key, _ in wanted}
    return {"uri": uri, "set": dict(wanted), "read": read, "mismatches": compare(wanted, read), "sdr": sdr}


def link_check(cfg: PlutoConfig, captures: int = 4) -> dict:
    """One Pluto in full duplex: a cyclic TX buffer of the reference, RX captures, CFO and SNR."""
    applied = apply_config(cfg)
    sdr = applied["sdr"]
    ref = analysis.reference()
    sdr.tx_cyclic_buffer = True
    sdr.tx(ref * 2 ** 14 * 0.5)          # half of the DAC's full scale
    try:
        for _ in range(2):                # let the AGC and the buffers settle
            sdr.rx()
        res = [analysis.estimate_cfo_snr(sdr.rx() / 2 ** 11, cfg.sample_rate) for _ in range(captures)]
    finally:
        sdr.tx_destroy_buffer()
    return {"uri": cfg.uri, "mismatches": applied["mismatches"],
            "cfo_hz": float(np.median([r["cfo_hz"] for r in res])),
            "snr_db": float(np.median([r["snr_db"] for r in res])),
            "rx_power_dbfs": float(np.median([r["power_dbfs"] for r in res]))}


def calibrate(cfg: PlutoConfig, seconds: float = 2.0) -> dict:
    """CFO between the TX Pluto (``uri``) and the RX Pluto (``rx_uri``) and the RX xo_correction
    that cancels it."""
    if not cfg.rx_uri or cfg.rx_uri == cfg.uri:
        raise ValueError("calibrate needs two radios: set rx_uri in the config")
    tx = apply_config(cfg, cfg.uri)["sdr"]
    rx = apply_config(cfg, cfg.rx_uri)["sdr"]
    tx.tx_cyclic_buffer = True
    tx.tx(analysis.reference() * 2 ** 14 * 0.5)
    res = []
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            res.append(analysis.estimate_cfo_snr(rx.rx() / 2 ** 11, cfg.sample_rate))
    finally:
        tx.tx_destroy_buffer()
    cfo = float(np.median([r["cfo_hz"] for r in res]))
    cur = float(rx._ctx.find_device("ad9361-phy").attrs["xo_correction"].value)
    return {"cfo_hz": cfo, "cfo_ppm": cfo / cfg.rx_lo * 1e6, "captures": len(res),
            "snr_db": float(np.median([r["snr_db"] for r in res])), "rx_xo_correction_now": cur,
            "suggested_rx_xo_correction": analysis.suggest_xo_correction(cfo, cfg.rx_lo, cur)}

"""The radio commands: ``testbed radios``, ``link-check``, ``calibrate``, ``pluto-config``."""
from __future__ import annotations

from ..core.checks import number


def add_parsers(sub, common) -> None:
    ra = sub.add_parser("radios", parents=[common], help="attached radios: Plutos (libiio scan) and USRPs (UHD)")
    ra.add_argument("--scan-network", action="store_true", help="also look for network radios (sends mDNS/UDP)")
    ra.set_defaults(func=_cmd_radios)

    lc = sub.add_parser("link-check", parents=[common],
                        help="one Pluto in full duplex: apply the config, read it back, cyclic TX + RX capture")
    lc.add_argument("--config", required=True, help="a pluto config (firmware_configs/pluto.yaml)")
    lc.set_defaults(func=_cmd_link_check)

    ca = sub.add_parser("calibrate", parents=[common],
                        help="CFO between two Plutos from a known reference; suggests the RX xo_correction")
    ca.add_argument("--config", required=True, help="a pluto config with uri (TX) and rx_uri (RX)")
    ca.add_argument("--seconds", type=number(float, lo=0.0, hi=3600.0, lo_open=True), default=2.0,
                    help="capture time in seconds (default %(default)s)")
    ca.set_defaults(func=_cmd_calibrate)

    pc = sub.add_parser("pluto-config", parents=[common], help="print a Pluto config.txt for the given address")
    pc.add_argument("--ip", required=True, help="the Pluto's address, e.g. 192.168.3.1")
    pc.add_argument("--hostname")
    pc.add_argument("--xo-correction", type=number(float, lo=39.9e6, hi=40.1e6),
                    help="reference frequency (Hz), from `testbed calibrate` (default: keep the factory calibration)")
    pc.set_defaults(func=_cmd_pluto_config)


def _cmd_radios(a) -> int:
    from .doctor import scan_radios
    from ..radio.pluto import scan_plutos
    from ..core.runlog import to_json

    found = scan_radios(network=a.scan_network)
    plutos = {p["uri"]: p for p in scan_plutos()} if any(r["kind"] == "iio" for r in found) else {}
    for r in found:
        if r["kind"] == "iio" and r.get("uri") in plutos:
            r.update({k: v for k, v in plutos[r["uri"]].items() if k != "uri"})
    if a.json:
        print(to_json({"radios": found}))
    elif not found:
        print("no radios found (USB scan" + (" and network" if a.scan_network else "; --scan-network for network radios")
              + ")")
    else:
        for r in found:
            if r["kind"] == "iio":
                print(f"Pluto/IIO  {r.get('uri')}  serial {r.get('serial', '?')}  firmware {r.get('firmware', '?')}  "
                      f"temperature {r.get('temperature_c', float('nan')):.1f} C  ({r.get('description', '')})")
            else:
                print("USRP       " + "  ".join(f"{k} {v}" for k, v in r.items() if k != "kind"))
    return 0


def _load_pluto(path):
    from ..link.configs import load_config
    from ..radio.config import PlutoConfig

    cfg = load_config(path)
    if not isinstance(cfg, PlutoConfig):
        raise ValueError(f"{path}: kind {cfg.kind!r}; this command needs a pluto config")
    return cfg


def _cmd_link_check(a) -> int:
    from ..radio.pluto import link_check
    from ..core.runlog import to_json

    r = link_check(_load_pluto(a.config))
    print(to_json(r) if a.json else f"{r['uri']}: CFO {r['cfo_hz']:.1f} Hz, SNR {r['snr_db']:.1f} dB, RX power "
          f"{r['rx_power_dbfs']:.1f} dBFS; read-back mismatches: {r['mismatches'] or 'none'}")
    return 1 if r["mismatches"] else 0


def _cmd_calibrate(a) -> int:
    from ..radio.pluto import calibrate
    from ..core.runlog import to_json

    r = calibrate(_load_pluto(a.config), a.seconds)
    print(to_json(r) if a.json else f"CFO {r['cfo_hz']:.1f} Hz ({r['cfo_ppm']:.2f} ppm) over {r['captures']} captures, "
          f"SNR {r['snr_db']:.1f} dB; set xo_correction: {r['suggested_rx_xo_correction']:.0f} on the RX Pluto "
          f"(now {r['rx_xo_correction_now']:.0f})")
    return 0


def _cmd_pluto_config(a) -> int:
    from ..radio.pluto_config_txt import render

    print(render(a.ip, a.hostname, a.xo_correction), end="")
    return 0

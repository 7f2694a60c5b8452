"""``testbed doctor``: what is installed, what radios are attached, what is missing and how to fix it.

Radio scans use USB only by default (``iio_info -S usb``, ``uhd_find_devices --args type=b200``),
so the doctor sends nothing onto the network; ``--scan-network`` also looks for network radios
(Pluto over Ethernet/USB-RNDIS via DNS-SD, USRP N2xx/X3xx via UDP broadcast).
"""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SETUP_HINT = "./scripts/setup.sh"


@dataclass
class Check:
    name: str
    version: str | None
    ok: bool
    fix: str = ""
    required: bool = True


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)
    radios: list[dict] = field(default_factory=list)
    scan: str = "usb"

    @property
    def missing(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.required]

    def as_dict(self) -> dict:
        return {
            "python": sys.version.split()[0],
            "components": {c.name: {"version": c.version, "ok": c.ok, "required": c.required,
                                    **({"fix": c.fix} if not c.ok else {})} for c in self.checks},
            "radios": self.radios,
            "radio_scan": self.scan,
            "ok": not self.missing,
        }


def _module_version(mod: str, attr: str = "__version__") -> str | None:
    try:
        m = importlib.import_module(mod)
    except Exception:  # a broken install can raise anything at import time
        return None
    v = getattr(m, attr, None)
    return str(v() if callable(v) else v) if v is not None else "installed"


def _run(cmd: list[str], timeout: float = 20.0) -> tuple[int, str]:
    if shutil.which(cmd[0]) is None:
        return 127, ""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return 124, ""


def _gnuradio_version() -> str | None:
    try:
        from gnuradio import gr

        return gr.version()
    except Exception:
        return None


def _testbedphy() -> str | None:
    """Where the C++ PHY module is installed, or None."""
    from ..gr.cpp_blocks import module

    m = module()
    return None if m is None else f"installed ({Path(m.__file__).parent})"


def _qt_gui() -> str | None:
    """PyQt5 and gr-qtgui, for ``--gui`` (imported only in a child: Qt loads its platform there)."""
    code = "import PyQt5.QtCore as q, gnuradio.qtgui; print('PYQT=' + q.PYQT_VERSION_STR)"
    rc, out = _run([sys.executable, "-c", code], timeout=30)
    m = re.search(r"^PYQT=(\S+)", out, re.M)
    return f"PyQt5 {m.group(1)}, gr-qtgui" if rc == 0 and m else None


def _libiio_version() -> str | None:
    try:
        import iio

        return ".".join(str(x) for x in iio.version[:2])
    except Exception:
        rc, out = _run(["iio_info", "-V"])
        m = re.search(r"Library version: (\S+)", out)
        return m.group(1) if m else None


def _uhd_version() -> str | None:
    rc, out = _run(["uhd_config_info", "--version"])
    m = re.search(r"UHD (\S+)", out)
    return m.group(1) if m else None


def _pyadi_version() -> str | None:
    try:
        import adi  # noqa: F401
        from importlib.metadata import version

        return version("pyadi-iio")
    except Exception:
        return None


def scan_radios(network: bool = False) -> list[dict]:
    radios: list[dict] = []
    rc, out = _run(["iio_info", "-S"] + ([] if network else ["usb"]))
    for line in out.splitlines():
        m = re.match(r"\s*\d+:\s*(.*?)\s*\[(\S+)\]", line)
        if m:
            radios.append({"kind": "iio", "description": m.group(1), "uri": m.group(2)})
    args = [] if network else ["--args", "type=b200"]
    rc, out = _run(["uhd_find_devices"] + args, timeout=30)
    for block in out.split("-- UHD Device")[1:]:
        info = dict(re.findall(r"^\s*(\w+):\s*(\S+)", block, flags=re.M))
        radios.append({"kind": "uhd", **info})
    return radios


def run_doctor(scan: bool = True, network: bool = False) -> Report:
    r = Report(scan="usb+network" if network else ("usb" if scan else "off"))
    apt_fix = "sudo apt-get install -y {pkg}  (or " + SETUP_HINT + ", which does it with passwordless sudo)"
    pins = SETUP_HINT + "  (re-installs the pinned packages into .venv)"
    r.checks += [
        Check("gnuradio", _gnuradio_version(), False, apt_fix.format(pkg="gnuradio")),
        Check("numpy", _module_version("numpy"), False, pins),
        Check("torch", _module_version("torch"), False, pins),
        Check("onnxruntime", _module_version("onnxruntime"), False, pins),
        Check("onnx", _module_version("onnx"), False, pins),
        Check("paho-mqtt", _module_version("paho.mqtt"), False, pins),
        Check("libiio", _libiio_version(), False, apt_fix.format(pkg="libiio-utils python3-libiio")),
        Check("uhd", _uhd_version(), False, apt_fix.format(pkg="uhd-host python3-uhd")),
        Check("pyadi-iio", _pyadi_version(), False, ".venv/bin/pip install -e '.[radio]'", required=False),
        Check("mosquitto", "installed" if shutil.which("mosquitto") or shutil.which("/usr/sbin/mosquitto") else None,
              False, apt_fix.format(pkg="mosquitto")),
        Check("grcc", "installed" if shutil.which("grcc") else None, False, apt_fix.format(pkg="gnuradio")),
        Check("gr-testbedphy", _testbedphy(), False,
              SETUP_HINT + "  (builds the C++ PHY blocks; without them the PHY runs its slower Python blocks)",
              required=False),
        Check("qt live view (--gui)", _qt_gui(), False,
              apt_fix.format(pkg="gnuradio python3-pyqt5") + "; headless: QT_QPA_PLATFORM=offscreen", required=False),
    ]
    for c in r.checks:
        c.ok = c.version is not None
    np_v = next(c for c in r.checks if c.name == "numpy")
    if np_v.version and np_v.version.split(".")[0] >= "2":
        np_v.ok = False
        np_v.fix = "GNU Radio 3.10 from Debian needs numpy<2: pip install 'numpy==1.26.4'"
    if scan:
        r.radios = scan_radios(network)
    return r


def format_report(r: Report) -> str:
    lines = [f"python {sys.version.split()[0]} ({sys.executable})"]
    for c in r.checks:
        mark = "ok " if c.ok else ("-- " if not c.required else "!! ")
        lines.append(f"  {mark}{c.name:<12} {c.version or 'missing'}" + ("" if c.ok else f"   fix: {c.fix}"))
    if r.scan == "off":
        lines.append("radios: scan skipped")
    elif r.radios:
        lines.append(f"radios ({r.scan} scan):")
        for d in r.radios:
            lines.append("  " + ", ".join(f"{k}={v}" for k, v in d.items()))
    else:
        lines.append(f"radios: none found ({r.scan} scan; --scan-network also looks on the network)")
    lines.append("all required components present" if not r.missing
                 else f"{len(r.missing)} required component(s) missing: run {SETUP_HINT}")
    return "\n".join(lines)


def add_parsers(sub, common) -> None:
    d = sub.add_parser("doctor", parents=[common], help="check the installation and list attached radios")
    d.add_argument("--no-scan", action="store_true", help="do not look for radios")
    d.add_argument("--scan-network", action="store_true", help="also look for network radios (sends mDNS/UDP)")
    d.set_defaults(func=_cmd_doctor)


def _cmd_doctor(a) -> int:
    from ..core.runlog import to_json

    r = run_doctor(scan=not a.no_scan, network=a.scan_network)
    if a.json:
        print(to_json(r.as_dict()))
    else:
        print(format_report(r))
    return 0 if not r.missing else 1

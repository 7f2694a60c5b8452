"""Render the Pluto's mass-storage ``config.txt`` (firmware_configs/pluto_config.txt.template)."""
from __future__ import annotations

import ipaddress
from pathlib import Path

from ..core.paths import firmware_configs_dir

TEMPLATE = firmware_configs_dir() / "pluto_config.txt.template"


def render(ip: str, hostname: str | None = None, xo_correction: float | None = None, template: Path = TEMPLATE) -> str:
    """config.txt for a Pluto at ``ip`` (its host side gets .10 of the same /24). ``xo_correction``
    None leaves the line empty, so the Pluto keeps its factory calibration of the 40 MHz reference."""
    try:
        addr = ipaddress.IPv4Address(ip)
    except ipaddress.AddressValueError:
        raise ValueError(f"--ip: {ip!r} is not an IPv4 address") from None
    net = ipaddress.IPv4Network(f"{addr}/24", strict=False)
    host = net.network_address + 10
    if host == addr:
        raise ValueError(f"--ip: {ip} collides with the host-side address {host}; use e.g. {net.network_address + 1}")
    if xo_correction is not None and not 39.9e6 <= xo_correction <= 40.1e6:
        raise ValueError(f"--xo-correction: {xo_correction:g} is not near the 40 MHz reference")
    name = hostname or f"pluto{str(addr).replace('.', '-')}"
    return Path(template).read_text().format(hostname=name, ipaddr=addr, ipaddr_host=host,
                                             xo_correction="" if xo_correction is None else int(round(xo_correction)))

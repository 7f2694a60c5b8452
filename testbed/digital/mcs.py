"""Modulation and coding schemes (MCS) of the digital baselines, their block error rates on an
ideal AWGN symbol channel, and link adaptation from a measured table.

An MCS is a QAM order and an 802.11n LDPC rate, named ``<modulation>-<rate>`` (``qpsk-1/2``,
..., ``64qam-5/6``, the 802.11n MCS 0-7 set without BPSK). ``auto`` picks, for an estimated SNR,
the MCS that carries the most payload bits per symbol among those whose block error rate at that
SNR is below 10 % in the table the project measured (``testbed/data/mcs_bler.json``, written by
``python scripts/measure_mcs.py``; the SNR is rounded down to the table's grid, so the choice
errs on the safe side).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import qam
from .codeblocks import CRC_BITS, CodeBlocks

AUTO = "auto"
BLER_TARGET = 0.1
TABLE = Path(__file__).resolve().parents[1] / "data" / "mcs_bler.json"


@dataclass(frozen=True)
class Mcs:
    name: str
    modulation: str
    rate: str

    @property
    def bits_per_symbol(self) -> int:
        return qam.bits_per_symbol(self.modulation)

    @property
    def code_rate(self) -> float:
        num, den = self.rate.split("/")
        return int(num) / int(den)

    @property
    def payload_bits_per_symbol(self) -> float:
        """Payload bits (CRCs excluded) per channel symbol."""
        k = 1944 * self.code_rate
        return self.bits_per_symbol * self.code_rate * (k - CRC_BITS) / k

    @property
    def symbols_per_block(self) -> int:
        return 1944 // self.bits_per_symbol


MCS_TABLE = tuple(Mcs(f"{m}-{r}", m, r) for m, r in (
    ("qpsk", "1/2"), ("qpsk", "3/4"), ("16qam", "1/2"), ("16qam", "3/4"),
    ("64qam", "2/3"), ("64qam", "3/4"), ("64qam", "5/6")))
NAMES = tuple(m.name for m in MCS_TABLE)
_BY_NAME = {m.name: m for m in MCS_TABLE}


def mcs(name: str) -> Mcs:
    """The MCS called ``name``; a clear error naming the known ones otherwise."""
    if name not in _BY_NAME:
        raise ValueError(f"--mcs {name!r}: not an MCS (known: {', '.join(NAMES)}, or {AUTO})")
    return _BY_NAME[name]


def simulate(m: Mcs, snr_db: float, blocks: int, rng: np.random.Generator, codeblocks: CodeBlocks | None = None) -> dict:
    """Send ``blocks`` random code blocks of ``m`` over AWGN at Es/N0 ``snr_db`` (unit-energy
    symbols, complex noise variance 10^(-SNR/10)): uncoded and coded bit error rates and the
    block error rate (a block is in error when it fails its parity checks or its CRC)."""
    cb = codeblocks or CodeBlocks(m.rate)
    payload = rng.integers(0, 2, blocks * cb.payload_bits, dtype=np.uint8)
    coded = cb.encode(payload)
    sym = qam.modulate(coded, m.modulation)
    n0 = 10.0 ** (-snr_db / 10.0)
    rx = sym + np.sqrt(n0 / 2) * (rng.standard_normal(sym.shape) + 1j * rng.standard_normal(sym.shape))
    llr = qam.demodulate_llr(rx, n0, m.modulation)
    out = cb.decode(llr)
    return {"snr_db": float(snr_db), "blocks": int(blocks),
            "uncoded_ber": float(np.mean(qam.hard_bits(llr) != coded)),
            "coded_ber": float(np.mean(out.payload != payload)),
            "bler": float(np.mean(~out.block_ok))}


def load_table(path: Path = TABLE) -> dict[str, list[dict]]:
    """The measured BLER table: MCS name -> rows (``snr_db``, ``bler``, ...) in SNR order."""
    try:
        data = json.loads(Path(path).read_text())
        rows = data["mcs"]
        return {name: sorted(rows[name], key=lambda r: r["snr_db"]) for name in NAMES}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a usable MCS BLER table ({type(e).__name__}: {e}); "
                         f"re-measure it with python scripts/measure_mcs.py") from None


def bler_at(rows: list[dict], snr_db: float) -> float:
    """BLER at ``snr_db`` from a table's rows, at the grid point at or below it (1.0 below the
    table, the last row's above it)."""
    below = [r for r in rows if r["snr_db"] <= snr_db + 1e-9]
    return float(below[-1]["bler"]) if below else 1.0


def choose(snr_db: float, table: dict[str, list[dict]] | None = None) -> Mcs:
    """Link adaptation: the MCS with the most payload bits per symbol whose BLER at ``snr_db`` is
    below :data:`BLER_TARGET`; the most robust one when none is."""
    if not np.isfinite(snr_db):
        raise ValueError(f"--mcs auto: the SNR estimate {snr_db!r} is not a number")
    t = table if table is not None else load_table()
    ok = [m for m in MCS_TABLE if bler_at(t[m.name], snr_db) < BLER_TARGET]
    return max(ok, key=lambda m: m.payload_bits_per_symbol) if ok else MCS_TABLE[0]


def threshold_db(rows: list[dict], target: float = BLER_TARGET) -> float | None:
    """The lowest SNR of a table's rows from which every row has BLER below ``target``."""
    best = None
    for r in reversed(rows):
        if r["bler"] >= target:
            break
        best = r["snr_db"]
    return best

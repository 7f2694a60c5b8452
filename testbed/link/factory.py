"""Builders with plain parameters (paths, names, numbers), used by the GRC block definitions in
``testbed/grc`` and by scripts. An empty ``ofdm_config`` means the default
:class:`~testbed.phy.config.OfdmConfig`; otherwise a YAML file with an ``ofdm:`` section.
"""
from __future__ import annotations

from ..phy.config import OfdmConfig


def ofdm_config(path: str = "") -> OfdmConfig:
    return OfdmConfig.from_file(path) if path else OfdmConfig()


def codec(model: str = ""):
    """The codec named by ``model``, of the kind its model card names."""
    from ..core.paths import DEFAULT_MODEL
    from ..zoo import open_codec

    return open_codec(model or DEFAULT_MODEL, spinning=False)


def ofdm_tx(ofdm_config_path: str = ""):
    from ..gr.ofdm_tx import ofdm_tx as blk

    return blk(ofdm_config(ofdm_config_path))


def ofdm_rx(ofdm_config_path: str = ""):
    from ..gr.ofdm_rx import ofdm_rx as blk

    return blk(ofdm_config(ofdm_config_path))


def jscc_encoder(model: str = "", snr_db: float = 10.0, cbr: float = 0.0, ofdm_config_path: str = "",
                 ckb: bool = True, skb: bool = True, flush_samples: int = 0, allocation: str = "entropy",
                 mcs: str = "auto"):
    """``flush_samples``: zeros after each image (0: the PHY's look-ahead; a Pluto needs one more
    buffer, :func:`testbed.link.frontend.pluto_flush_samples`). ``mcs``: digital codecs (other
    codecs refuse anything but the default, ``auto``)."""
    from ..gr.jscc_encoder import jscc_encoder as blk

    c = codec(model)
    cfg = ofdm_config(ofdm_config_path)
    b = blk(c, cfg, snr_db=snr_db, cbr=cbr or None, ckb=ckb, skb=skb, allocation=allocation,
            mcs=None if mcs in ("", "auto") else mcs)       # (None: a digital codec's default, auto)
    if flush_samples:
        b.flush_samples = int(flush_samples)
    return b


def pluto_flush_samples(buffer_size: int, ofdm_config_path: str = "") -> int:
    """Zeros after each image for a Pluto with ``buffer_size`` (what ``testbed ota`` uses: the
    PHY's look-ahead plus one buffer), for the encoder's ``flush_samples`` in a flowgraph."""
    from .frontend import pluto_flush_samples as flush

    return flush(buffer_size, ofdm_config(ofdm_config_path).flush_samples())


def rx_buffer_samples(samp_rate: float) -> int:
    """Output buffer (samples) of a radio source block, as ``testbed ota`` sets it: the receiver
    pauses reading while a header is decoded, and GNU Radio's default buffer would overrun."""
    from .frontend import rx_buffer_samples as n

    return n(samp_rate)


def jscc_decoder(model: str = "", idle_flush_s: float = 2.0):
    from ..gr.jscc_decoder import jscc_decoder as blk

    return blk(codec(model), idle_flush_s=idle_flush_s)


def loopback_channel(snr_db: float = 10.0, cfo_hz: float = 0.0, sco_ppm: float = 0.0, delay_samples: int = 0,
                     multipath: str = "none", seed: int = 0, ofdm_config_path: str = ""):
    from ..gr.loopback_channel import loopback_channel as blk

    return blk(ofdm_config(ofdm_config_path), snr_db, cfo_hz=cfo_hz, sco_ppm=sco_ppm, delay_samples=delay_samples,
               multipath=multipath, seed=seed, dynamic=True)   # GRC changes the SCO while it runs

"""The samples a receiver lost: real-time loopback, and radio sources.

``testbed loopback --realtime`` puts the C++ ``realtime_pacer`` between the transmitter and the
channel. It hands the channel exactly ``samp_rate`` samples per second of wall time (the
transmitter's, or zeros when it has none) and, when the receiver's input buffer (the size a
radio source block gets, :func:`testbed.link.frontend.rx_buffer_samples`) has no room, drops
samples as a radio overflows. What it drops, and the zeros it sends inside a burst because the
transmitter was late (an underflow), are recorded with the frames they hit, so a run tells
compute loss from channel loss: each image's row says how many of its frames were hit, and the
summary counts every sample.

Over the air, :func:`attach_monitor` puts the C++ ``rx_monitor`` beside the receiver on the radio
source: gr-uhd's ``rx_time`` tags (on the first sample and after every overflow) give the samples
lost exactly; for gr-iio, which exposes no overflow count, the samples received against the
sample rate over wall time give an estimate (a shortfall beyond the radio's buffering).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def make_pacer(samp_rate: float, rx_buffer_ms: float | None = None):
    """The pacer block, its output buffer sized as a radio source's (``rx_buffer_ms``: that
    radio's receive buffer, default :data:`testbed.link.frontend.RX_SLACK_S`)."""
    from ..gr import cpp_blocks
    from .frontend import RX_SLACK_S, rx_buffer_samples

    if cpp_blocks.module() is None:
        raise RuntimeError("--realtime needs the C++ PHY module gnuradio.testbedphy "
                           f"({cpp_blocks.unavailable_reason()}); run ./scripts/setup.sh")
    p = cpp_blocks.module().realtime_pacer(float(samp_rate), chunk=max(256, int(samp_rate * 1e-3)))
    p.set_min_output_buffer(rx_buffer_samples(samp_rate, RX_SLACK_S if rx_buffer_ms is None else rx_buffer_ms / 1e3))
    return p


def connect(tb, tx, pacer, *rest) -> None:
    """tx -> pacer -> rest...; the transmitter's output buffer as large as a radio's (0.25 s):
    a smaller one runs dry whenever its thread waits for a core, and the air gets an underflow
    the emulated radio would not have had."""
    from .frontend import rx_buffer_samples

    tx.shaper.set_min_output_buffer(rx_buffer_samples(tx.cfg.samp_rate))
    tb.connect(tx, pacer, *rest)


def frames_hit(pacer, image_id: int) -> list[int]:
    """Frame indices of image ``image_id`` that lost samples (overflow) or got zeros (underflow)."""
    hit = set()
    for e in pacer.events():
        hit.update(f for i, f in e.frames if i == image_id and f >= 0)
    return sorted(hit)


def summary(pacer, wall_s: float | None = None) -> dict:
    """The pacer's counts for summary.json (``air_*``), and the images hit by a drop or underflow."""
    images: dict[int, set] = {}
    for e in pacer.events():
        for i, f in e.frames:
            if i >= 0:
                images.setdefault(int(i), set()).add(int(f))
    out = {"realtime": True, "air_samples": pacer.air_samples(), "air_dropped_samples": pacer.dropped(),
           "air_dropped_tx_samples": pacer.dropped_tx(), "air_overflows": pacer.overflow_events(),
           "air_underflow_samples": pacer.underflow(), "air_underflows": pacer.underflow_events(),
           "air_idle_samples": pacer.idle(),
           "images_hit": {str(i): sorted(f) for i, f in sorted(images.items())}}
    if out["air_dropped_samples"] or out["air_underflow_samples"]:
        log.warning("real time: %d samples dropped in %d overflows (the receiver fell behind the sample rate), "
                    "%d zeros sent inside bursts in %d underflows (the transmitter was late); images hit: %s",
                    out["air_dropped_samples"], out["air_overflows"],
                    out["air_underflow_samples"], out["air_underflows"],
                    ", ".join(out["images_hit"]) or "none (idle air only)")
    return out


def attach_monitor(tb, src, samp_rate: float, slack_samples: int):
    """An ``rx_monitor`` reading ``src`` beside the receiver, or None without the C++ module
    (then nothing is counted, and the run's summary says so)."""
    from ..gr import cpp_blocks

    if cpp_blocks.module() is None:
        log.warning("the C++ PHY module is not installed: samples the radio drops are not counted")
        return None
    m = cpp_blocks.rx_monitor(samp_rate, slack_samples)
    tb.connect(src, m)
    return m


def lost_between(monitor, t0: float, t1: float) -> int | None:
    """Samples the monitor saw lost between monotonic times ``t0`` and ``t1`` (None: no monitor)."""
    if monitor is None:
        return None
    return int(sum(g.samples for g in monitor.gaps() if t0 <= g.monotonic_s <= t1))


def monitor_summary(monitor) -> dict:
    if monitor is None:
        return {"rx_monitor": False}
    gaps = monitor.gaps()
    out = {"rx_monitor": True, "rx_samples": monitor.samples(), "rx_time_tags": monitor.time_tags(),
           "rx_lost_samples": monitor.lost_exact(), "rx_lost_samples_estimated": monitor.lost_estimate(),
           "rx_loss_events": len(gaps)}
    if gaps:
        log.warning("the radio lost %d samples (%s) in %d events", monitor.lost_exact() + monitor.lost_estimate(),
                    "rx_time tags" if monitor.time_tags() else "estimated from the sample count over wall time",
                    len(gaps))
    return out

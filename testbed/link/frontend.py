"""Front-ends: what sits between the OFDM TX and RX. One PHY, many front-ends.

``make_frontend(cfg, tx_gain_db)`` returns an object with ``connect(tb, tx, rx, recorder=None)``
(wires TX -> medium -> RX in a GNU Radio top block, and the RX input into a SigMF recorder when
asked) and ``describe()`` (serials, LO, sample rate, gains for the run log):

* loopback: the software channel (``tx_gain_db`` raises the channel SNR by that many dB);
* sigmf: the software channel into a recording, then the receiver on the recording (two phases);
* pluto: gr-iio ``fmcomms2_sink_fc32`` / ``fmcomms2_source_fc32`` (TX and RX on one Pluto, or on
  two with ``rx_uri``); samples are in DAC units (+-1.0 full scale, the PHY backs off from it);
  each image ends with at least one buffer of zeros, because the Pluto only sends full buffers;
  the RX gain mode is set before the gain; a non-zero ``xo_correction`` is written to the
  receiving Pluto (libiio) before its source block is created;
* usrp: gr-uhd ``usrp_sink`` / ``usrp_source``; bursts carry ``tx_sob``/``tx_eob`` tags.

The settings each radio gets are computed by pure functions (:func:`pluto_settings`,
:func:`usrp_settings`) that the tests check without hardware.
"""
from __future__ import annotations

import contextlib
import logging

from .air import attach_monitor
from .configs import LoopbackConfig, SigmfFileConfig
from ..radio.config import PlutoConfig, UsrpConfig

log = logging.getLogger(__name__)


def pluto_settings(cfg: PlutoConfig, tx_gain_db: float | None = None) -> dict:
    """Ordered calls for the gr-iio sink and source (``tx_gain_db`` = -attenuation overrides)."""
    att = cfg.tx_attenuation_db if tx_gain_db is None else -float(tx_gain_db)
    if not 0.0 <= att <= 89.75:
        raise ValueError(f"--tx-gain-db {tx_gain_db:g}: the Pluto's TX gain is -89.75..0 dB (attenuation 0..89.75)")
    sink = [("set_len_tag_key", ("",)), ("set_bandwidth", (int(cfg.rf_bandwidth),)),
            ("set_frequency", (int(cfg.tx_lo),)), ("set_samplerate", (int(cfg.sample_rate),)),
            ("set_attenuation", (0, float(att))), ("set_filter_params", ("Auto", "", 0.0, 0.0))]
    source = [("set_len_tag_key", ("",)), ("set_frequency", (int(cfg.rx_lo),)),
              ("set_samplerate", (int(cfg.sample_rate),)),
              ("set_gain_mode", (0, cfg.rx_gain_mode)),          # the mode first: a gain is only
              ("set_gain", (0, float(cfg.rx_gain_db))),          # applied in manual mode
              ("set_quadrature", (True,)), ("set_rfdc", (True,)), ("set_bbdc", (True,)),
              ("set_filter_params", ("Auto", "", 0.0, 0.0))]
    return {"sink": sink, "source": source, "tx_attenuation_db": att}


def pluto_flush_samples(buffer_size: int, phy_flush: int) -> int:
    """Zeros after each image: the PHY's look-ahead plus a whole buffer, so that the image's last
    burst is in a buffer the Pluto actually sends."""
    return int(phy_flush) + int(buffer_size)


def usrp_settings(cfg: UsrpConfig, tx_gain_db: float | None = None) -> dict:
    from ..radio.config import USRP_DEVICES

    g = cfg.tx_gain_db if tx_gain_db is None else float(tx_gain_db)
    lo, hi = USRP_DEVICES[cfg.device]["tx_gain"]
    if not lo <= g <= hi:
        raise ValueError(f"--tx-gain-db {g:g}: the {cfg.device} supports {lo:g}..{hi:g} dB")
    args = cfg.device_args
    if cfg.master_clock_rate and "master_clock_rate" not in args:
        args = ",".join(x for x in (args, f"master_clock_rate={cfg.master_clock_rate:g}") if x)
    return {"device_args": args, "rx_device_args": cfg.rx_device_args or args, "tx_gain_db": g,
            "clock_source": cfg.clock_source, "time_source": cfg.time_source}


def _tee_recorder(tb, rx_input, recorder) -> list:
    """Also feed what the receiver gets into a SigMF recorder (when one is given)."""
    if recorder is None:
        return []
    from ..gr.sigmf_sink import sigmf_sink

    sink = sigmf_sink(recorder)
    tb.connect(rx_input, sink)
    return [sink]


class LoopbackFrontEnd:
    monitor = None   # no radio: nothing to drop (``loopback --realtime`` has its own accounting)

    def __init__(self, cfg: LoopbackConfig | SigmfFileConfig, tx_gain_db: float = 0.0):
        from ..core.checks import SNR_DB

        self.cfg, self.tx_gain_db = cfg, float(tx_gain_db)
        self.snr_db = cfg.channel.snr_db + self.tx_gain_db
        if not SNR_DB[0] <= self.snr_db <= SNR_DB[1]:
            raise ValueError(f"--tx-gain-db {tx_gain_db:g}: with the config's channel SNR {cfg.channel.snr_db:g} dB "
                             f"the loopback SNR {self.snr_db:g} dB leaves {SNR_DB[0]:g}..{SNR_DB[1]:g} dB")

    def channel(self):
        from ..gr.loopback_channel import loopback_channel

        c = self.cfg.channel
        return loopback_channel(self.cfg.ofdm, self.snr_db, cfo_hz=c.cfo_hz, sco_ppm=c.sco_ppm,
                                delay_samples=c.delay_samples, multipath=c.multipath, seed=c.seed,
                                delay_spread_s=c.delay_spread_ns * 1e-9 if c.delay_spread_ns else None)

    def connect(self, tb, tx, rx, recorder=None):
        chan = self.channel()
        tb.connect(tx, chan, rx)
        return [chan] + _tee_recorder(tb, chan, recorder)

    # A link split over two nodes: the channel runs at the transmitter, whose samples travel to the
    # receiving node over a ZeroMQ stream (``medium``: tcp://host:port, bound by the transmitter).
    def connect_tx(self, tb, tx, medium: str):
        from gnuradio import blocks, gr, zeromq

        chan = self.channel()
        air = blocks.throttle(gr.sizeof_gr_complex, self.cfg.ofdm.samp_rate, True)   # air time, as a radio
        sink = zeromq.push_sink(gr.sizeof_gr_complex, 1, medium, 100, False, -1)
        tb.connect(tx, chan, air, sink)
        return [chan, air, sink]

    def connect_rx(self, tb, rx, medium: str):
        from gnuradio import gr, zeromq

        src = zeromq.pull_source(gr.sizeof_gr_complex, 1, medium, 100, False, -1)
        tb.connect(src, rx)
        return [src]

    def flush_samples(self) -> int | None:
        return None

    def describe(self) -> dict:
        return {"radio": "loopback", "tx_serial": "", "rx_serial": "", "tx_lo_hz": 0.0, "rx_lo_hz": 0.0,
                "samp_rate": self.cfg.ofdm.samp_rate, "tx_gain_db": self.tx_gain_db, "rx_gain_db": 0.0,
                "channel_snr_db": self.snr_db}


def _iio_serial(uri: str) -> str:
    try:
        import iio

        ctx = iio.Context(uri)
        return ctx.attrs.get("hw_serial", "")
    except Exception as e:  # a missing radio is reported when its block is opened; the log just lacks a serial
        log.warning("%s: cannot read the serial number (%s)", uri, e)
        return ""


class PlutoFrontEnd:
    monitor = None   # rx_monitor once the receiver is connected (testbed.link.air)

    def __init__(self, cfg: PlutoConfig, tx_gain_db: float | None = None):
        self.cfg = cfg
        self.settings = pluto_settings(cfg, tx_gain_db)
        self.rx_uri = cfg.rx_uri or cfg.uri

    def connect(self, tb, tx, rx, recorder=None):
        return self.connect_tx(tb, tx) + self.connect_rx(tb, rx, recorder=recorder)

    def connect_tx(self, tb, tx, medium: str = ""):
        from gnuradio import iio

        with _opening("Pluto", self.cfg.uri):
            sink = iio.fmcomms2_sink_fc32(self.cfg.uri, [True, True, False, False], self.cfg.buffer_size, False)
        for name, args in self.settings["sink"]:
            getattr(sink, name)(*args)
        tb.connect(tx, sink)
        return [sink]

    def connect_rx(self, tb, rx, medium: str = "", recorder=None):
        from gnuradio import iio

        if self.cfg.xo_correction:   # measured for the receiver (testbed calibrate); gr-iio has no setter
            from ..radio.pluto import set_xo_correction

            set_xo_correction(self.rx_uri, self.cfg.xo_correction)
        with _opening("Pluto", self.rx_uri):
            src = iio.fmcomms2_source_fc32(self.rx_uri, [True, True, False, False], self.cfg.buffer_size)
        for name, args in self.settings["source"]:
            getattr(src, name)(*args)
        src.set_min_output_buffer(rx_buffer_samples(self.cfg.sample_rate))
        tb.connect(src, rx)
        # libiio keeps 4 kernel buffers: a shortfall beyond those, the block's own and 50 ms is lost
        slack = 5 * self.cfg.buffer_size + int(0.05 * self.cfg.sample_rate)
        self.monitor = attach_monitor(tb, src, self.cfg.sample_rate, slack)
        return [src] + _tee_recorder(tb, src, recorder)

    def flush_samples(self) -> int:
        return pluto_flush_samples(self.cfg.buffer_size, self.cfg.ofdm.flush_samples())

    def describe(self) -> dict:
        return {"radio": "pluto", "tx_serial": _iio_serial(self.cfg.uri), "rx_serial": _iio_serial(self.rx_uri),
                "tx_lo_hz": self.cfg.tx_lo, "rx_lo_hz": self.cfg.rx_lo, "samp_rate": self.cfg.sample_rate,
                "tx_gain_db": -self.settings["tx_attenuation_db"], "rx_gain_db": self.cfg.rx_gain_db}


@contextlib.contextmanager
def _opening(kind: str, address: str):
    """A radio that cannot be opened (not attached, wrong address, busy) becomes a ConnectionError
    naming it, which the CLI reports in one line (exit code 2) instead of a traceback."""
    try:
        yield
    except RuntimeError as e:
        raise ConnectionError(f"cannot open the {kind} at {address!r} ({e}); is it attached and free? "
                              "`testbed radios` lists the radios this machine sees") from None


RX_SLACK_S = 0.25   # receive buffering: how long the receiver may pause reading without an overrun


def rx_buffer_samples(samp_rate: float, slack_s: float = RX_SLACK_S) -> int:
    """Output buffer of a radio's source block, in samples: a power of two holding ``slack_s``.

    The receiver stops reading while its frame detector waits for the header decoder's verdict
    (measured 8-48 ms per frame in loopback); GNU Radio's default buffer (about 33 ms at 1 MS/s)
    would let the radio overrun meanwhile."""
    n = max(1 << 16, int(samp_rate * slack_s))
    return 1 << (n - 1).bit_length()


class UsrpFrontEnd:
    monitor = None   # rx_monitor once the receiver is connected (testbed.link.air)

    def __init__(self, cfg: UsrpConfig, tx_gain_db: float | None = None):
        self.cfg = cfg
        self.settings = usrp_settings(cfg, tx_gain_db)
        self._serials = ("", "")

    def connect(self, tb, tx, rx, recorder=None):
        return self.connect_tx(tb, tx) + self.connect_rx(tb, rx, recorder=recorder)

    def _setup(self, dev, lo, gain, ant):
        s = self.settings
        dev.set_clock_source(s["clock_source"], 0)
        dev.set_time_source(s["time_source"], 0)
        dev.set_samp_rate(self.cfg.sample_rate)
        dev.set_center_freq(lo, 0)
        dev.set_gain(gain, 0)
        dev.set_antenna(ant, 0)

    @staticmethod
    def _serial(dev) -> str:
        try:
            return dev.get_usrp_info(0).get("mboard_serial", "")
        except Exception:  # older UHD: no info dict
            return ""

    def connect_tx(self, tb, tx, medium: str = ""):
        from gnuradio import uhd

        with _opening("USRP", self.settings["device_args"]):
            sink = uhd.usrp_sink(self.settings["device_args"], uhd.stream_args(cpu_format="fc32", channels=[0]), "")
        self._setup(sink, self.cfg.tx_lo, self.settings["tx_gain_db"], self.cfg.tx_antenna)
        self._serials = (self._serial(sink), self._serials[1])
        tb.connect(tx, sink)   # the burst shaper's tx_sob/tx_eob tags delimit the bursts
        return [sink]

    def connect_rx(self, tb, rx, medium: str = "", recorder=None):
        from gnuradio import uhd

        with _opening("USRP", self.settings["rx_device_args"]):
            src = uhd.usrp_source(self.settings["rx_device_args"], uhd.stream_args(cpu_format="fc32", channels=[0]))
        self._setup(src, self.cfg.rx_lo, self.cfg.rx_gain_db, self.cfg.rx_antenna)
        src.set_min_output_buffer(rx_buffer_samples(self.cfg.sample_rate))
        self._serials = (self._serials[0], self._serial(src))
        tb.connect(src, rx)
        self.monitor = attach_monitor(tb, src, self.cfg.sample_rate, int(0.1 * self.cfg.sample_rate))   # rx_time tags
        return [src] + _tee_recorder(tb, src, recorder)

    def flush_samples(self) -> int | None:
        return None

    def describe(self) -> dict:
        return {"radio": f"usrp-{self.cfg.device}", "tx_serial": self._serials[0], "rx_serial": self._serials[1],
                "tx_lo_hz": self.cfg.tx_lo, "rx_lo_hz": self.cfg.rx_lo, "samp_rate": self.cfg.sample_rate,
                "tx_gain_db": self.settings["tx_gain_db"], "rx_gain_db": self.cfg.rx_gain_db}


def make_frontend(cfg, tx_gain_db: float | None = None):
    if isinstance(cfg, PlutoConfig):
        return PlutoFrontEnd(cfg, tx_gain_db)
    if isinstance(cfg, UsrpConfig):
        return UsrpFrontEnd(cfg, tx_gain_db)
    if isinstance(cfg, (LoopbackConfig, SigmfFileConfig)):
        return LoopbackFrontEnd(cfg, 0.0 if tx_gain_db is None else tx_gain_db)
    raise ValueError(f"no front-end for config kind {getattr(cfg, 'kind', cfg)!r}")

"""The OFDM PHY as a real GNU Radio flowgraph: TX -> loopback channel -> RX."""
import numpy as np
import pytest

pytest.importorskip("gnuradio.digital")

from testbed.gr.phy_link import random_frames, receive, symbol_snr_db, transmit  # noqa: E402
from testbed.phy.config import OfdmConfig  # noqa: E402

CFG = OfdmConfig()


@pytest.fixture(scope="module")
def tx4():
    frames, stream, hdrs = random_frames(4, CFG, seed=11)
    x, starts = transmit(frames, CFG)
    assert len(starts) == 4
    return x, starts, stream


@pytest.fixture(scope="module")
def awgn15(tx4):
    x, _, stream = tx4
    r = receive(x, CFG, snr_db=15.0)
    return np.mean(symbol_snr_db(r, stream))


@pytest.mark.slow
@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0, 15.0, 20.0, 25.0])
def test_snr_estimate_within_one_db(tx4, snr_db):
    x, _, stream = tx4
    r = receive(x, CFG, snr_db=snr_db, seed=int(snr_db))
    assert len(r.frames) >= 3, r.counters                    # at 0 dB a header may be lost
    est = [m["snr_db"] for m, _ in r.frames]
    assert max(abs(e - snr_db) for e in est) < 1.0, est
    if snr_db >= 5:
        assert len(r.frames) == 4 and r.counters["headers_failed"] == 0
        meas = symbol_snr_db(r, stream)
        assert min(meas) > snr_db - 0.8, meas                  # equalised symbols close to the channel SNR


IMPAIRMENTS = {
    "cfo +1.5 sub-carriers": dict(cfo_hz=1.5 * CFG.subcarrier_spacing_hz),
    "cfo -1.5 sub-carriers": dict(cfo_hz=-1.5 * CFG.subcarrier_spacing_hz),
    "cfo +0.7 sub-carriers": dict(cfo_hz=0.7 * CFG.subcarrier_spacing_hz),
    "timing offset 1234": dict(delay_samples=1234),
    "timing offset 77": dict(delay_samples=77),
    "sco 20 ppm": dict(sco_ppm=20.0),
    "sco -20 ppm": dict(sco_ppm=-20.0),
    "tdl-a": dict(multipath="tdl-a", seed=3),
    "tdl-c": dict(multipath="tdl-c", seed=3),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(IMPAIRMENTS))
def test_impairment_every_header_passes(tx4, awgn15, name):
    x, _, stream = tx4
    r = receive(x, CFG, snr_db=15.0, **IMPAIRMENTS[name])
    assert len(r.frames) == 4 and r.counters["headers_failed"] == 0, r.counters
    meas = np.mean(symbol_snr_db(r, stream))
    # flat impairments cost little; multipath costs what its frequency selectivity costs (the
    # PSNR-level check against AWGN is in test_gr_loopback)
    limit = 3.0 if "tdl" in name else 1.0
    assert meas > awgn15 - limit, (meas, awgn15)
    if "cfo" in name:
        cfo = IMPAIRMENTS[name]["cfo_hz"]
        assert all(abs(m["cfo_hz"] - cfo) < 0.02 * CFG.subcarrier_spacing_hz for m, _ in r.frames)


@pytest.mark.slow
def test_noise_only_input_yields_nothing_and_does_not_crash(tx4):
    """300k samples of noise give no frame, and the receiver still works afterwards: a frame sent
    after the noise is received (a dead receiver would also give nothing from the noise)."""
    x, starts, stream = tx4
    y = np.concatenate([np.zeros(300_000, np.complex64), x[starts[0]:starts[1]]])
    r = receive(y, CFG, snr_db=10.0)
    assert [int(m["h_frame_index"]) for m, _ in r.frames] == [0], r.counters
    assert r.counters["frames_equalized"] == 1 and r.counters["headers_failed"] == 0
    assert symbol_snr_db(r, stream)[0] > 9.0


@pytest.mark.slow
def test_garbage_between_frames_and_truncated_bursts(tx4):
    x, starts, stream = tx4
    rng = np.random.default_rng(0)
    burst = starts[1] - starts[0]
    qpsk = ((rng.integers(0, 2, 20000) * 2 - 1) + 1j * (rng.integers(0, 2, 20000) * 2 - 1)) * 0.07
    truncated = x[starts[1]: starts[1] + burst // 2]            # half of frame 1: its payload is cut
    y = np.concatenate([qpsk, x[starts[0]:starts[1]], qpsk, truncated, np.zeros(2000), qpsk,
                        x[starts[2]:], qpsk]).astype(np.complex64)
    r = receive(y, CFG, snr_db=15.0)
    got = sorted(int(m["h_frame_index"]) for m, _ in r.frames)
    assert {0, 2, 3} <= set(got)          # the intact frames survive the garbage and the cut frame
    ok = [v for (m, _), v in zip(r.frames, symbol_snr_db(r, stream)) if int(m["h_frame_index"]) != 1]
    assert min(ok) > 13.0


@pytest.mark.slow
def test_lost_frame_is_just_missing(tx4):
    x, starts, stream = tx4
    y = np.concatenate([x[:starts[2]], x[starts[3]:]])            # frame 2 never sent
    r = receive(y, CFG, snr_db=15.0)
    assert sorted(int(m["h_frame_index"]) for m, _ in r.frames) == [0, 1, 3]


def test_blas_is_single_threaded_with_the_blocks():
    """numpy's OpenBLAS workers take CPU from the flowgraph's threads (BENCHMARKS.md,
    "Throughput"): importing the blocks limits BLAS to one thread, whatever was imported first."""
    import threadpoolctl

    import testbed.gr  # noqa: F401

    import numpy as np

    # numpy's own OpenBLAS (the blocks' numpy work); a BLAS that other libraries load later
    # (e.g. Debian's for scipy) is not touched by the blocks
    np.ones((2, 2)) @ np.ones((2, 2))
    blas = [p for p in threadpoolctl.threadpool_info()
            if p["user_api"] == "blas" and "numpy" in p["filepath"]]
    assert blas and all(p["num_threads"] == 1 for p in blas)


@pytest.mark.slow
def test_frame_longer_than_the_receiver_buffers_is_rejected_at_its_header():
    """A transmitter with a larger payload_symbols_per_frame: its frames' headers pass the CRC, but
    the receiver cannot buffer them; the header decoder says so (warning, counter) instead of the
    demux dropping them silently, and the next frames are received."""
    import dataclasses

    tx_cfg = dataclasses.replace(CFG, payload_symbols_per_frame=3 * CFG.payload_symbols_per_frame)
    big, _, _ = random_frames(1, tx_cfg, seed=1, image_id=7)
    norm, _, _ = random_frames(2, CFG, seed=2, image_id=8)
    xb, _ = transmit(big, tx_cfg)
    xn, _ = transmit(norm, CFG)
    r = receive(np.concatenate([xb, xn]), CFG, snr_db=20.0)
    assert r.counters["headers_too_long"] == len(big) and r.counters["headers_failed"] == 0, r.counters
    assert sorted((int(m["h_image_id"]), int(m["h_frame_index"])) for m, _ in r.frames) == [(8, 0), (8, 1)]

"""Frame detection on the Schmidl & Cox metric (pure numpy)."""
import numpy as np

from testbed.phy.config import OfdmConfig
from testbed.phy.syncgate import HOLD, SEARCH, WAIT, FineTiming, ScDetector, preamble_waveform

CFG = OfdmConfig()


def _metric(n, regions, level=0.8):
    m = np.full(n, 0.01, np.float32)
    for a, b in regions:
        m[a:b] = level
    return m


def _run(det, metric, angle, chunk=700, verdicts=None, raw=None):
    fo, to, pos = [], [], 0
    while pos < len(metric):
        w = chunk + det.lookahead          # what a GNU Radio input buffer would offer
        f, t = det.process(metric[pos:pos + w], angle[pos:pos + w], pos, max_out=chunk,
                           final=pos + w >= len(metric), raw=None if raw is None else raw[pos:pos + w])
        fo.append(f)
        to.append(t)
        pos += len(f)
        if det.state == WAIT:
            ok, fs = (verdicts or {}).get(det.trigger_at, (False, 0))
            det.on_header(ok, fs)
        elif len(f) == 0:
            break
    return np.concatenate(fo), np.concatenate(to)


def _det(**kw):
    args = dict(threshold=0.15, min_len=32, gap=32, max_region=512, header_samples=1000, margin=100)
    args.update(kw)
    return ScDetector(**args)


def test_fragmented_plateau_gives_one_trigger_in_its_middle():
    m = _metric(6000, [(1000, 1080), (1100, 1160), (1180, 1300)])   # one plateau in three pieces
    ang = np.linspace(0, 1, 6000).astype(np.float32)
    f, t = _run(_det(), m, ang)
    assert list(np.flatnonzero(t)) == [(1000 + 1299) // 2]
    assert f[-1] == ang[(1000 + 1299) // 2]                          # CFO from the mark


def test_short_spikes_are_rejected():
    m = _metric(4000, [(500, 510), (2000, 2100)])
    det = _det()
    _, t = _run(det, m, np.zeros(4000, np.float32))
    assert list(np.flatnonzero(t)) == [2049] and det.rejected == 1


def test_detections_inside_a_frame_are_suppressed_and_cfo_held():
    m = _metric(12000, [(500, 600), (1500, 1600), (3000, 3100), (9000, 9100)])
    ang = np.arange(12000, dtype=np.float32) / 12000
    det = _det()
    f, t = _run(det, m, ang, verdicts={549: (True, 6000)})
    assert list(np.flatnonzero(t)) == [549, 9049]
    assert np.all(f[549:6549] == ang[549]) and det.suppressed == 2


def test_failed_header_releases_at_once():
    m = _metric(6000, [(500, 600), (2500, 2600)])
    _, t = _run(_det(), m, np.zeros(6000, np.float32), verdicts={})
    assert list(np.flatnonzero(t)) == [549, 2549]


def test_waits_for_a_verdict_and_chunking_does_not_matter():
    m = _metric(8000, [(1000, 1200), (5000, 5100)])
    ang = np.zeros(8000, np.float32)
    results = []
    for chunk in (97, 700, 4000):
        _, t = _run(_det(), m, ang, chunk=chunk, verdicts={1099: (True, 2000)})
        results.append(list(np.flatnonzero(t)))
    assert results[0] == results[1] == results[2] == [1099, 5049]
    det = _det()
    f, _ = det.process(m, ang, 0)
    assert det.state == WAIT and len(f) == 1099 + 1000 + 100   # header passed, then it waits
    f2, _ = det.process(m[len(f):], ang[len(f):], len(f))
    assert len(f2) == 0
    det.on_header(True, 3000)
    assert det.state == HOLD
    det.release()
    assert det.state == HOLD   # release only applies to an undecided header


def test_fine_timing_finds_the_preamble_through_noise_and_cfo():
    rng = np.random.default_rng(0)
    ref = preamble_waveform(CFG)
    start = 3000
    x = np.zeros(8000, np.complex64)
    x[start:start + ref.size] = ref * 5
    n = np.arange(x.size)
    cfo = 2.3 / CFG.fft_len                       # 2.3 sub-carriers: 2 integer + 0.3 fractional
    x = x * np.exp(2j * np.pi * cfo * n)
    sig = np.sqrt(np.mean(np.abs(x[start:start + ref.size]) ** 2))
    x = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * sig / np.sqrt(2)   # 0 dB
    phase = np.pi * 0.3                             # what S&C measures for the fractional part
    ft = FineTiming(CFG, 128)
    pre, q = ft.locate(x, 0, start + 70, phase)
    assert pre == start and q > 0.2
    pre2, _ = ft.locate(x[2000:], 2000, start - 90, phase)
    assert pre2 == start


def test_fine_timing_searches_even_offsets_including_zero_for_any_max_carrier_offset():
    """Schmidl & Cox leaves only even integer offsets: an odd max_carrier_offset (which config
    validation rejects) must still search 0, +-2, ... and time a CFO-free preamble exactly."""
    import dataclasses

    rng = np.random.default_rng(0)
    ref = preamble_waveform(CFG)
    start = 3000
    x = np.zeros(8000, np.complex64)
    x[start:start + ref.size] = ref * 5
    sig = np.sqrt(np.mean(np.abs(x[start:start + ref.size]) ** 2))
    x = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * sig / np.sqrt(20)   # 10 dB
    for mco in (0, 1, 3, 4):
        ft = FineTiming(dataclasses.replace(CFG, max_carrier_offset=mco), 128)
        assert len(ft.refs) == 2 * (mco // 2) + 1
        pre, _ = ft.locate(x, 0, start + 61, 0.0)
        assert pre == start, mco

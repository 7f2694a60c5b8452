import numpy as np

from testbed.phy.syncgate import HOLD, IDLE, WAIT, SyncGate


def _run(gate, trig_at, n=10000, chunk=700, verdicts=None):
    """Feed n samples in chunks; verdicts: {trigger_index: (ok, frame_samples)} given when waiting."""
    freq = np.arange(n, dtype=np.float32) / n
    trig = np.zeros(n, np.int8)
    trig[list(trig_at)] = 1
    fo, to = [], []
    pos = 0
    stalls = 0
    while pos < n:
        f, t = gate.process(freq[pos:pos + chunk], trig[pos:pos + chunk], pos)
        fo.append(f)
        to.append(t)
        pos += len(f)
        if gate.state == WAIT:
            stalls += 1
            ok, fs = (verdicts or {}).get(gate.trigger_at, (False, 0))
            gate.on_header(ok, fs)
    return np.concatenate(fo), np.concatenate(to), stalls


def test_triggers_inside_a_frame_are_suppressed_and_cfo_held():
    g = SyncGate(header_samples=1000, margin=100)
    f, t, stalls = _run(g, [500, 1200, 3000, 7000], verdicts={500: (True, 4000)})
    assert list(np.flatnonzero(t)) == [500, 7000]       # 1200 and 3000 fall inside the frame
    assert np.all(f[500:4500] == f[500])                 # the CFO latched at 500 is held
    assert f[7000] != f[500] and g.suppressed == 2 and stalls == 2   # both accepted triggers wait for a verdict


def test_failed_header_releases_at_once():
    g = SyncGate(header_samples=1000, margin=100)
    f, t, _ = _run(g, [500, 2000], verdicts={500: (False, 0)})
    assert list(np.flatnonzero(t)) == [500, 2000]


def test_trigger_during_header_is_suppressed_even_if_header_fails():
    g = SyncGate(header_samples=1000, margin=100)
    _, t, _ = _run(g, [500, 900, 2000], verdicts={500: (False, 0)})
    assert list(np.flatnonzero(t)) == [500, 2000]


def test_gate_waits_for_a_verdict():
    g = SyncGate(header_samples=1000, margin=100)
    freq = np.zeros(5000, np.float32)
    trig = np.zeros(5000, np.int8)
    trig[10] = 1
    f, t = g.process(freq, trig, 0)
    assert len(f) == 10 + 1000 + 100 and g.state in (WAIT, "header")
    f2, _ = g.process(freq[len(f):], trig[len(f):], len(f))
    assert len(f2) == 0 and g.state == WAIT               # nothing passes until the verdict
    g.release()
    assert g.state == IDLE
    g2 = SyncGate(1000, 100)
    g2.process(freq, trig, 0)
    g2.on_header(True, 3000)
    assert g2.state == HOLD

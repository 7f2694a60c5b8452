import numpy as np

from testbed.phy import framing
from testbed.phy.config import OfdmConfig

CFG = OfdmConfig()


def _stream(n, seed=0):
    rng = np.random.default_rng(seed)
    # importance-ordered-like: power falls along the stream
    p = np.linspace(3, 0.1, n)
    return ((rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.sqrt(p / 2)).astype(np.complex64)


def _frames(stream, k=48, h=512, w=768):
    return framing.make_frames(stream, image_id=3, height=h, width=w, symbols_per_location=k,
                               model_sha256="ab" * 32, cfg=CFG)


def test_frames_reassemble_exactly_and_have_equal_power():
    s = _stream(48 * 32 * 48)
    fr = _frames(s)
    assert len(fr) == -(-s.size // CFG.payload_symbols_per_frame)
    powers = [np.mean(np.abs(p) ** 2) for _, p in fr]
    assert max(powers) / min(powers) < 1.05          # interleaving spreads the importance levels
    r = framing.Reassembler()
    done = []
    for h, p in fr:
        done += r.add(framing.FrameRx(header=h, symbols=p, snr_db=10.0))
    assert len(done) == 1 and done[0].complete and np.array_equal(done[0].stream, s)


def test_a_lost_frame_zero_fills_only_its_own_symbols():
    s = _stream(48 * 32 * 48)
    fr = _frames(s)
    r = framing.Reassembler()
    for h, p in fr:
        if h.frame_index != 2:
            r.add(framing.FrameRx(header=h, symbols=p, snr_db=10.0))
    (img,) = r.flush()
    assert img.missing_frames == [2] and img.frames_decoded == len(fr) - 1
    lost = np.arange(2, s.size, len(fr))
    assert np.all(img.stream[lost] == 0)
    keep = np.setdiff1d(np.arange(s.size), lost)
    assert np.array_equal(img.stream[keep], s[keep])


def test_frames_of_the_next_image_release_the_current_one():
    a, b = _stream(48 * 32 * 48, 1), _stream(48 * 32 * 48, 2)
    fa = framing.make_frames(a, image_id=1, height=512, width=768, symbols_per_location=48, model_sha256="ab" * 32, cfg=CFG)
    fb = framing.make_frames(b, image_id=2, height=512, width=768, symbols_per_location=48, model_sha256="ab" * 32, cfg=CFG)
    r = framing.Reassembler()
    out = []
    for h, p in fa[:-1] + fb:   # the last frame of image 1 is lost
        out += r.add(framing.FrameRx(header=h, symbols=p, snr_db=10.0))
    assert [i.image_id for i in out] == [1, 2]
    assert out[0].missing_frames == [len(fa) - 1] and out[1].complete


def test_inconsistent_and_duplicate_frames_are_dropped():
    s = _stream(48 * 32 * 48)
    fr = _frames(s)
    r = framing.Reassembler()
    h, p = fr[0]
    r.add(framing.FrameRx(header=h, symbols=p[:-1], snr_db=10.0))   # wrong length
    assert r.inconsistent == 1
    r.add(framing.FrameRx(header=h, symbols=p, snr_db=10.0))
    r.add(framing.FrameRx(header=h, symbols=p * 0, snr_db=10.0))    # duplicate ignored
    (img,) = r.flush()
    assert img.frames_decoded == 1 and np.any(img.stream != 0)


def test_spreading_is_unitary_and_invertible():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(194 * 5) + 1j * rng.standard_normal(194 * 5)).astype(np.complex64)
    y = framing.spread(x, 194)
    assert np.isclose(np.sum(np.abs(y) ** 2), np.sum(np.abs(x) ** 2), rtol=1e-4)
    assert np.allclose(framing.despread(y, 194), x, atol=1e-4)
    # a single huge symbol no longer dominates one carrier
    z = np.zeros(194, np.complex64)
    z[7] = 10
    assert np.max(np.abs(framing.spread(z, 194))) < 1.0


def test_frame_symbols_are_whole_ofdm_symbols():
    s = _stream(16 * 4 * 6)
    (h, p), = framing.make_frames(s, image_id=0, height=64, width=96, symbols_per_location=16,
                                  model_sha256="cd" * 32, cfg=CFG)
    x = framing.frame_symbols(h, p, CFG)
    assert x.size % CFG.n_data == 0


def test_frames_arriving_after_a_flush_do_not_make_a_second_copy_of_the_image():
    """A receiver stalled past the idle timeout flushes an image half-way; its remaining frames
    are late and dropped (they used to start a second, partial copy). A new transmission of the
    same image (from a frame it already had) and the next image are received normally."""
    s = _stream(48 * 32 * 48)
    fr = _frames(s)
    r = framing.Reassembler()

    def rx(h, p):
        return r.add(framing.FrameRx(header=h, symbols=p, snr_db=10.0))

    for h, p in fr[:3]:
        assert rx(h, p) == []
    (first,) = r.flush()
    assert sorted(first.frames) == [0, 1, 2]
    assert all(rx(h, p) == [] for h, p in fr[3:]) and r.late == len(fr) - 3
    assert r.flush() == []
    out = []
    for h, p in fr:                       # sent again: a new image
        out += rx(h, p)
    assert len(out) == 1 and out[0].complete and r.late == len(fr) - 3
    b = framing.make_frames(_stream(48 * 32 * 48, 2), image_id=4, height=512, width=768, symbols_per_location=48,
                            model_sha256="ab" * 32, cfg=CFG)
    for h, p in fr[:2]:
        rx(h, p)
    r.flush()
    out = []
    for h, p in b:                        # another image after a flush: not late
        out += rx(h, p)
    assert [i.image_id for i in out] == [4] and out[0].complete and r.late == len(fr) - 3

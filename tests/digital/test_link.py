"""The digital image link on an ideal AWGN symbol channel: bit-identical above the MCS's
threshold, the longest error-free prefix after a lost block, gray when the header is lost."""
import numpy as np
import pytest

from testbed.core.paths import samples_dir
from testbed.digital import link, source
from testbed.digital.mcs import mcs


@pytest.fixture(scope="module")
def img():
    from PIL import Image

    with Image.open(sorted(samples_dir().glob("*.png"))[0]) as im:
        return np.asarray(im.convert("RGB"))[:256, :384].copy()


def _n_symbols(img, cbr=0.0625):
    return int(cbr * img.shape[0] * img.shape[1] * 3)


def _awgn(x, snr_db, rng):
    n0 = 10 ** (-snr_db / 10)
    return x + np.sqrt(n0 / 2) * (rng.standard_normal(x.shape) + 1j * rng.standard_normal(x.shape)), n0


@pytest.mark.parametrize("src,name,snr_db", [("jpeg2000", "qpsk-1/2", 4.0), ("jpeg", "16qam-3/4", 14.0)])
def test_above_threshold_the_codestream_arrives_bit_identical(img, src, name, snr_db):
    m, n = mcs(name), _n_symbols(img)
    sent = link.transmit(img, n, src, m)
    assert sent.symbols.shape == (n,) and sent.symbols.dtype == np.complex64
    used = sent.fields["code_blocks"] * m.symbols_per_block
    assert used <= n and not sent.symbols[used:].any()
    assert len(sent.codestream) <= link.capacity_bytes(n, m)
    y, n0 = _awgn(sent.symbols, snr_db, np.random.default_rng(0))
    rx = link.receive(y, n0, m, src, *img.shape[:2])
    assert rx.block_ok.all() and rx.fields["blocks_failed"] == 0 and rx.fields["decoded"]
    assert rx.codestream == sent.codestream and rx.good_bytes == len(sent.codestream)
    expected, _ = source.decode_prefix(src, sent.codestream, len(sent.codestream), *img.shape[:2])
    assert np.array_equal(rx.image, expected)


def test_a_lost_block_keeps_the_prefix_before_it(img):
    m, n = mcs("qpsk-1/2"), _n_symbols(img)
    sent = link.transmit(img, n, "jpeg2000", m)
    rng = np.random.default_rng(1)
    y, n0 = _awgn(sent.symbols, 5.0, rng)
    lost = 3                                       # wipe block 3 out (noise only)
    sl = slice(lost * m.symbols_per_block, (lost + 1) * m.symbols_per_block)
    y[sl] = 2 * (rng.standard_normal(m.symbols_per_block) + 1j * rng.standard_normal(m.symbols_per_block))
    rx = link.receive(y, n0, m, "jpeg2000", *img.shape[:2])
    assert not rx.block_ok[lost] and rx.block_ok[:lost].all()
    assert rx.good_bytes == lost * link.codeblocks(m.rate).payload_bits // 8 - link.HEADER_BYTES
    assert rx.codestream[:rx.good_bytes] == sent.codestream[:rx.good_bytes]
    assert rx.fields["decoded"] and rx.fields["blocks_failed"] >= 1
    full, _ = source.decode_prefix("jpeg2000", sent.codestream, len(sent.codestream), *img.shape[:2])
    assert not np.array_equal(rx.image, full)      # a coarser image, not the full one


def test_below_threshold_the_header_is_lost_and_the_image_is_gray(img):
    m = mcs("64qam-5/6")
    sent = link.transmit(img, _n_symbols(img), "jpeg", m)
    y, n0 = _awgn(sent.symbols, 6.0, np.random.default_rng(2))
    rx = link.receive(y, n0, m, "jpeg", *img.shape[:2])
    assert rx.fields["blocks_failed"] == rx.fields["code_blocks"] and rx.fields["bler"] == 1.0
    assert not rx.fields["decoded"] and (rx.image == source.GRAY).all()


def test_too_few_symbols_name_the_budget_and_the_smallest_stream(img):
    with pytest.raises(link.BudgetError, match=r"carry \d+ bytes of jpeg2000 at 64qam-5/6.*smallest jpeg2000 "
                                               r"codestream of this 384x256 image is \d+ bytes"):
        link.transmit(img, 400, "jpeg2000", mcs("64qam-5/6"))
    with pytest.raises(ValueError, match="--mcs '8psk-1/2'"):
        mcs("8psk-1/2")

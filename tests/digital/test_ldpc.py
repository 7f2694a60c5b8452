"""The 802.11n LDPC codes and the CRC-protected code blocks, on an ideal AWGN symbol channel."""
import numpy as np
import pytest

from testbed.digital import ldpc_codes as L
from testbed.digital import qam
from testbed.digital.codeblocks import CodeBlocks

# nonzero blocks in each rate's prototype (IEEE 802.11-2012 Table F-3), times Z = 81
EDGES = {"1/2": 86, "2/3": 88, "3/4": 85, "5/6": 79}


def _awgn(symbols, snr_db, rng):
    n0 = 10 ** (-snr_db / 10)
    noise = np.sqrt(n0 / 2) * (rng.standard_normal(symbols.shape) + 1j * rng.standard_normal(symbols.shape))
    return symbols + noise, n0


@pytest.mark.parametrize("rate", L.RATES)
def test_code_shape_structure_and_encoder(rate):
    c = L.code(rate)
    num, den = map(int, rate.split("/"))
    assert (c.n, c.k) == (1944, 1944 * num // den)
    assert c.rows.size == EDGES[rate] * L.Z
    proto = L.prototype(rate)
    mb = proto.shape[0]
    # the standard's dual-diagonal parity part: column 24-mb has its three shifts, the rest a staircase
    for j in range(1, mb):
        col = proto[:, 24 - mb + j]
        assert col[j - 1] == 0 and col[j] == 0 and np.count_nonzero(col >= 0) == 2
    rng = np.random.default_rng(0)
    info = rng.integers(0, 2, (8, c.k), dtype=np.uint8)
    words = c.encode(info)
    assert np.array_equal(words[:, :c.k], info)                    # systematic
    h = c.parity_check().astype(np.int64)
    assert not ((h @ words.T.astype(np.int64)) % 2).any()           # every word satisfies H
    assert c.syndrome_ok(words).all()
    flipped = words.copy()
    flipped[np.arange(8), rng.integers(0, c.n, 8)] ^= 1
    assert not c.syndrome_ok(flipped).any()


def test_unknown_rate_is_named():
    with pytest.raises(ValueError, match="7/8"):
        L.prototype("7/8")


@pytest.mark.parametrize("rate,mod,snr_db", [("1/2", "qpsk", 3.0), ("3/4", "16qam", 13.0), ("5/6", "64qam", 21.0)])
def test_blocks_decode_bit_exactly_above_threshold(rate, mod, snr_db):
    rng = np.random.default_rng(1)
    cb = CodeBlocks(rate)
    payload = rng.integers(0, 2, 6 * cb.payload_bits, dtype=np.uint8)
    coded = cb.encode(payload)
    assert coded.size == 6 * 1944
    y, n0 = _awgn(qam.modulate(coded, mod), snr_db, rng)
    out = cb.decode(qam.demodulate_llr(y, n0, mod))
    assert out.block_ok.all() and np.array_equal(out.payload, payload)


def test_blocks_below_threshold_fail_and_are_flagged():
    rng = np.random.default_rng(2)
    cb = CodeBlocks("5/6")
    payload = rng.integers(0, 2, 4 * cb.payload_bits, dtype=np.uint8)
    y, n0 = _awgn(qam.modulate(cb.encode(payload), "64qam"), 8.0, rng)
    out = cb.decode(qam.demodulate_llr(y, n0, "64qam"))
    assert not out.block_ok.any()
    for i in range(4):      # a block flagged bad is one whose payload is wrong
        sl = slice(i * cb.payload_bits, (i + 1) * cb.payload_bits)
        assert not np.array_equal(out.payload[sl], payload[sl])


def test_crc_catches_a_valid_codeword_with_the_wrong_payload():
    cb = CodeBlocks("1/2")
    rng = np.random.default_rng(3)
    info = rng.integers(0, 2, cb.code.k, dtype=np.uint8)     # a codeword whose "CRC" bits are random
    word = cb.code.encode(info)
    llr = np.where(word == 0, 8.0, -8.0)                    # received perfectly
    out = cb.decode(llr)
    assert not out.block_ok[0] and np.array_equal(out.payload, info[:cb.payload_bits])


def test_bad_sizes_and_values_are_named():
    cb = CodeBlocks("2/3")
    with pytest.raises(ValueError, match="whole number"):
        cb.encode(np.zeros(cb.payload_bits + 1, dtype=np.uint8))
    with pytest.raises(ValueError, match="whole number"):
        cb.decode(np.zeros(1000))
    with pytest.raises(ValueError, match="finite"):
        cb.decode(np.full(1944, np.nan))
    with pytest.raises(ValueError, match="method"):
        CodeBlocks("1/2", method="bitflip")
    assert cb.blocks_for(1) == 1 and cb.blocks_for(cb.payload_bits) == 1 and cb.blocks_for(cb.payload_bits + 1) == 2

import numpy as np
import pytest

from testbed.phy import fec, header as hdr


def _noisy(x, snr_db, rng):
    return x + rng.normal(0, np.sqrt(0.5 / 10 ** (snr_db / 10)), x.size)


def test_conv_code_roundtrip_and_error_correction():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, 224)
    x = fec.encode_bits(bits, 2)
    assert x.size == fec.coded_length(224, 2)
    assert np.array_equal(fec.decode_soft(x, 224, 2), bits)
    # 0 dB per BPSK symbol: uncoded BER would be ~8 %; the coded header decodes
    fails = sum(not np.array_equal(fec.decode_soft(_noisy(x, 0.0, rng), 224, 2), bits) for _ in range(20))
    assert fails <= 1
    # and it is not magic: far below its threshold it fails
    assert not np.array_equal(fec.decode_soft(_noisy(x, -10.0, rng), 224, 2), bits)


def test_viterbi_rejects_wrong_length():
    with pytest.raises(ValueError, match="soft values"):
        fec.viterbi_decode(np.zeros(10), 224)


def test_header_pack_crc_and_range():
    h = hdr.FrameHeader(image_id=7, frame_index=2, frame_count=5, height=512, width=768, symbols_per_location=48,
                        n_payload=9216, payload_offset=2, model_hash=0x12345678)
    b = h.to_bytes()
    assert len(b) == hdr.N_BYTES and hdr.FrameHeader.from_bytes(b) == h
    bad = bytearray(b)
    bad[3] ^= 0x10
    with pytest.raises(hdr.HeaderError, match="CRC"):
        hdr.FrameHeader.from_bytes(bytes(bad))
    with pytest.raises(hdr.HeaderError, match="out of range"):
        hdr.FrameHeader(image_id=1, frame_index=0, frame_count=1, height=70000, width=1, symbols_per_location=1,
                        n_payload=1, payload_offset=0, model_hash=0).to_bytes()


def test_header_modulation_fills_whole_ofdm_symbols_and_survives_noise():
    rng = np.random.default_rng(1)
    h = hdr.FrameHeader(image_id=1, frame_index=0, frame_count=1, height=64, width=64, symbols_per_location=4,
                        n_payload=64, payload_offset=0, model_hash=1)
    x = hdr.modulate(h, 2, 194)
    assert x.size % 194 == 0 and x.size == hdr.header_ofdm_symbols(2, 194) * 194
    y = x + (rng.standard_normal(x.size) + 1j * rng.standard_normal(x.size)) * np.sqrt(0.5)  # 0 dB
    assert hdr.demodulate(y, 2) == h
    with pytest.raises(hdr.HeaderError):
        hdr.demodulate(rng.standard_normal(x.size), 2)   # noise only: CRC fails


def test_header_v2_carries_the_mode_and_v1_headers_are_still_understood():
    from testbed.phy.config import OfdmConfig

    cfg = OfdmConfig()
    h = hdr.FrameHeader(image_id=3, frame_index=0, frame_count=2, height=64, width=96, symbols_per_location=48,
                        n_payload=500, payload_offset=0, model_hash=0xABCDEF01, mode=5)
    assert hdr.FrameHeader.from_bytes(h.to_bytes()) == h and h.version == 2
    sym = hdr.modulate(h, cfg.header_repetition, cfg.n_data)
    assert hdr.demodulate(sym, cfg.header_repetition) == h
    # a version-1 header (a recording made before the mode field): 4 bytes shorter, same OFDM symbols
    old = hdr.FrameHeader(image_id=3, frame_index=0, frame_count=2, height=64, width=96, symbols_per_location=48,
                          n_payload=500, payload_offset=0, model_hash=0xABCDEF01, version=1)
    b = old.to_bytes()
    assert len(b) == hdr.N_BYTES_V1 == hdr.N_BYTES - 1
    assert hdr.FrameHeader.from_bytes(b) == old and old.mode == 0
    sym1 = hdr.modulate(old, cfg.header_repetition, cfg.n_data)
    assert sym1.size == sym.size                         # same number of OFDM symbols
    back = hdr.demodulate(sym1, cfg.header_repetition)
    assert back == old and back.version == 1
    assert np.array_equal(hdr.modulate(back, cfg.header_repetition, cfg.n_data), sym1)   # re-modulates as sent
    with pytest.raises(hdr.HeaderError, match="no mode"):
        hdr.FrameHeader(image_id=3, frame_index=0, frame_count=2, height=64, width=96, symbols_per_location=48,
                        n_payload=500, payload_offset=0, model_hash=1, mode=2, version=1).to_bytes()
    with pytest.raises(hdr.HeaderError, match="expected"):
        hdr.FrameHeader.from_bytes(b[:-2])

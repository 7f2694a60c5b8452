"""Forward error correction for the frame header: CRC-32, K=7 rate-1/2 convolutional code with
a soft-decision Viterbi decoder, repetition and a fixed pseudo-random interleaver.

Soft values follow the BPSK convention of the PHY: bit 0 -> +1, bit 1 -> -1; a soft value is
the equalised real part (larger magnitude = more reliable).
"""
from __future__ import annotations

import zlib
from functools import lru_cache

import numpy as np

K = 7
POLYS = (0o171, 0o133)  # the standard NASA/CCSDS K=7 code
N_STATES = 1 << (K - 1)


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def bytes_to_bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8))


def bits_to_bytes(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for s in (4, 2, 1):
        x ^= x >> s
    return x & 1


def _trellis():
    """next_state[s, b], outputs[s, b, 2] for state s (last K-1 input bits) and input b."""
    s = np.arange(N_STATES)[:, None]
    b = np.arange(2)[None, :]
    reg = (b << (K - 1)) | s                     # newest bit in the MSB of the K-bit register
    out = np.stack([_parity(reg & p) for p in POLYS], axis=-1).astype(np.uint8)
    nxt = reg >> 1
    return nxt, out


_NEXT, _OUT = _trellis()


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """Rate-1/2 encoding with K-1 zero tail bits (terminated trellis)."""
    bits = np.concatenate([np.asarray(bits, dtype=np.uint8) & 1, np.zeros(K - 1, dtype=np.uint8)])
    # output j at step i is the parity of (register_i & poly_j); register_i holds bits i-K+1..i
    # with bit i in the MSB, i.e. a mod-2 convolution of the input with the generator taps
    out = np.empty((bits.size, 2), dtype=np.uint8)
    for j, poly in enumerate(POLYS):
        taps = np.array([(poly >> (K - 1 - d)) & 1 for d in range(K)], dtype=np.int64)   # taps[d]: bit i-d
        out[:, j] = np.convolve(bits.astype(np.int64), taps)[: bits.size] & 1
    return out.reshape(-1)


def _predecessors():
    """For each next state, the two (state, input bit) pairs that lead to it."""
    prev_s = np.zeros((N_STATES, 2), dtype=np.int64)
    prev_b = np.zeros((N_STATES, 2), dtype=np.int64)
    fill = np.zeros(N_STATES, dtype=np.int64)
    for s in range(N_STATES):
        for b in range(2):
            n = _NEXT[s, b]
            prev_s[n, fill[n]] = s
            prev_b[n, fill[n]] = b
            fill[n] += 1
    return prev_s, prev_b


_PREV_S, _PREV_B = _predecessors()
# expected BPSK values of the two output bits on each branch into each state: [S, 2 (branch), 2]
_BRANCH_SIGN = (1.0 - 2.0 * _OUT.astype(np.float64))[_PREV_S, _PREV_B]


def viterbi_decode(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Soft-decision Viterbi for :func:`conv_encode`; ``soft`` has 2*(n_bits+K-1) values."""
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, 2)
    if soft.shape[0] != n_bits + K - 1:
        raise ValueError(f"expected {2 * (n_bits + K - 1)} soft values, got {soft.size}")
    T = soft.shape[0]
    bm_all = np.ascontiguousarray(np.einsum("sbk,tk->tbs", _BRANCH_SIGN, soft))   # [T, 2, S]
    metric = np.full(N_STATES, -np.inf)
    metric[0] = 0.0
    choice = np.empty((T, N_STATES), dtype=bool)
    p0, p1 = _PREV_S[:, 0], _PREV_S[:, 1]
    for t in range(T):
        a = metric[p0] + bm_all[t, 0]
        b = metric[p1] + bm_all[t, 1]
        c = np.greater(b, a, out=choice[t])
        metric = np.where(c, b, a)
    s = 0  # terminated: end in state 0
    bits = np.zeros(T, dtype=np.uint8)
    for t in range(T - 1, -1, -1):
        c = int(choice[t, s])
        bits[t] = _PREV_B[s, c]
        s = _PREV_S[s, c]
    return bits[:n_bits]


@lru_cache(maxsize=64)
def interleaver(n: int, seed: int = 0x5EED) -> np.ndarray:
    """A fixed pseudo-random permutation of ``n`` positions (same at TX and RX); cached, read-only."""
    perm = np.random.default_rng(seed + n).permutation(n)
    perm.flags.writeable = False
    return perm


def encode_bits(bits: np.ndarray, repetition: int) -> np.ndarray:
    """bits -> BPSK values (+1/-1): convolutional code, ``repetition`` copies, interleaving."""
    coded = np.tile(conv_encode(bits), repetition)
    perm = interleaver(coded.size)
    return (1.0 - 2.0 * coded[perm]).astype(np.float32)


def decode_soft(soft: np.ndarray, n_bits: int, repetition: int) -> np.ndarray:
    """Inverse of :func:`encode_bits` on soft values (maximum-ratio combining of the copies)."""
    n_coded = 2 * (n_bits + K - 1)
    soft = np.asarray(soft, dtype=np.float64)[: n_coded * repetition]
    if soft.size != n_coded * repetition:
        raise ValueError(f"expected {n_coded * repetition} soft values, got {soft.size}")
    deint = np.empty_like(soft)
    deint[interleaver(soft.size)] = soft
    combined = deint.reshape(repetition, n_coded).sum(axis=0)
    return viterbi_decode(combined, n_bits)


def coded_length(n_bits: int, repetition: int) -> int:
    return 2 * (n_bits + K - 1) * repetition

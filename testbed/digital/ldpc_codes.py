"""The IEEE 802.11n quasi-cyclic LDPC codes of block length 1944 (IEEE Std 802.11-2012, Annex F,
Tables F-3: rates 1/2, 2/3, 3/4 and 5/6, lifting size Z = 81), and their systematic encoder.

A prototype entry ``s`` is the Z x Z identity with its columns shifted right by ``s``; ``.`` is
the all-zero block. The parity part (the last 24 - 24 * rate block columns) has the standard's
dual-diagonal structure, so it is invertible and the code is systematic: a codeword is the K
information bits followed by M = N - K parity bits. Pure numpy; encoding is one GF(2) matrix
product per batch of codewords.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

Z = 81
N = 24 * Z

PROTOTYPES = {   # (as text: the codecs' identity hashes it)
    "1/2": """
57 .  .  .  50 .  11 .  50 .  79 .  1  0  .  .  .  .  .  .  .  .  .  .
3  .  28 .  0  .  .  .  55 7  .  .  .  0  0  .  .  .  .  .  .  .  .  .
30 .  .  .  24 37 .  .  56 14 .  .  .  .  0  0  .  .  .  .  .  .  .  .
62 53 .  .  53 .  .  3  35 .  .  .  .  .  .  0  0  .  .  .  .  .  .  .
40 .  .  20 66 .  .  22 28 .  .  .  .  .  .  .  0  0  .  .  .  .  .  .
0  .  .  .  8  .  42 .  50 .  .  8  .  .  .  .  .  0  0  .  .  .  .  .
69 79 79 .  .  .  56 .  52 .  .  .  0  .  .  .  .  .  0  0  .  .  .  .
65 .  .  .  38 57 .  .  72 .  27 .  .  .  .  .  .  .  .  0  0  .  .  .
64 .  .  .  14 52 .  .  30 .  .  32 .  .  .  .  .  .  .  .  0  0  .  .
.  45 .  70 0  .  .  .  77 9  .  .  .  .  .  .  .  .  .  .  .  0  0  .
2  56 .  57 35 .  .  .  .  .  12 .  .  .  .  .  .  .  .  .  .  .  0  0
24 .  61 .  60 .  .  27 51 .  .  16 1  .  .  .  .  .  .  .  .  .  .  0
""",
    "2/3": """
61 75 4  63 56 .  .  .  .  .  .  8  .  2  17 25 1  0  .  .  .  .  .  .
56 74 77 20 .  .  .  64 24 4  67 .  7  .  .  .  .  0  0  .  .  .  .  .
28 21 68 10 7  14 65 .  .  .  23 .  .  .  75 .  .  .  0  0  .  .  .  .
48 38 43 78 76 .  .  .  .  5  36 .  15 72 .  .  .  .  .  0  0  .  .  .
40 2  53 25 .  52 62 .  20 .  .  44 .  .  .  .  0  .  .  .  0  0  .  .
69 23 64 10 22 .  21 .  .  .  .  .  68 23 29 .  .  .  .  .  .  0  0  .
12 0  68 20 55 61 .  40 .  .  .  52 .  .  .  44 .  .  .  .  .  .  0  0
58 8  34 64 78 .  .  11 78 24 .  .  .  .  .  58 1  .  .  .  .  .  .  0
""",
    "3/4": """
48 29 28 39 9  61 .  .  .  63 45 80 .  .  .  37 32 22 1  0  .  .  .  .
4  49 42 48 11 30 .  .  .  49 17 41 37 15 .  54 .  .  .  0  0  .  .  .
35 76 78 51 37 35 21 .  17 64 .  .  .  59 7  .  .  32 .  .  0  0  .  .
9  65 44 9  54 56 73 34 42 .  .  .  35 .  .  .  46 39 0  .  .  0  0  .
3  62 7  80 68 26 .  80 55 .  36 .  26 .  9  .  72 .  .  .  .  .  0  0
26 75 33 21 69 59 3  38 .  .  .  35 .  62 36 26 .  .  1  .  .  .  .  0
""",
    "5/6": """
13 48 80 66 4  74 7  30 76 52 37 60 .  49 73 31 74 73 23 .  1  0  .  .
69 63 74 56 64 77 57 65 6  16 51 .  64 .  68 9  48 62 54 27 .  0  0  .
51 15 0  80 24 25 42 54 44 71 71 9  67 35 .  58 .  29 .  53 0  .  0  0
16 29 36 41 44 56 59 37 50 24 .  65 4  65 52 .  4  .  73 52 1  .  .  0
""",
}

RATES = tuple(PROTOTYPES)


def prototype(rate: str) -> np.ndarray:
    """The prototype matrix of ``rate`` (-1: an all-zero block)."""
    if rate not in PROTOTYPES:
        raise ValueError(f"LDPC code rate {rate!r}: the 802.11n N=1944 codes have rates {', '.join(RATES)}")
    rows = [[-1 if v == "." else int(v) for v in line.split()] for line in PROTOTYPES[rate].strip().splitlines()]
    return np.array(rows, dtype=np.int64)


@dataclass(frozen=True)
class LdpcCode:
    rate: str
    n: int
    k: int
    rows: np.ndarray        # (E,) check index of each edge (1 in H), sorted by check
    cols: np.ndarray        # (E,) variable index of each edge
    parity_map: np.ndarray  # (M, K) uint8: parity = parity_map @ info (mod 2)

    @property
    def m(self) -> int:
        return self.n - self.k

    def parity_check(self) -> np.ndarray:
        """H as a dense (M, N) uint8 matrix."""
        h = np.zeros((self.m, self.n), dtype=np.uint8)
        h[self.rows, self.cols] = 1
        return h

    def encode(self, info: np.ndarray) -> np.ndarray:
        """(B, K) or (K,) bits -> (B, N) or (N,) systematic codewords."""
        u = np.asarray(info, dtype=np.uint8)
        if u.shape[-1] != self.k:
            raise ValueError(f"LDPC {self.rate}: {u.shape[-1]} information bits per codeword, expected {self.k}")
        batch = u.reshape(-1, self.k)
        parity = (batch.astype(np.int32) @ self.parity_map.T.astype(np.int32)) & 1
        return np.concatenate([batch, parity.astype(np.uint8)], axis=1).reshape(*u.shape[:-1], self.n)

    def syndrome_ok(self, words: np.ndarray) -> np.ndarray:
        """(B, N) hard bits -> (B,) True where every parity check holds."""
        w = np.asarray(words, dtype=np.uint8).reshape(-1, self.n)
        checks = np.zeros((w.shape[0], self.m), dtype=np.uint8)
        np.bitwise_xor.at(checks.T, self.rows, w[:, self.cols].T)
        return ~checks.any(axis=1)


def _gf2_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a square binary matrix over GF(2) (Gauss-Jordan on packed rows)."""
    m = a.shape[0]
    aug = np.concatenate([a.astype(np.uint8), np.eye(m, dtype=np.uint8)], axis=1)
    for col in range(m):
        piv = col + int(np.argmax(aug[col:, col]))
        if not aug[piv, col]:
            raise ValueError("LDPC parity part is singular over GF(2)")
        if piv != col:
            aug[[col, piv]] = aug[[piv, col]]
        hit = np.flatnonzero(aug[:, col])
        hit = hit[hit != col]
        aug[hit] ^= aug[col]
    return aug[:, m:]


@functools.lru_cache(maxsize=None)
def code(rate: str) -> LdpcCode:
    """The 802.11n N=1944 code of ``rate`` (built once per process)."""
    proto = prototype(rate)
    mb, nb = proto.shape
    rows, cols = [], []
    z = np.arange(Z)
    for i in range(mb):
        for j in range(nb):
            s = proto[i, j]
            if s >= 0:
                rows.append(i * Z + z)
                cols.append(j * Z + (z + s) % Z)
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    order = np.lexsort((cols, rows))
    rows, cols = rows[order], cols[order]
    m = mb * Z
    k = N - m
    h = np.zeros((m, N), dtype=np.uint8)
    h[rows, cols] = 1
    inv = _gf2_inverse(h[:, k:])
    parity_map = ((inv.astype(np.int32) @ h[:, :k].astype(np.int32)) & 1).astype(np.uint8)
    for a in (rows, cols, parity_map):
        a.setflags(write=False)
    return LdpcCode(rate, N, k, rows, cols, parity_map)

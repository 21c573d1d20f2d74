"""The shapes of real Criteo's columns, and drawing values with those shapes.

`NUM_STATS` and `CAT_STATS` hold published statistics of the real data (no
rows); `Zipf` draws category ranks with a Zipf-like law fitted to a field's
cardinality and top-1 share; category values are written as 8 hex characters
by a bijective hash of (field, rank), so a value can be decoded back to its rank.

Not here: the labels (`synthetic.click_model`), real Criteo's row count and
cardinalities after min-count (`criteo`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# Real Criteo column shapes (criteo_stats.json: missing rates, quantiles and top-1
# shares of the first 10k rows of train.txt; raw cardinalities of the full data).
#      missing_rate, min, p50, p90, p99, max
NUM_STATS = {
    "I1": (0.448, 0, 1, 8, 44, 214),
    "I2": (0.0, -2, 3, 192, 2214, 18522),
    "I3": (0.204, 0, 7, 52, 303, 65535),
    "I4": (0.198, 0, 4, 20, 44, 280),
    "I5": (0.049, 0, 2480, 32443, 312261, 1618112),
    "I6": (0.251, 0, 40, 334, 1733, 12167),
    "I7": (0.049, 0, 3, 30, 190, 1658),
    "I8": (0.001, 0, 7, 35, 48, 682),
    "I9": (0.049, 0, 41, 308, 1228, 7335),
    "I10": (0.448, 0, 0, 1, 3, 6),
    "I11": (0.049, 0, 1, 5, 22, 79),
    "I12": (0.774, 0, 0, 2, 14, 98),
    "I13": (0.198, 0, 5, 27, 74, 770),
}
#      missing_rate, cardinality, top-1 share (of present values)
CAT_STATS = {
    "C1": (0.0, 1460, 0.5),
    "C2": (0.0, 583, 0.124),
    "C3": (0.036, 10131227, 0.049),
    "C4": (0.036, 2202608, 0.076),
    "C5": (0.0, 305, 0.666),
    "C6": (0.133, 24, 0.53),
    "C7": (0.0, 12517, 0.01),
    "C8": (0.0, 633, 0.589),
    "C9": (0.0, 3, 0.887),
    "C10": (0.0, 93145, 0.276),
    "C11": (0.0, 5683, 0.02),
    "C12": (0.036, 8351593, 0.049),
    "C13": (0.0, 3194, 0.022),
    "C14": (0.0, 27, 0.363),
    "C15": (0.0, 14992, 0.02),
    "C16": (0.036, 5461306, 0.049),
    "C17": (0.0, 10, 0.43),
    "C18": (0.0, 5652, 0.051),
    "C19": (0.45, 2173, 0.601),
    "C20": (0.45, 4, 0.362),
    "C21": (0.036, 7046547, 0.049),
    "C22": (0.818, 18, 0.526),
    "C23": (0.0, 15, 0.452),
    "C24": (0.036, 286181, 0.078),
    "C25": (0.45, 105, 0.328),
    "C26": (0.45, 142572, 0.082),
}

# The click model. Numbers are relative strengths: each term is scaled to that
# standard deviation (in logits), then all together by one factor so the oracle


# ------------------------------------------------------------ value encoding

_M1, _M2 = 0x7FEB352D, 0x846CA68B  # "lowbias32" integer hash: a bijection on u32
_M1_INV, _M2_INV = pow(_M1, -1, 2**32), pow(_M2, -1, 2**32)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(_M1)
        x ^= x >> np.uint32(15)
        x *= np.uint32(_M2)
        x ^= x >> np.uint32(16)
    return x


def _unmix32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(_M2_INV)
        x ^= x >> np.uint32(15)
        x ^= x >> np.uint32(30)
        x *= np.uint32(_M1_INV)
        x ^= x >> np.uint32(16)
    return x


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
# byte -> its two hex chars as one little-endian uint16 (first char in low byte)
_HEX_PAIRS = (
    _HEX[np.arange(256) >> 4].astype(np.uint16)
    | _HEX[np.arange(256) & 15].astype(np.uint16) << 8
)


def _hex_words(values: np.ndarray) -> np.ndarray:
    """uint32 values [N] -> [N] uint64, each the 8 lowercase hex chars of a value
    as little-endian bytes (so ``words.tobytes()`` is the text)."""
    pairs = _HEX_PAIRS[values.astype(">u4").view(np.uint8)]  # [4N] two chars each
    return pairs.view("<u8")


def _strings(words: np.ndarray, present: np.ndarray) -> pa.Array:
    """Hex words [N] -> arrow strings [N], null where not present."""
    offsets = np.zeros(len(words) + 1, np.int32)
    np.cumsum(present, out=offsets[1:])
    offsets *= 8
    n_missing = len(words) - int(offsets[-1] // 8)
    valid = pa.py_buffer(np.packbits(present, bitorder="little")) if n_missing else None
    return pa.StringArray.from_buffers(
        len(words),
        pa.py_buffer(offsets),
        pa.py_buffer(words[present].tobytes()),
        valid,
        n_missing,
    )


# ------------------------------------------------------------------ sampling


class Zipf:
    """Ranks 0..K-1 with P(r) ~ (r+1)^-a: exact for the first 1000 ranks (alias
    method, O(1) a draw), a continuous power law beyond (K may be 10 million)."""

    HEAD = 1000

    def __init__(self, cardinality: int, top1: float):
        self.k = int(cardinality)
        self.m = min(self.k, self.HEAD)
        lo, hi = 0.0, 16.0  # bisection on a: the top-1 share 1/Z(a) rises with a
        for _ in range(60):
            a = (lo + hi) / 2
            lo, hi = (a, hi) if 1 / self._z(a) < top1 else (lo, a)
        self.a = lo
        w = np.arange(1, self.m + 1, dtype=np.float64) ** -self.a
        self.total = self._z(self.a)
        self.head_share = w.sum() / self.total
        self.accept, self.alias = _alias_table(w)

    def _z(self, a: float) -> float:
        head = float(np.sum(np.arange(1, self.m + 1, dtype=np.float64) ** -a))
        lo, hi = self.m + 0.5, self.k + 0.5
        if self.k == self.m:
            return head
        if abs(a - 1) < 1e-9:
            return head + np.log(hi / lo)
        return head + (hi ** (1 - a) - lo ** (1 - a)) / (1 - a)

    def ranks(self, u: np.ndarray) -> np.ndarray:
        """Uniforms [N] -> ranks [N] int64."""
        v = u * (self.m / self.head_share)
        j = np.minimum(v.astype(np.int64), self.m - 1)
        ranks = np.where(v - j < self.accept[j], j, self.alias[j])
        tail = np.flatnonzero(u >= self.head_share)
        if len(tail):  # invert the continuous tail's CDF
            a, lo = self.a, self.m + 0.5
            mass = (u[tail] - self.head_share) * self.total  # weight past the head
            if abs(a - 1) < 1e-9:
                y = lo * np.exp(mass)
            else:
                y = (mass * (1 - a) + lo ** (1 - a)) ** (1 / (1 - a))
            ranks[tail] = np.clip(np.floor(y - 0.5), self.m, self.k - 1)
        return ranks


def _alias_table(w: np.ndarray):
    """Vose's alias table for weights w [m]: draw j uniformly, keep it with
    probability accept[j], else take alias[j]."""
    m = len(w)
    accept = w * (m / w.sum())
    alias = np.arange(m)
    small = [i for i in range(m) if accept[i] < 1]
    large = [i for i in range(m) if accept[i] >= 1]
    while small and large:
        s, g = small.pop(), large.pop()
        alias[s] = g
        accept[g] -= 1 - accept[s]
        (small if accept[g] < 1 else large).append(g)
    accept[small + large] = 1.0  # leftovers are 1 up to rounding
    return accept, alias

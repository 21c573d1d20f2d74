"""Category values as uint64 codes, and exact counts of them in bounded memory.

Categories are counted and looked up as uint64 codes, not Python strings: an
8-hex Criteo value is its own 32-bit number, so 33M distinct values cost 16
bytes each. Anything else (other lengths, upper case) gets a 64-bit hash with
the top bit set, so it can never collide with a hex value or with MISSING_CODE.

Not here: codes turned into `x_cat` indices (`data.preprocessing`), the reserved
indices (`data.schema`), the two passes over a large file (`data.streaming`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

MISSING_CODE = np.uint64(1 << 32)
_HASHED_BIT = np.uint64(1 << 63)
_U = np.uint64
# preprocess_to_arrays stores hex values as 32 bits between its passes (all of
# real Criteo's values are hex), with this for a missing value. Blocks with any
# other value (a non-hex string, or the hex value ffffffff itself) also keep 64
# bits in a side file and are encoded twice: cheap for Criteo, where there are
# none; a file of non-hex strings costs twice x_cat's size on disk meanwhile.
_CODE32_MISSING = np.uint32(0xFFFFFFFF)


_HEX_STEP = 1 << 15  # values per pass: the temporaries stay in the CPU cache


def _hex8_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8 ASCII chars per little-endian uint64 [N] -> (value uint64 [N], is hex [N]).

    Branch-free byte arithmetic ("SWAR"), in place and in cache-sized steps: this
    runs for every category of every row, so it is worth ~3x over plain numpy.
    """
    c1, c2 = _U(0x0F0F0F0F0F0F0F0F), _U(0x0101010101010101)
    m8, m16 = _U(0x000F000F000F000F), _U(0x000000FF000000FF)
    value, ok = np.empty(len(words), np.uint64), np.empty(len(words), bool)
    nib, tmp = np.empty(_HEX_STEP, np.uint64), np.empty(_HEX_STEP, np.uint64)
    flag = np.empty(_HEX_STEP, bool)
    for s in range(0, len(words), _HEX_STEP):
        w = words[s : s + _HEX_STEP]
        k = len(w)
        a, t, f = nib[:k], tmp[:k], flag[:k]
        np.right_shift(w, _U(6), out=a)  # nibble = (c & 15) + 9 * (c is a letter)
        a &= c2
        a *= _U(9)
        np.bitwise_and(w, c1, out=t)
        a += t
        np.add(a, _U(0x0606060606060606), out=t)  # back to text: equal iff hex
        t >>= _U(4)
        t &= c2
        t *= _U(39)
        t += a
        t += _U(0x3030303030303030)
        np.equal(t, w, out=ok[s : s + k])
        np.bitwise_and(a, _U(0xF0F0F0F0F0F0F0F0), out=t)
        np.equal(t, 0, out=f)
        ok[s : s + k] &= f
        # pack the 8 nibbles, first char most significant: 8 -> 16 -> 32 bits
        np.right_shift(a, _U(8), out=t)
        t &= m8
        a &= m8
        a <<= _U(4)
        a |= t
        np.right_shift(a, _U(16), out=t)
        t &= m16
        a &= m16
        a <<= _U(8)
        a |= t
        np.right_shift(a, _U(32), out=t)
        t &= _U(0xFFFF)
        a &= _U(0xFFFF)
        a <<= _U(16)
        a |= t
        value[s : s + k] = a
    return value, ok


def category_codes(values, names: dict | None = None) -> np.ndarray:
    """Category strings -> uint64 codes (hex value, MISSING_CODE, or hashed).

    values: [N] pyarrow string array, pandas Series or sequence; None, NaN and ""
    are missing. names, if given, collects {code: string} for hashed values.
    Returns [N] uint64.
    """
    arr = values
    if not isinstance(arr, (pa.Array, pa.ChunkedArray)):
        series = values if isinstance(values, pd.Series) else pd.Series(values)
        arr = pa.array(series, from_pandas=True)  # NaN / None -> null
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())
    n = len(arr)
    off_t = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, off_t, n + 1, arr.offset * off_t().itemsize)
    lens = np.diff(offsets)
    present = lens > 0
    if arr.null_count:
        present &= arr.is_valid().to_numpy(zero_copy_only=False)
    codes = np.full(n, MISSING_CODE, np.uint64)
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else None
    eight = present & (lens == 8)
    n8 = int(eight.sum())
    if n8:
        start = int(offsets[0])
        if n8 * 8 == int(offsets[-1]) - start:  # back to back: view, no gather
            chars = data[start : start + 8 * n8]
        else:
            idx = offsets[:-1][eight].astype(np.int64)[:, None] + np.arange(8)
            chars = data[idx].ravel()
        aligned = chars.ctypes.data % 8 == 0
        words = chars.view("<u8") if aligned else np.frombuffer(chars.tobytes(), "<u8")
        value, ok = _hex8_words(words)
        if n8 == n and ok.all():  # the common Criteo case: nothing to scatter
            return value
        where8 = np.flatnonzero(eight)
        if not ok.all():
            eight[where8[~ok]] = False
            where8, value = where8[ok], value[ok]
        codes[where8] = value
    other = np.flatnonzero(present & ~eight)
    if len(other):
        strings = arr.take(pa.array(other)).to_numpy(zero_copy_only=False)
        hashed = pd.util.hash_array(strings.astype(object)) | _HASHED_BIT
        codes[other] = hashed
        if names is not None:
            names.update(zip(hashed.tolist(), strings.tolist()))
    return codes


def _code_strings(codes: np.ndarray, names: dict) -> list[str]:
    return [f"{c:08x}" if c < (1 << 32) else names[c] for c in codes.tolist()]


def _merge_counts(a, b):
    codes = np.concatenate([a[0], b[0]])
    counts = np.concatenate([a[1], b[1]])
    order = np.argsort(codes, kind="stable")  # two sorted runs: a linear merge
    codes, counts = codes[order], counts[order]
    if not len(codes):
        return codes, counts
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return codes[starts], np.add.reduceat(counts, starts)


class _ValueCounts:
    """Exact counts of uint64 codes fed chunk by chunk; memory ~ distinct values.

    Keeps sorted runs and merges the last two while the older is no larger (as a
    binary counter carries), so each value is re-merged only O(log chunks) times.
    """

    def __init__(self):
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, codes: np.ndarray) -> None:
        self.runs.append(np.unique(codes, return_counts=True))
        while len(self.runs) > 1 and len(self.runs[-2][0]) <= len(self.runs[-1][0]):
            b, a = self.runs.pop(), self.runs.pop()
            self.runs.append(_merge_counts(a, b))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        out = (np.empty(0, np.uint64), np.empty(0, np.int64))
        while self.runs:
            out = _merge_counts(self.runs.pop(), out)
        return out

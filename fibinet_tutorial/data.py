"""Criteo data: a strict fast reader, leak-free preprocessing and torch datasets.

The Criteo Kaggle format (``train.txt``): tab-separated, no header, one row a line,
``label I1..I13 C1..C26``. The label is 0/1; I* are integer counts (may be
negative, empty when missing); C* are 8 lowercase hex characters (empty when
missing). The unlabelled ``test.txt`` has no label column (39 fields).

Four parts, in the order a pipeline uses them:

1. Reading: ``read_criteo`` / ``iter_criteo`` -> pandas frames; bad input raises
   ``CriteoFormatError`` naming file, line and column.
2. Preprocessing: ``CriteoPreprocessor`` fits on the training rows only, then
   turns any rows into ``x_num [N, 13] float32`` and ``x_cat [N, 26] int64``.
3. Scale: ``preprocess_to_arrays`` does the same for a file of any length in
   bounded memory, writing ``.npy`` arrays that ``load_arrays`` memory-maps.
4. Torch: ``CTRDataset`` + ``make_loader`` serve whole batches in one gather.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import torch

LABEL = "label"
NUM_COLS = [f"I{i}" for i in range(1, 14)]
CAT_COLS = [f"C{i}" for i in range(1, 27)]
FEATURES = NUM_COLS + CAT_COLS
COLUMNS = [LABEL, *FEATURES]

MISSING_INDEX = 0  # x_cat value for an empty category field
OOV_INDEX = 1  # x_cat value for a category seen < min_count times at fit (or never)
NUM_RESERVED = 2  # vocabulary values start at this index

# Criteo-sized reading: ~64 MiB of text per block (~270k rows) keeps memory flat.
BLOCK_BYTES = 64 << 20


class CriteoFormatError(ValueError):
    """Bad Criteo input; the message names the file, the 1-based line and the column."""

    def __init__(self, path, line: int | None, column: str | None, reason: str):
        self.path, self.line, self.column, self.reason = str(path), line, column, reason
        where = [self.path]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {reason}")


# --------------------------------------------------------------------------- reading


def _field_names(labelled: bool) -> list[str]:
    return COLUMNS if labelled else FEATURES


def _open(path) -> pa.NativeFile:
    """Open a plain or gzip file (detected from its first bytes, not its name)."""
    p = Path(path)
    if not p.exists():
        raise CriteoFormatError(path, None, None, "file not found")
    if not p.is_file():
        raise CriteoFormatError(path, None, None, "not a regular file")
    with open(p, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return pa.input_stream(str(p), compression="gzip" if gz else None)


def _iter_blocks(path, block_bytes: int) -> Iterator[bytearray]:
    """Yield blocks of about block_bytes that end at a line end (bar the last)."""
    carry = b""
    with _open(path) as stream:
        while True:
            try:
                data = stream.read_buffer(block_bytes)  # no copy into a bytes object
            except (OSError, pa.ArrowException) as e:  # e.g. a truncated .gz
                raise CriteoFormatError(path, None, None, f"cannot read: {e}") from e
            if not data.size:
                if carry:
                    yield bytearray(carry)
                return
            buf = bytearray(carry)
            buf += memoryview(data)  # the one copy of the text
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading
                carry = buf
                continue
            carry = bytes(buf[cut:])
            del buf[cut:]  # in place: no copy of the block
            yield buf


def _count_fields(block, max_lines: int = 1000) -> int:
    """Widest line among the first lines (tolerates lines with stripped tails)."""
    head = bytes(block[: 1 << 20]).split(b"\n", max_lines)[:max_lines]
    return max(ln.rstrip(b"\r").count(b"\t") + 1 for ln in head if ln.rstrip(b"\r"))


# Same integer grammar as pyarrow's int64 parser, minus its "0x" hex form, which
# the fast path refuses by sending any block with such a field to the slow scan.
_INT_RE = re.compile(rb"[ ]*-?[0-9]+[ ]*")
_HEX_INT_RE = re.compile(rb"(?:^|\t)[ ]*-?0[xX]", re.MULTILINE)
_INT64_MAX = 2**63 - 1


def _scan_block(block, first_line: int, path, labelled: bool) -> bytes:
    """Check a block line by line; raise at the first bad field, else return it
    normalised (LF endings, stripped trailing fields padded back)."""
    names = _field_names(labelled)
    ncols = len(names)
    lines = bytes(block).split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for i, raw in enumerate(lines):
        line_no = first_line + i
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if not raw:
            raise CriteoFormatError(
                path, line_no, None, f"empty line, expected {ncols} fields"
            )
        fields = raw.split(b"\t")
        if len(fields) > ncols:
            raise CriteoFormatError(
                path,
                line_no,
                None,
                f"expected {ncols} tab-separated fields "
                f"({'label, ' if labelled else ''}I1..I13, C1..C26), got {len(fields)}",
            )
        fields += [b""] * (ncols - len(fields))  # a writer stripped empty tail fields
        for name, value in zip(names, fields):
            _check_field(path, line_no, name, value)
        out.append(b"\t".join(fields))
    return b"\n".join(out) + b"\n"


def _check_field(path, line_no: int, name: str, value: bytes) -> None:
    shown = repr(value.decode("utf-8", "replace"))
    if name == LABEL:
        if not (_INT_RE.fullmatch(value) and int(value) in (0, 1)):
            msg = f"expected 0 or 1, got {shown}"
            raise CriteoFormatError(path, line_no, name, msg)
    elif name[0] == "I":
        if value and not (_INT_RE.fullmatch(value) and abs(int(value)) <= _INT64_MAX):
            raise CriteoFormatError(
                path, line_no, name, f"expected an integer or empty, got {shown}"
            )
    else:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            raise CriteoFormatError(
                path, line_no, name, f"expected text (UTF-8), got {shown}"
            ) from None


def _arrow_parse(block, labelled: bool) -> pa.Table:
    names = _field_names(labelled)
    types = {c: pa.int64() for c in NUM_COLS} | {c: pa.string() for c in CAT_COLS}
    if labelled:
        types[LABEL] = pa.int8()
    return pacsv.read_csv(
        pa.BufferReader(pa.py_buffer(block)),
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(
            delimiter="\t", quote_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=types, null_values=[""], strings_can_be_null=True
        ),
    )


def _labels_ok(table: pa.Table) -> bool:
    label = table.column(LABEL)
    if label.null_count:
        return False
    lo_hi = pc.min_max(label)
    return len(label) == 0 or (lo_hi["min"].as_py() >= 0 and lo_hi["max"].as_py() <= 1)


def _parse_block(block, first_line: int, path, labelled: bool) -> pa.Table:
    """Fast pyarrow parse; on any doubt, the slow scan names the exact bad field."""
    table = None
    # "x" never occurs in Criteo text, so the regex almost never runs
    maybe_hex = (b"x" in block or b"X" in block) and _HEX_INT_RE.search(block)
    if not maybe_hex:
        try:
            table = _arrow_parse(block, labelled)
        except pa.ArrowInvalid:
            table = None
    if table is not None and (not labelled or _labels_ok(table)):
        return table
    fixed = _scan_block(block, first_line, path, labelled)  # raises on a bad line
    try:
        table = _arrow_parse(fixed, labelled)
    except pa.ArrowInvalid as e:  # the scan and pyarrow disagree: still say where
        raise CriteoFormatError(path, first_line, None, f"unreadable block: {e}") from e
    return table


def iter_tables(
    path,
    nrows: int | None = None,
    labelled: bool | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[pa.Table]:
    """Yield the rows of a Criteo file as pyarrow tables of about ``block_bytes`` text.

    Columns: label int8 (labelled files only), I1..I13 int64, C1..C26 string; nulls
    where a field is empty. ``labelled=None`` detects 40 vs 39 fields from the widest
    of the first lines. Raises ``CriteoFormatError`` on any bad line.
    """
    remaining = np.inf if nrows is None else nrows
    line = 1  # one row per line: pyarrow keeps empty lines, so they cannot hide
    for block in _iter_blocks(path, block_bytes):
        if labelled is None:
            labelled = _detect_labelled(block, path)
        if remaining <= 0:
            break
        if remaining < np.inf and remaining <= block.count(b"\n"):
            block = _head_lines(block, int(remaining))  # parse only what we need
        table = _parse_block(block, line, path, labelled)
        remaining -= table.num_rows
        line += table.num_rows
        yield table
    if labelled is None:  # no block at all
        raise CriteoFormatError(path, None, None, "file is empty")
    if nrows == 0:
        yield _empty_table(labelled)


def _head_lines(block, n: int):
    end = -1
    for _ in range(n):
        end = block.find(b"\n", end + 1)
        if end < 0:
            return block
    return block[: end + 1]


def _empty_table(labelled: bool) -> pa.Table:
    types = [pa.int8()] * labelled + [pa.int64()] * 13 + [pa.string()] * 26
    names = _field_names(labelled)
    return pa.table({n: pa.array([], t) for n, t in zip(names, types)})


def _detect_labelled(block, path) -> bool:
    """40 fields on the first line: labelled; 39: the unlabelled test file. A first
    line with stripped tail fields is judged by the widest of the first lines."""
    end = block.find(b"\n")
    first = bytes(block[: end if end >= 0 else len(block)]).rstrip(b"\r")
    if not first:
        raise CriteoFormatError(path, 1, None, "empty line, expected 40 fields")
    got = first.count(b"\t") + 1
    width = got if got >= 39 else _count_fields(block)
    if width >= 39:
        return width >= 40  # wider lines fail later, at their own line number
    raise CriteoFormatError(
        path,
        1,
        None,
        f"expected 40 tab-separated fields (39 in the unlabelled test file), got "
        f"{got}; pass labelled=True/False if empty tail fields were stripped",
    )


def to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow rows -> the DataFrame form every reader here returns.

    label int8; I1..I13 float64 with NaN for missing (float so NaN fits; counts
    stay exact below 2**53); C1..C26 pandas strings, missing as NA (test with
    ``pd.isna``).
    """
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        cols[name] = col.cast(pa.float64()) if name in NUM_COLS else col
    return pa.table(cols).to_pandas()


def iter_criteo(
    path,
    chunksize: int = 500_000,
    nrows: int | None = None,
    labelled: bool | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield a Criteo file as DataFrames of exactly ``chunksize`` rows (the last may
    be shorter); concatenated, they equal ``read_criteo(path, nrows)``."""
    if chunksize < 1:
        raise ValueError("chunksize must be >= 1")
    pending: list[pa.Table] = []
    size = 0
    for table in iter_tables(path, nrows, labelled):
        pending.append(table)
        size += table.num_rows
        while size >= chunksize:
            whole = pa.concat_tables(pending)
            yield to_frame(whole.slice(0, chunksize))
            pending, size = [whole.slice(chunksize)], size - chunksize
    if size:
        yield to_frame(pa.concat_tables(pending))


def read_criteo(path, nrows: int | None = None, labelled: bool | None = None):
    """Read a Criteo file (plain or .gz, LF or CRLF) into a DataFrame (see to_frame)."""
    tables = list(iter_tables(path, nrows, labelled))
    return to_frame(pa.concat_tables(tables))


# ------------------------------------------------------------ numeric transforms


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): compresses heavy-tailed counts, keeps order and sign."""
    return np.copysign(np.log1p(np.abs(x)), x)


def criteo2014(x: np.ndarray) -> np.ndarray:
    """The 2014 winners' ``floor(log(x)**2)`` for x > 2 (x itself otherwise)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 2, np.floor(np.log(np.maximum(x, 1)) ** 2), x)


NUMERIC_TRANSFORMS = {"log1p": signed_log1p, "criteo2014": criteo2014}


# --------------------------------------------------------------- category codes

# Categories are counted and looked up as uint64 codes, not Python strings: an
# 8-hex Criteo value is its own 32-bit number, so 33M distinct values cost 16
# bytes each. Anything else (other lengths, upper case) gets a 64-bit hash with the
# top bit set, so it can never collide with a hex value or with MISSING_CODE.
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


# ---------------------------------------------------------------- preprocessing


class CriteoPreprocessor:
    """Fit on training rows, then map any rows to model inputs.

    Numeric fields: a transform for heavy-tailed counts (``numeric="log1p"``:
    sign(x)·log(1+|x|), default; or ``"criteo2014"``: floor(log(x)²) for x > 2),
    then standardised with the training mean and std, so values are O(1) for an
    embedding that multiplies a vector by them; missing -> 0 (the training mean).
    Categorical fields: per-field index; 0 = missing, 1 = out-of-vocabulary (seen
    fewer than ``min_count`` times at fit, or never), 2.. = values by falling count.

    transform: DataFrame [N rows] -> (x_num [N, 13] float32, x_cat [N, 26] int64).
    """

    def __init__(self, min_count: int = 10, numeric: str = "log1p"):
        if numeric not in NUMERIC_TRANSFORMS:
            raise ValueError(f"numeric must be one of {sorted(NUMERIC_TRANSFORMS)}")
        self.min_count, self.numeric = int(min_count), numeric
        self.num_mean: np.ndarray | None = None  # [13], of the transformed values
        self.num_std: np.ndarray | None = None  # [13]
        self.vocab: dict[str, list[str]] | None = None  # field -> values, index 2..
        self.n_fit_rows = 0
        self._lookup: dict[int, list] = {}  # see _lookups

    # -- fitting
    def _start(self):
        return {
            "n": np.zeros(13),  # per field: values seen, their mean, and the
            "mean": np.zeros(13),  # sum of squared deviations from it
            "m2": np.zeros(13),
            "counts": [_ValueCounts() for _ in CAT_COLS],
            "names": {},
            "rows": 0,
        }

    def _count_num(self, state, v: np.ndarray) -> None:
        """v: [N, 13] transformed numerics of training rows, NaN where missing.

        Merges this block's count, mean and squared deviations into the running
        ones (Chan et al.'s pairwise update): unlike sum and sum of squares, it
        stays exact when a field's spread is tiny next to its mean.
        """
        seen = ~np.isnan(v)
        n_b = seen.sum(0)
        mean_b = np.where(seen, v, 0.0).sum(0) / np.maximum(n_b, 1)
        m2_b = np.square(np.where(seen, v - mean_b, 0.0)).sum(0)
        n_a, total = state["n"], state["n"] + n_b
        delta, share = mean_b - state["mean"], n_b / np.maximum(total, 1)
        state["mean"] = state["mean"] + delta * share
        state["m2"] = state["m2"] + m2_b + delta**2 * n_a * share
        state["n"] = total
        state["rows"] += len(v)

    def _finish(self, state) -> CriteoPreprocessor:
        std = np.sqrt(state["m2"] / np.maximum(state["n"], 1))
        self.num_mean = state["mean"]
        constant = std <= 1e-12 * np.maximum(np.abs(self.num_mean), 1)  # rounding
        self.num_std = np.where(constant, 1.0, std)
        self.vocab = {}
        state["distinct"] = 0
        for name, counter in zip(CAT_COLS, state["counts"]):
            codes, counts = counter.result()
            state["distinct"] += len(codes)
            keep = (counts >= self.min_count) & (codes != MISSING_CODE)
            strings = np.array(_code_strings(codes[keep], state["names"]), dtype=object)
            order = np.lexsort((strings.astype(str), -counts[keep]))  # ties: by value
            self.vocab[name] = strings[order].tolist()
        self.n_fit_rows = state["rows"]
        self._lookup = {}
        return self

    def fit(self, df: pd.DataFrame) -> CriteoPreprocessor:
        """Learn numeric mean/std and per-field vocabularies from training rows."""
        state = self._start()
        self._count_num(state, self.numeric_transform(_num_matrix(df)))
        for counter, c in zip(state["counts"], CAT_COLS):
            counter.add(category_codes(df[c], state["names"]))
        return self._finish(state)

    # -- applying
    @property
    def categories(self) -> list[int]:
        """Per-field number of indices (incl. the 2 reserved): x_cat[:, k] < this."""
        self._check_fitted()
        return [NUM_RESERVED + len(self.vocab[c]) for c in CAT_COLS]

    def _check_fitted(self):
        if self.vocab is None:
            raise RuntimeError("CriteoPreprocessor is not fitted; call fit() first")

    def numeric_transform(self, num: np.ndarray) -> np.ndarray:
        """Raw counts [N, 13] (NaN missing) -> the numeric transform, unscaled."""
        return NUMERIC_TRANSFORMS[self.numeric](num)

    def standardise(self, v: np.ndarray) -> np.ndarray:
        """Transformed numerics [N, 13] -> float32 z-scores; missing (NaN) -> 0."""
        self._check_fitted()
        z = (v - self.num_mean) / self.num_std  # float64 whatever v's dtype
        z[np.isnan(z)] = 0.0  # missing -> the training mean
        return z.astype(np.float32)

    def transform_num(self, num: np.ndarray) -> np.ndarray:
        """Raw counts [N, 13] float64 (NaN missing) -> [N, 13] float32."""
        return self.standardise(self.numeric_transform(num))

    def _lookups(self, bits: int) -> list:
        """Per field: (hash index of codes, x_cat value for each index position).

        bits=64 for ``category_codes``' codes, bits=32 for pass 1's 32-bit codes
        (``preprocess_to_arrays``), which hold only hex values. Position 0 is the
        missing code, then the vocabulary; "not found" (-1) reads the last entry.
        """
        if bits not in self._lookup:
            self._check_fitted()
            fields = []
            for c in CAT_COLS:
                codes = category_codes(pa.array(self.vocab[c], pa.string()))
                at = np.arange(NUM_RESERVED, NUM_RESERVED + len(codes))
                # a hand-edited vocabulary may hold "" (missing) or a value twice:
                # a missing value stays missing, a repeated one keeps its first index
                keep = np.unique(codes, return_index=True)[1]
                keep = np.sort(keep[codes[keep] != MISSING_CODE])
                codes, at = codes[keep], at[keep]
                missing = np.array([MISSING_CODE])
                if bits == 32:
                    fits = codes < _CODE32_MISSING
                    codes, at = codes[fits].astype(np.uint32), at[fits]
                    missing = np.array([_CODE32_MISSING])
                index = pd.Index(np.concatenate([missing, codes]))
                value = np.concatenate([[MISSING_INDEX], at, [OOV_INDEX]])
                fields.append((index, value.astype(np.int32)))
            self._lookup[bits] = fields
        return self._lookup[bits]

    def _encode(self, n: int, codes, dtype, pool=None, bits: int = 64):
        """Codes [26, n] (or a function of k giving field k's [n] codes) ->
        x_cat [n, 26] of ``dtype``."""
        codes_of = codes if callable(codes) else codes.__getitem__
        lookups = self._lookups(bits)
        x_cat = np.empty((n, len(CAT_COLS)), dtype)

        def encode(k):
            index, value = lookups[k]
            x_cat[:, k] = value[index.get_indexer(codes_of(k))]

        list(_map(pool, encode, range(len(CAT_COLS))))
        return x_cat

    def transform_cat(self, cat_columns: list, dtype=np.int64, pool=None):
        """26 x [N] category strings -> x_cat [N, 26] indices."""
        self._check_fitted()
        n = len(cat_columns[0])
        return self._encode(n, lambda k: category_codes(cat_columns[k]), dtype, pool)

    def transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """DataFrame -> (x_num [N, 13] float32, x_cat [N, 26] int64)."""
        self._check_fitted()
        x_cat = self.transform_cat([df[c] for c in CAT_COLS])
        return self.transform_num(_num_matrix(df)), x_cat

    def fit_transform(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return self.fit(df).transform(df)

    # -- persistence
    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "format": "fibinet_tutorial.CriteoPreprocessor",
            "version": 1,
            "min_count": self.min_count,
            "numeric": self.numeric,
            "num_cols": NUM_COLS,
            "num_mean": self.num_mean.tolist(),
            "num_std": self.num_std.tolist(),
            "n_fit_rows": self.n_fit_rows,
            "vocab": self.vocab,
        }

    def save(self, path) -> None:
        """Write the fitted state as plain JSON (vocabularies in index order)."""
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> CriteoPreprocessor:
        d = json.loads(Path(path).read_text())
        if d.get("format") != "fibinet_tutorial.CriteoPreprocessor":
            raise ValueError(f"{path}: not a saved CriteoPreprocessor")
        pre = cls(d["min_count"], d["numeric"])
        pre.num_mean = np.array(d["num_mean"], dtype=np.float64)
        pre.num_std = np.array(d["num_std"], dtype=np.float64)
        pre.vocab = {c: list(d["vocab"][c]) for c in CAT_COLS}
        pre.n_fit_rows = d["n_fit_rows"]
        return pre


def _num_matrix(df) -> np.ndarray:
    """I1..I13 of a DataFrame or arrow table -> [N, 13] float64, NaN for missing."""
    if not isinstance(df, pa.Table):
        return df[NUM_COLS].to_numpy(np.float64, na_value=np.nan)
    out = np.empty((len(NUM_COLS), df.num_rows))  # a contiguous row per field
    for j, c in enumerate(NUM_COLS):  # int64 with nulls -> float64 with NaN
        column = df.column(c)
        if column.type != pa.int64():  # not from iter_tables: let arrow convert
            out[j] = pc.cast(column, pa.float64()).to_numpy()
            continue
        at = 0
        for chunk in column.chunks:
            n, skip = len(chunk), chunk.offset
            valid, data = chunk.buffers()
            dest = out[j, at : at + n]
            np.copyto(dest, np.frombuffer(data, np.int64, n, 8 * skip), "unsafe")
            if chunk.null_count:
                bits = np.frombuffer(valid, np.uint8)
                valid = np.unpackbits(bits, count=skip + n, bitorder="little")
                dest[valid[skip:] == 0] = np.nan
            at += n
    return out.T


def _map(pool, fn, items):
    """map() on a thread pool when given one: numpy and pyarrow release the GIL."""
    return map(fn, items) if pool is None else pool.map(fn, items)


def _prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Yield from ``items`` while a thread computes the next ones (parsing the next
    block overlaps with processing this one on a second core)."""
    slots: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as e:  # handed over, raised in the consumer
            put(("error", e))

    threading.Thread(target=work, daemon=True).start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "error":
                raise item
            if kind == "done":
                return
            yield item
    finally:
        stop.set()


# ------------------------------------------------------------------- splitting

SPLITS = {"train": 0, "val": 1, "test": 2}


def row_uniform(start: int, n: int, seed: int) -> np.ndarray:
    """A fixed uniform [0, 1) per row number (splitmix64 hash), so a split does not
    depend on how a file was chunked. -> [n] float64."""
    with np.errstate(over="ignore"):
        z = np.arange(start, start + n, dtype=np.uint64)
        z = z + _U((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        z = (z ^ (z >> _U(30))) * _U(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U(27))) * _U(0x94D049BB133111EB)
        z = z ^ (z >> _U(31))
    return (z >> _U(11)).astype(np.float64) * 2.0**-53


def split_codes(start: int, n: int, val_frac: float, test_frac: float, seed: int):
    """Rows start..start+n -> [n] uint8: 0 train, 1 val, 2 test (random, seeded)."""
    if not (0 <= val_frac and 0 <= test_frac and val_frac + test_frac < 1):
        raise ValueError("need 0 <= val_frac, test_frac and val_frac + test_frac < 1")
    u = row_uniform(start, n, seed)
    return np.where(u < test_frac, 2, np.where(u < test_frac + val_frac, 1, 0)).astype(
        np.uint8
    )


def train_val_test_split(
    n: int, val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0
):
    """Random, seeded split of rows 0..n-1 -> (idx_train, idx_val, idx_test), sorted.

    Each row lands in test with probability test_frac (in val with val_frac), the
    same rule ``preprocess_to_arrays`` uses, so both paths agree row for row.
    """
    s = split_codes(0, n, val_frac, test_frac, seed)
    return tuple(np.flatnonzero(s == k) for k in range(3))


# -------------------------------------------------------- streaming preprocessing


@dataclass
class CriteoArrays:
    """Preprocessed arrays of a whole file (memory-mapped when loaded).

    x_num [N, 13] float32, x_cat [N, 26] int32 (int64 batches come out of the
    dataset), y [N] int8 or None, split [N] uint8 (SPLITS), preprocessor.
    """

    x_num: np.ndarray
    x_cat: np.ndarray
    y: np.ndarray | None
    split: np.ndarray
    preprocessor: CriteoPreprocessor

    def dataset(self, part: str = "train") -> CTRDataset:
        """A CTRDataset over the rows of one split ("train", "val", "test", "all")."""
        rows = None if part == "all" else np.flatnonzero(self.split == SPLITS[part])
        return CTRDataset(self.x_num, self.x_cat, self.y, rows=rows)


class _RowFile:
    """An .npy file written a block of rows at a time; ``finish`` writes its header
    (which holds the row count) last.

    It is written as ``NAME.partial`` (the caller renames it when all is done).
    Rows go through plain file reads and writes, not a memory map: dirty mapped
    pages would count in the process's resident memory.
    """

    HEADER_BYTES = 128  # numpy pads its v1.0 header to this for any shape we write

    def __init__(self, path: Path, dtype, width: int | None):
        self.path, self.dtype, self.width = Path(path), np.dtype(dtype), width
        self.row_bytes = self.dtype.itemsize * (width or 1)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.file = open(self.partial, "w+b")
        self.rows = 0

    def _seek(self, row: int) -> None:
        self.file.seek(self.HEADER_BYTES + row * self.row_bytes)

    def write(self, start: int, arr: np.ndarray) -> None:
        self._seek(start)
        np.ascontiguousarray(arr, self.dtype).tofile(self.file)
        self.rows = max(self.rows, start + len(arr))

    def append(self, arr: np.ndarray) -> None:
        self.write(self.rows, arr)

    def read(self, start: int, n: int, dtype=None) -> np.ndarray:
        """Rows start..start+n, reinterpreted as ``dtype`` (same item size)."""
        self._seek(start)
        flat = np.fromfile(self.file, dtype or self.dtype, n * (self.width or 1))
        return flat if self.width is None else flat.reshape(n, self.width)

    def finish(self) -> None:
        """Write the header (now that the row count is known) and close."""
        shape = (self.rows,) if self.width is None else (self.rows, self.width)
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": shape,
        }
        self.file.seek(0)
        np.lib.format.write_array_header_1_0(self.file, header)
        if self.file.tell() != self.HEADER_BYTES:
            raise RuntimeError(f"{self.partial}: unexpected .npy header size")
        self.file.close()

    def discard(self) -> None:
        self.file.close()
        self.partial.unlink(missing_ok=True)


def _codes32(codes: np.ndarray, out: np.ndarray) -> bool:
    """uint64 codes [N] -> out [N] uint32; False (out undefined) if one won't fit."""
    if len(codes) and codes.max() > MISSING_CODE:  # a hashed (non-hex) value
        return False
    np.copyto(out, codes, casting="unsafe")  # the low 32 bits
    if (out == _CODE32_MISSING).any():
        return False
    out[codes == MISSING_CODE] = _CODE32_MISSING
    return True


def _codes64(codes32: np.ndarray) -> np.ndarray:
    codes = codes32.astype(np.uint64)
    codes[codes32 == _CODE32_MISSING] = MISSING_CODE
    return codes


def _block_codes(table: pa.Table, train, counts, names, pool):
    """Pass 1 for one block's categories: count the training rows' values (into
    ``counts``, when fitting) and return (codes32 [n, 26], codes64 [n, 26] or
    None); codes64 is given when some value does not fit in 32 bits."""
    codes32 = np.empty((table.num_rows, len(CAT_COLS)), np.uint32)

    def field(k):
        codes = category_codes(table.column(CAT_COLS[k]), names)
        if counts is not None:
            counts[k].add(codes[train])
        return None if _codes32(codes, codes32[:, k]) else codes

    unfit = list(_map(pool, field, range(len(CAT_COLS))))
    if all(c is None for c in unfit):
        return codes32, None
    return codes32, np.column_stack(
        [_codes64(codes32[:, k]) if c is None else c for k, c in enumerate(unfit)]
    )


_PASS2_ROWS = 1 << 18  # rows per read-modify-write step of pass 2


def preprocess_to_arrays(
    path,
    out_dir,
    *,
    min_count: int = 10,
    numeric: str = "log1p",
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    split_seed: int = 0,
    nrows: int | None = None,
    preprocessor: CriteoPreprocessor | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> CriteoArrays:
    """Preprocess a Criteo file of any length in bounded memory.

    Writes ``out_dir/{x_num,x_cat,y,split}.npy`` (what ``load_arrays`` opens),
    ``preprocessor.json`` and ``meta.json`` (rows, split, seconds per pass). The
    text is parsed once. Pass 1 reads it block by block: it counts category
    values and numeric moments on the *training* rows (rows are split at random
    by ``split_codes``) and writes every row's transformed numerics (float32)
    and 32-bit category codes to the output files. Pass 2 then rewrites those
    files in place, a chunk at a time: codes -> vocabulary indices, numerics ->
    z-scores. Everything is written as ``NAME.partial`` and renamed at the end,
    so a failed run leaves an earlier run's files as they were (the disk needs
    room for both meanwhile). Memory ~ one block + 16 bytes per distinct
    training value counted (`make bench-full`: 2.1 GiB peak for a generated
    file of Criteo's size). Pass a fitted ``preprocessor`` to skip the fitting
    (e.g. for a test file).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    fitting = preprocessor is None
    pre = CriteoPreprocessor(min_count, numeric) if fitting else preprocessor
    if not fitting:
        pre._check_fitted()
    state = pre._start() if fitting else None
    names = state["names"] if fitting else None
    files: dict[str, _RowFile] = {}
    wide = []  # (first row, rows) of the blocks whose codes are in files["wide"]
    shift = None  # numerics are stored minus a mean: the fitted one, or block 1's
    labelled, done = None, False
    try:
        files["x_num"] = _RowFile(out / "x_num.npy", np.float32, 13)
        files["x_cat"] = _RowFile(out / "x_cat.npy", np.int32, 26)
        files["split"] = _RowFile(out / "split.npy", np.uint8, None)
        with ThreadPoolExecutor(2) as pool:
            tables = iter_tables(path, nrows, block_bytes=block_bytes)
            for table in _prefetched(tables):
                labelled = LABEL in table.column_names
                if labelled and "y" not in files:
                    files["y"] = _RowFile(out / "y.npy", np.int8, None)
                start, n = files["x_num"].rows, table.num_rows
                split = split_codes(start, n, val_frac, test_frac, split_seed)
                train = np.flatnonzero(split == 0)
                v = pre.numeric_transform(_num_matrix(table))
                if fitting:
                    pre._count_num(state, v[train])
                if shift is None:  # float32 keeps small differences from the mean
                    shift = (state["mean"] if fitting else pre.num_mean).copy()
                counts = state["counts"] if fitting else None
                codes32, codes64 = _block_codes(table, train, counts, names, pool)
                if codes64 is not None:  # a value 32 bits cannot hold (see _codes32)
                    if "wide" not in files:
                        files["wide"] = _RowFile(out / "codes64", np.uint64, 26)
                    wide.append((start, n))
                    files["wide"].append(codes64)
                files["x_num"].append(v - shift)  # float32; z-scores in pass 2
                files["x_cat"].append(codes32.view(np.int32))  # indices in pass 2
                files["split"].append(split)
                if labelled:
                    files["y"].append(table.column(LABEL).to_numpy())
            n_rows = files["x_num"].rows
            distinct = None
            if fitting:
                pre._finish(state)
                distinct = state["distinct"]
            pass1_seconds = time.perf_counter() - clock

            x_num, x_cat = files["x_num"], files["x_cat"]
            for start in range(0, n_rows, _PASS2_ROWS):
                n = min(_PASS2_ROWS, n_rows - start)
                x_num.write(start, pre.standardise(x_num.read(start, n) + shift))
                c32 = np.ascontiguousarray(x_cat.read(start, n, np.uint32).T)
                x_cat.write(start, pre._encode(n, c32, np.int32, pool, bits=32))
            first = 0  # blocks with wide codes were encoded from garbage: redo them
            for start, n in wide:
                c64 = files["wide"].read(first, n).T
                first += n
                x_cat.write(start, pre._encode(n, c64, np.int32, pool))
        for key, f in files.items():
            if key != "wide":
                f.finish()
        meta = {
            "source": str(path),
            "rows": n_rows,
            "labelled": labelled,
            "val_frac": val_frac,
            "test_frac": test_frac,
            "split_seed": split_seed,
            "distinct_train_values": distinct,
            "wide_code_rows": sum(n for _, n in wide),
            "seconds": {
                "pass1": pass1_seconds,
                "pass2": time.perf_counter() - clock - pass1_seconds,
            },
        }
        pre.save(out / "preprocessor.json.partial")
        (out / "meta.json.partial").write_text(json.dumps(meta, indent=1))
        done = True
    finally:
        if "wide" in files:
            files["wide"].discard()
        if not done:  # leave whatever an earlier run wrote as it was
            for f in files.values():
                f.discard()
            for name in ("preprocessor.json", "meta.json"):
                (out / f"{name}.partial").unlink(missing_ok=True)
    names = [f.path.name for k, f in files.items() if k != "wide"]
    for name in [*names, "preprocessor.json", "meta.json"]:
        (out / f"{name}.partial").replace(out / name)
    if not labelled:
        (out / "y.npy").unlink(missing_ok=True)  # a stale one would pair with new rows
    return load_arrays(out)


def load_arrays(out_dir, mmap: bool = True) -> CriteoArrays:
    """Open what preprocess_to_arrays wrote; ``mmap`` keeps the arrays on disk."""
    out = Path(out_dir)
    mode = "r" if mmap else None
    y_path = out / "y.npy"
    return CriteoArrays(
        x_num=np.load(out / "x_num.npy", mmap_mode=mode),
        x_cat=np.load(out / "x_cat.npy", mmap_mode=mode),
        y=np.load(y_path, mmap_mode=mode) if y_path.exists() else None,
        split=np.load(out / "split.npy", mmap_mode=mode),
        preprocessor=CriteoPreprocessor.load(out / "preprocessor.json"),
    )


# ----------------------------------------------------------------------- torch


def _as_store(a, dtype):
    """Keep memory maps on disk; turn in-memory data into a torch tensor once."""
    if a is None:
        return None
    if isinstance(a, np.memmap):
        return a
    t = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a)
    return t.to(dtype)


def _gather(store, idx: np.ndarray, dtype) -> torch.Tensor:
    if torch.is_tensor(store):  # index_select: ~15x faster than store[idx] on CPU
        return torch.index_select(store, 0, torch.from_numpy(idx))
    return torch.from_numpy(np.asarray(store[idx])).to(dtype)


class CTRDataset(torch.utils.data.Dataset):
    """CTR rows for torch; ``__getitems__`` gathers a whole batch in one go.

    x_num [N, F_num], x_cat [N, F_cat], y [N] or None: numpy arrays, memory maps
    (read lazily) or tensors. rows: optional [M] row numbers to serve (a split).
    Item i: ((x_num [F_num] float32, x_cat [F_cat] int64), y float32); without y,
    just (x_num, x_cat). ``__getitems__(indices)`` returns the same structure with
    a leading batch dimension [B, ...].
    """

    def __init__(self, x_num, x_cat, y=None, rows=None):
        if len(x_num) != len(x_cat) or (y is not None and len(y) != len(x_num)):
            raise ValueError("x_num, x_cat and y must have the same number of rows")
        self.x_num = _as_store(x_num, torch.float32)
        self.x_cat = _as_store(x_cat, torch.int64)
        self.y = _as_store(y, torch.float32)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    @classmethod
    def from_frame(cls, df: pd.DataFrame, preprocessor: CriteoPreprocessor):
        """Transform a frame with a fitted preprocessor (labels if it has them)."""
        x_num, x_cat = preprocessor.transform(df)
        y = df[LABEL].to_numpy(np.float32) if LABEL in df else None
        return cls(x_num, x_cat, y)

    def __len__(self) -> int:
        return len(self.x_num) if self.rows is None else len(self.rows)

    def __getitems__(self, indices):
        idx = np.asarray(indices, dtype=np.int64)
        if self.rows is not None:
            idx = self.rows[idx]
        features = (
            _gather(self.x_num, idx, torch.float32),
            _gather(self.x_cat, idx, torch.int64),
        )
        if self.y is None:
            return features
        return features, _gather(self.y, idx, torch.float32)

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        batch = self.__getitems__([i % len(self)])
        if self.y is None:
            return tuple(t[0] for t in batch)
        (x_num, x_cat), y = batch
        return (x_num[0], x_cat[0]), y[0]


def collate_batched(batch):
    """The dataset already returned a batch (``__getitems__``): pass it through."""
    return batch


def make_loader(
    dataset, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False
) -> torch.utils.data.DataLoader:
    """A DataLoader that fetches each batch with one ``__getitems__`` call.

    Shuffling draws from a ``torch.Generator`` seeded with ``seed``: two loaders
    built alike yield the same batches; each new epoch reshuffles.
    """
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        drop_last=drop_last,
        collate_fn=collate_batched,
    )

"""Reading Criteo files: a strict, fast reader (pyarrow) that names the file,
line and column of any bad field.

``read_criteo`` returns a DataFrame; ``iter_criteo`` the same in chunks;
``iter_tables`` the underlying pyarrow tables, block by block, for the
streaming path. Plain or gzip text, LF or CRLF, and lines whose empty tail
fields were stripped are all read. A header line or a comma-separated file is
recognised and named as such. Before ``read_criteo`` reads a file into
memory it compares what that will take with the memory available
(``check_fits_in_memory``).

Not here: the format's columns and `CriteoFormatError` (`data.schema`), rows turned
into model inputs (`data.preprocessing`), the bounded-memory path
(`data.streaming`), the machine's memory figure (`fast.machine`).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ..fast.machine import memory_available
from .schema import (
    CAT_COLS,
    COLUMNS,
    FEATURES,
    LABEL,
    NUM_COLS,
    CriteoFormatError,
    option,
)

# Criteo-sized reading: ~64 MiB of text per block (~270k rows) keeps memory flat.
BLOCK_BYTES = 64 << 20


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


_EXPECTED = "expected Criteo's tab-separated format (label, I1..I13, C1..C26)"


def _looks_like(first: bytes) -> str | None:
    """What line 1 looks like when it is plainly not Criteo's text: a header
    line and/or comma-separated values; None when it may be Criteo's."""
    tabs = first.count(b"\t") + 1
    commas = first.count(b",") + 1
    sep = b"," if commas > tabs and commas >= 39 else b"\t"
    fields = [f.strip().strip(b'"') for f in first.split(sep)][:14]
    # label and I1..I13 are integers (or empty) in every data line
    header = sum(bool(f) for f in fields) * 2 >= len(fields) and not any(
        _INT_RE.fullmatch(f) for f in fields
    )
    if sep == b",":
        what = "like a header and comma-separated" if header else "comma-separated"
        return f"line 1 looks {what} ({commas} comma-separated fields); {_EXPECTED}"
    if header:
        shown = ", ".join(f.decode("utf-8", "replace") for f in fields[:3])
        return f"line 1 looks like a header ({shown}, ...); {_EXPECTED}, no header"
    return None


def _detect_labelled(block, path) -> bool:
    """40 fields on the first line: labelled; 39: the unlabelled test file. A first
    line with stripped tail fields is judged by the widest of the first lines."""
    end = block.find(b"\n")
    first = bytes(block[: end if end >= 0 else len(block)]).rstrip(b"\r")
    if not first:
        raise CriteoFormatError(path, 1, None, "empty line, expected 40 fields")
    not_criteo = _looks_like(first)
    if not_criteo:
        raise CriteoFormatError(path, 1, None, not_criteo)
    got = first.count(b"\t") + 1
    width = got if got >= 39 else _count_fields(block)
    if width >= 39:
        return width >= 40  # wider lines fail later, at their own line number
    labelled = option("labelled=True/False", "--labelled yes/no")
    raise CriteoFormatError(
        path,
        1,
        None,
        f"expected 40 tab-separated fields (39 in the unlabelled test file), got "
        f"{got}; pass {labelled} if empty tail fields were stripped",
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
    """Read a Criteo file (plain or .gz, LF or CRLF) into a DataFrame (see to_frame).

    Raises `FileTooLargeError` first when the file (or its first nrows lines)
    would not fit in the memory available (`check_fits_in_memory`).
    """
    check_fits_in_memory(path, nrows)
    tables = list(iter_tables(path, nrows, labelled))
    return to_frame(pa.concat_tables(tables))


# Reading text into a DataFrame and preprocessing it in memory (`read_criteo`,
# then `CriteoPreprocessor` and `CTRDataset`, as `train.prepare_data` does)
# took 8.4 and 7.3 bytes of memory per byte of text at its peak on 250k and 1M
# rows of built-in data (a fresh process's peak resident memory over what it
# held after its imports; tests/test_machine.py measures 250k rows on every
# `make test`); 10 leaves room for real files whose strings vary more.
IN_MEMORY_BYTES_PER_TEXT_BYTE = 10
# Use at most this share of the memory available; the rest stays free for
# the model, the optimizer and everything else on the machine.
MEMORY_SAFE_FRACTION = 0.7


class FileTooLargeError(ValueError):
    """A file that would not fit in the memory available if read whole."""


def _head_text(path, want: int = 1 << 20) -> tuple[bytes, int]:
    """(first ~`want` bytes of text, compressed bytes they took; equal for
    plain text): what estimates a gzip file's text size and line length."""
    with open(path, "rb") as f:
        raw = f.read(want)
        if raw[:2] != b"\x1f\x8b":
            return raw, len(raw)
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            text = inflate.decompress(raw, want)
        except zlib.error:
            return raw, len(raw)  # not really gzip: the reader will say so
        left = len(inflate.unconsumed_tail) + len(inflate.unused_data)
        return text, len(raw) - left


def text_bytes(path, nrows: int | None = None) -> int:
    """About how many bytes of text reading `path` (its first nrows lines)
    parses: the file's size; for gzip its text, estimated from the
    compression ratio of its first MiB; with nrows, that many lines at the
    mean length of the first ones."""
    size = Path(path).stat().st_size
    head, used = _head_text(path)
    total = size if used == len(head) else int(size * len(head) / max(used, 1))
    lines = head.count(b"\n")
    if nrows is not None and lines:
        total = min(total, int(nrows * len(head) / lines))
    return total


def in_memory_bytes(path, nrows: int | None = None) -> int:
    """Peak memory estimated for reading and preprocessing a file in memory."""
    return text_bytes(path, nrows) * IN_MEMORY_BYTES_PER_TEXT_BYTE


def fits_in_memory(path, nrows: int | None = None, processes: int = 1) -> bool:
    """Whether `processes` processes can each read the file in memory within
    the safe share of the memory available (True where it cannot be told)."""
    available = memory_available()
    if available is None or not Path(path).is_file():
        return True
    need = in_memory_bytes(path, nrows) * processes
    return need <= MEMORY_SAFE_FRACTION * available


def check_fits_in_memory(path, nrows: int | None = None, processes: int = 1):
    """Raise a one-line `FileTooLargeError` naming the streamed path when the
    file would not fit in memory (see `fits_in_memory`)."""
    if fits_in_memory(path, nrows, processes):
        return
    gib = 2**30
    streamed = option(
        "train.prepare_data(..., streamed_dir=DIR) or data.preprocess_to_arrays",
        "--streamed",
    )
    rows = option("nrows=N", "--rows N")
    raise FileTooLargeError(
        f"{path}: {text_bytes(path, nrows) / gib:.1f} GiB of text needs about "
        f"{in_memory_bytes(path, nrows) * processes / gib:.0f} GiB in memory, "
        f"more than {MEMORY_SAFE_FRACTION:.0%} of the "
        f"{memory_available() / gib:.1f} GiB available; preprocess it in "
        f"bounded memory ({streamed}) or read fewer rows ({rows})"
    )

"""Preprocessing a file of any length in bounded memory, into memory-mapped arrays.

``preprocess_to_arrays`` parses the text once (pass 1: count and write codes;
pass 2: codes -> indices in place) and ``load_arrays`` opens the result; both
return ``CriteoArrays``, whose ``dataset(part)`` serves a split to torch.

Not here: the transforms it applies (`data.preprocessing`), text parsing
(`data.reading`), the torch dataset it hands out (`data.datasets`), the choice to
stream a run's file (`train.job`).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .codes import _CODE32_MISSING, MISSING_CODE, category_codes
from .datasets import CTRDataset
from .preprocessing import CriteoPreprocessor, _map, _num_matrix
from .reading import BLOCK_BYTES, iter_tables
from .schema import CAT_COLS, LABEL
from .splitting import SPLITS, split_codes


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
    labelled: bool | None = None,
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
    training value counted (`make bench-full` measures time and peak memory
    at Criteo's size: benchmarks/FULL_DATA.md). Pass a fitted
    ``preprocessor`` to skip the fitting (e.g. for a test file; with
    ``val_frac=test_frac=0`` every row is in ``dataset("all")``). labelled: as
    in ``read_criteo`` (None: detected).
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
            tables = iter_tables(path, nrows, labelled, block_bytes)
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

"""Leak-free preprocessing: fit on the training rows, then turn any rows into
model inputs (`x_num [N, 13] float32`, `x_cat [N, 26] int64`).

Holds the numeric transforms and `CriteoPreprocessor`.

Not here: the same job for a file too big for memory, block by block
(`data.streaming.preprocess_to_arrays`), category codes and their counts
(`data.codes`), the split (`data.splitting`), reading text (`data.reading`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .codes import (
    _CODE32_MISSING,
    MISSING_CODE,
    _code_strings,
    _ValueCounts,
    category_codes,
)
from .schema import CAT_COLS, MISSING_INDEX, NUM_COLS, NUM_RESERVED, OOV_INDEX


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) * log(1 + |x|): compresses heavy-tailed counts, keeps order and sign."""
    return np.copysign(np.log1p(np.abs(x)), x)


def criteo2014(x: np.ndarray) -> np.ndarray:
    """The 2014 winners' ``floor(log(x)**2)`` for x > 2 (x itself otherwise)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 2, np.floor(np.log(np.maximum(x, 1)) ** 2), x)


NUMERIC_TRANSFORMS = {"log1p": signed_log1p, "criteo2014": criteo2014}


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

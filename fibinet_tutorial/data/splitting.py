"""Random, seeded train / validation / test splits that do not depend on how a
file was chunked: a row's split is a function of its row number and the seed.

Not here: applying the split to a streamed file (`data.streaming`) or to a file in
memory (`train.job.prepare_data`).
"""

from __future__ import annotations

import numpy as np

_U = np.uint64

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

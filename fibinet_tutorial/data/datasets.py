"""Torch datasets and loaders over preprocessed arrays: whole batches in one gather.

Not here: the unshuffled evaluation loader (`train.evaluation.eval_loader`), a whole
file's memory-mapped arrays (`data.streaming`), the preprocessing that makes the
arrays (`data.preprocessing`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .schema import LABEL

if TYPE_CHECKING:
    from .preprocessing import CriteoPreprocessor


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

    def label_counts(self) -> tuple[int, int] | None:
        """(rows labelled 0, rows labelled 1), or None without labels."""
        if self.y is None:
            return None
        idx = np.arange(len(self)) if self.rows is None else self.rows
        positives = int(_gather(self.y, idx, torch.float32).sum())
        return len(self) - positives, positives

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
    dataset,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    drop_last: bool | None = None,
    pin_memory: bool | None = None,
) -> torch.utils.data.DataLoader:
    """A DataLoader that fetches each batch with one ``__getitems__`` call.

    Shuffling draws from a ``torch.Generator`` seeded with ``seed``: two loaders
    built alike yield the same batches; each new epoch reshuffles.
    drop_last=None (the default) drops the last partial batch of a shuffled
    (training) loader that has at least one full batch: a last batch of one
    row would stop BatchNorm ("Expected more than 1 value per channel"), and a
    few rows would skew its running statistics. The rows dropped differ from
    epoch to epoch. Unshuffled (evaluation) loaders keep every row.
    pin_memory=None (the default) pins each batch in page-locked memory when
    a CUDA GPU is visible, so its copy to the GPU can run without blocking
    (the trainer asks accelerate for non-blocking copies).
    """
    if drop_last is None:
        drop_last = shuffle and len(dataset) >= batch_size
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=gen,
        drop_last=drop_last,
        collate_fn=collate_batched,
        pin_memory=pin_memory,
    )

"""Criteo data: reading, leak-free preprocessing, bounded-memory streaming, torch.

One module per job, in the order a pipeline uses them:

1. `schema`: the format's columns, x_cat's reserved indices, `CriteoFormatError`.
2. `reading`: ``read_criteo`` / ``iter_criteo`` / ``iter_tables``; bad input
   raises ``CriteoFormatError`` naming file, line and column; a file too big
   for memory raises ``FileTooLargeError`` before it is read.
3. `splitting`: seeded random train / validation / test splits by row number.
4. `preprocessing`: ``CriteoPreprocessor`` fits on the training rows only, then
   turns any rows into ``x_num [N, 13] float32`` and ``x_cat [N, 26] int64``
   (with `codes`: category values as uint64 codes, counted exactly).
5. `streaming`: ``preprocess_to_arrays`` does the same for a file of any length
   in bounded memory, writing ``.npy`` arrays that ``load_arrays`` memory-maps.
6. `datasets`: ``CTRDataset`` + ``make_loader`` serve whole batches in one gather.

Everything a user needs is importable from here (``from fibinet_tutorial import
data; data.read_criteo(...)``).

Not here: the built-in synthetic data (`synthetic`), evaluation's loaders
(`train.evaluation.eval_loader`), choosing in memory or streamed for a run
(`train.job.prepare_data`).
"""

from .codes import MISSING_CODE, category_codes
from .datasets import CTRDataset, collate_batched, make_loader
from .preprocessing import (
    NUMERIC_TRANSFORMS,
    CriteoPreprocessor,
    criteo2014,
    signed_log1p,
)
from .reading import (
    BLOCK_BYTES,
    FileTooLargeError,
    check_fits_in_memory,
    fits_in_memory,
    iter_criteo,
    iter_tables,
    read_criteo,
    to_frame,
)
from .schema import (
    CAT_COLS,
    COLUMNS,
    FEATURES,
    LABEL,
    MISSING_INDEX,
    NUM_COLS,
    NUM_RESERVED,
    OOV_INDEX,
    CriteoFormatError,
    cli_hints,
    option,
)
from .splitting import SPLITS, row_uniform, split_codes, train_val_test_split
from .streaming import CriteoArrays, load_arrays, preprocess_to_arrays

__all__ = [
    "BLOCK_BYTES",
    "CAT_COLS",
    "COLUMNS",
    "FEATURES",
    "LABEL",
    "MISSING_CODE",
    "MISSING_INDEX",
    "NUMERIC_TRANSFORMS",
    "NUM_COLS",
    "NUM_RESERVED",
    "OOV_INDEX",
    "SPLITS",
    "CTRDataset",
    "CriteoArrays",
    "CriteoFormatError",
    "CriteoPreprocessor",
    "FileTooLargeError",
    "category_codes",
    "check_fits_in_memory",
    "cli_hints",
    "collate_batched",
    "criteo2014",
    "fits_in_memory",
    "iter_criteo",
    "iter_tables",
    "load_arrays",
    "make_loader",
    "option",
    "preprocess_to_arrays",
    "read_criteo",
    "row_uniform",
    "signed_log1p",
    "split_codes",
    "to_frame",
    "train_val_test_split",
]

"""The Criteo Kaggle format: its columns, the index conventions of `x_cat`, and
the error every reader raises.

``train.txt``: tab-separated, no header, one row a line, ``label I1..I13
C1..C26``. The label is 0/1; I* are integer counts (may be negative, empty when
missing); C* are 8 lowercase hex characters (empty when missing). The
unlabelled ``test.txt`` has no label column (39 fields).

Not here: the reader that enforces the format (`data.reading`), published statistics
of the real data (`criteo`), the flags the hints name (`train.cli`).
"""

from __future__ import annotations

import contextlib

LABEL = "label"
NUM_COLS = [f"I{i}" for i in range(1, 14)]
CAT_COLS = [f"C{i}" for i in range(1, 27)]
FEATURES = NUM_COLS + CAT_COLS
COLUMNS = [LABEL, *FEATURES]

MISSING_INDEX = 0  # x_cat value for an empty category field
OOV_INDEX = 1  # x_cat value for a category seen < min_count times at fit (or never)
NUM_RESERVED = 2  # vocabulary values start at this index


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


# Hints in error messages name what the reader can change: the command line's
# flags while it runs (`cli_hints`), the Python arguments otherwise.
_HINTS = {"cli": False}


def option(python: str, cli: str) -> str:
    """How a hint names an option: `cli` (a flag) while the command line runs,
    else `python` (an argument)."""
    return cli if _HINTS["cli"] else python


@contextlib.contextmanager
def cli_hints():
    """Inside, hints name the command line's flags (`option`)."""
    before, _HINTS["cli"] = _HINTS["cli"], True
    try:
        yield
    finally:
        _HINTS["cli"] = before

"""The built-in data file: generated once, reused while it still matches.

Not here: the click model that writes the file (`synthetic.click_model`), reading
and splitting it for training (`train.job.prepare_data`), the `--data-dir` flag
(`train.cli`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .click_model import DEFAULT_SEED, SyntheticCriteo

# 80% of it trains. The largest size on which `make run` trains its models in a
# few minutes on 2 CPU cores while FiBiNET gets within ~0.01 AUC of the oracle
# (`make run` prints the current figures).
DEFAULT_ROWS = 250_000
DEFAULT_FILE = "synthetic_criteo.txt"
VERSION = 2  # bump when the generator's output changes: cached files regenerate


def ensure_default_data(
    data_dir="data", n_rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED
) -> Path:
    """Path of the built-in data file, written once and reused while its manifest
    (generator version, seed, rows, size) still matches."""
    data_dir = Path(data_dir)
    path = data_dir / DEFAULT_FILE
    manifest = path.with_suffix(".json")
    want = {
        "generator": "fibinet_tutorial.synthetic",
        "version": VERSION,
        "seed": seed,
        "rows": n_rows,
    }
    if path.exists() and manifest.exists():
        have = json.loads(manifest.read_text())
        if {k: have.get(k) for k in want} == want and have.get(
            "bytes"
        ) == path.stat().st_size:
            return path
    data_dir.mkdir(parents=True, exist_ok=True)
    SyntheticCriteo(seed).write(path, n_rows)
    digest = hashlib.sha256()
    with open(path, "rb") as f:  # in pieces: a benchmark file can be many GB
        while piece := f.read(1 << 24):
            digest.update(piece)
    size = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    manifest.write_text(json.dumps(want | size, indent=1))
    return path

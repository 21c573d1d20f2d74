"""The known click model and the Criteo-format rows it writes: `SyntheticCriteo`.

    logit(p) = bias + sum of per-field main effects + sum of pairwise interactions

The package docstring (`fibinet_tutorial.synthetic`) describes the model; the
constants below set it: which fields carry a main effect and how strong,
which pairs interact, and the oracle AUC and positive rate it is scaled to.

Not here: the column shapes and hex values (`synthetic.marginals`), the built-in
file (`synthetic.default_data`), models compared with the oracle
(`train.evaluation.comparison_table`).
"""

from __future__ import annotations

import gzip
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ..data import (
    CAT_COLS,
    LABEL,
    MISSING_CODE,
    NUM_COLS,
    category_codes,
    signed_log1p,
    to_frame,
)
from ..metrics import log_loss, roc_auc
from .marginals import (
    CAT_STATS,
    NUM_STATS,
    Zipf,
    _hex_words,
    _mix32,
    _strings,
    _unmix32,
)

DEFAULT_SEED = 0
BLOCK_ROWS = 1 << 14  # rows come in fixed blocks, so any slice is reproducible

# AUC is TARGET_AUC; the bias sets the positive rate. Fields not listed are noise.
MAIN_EFFECTS = {
    "I1": 1.0,
    "I3": 0.6,
    "I4": 0.5,
    "I5": 0.8,
    "I7": 0.7,
    "I8": 0.4,
    "I10": 0.5,
    "I11": 0.6,
    "I13": 0.4,
    "C1": 0.6,
    "C2": 0.8,
    "C3": 0.4,
    "C5": 0.7,
    "C6": 1.0,
    "C8": 0.5,
    "C9": 0.5,
    "C10": 0.6,
    "C11": 0.4,
    "C13": 0.5,
    "C14": 0.9,
    "C15": 0.4,
    "C17": 0.7,
    "C18": 0.4,
    "C19": 0.6,
    "C20": 0.5,
    "C22": 0.6,
    "C24": 0.3,
    "C25": 0.4,
    "C26": 0.5,
}
BUMP_FIELDS = {"I5"}  # effect exp(-z²/2): a peak at typical values (not monotone)
# Pairs of fields whose frequent values interact: <u_a, u_b>, u of size RANK.
INTERACTIONS = [
    ("C1", "C14", 1.3),
    ("C6", "C17", 1.3),
    ("C8", "C25", 1.1),
    ("C5", "C9", 1.0),
    ("C10", "C19", 0.9),
    ("I1", "C20", 0.9),
]
TOP_K = 6  # most frequent values per field that carry a main effect
INTER_TOP_K = 4  # most frequent values per field that take part in interactions
RANK = 2  # latent size of the interactions: learnable by FM / bilinear layers
TARGET_AUC = 0.80
POSITIVE_RATE = 0.25


def _write_tsv(out, table: pa.Table) -> None:
    """Append a table as Criteo text (arrow and zlib release the GIL: overlaps)."""
    buf = pa.BufferOutputStream()
    options = pacsv.WriteOptions(
        include_header=False, delimiter="\t", quoting_style="none"
    )
    pacsv.write_csv(table, buf, options)
    out.write(buf.getvalue())


def _expected_auc(p: np.ndarray) -> float:
    """Mean AUC of the true probabilities p [N] (sorted ascending) when labels are
    Bernoulli(p): P(a positive outranks a negative), over pairs of distinct rows."""
    neg_below = np.cumsum(1 - p) - (1 - p)
    pos, neg = p.sum(), (1 - p).sum()
    return float((p * neg_below).sum() / (pos * neg - (p * (1 - p)).sum()))


class SyntheticCriteo:
    """A Criteo-like world with a known click model (see the module docstring).

    The same seed gives the same model and the same endless stream of rows;
    ``sample(n, start)`` returns rows start..start+n-1 of it.
    """

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        target_auc: float = TARGET_AUC,
        positive_rate: float = POSITIVE_RATE,
    ):
        self.seed = int(seed)
        rng = np.random.default_rng([self.seed, 0])
        # missing together, as in real Criteo: columns sharing a missing rate
        # (e.g. C19, C20, C25, C26 at 0.45) are missing on the same rows
        rates = [NUM_STATS[c][0] for c in NUM_COLS]
        rates += [CAT_STATS[c][0] for c in CAT_COLS]
        self._rates, self._miss_group = np.unique(rates, return_inverse=True)
        self._zipf = [Zipf(CAT_STATS[c][1], CAT_STATS[c][2]) for c in CAT_COLS]
        self._keys = rng.integers(0, 2**32, len(CAT_COLS), dtype=np.uint64)
        self._head_words = [
            self._words(k, np.arange(z.m)) for k, z in enumerate(self._zipf)
        ]
        self._num_knots = [self._knots(c) for c in NUM_COLS]
        # effect tables: slots 0..TOP_K-1 = frequent ranks, TOP_K = missing, +1 = rest
        self._top = [min(z.k, TOP_K) for z in self._zipf]
        self._main = {
            c: np.r_[rng.normal(size=t + 1), 0.0]
            for c, t in zip(CAT_COLS, self._top)
            if c in MAIN_EFFECTS
        }
        self._latent = {}
        for a, b, _ in INTERACTIONS:
            for f in (a, b):
                if f in CAT_COLS:
                    t = self._top[CAT_COLS.index(f)]
                    lat = rng.normal(size=(t + 2, RANK))
                    lat[min(t, INTER_TOP_K) :] = 0  # rarer values take no part
                else:
                    lat = rng.normal(size=RANK)  # numeric: z * w
                self._latent[(a, b, f)] = lat
        self._calibrate(rng, target_auc, positive_rate)

    # -- features (field-major arrays: one row per field, one column per row)
    @staticmethod
    def _knots(col: str) -> np.ndarray:
        """log(1 + x - min) at the quantiles 0, .5, .9, .99, 1 of a count column."""
        _, lo, *qs = NUM_STATS[col]
        return np.log1p(np.array([lo, *qs], dtype=np.float64) - lo)

    def _features(self, rng: np.random.Generator, n: int):
        """-> ranks [26, n] int64 (-1 missing), counts [13, n] float64 (NaN missing)."""
        miss = rng.random((len(self._rates), n)) < self._rates[:, None]
        miss = miss[self._miss_group]  # one draw per group of equal missing rates
        u = rng.random((len(NUM_COLS) + len(CAT_COLS), n))
        probs = np.array([0.0, 0.5, 0.9, 0.99, 1.0])
        x = np.empty((len(NUM_COLS), n))
        for j, col in enumerate(NUM_COLS):  # quantile function, linear in log space
            t = np.interp(u[j], probs, self._num_knots[j])
            x[j] = NUM_STATS[col][1] + np.floor(np.expm1(t) + 0.5)
        x[miss[: len(NUM_COLS)]] = np.nan
        ranks = np.empty((len(CAT_COLS), n), np.int64)
        for k, z in enumerate(self._zipf):
            ranks[k] = z.ranks(u[len(NUM_COLS) + k])
        ranks[miss[len(NUM_COLS) :]] = -1
        return ranks, x

    # -- the click model
    def _terms(self, ranks: np.ndarray, x: np.ndarray) -> dict:
        """Each term of the logit before scaling: name -> [n]."""
        z = np.nan_to_num((signed_log1p(x) - self._mu[:, None]) / self._sd[:, None])
        slots = {}  # effect-table row: frequent rank, TOP_K = missing, TOP_K+1 = rare
        for k, c in enumerate(CAT_COLS):
            r, top = ranks[k], self._top[k]
            slots[c] = np.where(r < 0, top, np.where(r < top, r, top + 1))
        terms = {}
        for f in MAIN_EFFECTS:
            if f in NUM_COLS:
                zf = z[NUM_COLS.index(f)]
                terms[f] = np.exp(-(zf**2) / 2) if f in BUMP_FIELDS else zf
            else:
                terms[f] = self._main[f][slots[f]]
        for a, b, _ in INTERACTIONS:
            vecs = []
            for f in (a, b):
                lat = self._latent[(a, b, f)]
                if f in CAT_COLS:
                    vecs.append(lat[slots[f]])
                else:
                    vecs.append(z[NUM_COLS.index(f), :, None] * lat)
            terms[f"{a}x{b}"] = np.einsum("nr,nr->n", *vecs)
        return terms

    def _logit(self, ranks: np.ndarray, x: np.ndarray) -> np.ndarray:
        logit = np.full(ranks.shape[1], self.bias)
        for k, v in self._terms(ranks, x).items():
            logit += self._scale[k] * v
        return logit

    def _calibrate(self, rng, target_auc: float, positive_rate: float) -> None:
        """Scale each term to its strength, then all to target_auc; bias to the rate."""
        ranks, x = self._features(rng, 100_000)
        v = signed_log1p(x)
        self._mu, self._sd = np.nanmean(v, 1), np.nanstd(v, 1)
        terms = self._terms(ranks, x)
        strengths = dict(MAIN_EFFECTS) | {f"{a}x{b}": s for a, b, s in INTERACTIONS}
        unit = {k: strengths[k] / max(np.std(t), 1e-12) for k, t in terms.items()}
        s = np.sort(sum(unit[k] * t for k, t in terms.items()))
        s -= s.mean()
        b = np.log(positive_rate / (1 - positive_rate))

        def probs(alpha, b):  # Newton on b: mean(sigmoid(alpha * s + b)) = rate
            for _ in range(50):
                p = 1 / (1 + np.exp(-(alpha * s + b)))
                step = (p.mean() - positive_rate) / max((p * (1 - p)).mean(), 1e-12)
                b -= step
                if abs(step) < 1e-9:
                    break
            return b, p

        lo, hi = 0.0, 10.0  # the oracle's AUC rises with alpha
        for _ in range(30):
            alpha = (lo + hi) / 2
            b, p = probs(alpha, b)
            lo, hi = (alpha, hi) if _expected_auc(p) < target_auc else (lo, alpha)
        alpha = (lo + hi) / 2
        b, p = probs(alpha, b)
        self._alpha = float(alpha)  # term k has std alpha * strength_k in logits
        self._scale = {k: alpha * u for k, u in unit.items()}
        shift = sum(self._scale[k] * t.mean() for k, t in terms.items())
        self.bias = float(b - shift)  # so bias + sum(terms) = alpha * s + b
        self.expected_auc = _expected_auc(p)
        self.expected_logloss = float(-np.mean(p * np.log(p) + (1 - p) * np.log1p(-p)))

    # -- public
    @property
    def main_effects(self) -> dict[str, float]:
        """Field -> std of its main effect in logits (0 for no main effect)."""
        return {f: self._alpha * MAIN_EFFECTS.get(f, 0.0) for f in NUM_COLS + CAT_COLS}

    @property
    def interactions(self) -> list[tuple[str, str, float]]:
        """(field a, field b, std of their interaction term in logits)."""
        return [(a, b, self._alpha * s) for a, b, s in INTERACTIONS]

    def field_strengths(self) -> dict[str, float]:
        """Field -> how strongly the click model uses it: the std of its main
        effect plus the stds of the interactions it takes part in (logits)."""
        strengths = dict(self.main_effects)
        for a, b, s in self.interactions:
            strengths[a] += s
            strengths[b] += s
        return strengths

    @property
    def informative_fields(self) -> list[str]:
        """Fields with a main effect or an interaction; the rest are pure noise."""
        used = set(MAIN_EFFECTS) | {f for a, b, _ in INTERACTIONS for f in (a, b)}
        return [f for f in NUM_COLS + CAT_COLS if f in used]

    @property
    def noise_fields(self) -> list[str]:
        return [f for f in NUM_COLS + CAT_COLS if f not in self.informative_fields]

    def _block(self, i: int):
        """Rows of block i: ranks, counts, true probabilities, labels."""
        rng = np.random.default_rng([self.seed, 1, i])
        ranks, x = self._features(rng, BLOCK_ROWS)
        p = 1 / (1 + np.exp(-self._logit(ranks, x)))
        y = (rng.random(BLOCK_ROWS) < p).astype(np.int8)
        return ranks, x, p, y

    @staticmethod
    def schema() -> pa.Schema:
        """Column types of the tables this class makes (those read_criteo parses)."""
        return pa.schema(
            [(LABEL, pa.int8())]
            + [(c, pa.int64()) for c in NUM_COLS]
            + [(c, pa.string()) for c in CAT_COLS]
        )

    def _table(self, ranks, x, y) -> pa.Table:
        """ranks [26, n], counts [13, n], labels [n] -> arrow table (schema())."""
        cols = {LABEL: pa.array(y)}
        for j, c in enumerate(NUM_COLS):
            missing = np.isnan(x[j])
            counts = np.where(missing, 0, x[j]).astype(np.int64)
            cols[c] = pa.array(counts, mask=missing)
        for k, c in enumerate(CAT_COLS):
            r, head = ranks[k], self._head_words[k]
            words = head[np.clip(r, 0, len(head) - 1)]
            rare = np.flatnonzero(r >= len(head))
            if len(rare):
                words[rare] = self._words(k, r[rare])
            cols[c] = _strings(words, r >= 0)
        return pa.table(cols, schema=self.schema())

    def _words(self, k: int, ranks: np.ndarray) -> np.ndarray:
        """Field k's value for ranks [N]: a bijective hash, as 8-hex-char words."""
        return _hex_words(_mix32((ranks.astype(np.uint64) + self._keys[k]) % 2**32))

    def iter_tables(self, n_rows: int, start: int = 0):
        """Yield rows start..start+n_rows-1 as arrow tables (Criteo column types)."""
        end = start + n_rows
        for i in range(start // BLOCK_ROWS, -(-end // BLOCK_ROWS)):
            lo = max(start - i * BLOCK_ROWS, 0)
            hi = min(end - i * BLOCK_ROWS, BLOCK_ROWS)
            ranks, x, _, y = self._block(i)
            yield self._table(ranks[:, lo:hi], x[:, lo:hi], y[lo:hi])

    def sample(self, n_rows: int, start: int = 0) -> pd.DataFrame:
        """Rows start..start+n_rows-1 as the DataFrame ``read_criteo`` returns."""
        tables = list(self.iter_tables(n_rows, start))
        empty = self.schema().empty_table()
        return to_frame(pa.concat_tables(tables) if tables else empty)

    def write(self, path, n_rows: int, start: int = 0) -> Path:
        """Write rows as a Criteo TSV (gzip level 1 if the name ends in .gz).

        Byte-for-byte reproducible (the gzip header carries no time or name);
        written to a temporary name first, so a crash leaves no partial file.
        """
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as raw, ThreadPoolExecutor(1) as pool:
            gz = path.suffix == ".gz"
            out = gzip.GzipFile("", "wb", 1, raw, mtime=0) if gz else raw
            jobs = []  # one worker writes blocks in order while we make the next
            for table in self.iter_tables(n_rows, start):
                jobs.append(pool.submit(_write_tsv, out, table))
                if len(jobs) > 2:
                    jobs.pop(0).result()
            for job in jobs:
                job.result()
            out.close()
        os.replace(tmp, path)
        return path

    def true_probability(self, df: pd.DataFrame) -> np.ndarray:
        """True click probability of each row, from its raw values. -> [N] float64.

        Works on any rows read back from a file: categories are decoded from their
        hex values; values this model never emits count as rare (no effect).
        """
        ranks = np.empty((len(CAT_COLS), len(df)), np.int64)
        for k, c in enumerate(CAT_COLS):
            codes = category_codes(df[c])
            hexed = codes < (1 << 32)
            rank = (
                _unmix32(codes & 0xFFFFFFFF).astype(np.int64) - int(self._keys[k])
            ) % 2**32
            rank = np.where(hexed & (rank < self._zipf[k].k), rank, self._zipf[k].k)
            ranks[k] = np.where(codes == MISSING_CODE, -1, rank)
        x = df[NUM_COLS].to_numpy(np.float64, na_value=np.nan).T
        return 1 / (1 + np.exp(-self._logit(ranks, x)))

    def oracle_metrics(self, df: pd.DataFrame) -> dict[str, float]:
        """AUC and log loss of the true probabilities on labelled rows (the ceiling)."""
        p, y = self.true_probability(df), df[LABEL].to_numpy()
        return {
            "auc": roc_auc(y, p),
            "logloss": log_loss(y, p),
            "positive_rate": float(y.mean()),
        }

    def summary(self) -> dict:
        """The click model in numbers (JSON-friendly)."""
        return {
            "seed": self.seed,
            "bias": self.bias,
            "expected_auc": self.expected_auc,
            "expected_logloss": self.expected_logloss,
            "main_effects": self.main_effects,
            "interactions": self.interactions,
            "noise_fields": self.noise_fields,
        }

"""Criteo-format data with a known click model: a teaching device, not real data.

``SyntheticCriteo`` writes files in the exact Criteo Kaggle format (read back by
``data.read_criteo`` like the real thing) whose marginals are shaped like real
Criteo's (missing rates, count quantiles, Zipf-like categories;
``marginals.NUM_STATS`` and ``marginals.CAT_STATS``) and whose labels come from
a click model we know:

    logit(p) = bias + sum of per-field main effects + sum of pairwise interactions

- main effects: a categorical field's 6 most frequent values and its "missing"
  each carry an effect; rarer values carry none (a min-count threshold sends most
  of them out of vocabulary anyway). A numeric field's effect is a smooth
  function of ``z``, its standardised ``log(1 + x)``; missing counts sit at z = 0.
- interactions: FM-like, low rank: <u_a(x_a), u_b(x_b)> with 2-dim latent vectors
  on the 4 most frequent values (``z * w`` for a numeric field), six field pairs.
- ten fields are pure noise: no main effect and no interaction.

Every row's true click probability is known (``true_probability``), and labels
are Bernoulli draws from it, so the oracle's AUC / log loss is the best any model
can score. The click model is scaled to an oracle AUC of 0.80 and 25% positives
(``TARGET_AUC``, ``POSITIVE_RATE``); the default data is seed 0, ``DEFAULT_ROWS``
rows, an 80/10/10 split. Effects live on the most frequent values so the truth
can be learned from 250k rows in minutes: FiBiNET gets close to the oracle, while
logistic regression, blind to the interactions, stays well below it (`make run`
prints the current figures).

This data is a teaching device. Results on it teach; results on real Criteo are
the published benchmarks', quoted as theirs.

Modules: `marginals` (column shapes and value encoding), `click_model`
(`SyntheticCriteo`), `default_data` (the built-in file, `ensure_default_data`).

Not here: reading the files it writes (`data.reading`), the published facts of real
Criteo (`criteo`), models compared with the oracle
(`train.evaluation.comparison_table`).
"""

from .click_model import (
    BLOCK_ROWS,
    DEFAULT_SEED,
    INTERACTIONS,
    MAIN_EFFECTS,
    POSITIVE_RATE,
    TARGET_AUC,
    SyntheticCriteo,
)
from .default_data import DEFAULT_FILE, DEFAULT_ROWS, VERSION, ensure_default_data
from .marginals import CAT_STATS, NUM_STATS

__all__ = [
    "BLOCK_ROWS",
    "CAT_STATS",
    "DEFAULT_FILE",
    "DEFAULT_ROWS",
    "DEFAULT_SEED",
    "INTERACTIONS",
    "MAIN_EFFECTS",
    "NUM_STATS",
    "POSITIVE_RATE",
    "TARGET_AUC",
    "VERSION",
    "SyntheticCriteo",
    "ensure_default_data",
]

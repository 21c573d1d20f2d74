"""Published facts about the Criteo Kaggle dataset (statistics only, no rows).

Criteo's terms forbid redistributing the data; these aggregates come from the
DLRM/OneFlow configurations and the FiBiNET authors' configuration.

Not here: reading Criteo files (`data.reading`), the format's columns
(`data.schema`), the per-column statistics the built-in data imitates
(`synthetic.marginals`).
"""

CRITEO_ROWS = 45_840_617  # labelled rows over 7 days, in time order
CRITEO_POSITIVE_RATE = 0.256

# Distinct values per categorical field C1..C26 after mapping values seen
# fewer than 10 times to one out-of-vocabulary index (included).
CRITEO_CARDINALITIES = (
    1443,
    554,
    175781,
    128509,
    305,
    19,
    11930,
    629,
    4,
    41224,
    5160,
    174835,
    3175,
    27,
    11254,
    165206,
    11,
    4605,
    2017,
    5,
    172322,
    18,
    16,
    56456,
    86,
    43356,
)

"""Tests of the built-in Criteo-format data and its known click model."""

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from fibinet_tutorial import data as D
from fibinet_tutorial import synthetic as S
from fibinet_tutorial.synthetic import marginals


@pytest.fixture(scope="module")
def world():
    return S.SyntheticCriteo(seed=0)


@pytest.fixture(scope="module")
def rows(world):
    return world.sample(40_000)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, world):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    world.write(a, 2000)
    S.SyntheticCriteo(seed=0).write(b, 2000)
    S.SyntheticCriteo(seed=1).write(c, 2000)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    world.write(tmp_path / "a.txt.gz", 2000)  # gzip too: no time stamp inside
    S.SyntheticCriteo(seed=0).write(tmp_path / "b.txt.gz", 2000)
    gz = (tmp_path / "a.txt.gz").read_bytes()
    assert gz == (tmp_path / "b.txt.gz").read_bytes()
    assert gzip.decompress(gz) == a.read_bytes()


def test_rows_are_a_fixed_stream(world):
    whole = world.sample(S.BLOCK_ROWS + 100)
    part = world.sample(300, start=S.BLOCK_ROWS - 200)  # across a block boundary
    expect = whole.iloc[S.BLOCK_ROWS - 200 : S.BLOCK_ROWS + 100].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expect)
    assert len(world.sample(0)) == 0


def test_file_looks_like_criteo(tmp_path, world):
    path = world.write(tmp_path / "s.txt", 500)
    lines = path.read_text().splitlines()
    assert len(lines) == 500
    hex8 = re.compile(r"[0-9a-f]{8}")
    for line in lines[:50]:
        fields = line.split("\t")
        assert len(fields) == 40 and fields[0] in ("0", "1")
        assert all(f == "" or re.fullmatch(r"-?\d+", f) for f in fields[1:14])
        assert all(f == "" or hex8.fullmatch(f) for f in fields[14:])


def test_marginals_follow_real_criteo(rows):
    for col, (missing, lo, p50, p90, _p99, hi) in S.NUM_STATS.items():
        x = rows[col]
        assert abs(x.isna().mean() - missing) < 0.01, col
        assert lo <= x.min() and x.max() <= hi, col
        assert abs(np.log1p(x.median() - lo) - np.log1p(p50 - lo)) < 0.3, col
        assert abs(np.log1p(x.quantile(0.9) - lo) - np.log1p(p90 - lo)) < 0.3, col
    for col, (missing, _card, top1) in S.CAT_STATS.items():
        c = rows[col]
        assert abs(c.isna().mean() - missing) < 0.01, col
        share = c.value_counts(normalize=True).iloc[0]
        assert abs(share - top1) < 0.02 + 0.05 * top1, col
    # columns with equal missing rates go missing together, as in real Criteo
    assert (rows["C19"].isna() == rows["C26"].isna()).all()
    assert rows["I2"].min() < 0  # I2 can be negative
    distinct = rows[D.CAT_COLS].nunique()
    assert distinct["C9"] == 3 and distinct["C3"] > 10_000  # a spread of sizes


def test_true_probability_from_raw_values(tmp_path, world, rows):
    p = world.true_probability(rows)
    assert p.shape == (len(rows),) and ((0 < p) & (p < 1)).all()
    _, _, p_drawn, y = world._block(0)  # the probabilities the labels came from
    n = min(len(p), len(p_drawn))
    np.testing.assert_array_equal(p[:n], p_drawn[:n])
    np.testing.assert_array_equal(rows[D.LABEL][:n], y[:n])
    path = world.write(tmp_path / "s.txt", 3000)
    np.testing.assert_array_equal(world.true_probability(D.read_criteo(path)), p[:3000])
    odd = rows[:3].copy()
    odd["C1"] = ["not-a-value", None, "ffffffff"]  # never emitted: no effect, no crash
    assert np.isfinite(world.true_probability(odd)).all()


def test_oracle_figures(world, rows):
    m = world.oracle_metrics(rows)
    assert abs(m["positive_rate"] - S.POSITIVE_RATE) < 0.01
    assert 0.78 < m["auc"] < 0.82 and abs(world.expected_auc - S.TARGET_AUC) < 1e-3
    assert 0.40 < m["logloss"] < 0.50
    p, y = world.true_probability(rows), rows[D.LABEL].to_numpy()
    assert abs(p.mean() - y.mean()) < 0.01  # labels ~ Bernoulli(p)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["logloss"] == pytest.approx(sk_log_loss(y, p))


def test_effects_noise_fields_and_interactions(world):
    effects = world.main_effects
    assert set(effects) == set(D.NUM_COLS + D.CAT_COLS)
    noise = world.noise_fields
    assert len(noise) >= 6 and all(effects[f] == 0 for f in noise)
    assert set(noise).isdisjoint(world.informative_fields)
    assert {(a, b) for a, b, _ in world.interactions} == {
        (a, b) for a, b, _ in S.INTERACTIONS
    }
    assert all(s > 0 for _, _, s in world.interactions)
    json.dumps(world.summary())  # plain numbers, for docs and notebooks
    strengths = world.field_strengths()  # main effect + the interactions it is in
    a, b, s = world.interactions[0]
    in_pairs = sum(t for x, y, t in world.interactions if a in (x, y))
    assert strengths[a] == pytest.approx(effects[a] + in_pairs)
    assert all(strengths[f] == 0 for f in noise)


def test_a_noise_field_carries_no_signal(world, rows):
    p = world.true_probability(rows)
    shuffled = rows.copy()
    for f in world.noise_fields:
        shuffled[f] = rows[f].sample(frac=1, random_state=0).to_numpy()
    np.testing.assert_allclose(world.true_probability(shuffled), p)
    informative = rows.copy()
    informative["C6"] = rows["C6"].sample(frac=1, random_state=0).to_numpy()
    assert not np.allclose(world.true_probability(informative), p)


def test_zipf_sampler_matches_its_law():
    z = marginals.Zipf(10, top1=0.43)
    ranks = z.ranks(np.random.default_rng(0).random(200_000))
    w = np.arange(1, 11) ** -z.a
    np.testing.assert_allclose(
        np.bincount(ranks, minlength=10) / 2e5, w / w.sum(), atol=0.004
    )
    assert abs(w[0] / w.sum() - 0.43) < 1e-6
    big = marginals.Zipf(10_000_000, top1=0.05)  # exact head, power-law tail
    ranks = big.ranks(np.random.default_rng(1).random(200_000))
    assert abs((ranks == 0).mean() - 0.05) < 0.003
    assert ranks.max() < 10_000_000 and (ranks >= marginals.Zipf.HEAD).mean() > 0.5


def test_hash_is_a_bijection():
    x = np.arange(0, 2**32, 65_537, dtype=np.uint64)
    assert (marginals._unmix32(marginals._mix32(x)) == x).all()
    assert len(np.unique(marginals._mix32(x))) == len(x)


def test_ensure_default_data_writes_once(tmp_path):
    path = S.ensure_default_data(tmp_path, n_rows=1000)
    assert path == tmp_path / S.DEFAULT_FILE
    stamp = path.stat().st_mtime_ns
    assert S.ensure_default_data(tmp_path, n_rows=1000).stat().st_mtime_ns == stamp
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["rows"] == 1000 and manifest["version"] == S.VERSION
    with open(path, "ab") as f:  # a damaged file is rewritten
        f.write(b"junk")
    S.ensure_default_data(tmp_path, n_rows=1000)
    assert len(D.read_criteo(path)) == 1000
    S.ensure_default_data(tmp_path, n_rows=1200)  # another size: regenerated
    assert len(D.read_criteo(path)) == 1200

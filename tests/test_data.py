"""Tests of the Criteo reader, the preprocessor, streaming arrays and datasets."""

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from fibinet_tutorial import data as D
from fibinet_tutorial.data import preprocessing, streaming
from fibinet_tutorial.synthetic import SyntheticCriteo

torch.set_num_threads(2)


def row(label="1", ints=None, cats=None, n_ints=13, n_cats=26):
    """One Criteo line's fields; ints/cats default to simple valid values."""
    ints = [str(i) for i in range(n_ints)] if ints is None else ints
    cats = [f"{i:08x}" for i in range(n_cats)] if cats is None else cats
    return ([] if label is None else [label]) + list(ints) + list(cats)


def write_lines(path, rows, eol="\n"):
    path.write_bytes(eol.join("\t".join(r) for r in rows).encode() + eol.encode())
    return path


def write_frame(path, df):
    """A frame of Criteo columns -> a Criteo-format file (NaN -> empty field)."""
    path.write_text(
        "\n".join(
            "\t".join(
                "" if pd.isna(v) else str(int(v)) if isinstance(v, float) else str(v)
                for v in r
            )
            for r in df.itertuples(index=False)
        )
        + "\n"
    )
    return path


@pytest.fixture(scope="module")
def world():
    return SyntheticCriteo(seed=0)


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory, world):
    path = tmp_path_factory.mktemp("data") / "sample.txt"
    world.write(path, 3000)
    return path


# ------------------------------------------------------------------ reading


def test_round_trip_write_read_equal(world, sample_file):
    df = D.read_criteo(sample_file)
    pd.testing.assert_frame_equal(df, world.sample(3000))
    assert list(df.columns) == D.COLUMNS
    assert df[D.LABEL].dtype == np.int8
    assert all(df[c].dtype == np.float64 for c in D.NUM_COLS)


def test_values_parse_as_written(tmp_path):
    cats = ["deadbeef", ""] + ["0000000a"] * 24
    path = write_lines(tmp_path / "t.txt", [row("0", ["-2", ""] + ["7"] * 11, cats)])
    df = D.read_criteo(path)
    assert df.loc[0, "label"] == 0
    assert df.loc[0, "I1"] == -2 and np.isnan(df.loc[0, "I2"]) and df.loc[0, "I3"] == 7
    assert df.loc[0, "C1"] == "deadbeef" and pd.isna(df.loc[0, "C2"])


def test_gzip_crlf_and_plain_read_the_same(tmp_path, sample_file):
    plain = D.read_criteo(sample_file)
    text = sample_file.read_bytes()
    gz = tmp_path / "s.txt.gz"
    gz.write_bytes(gzip.compress(text))
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(text.replace(b"\n", b"\r\n"))
    renamed_gz = tmp_path / "no_suffix"  # gzip is detected from the bytes
    renamed_gz.write_bytes(gzip.compress(text))
    for other in (gz, crlf, renamed_gz):
        pd.testing.assert_frame_equal(D.read_criteo(other), plain)


def test_stripped_trailing_tabs_are_missing_fields(tmp_path):
    full = row("1")
    short = row("0", cats=["0000abcd"] * 3 + [""] * 23)
    stripped = short[: 1 + 13 + 3]  # a writer dropped the 23 empty tail fields
    path = write_lines(tmp_path / "t.txt", [full, stripped, full[:5]])
    df = D.read_criteo(path)
    assert len(df) == 3
    assert df.loc[1, "C3"] == "0000abcd" and df.loc[1, ["C4", "C26"]].isna().all()
    assert df.loc[2, "I4"] == 3 and df.loc[2, ["I5", "C1"]].isna().all()


def test_unlabelled_test_variant(tmp_path):
    path = write_lines(tmp_path / "test.txt", [row(None), row(None, ints=[""] * 13)])
    df = D.read_criteo(path)
    assert list(df.columns) == D.FEATURES
    assert df["I1"].isna().tolist() == [False, True]


def test_iter_criteo_chunks_equal_whole(sample_file):
    whole = D.read_criteo(sample_file)
    chunks = list(D.iter_criteo(sample_file, chunksize=700))
    assert [len(c) for c in chunks] == [700, 700, 700, 700, 200]
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), whole)


def test_small_blocks_and_nrows(sample_file):
    whole = D.read_criteo(sample_file)
    tables = list(D.iter_tables(sample_file, block_bytes=10_000))
    assert len(tables) > 10
    pd.testing.assert_frame_equal(D.to_frame(pa.concat_tables(tables)), whole)
    pd.testing.assert_frame_equal(D.read_criteo(sample_file, nrows=123), whole[:123])
    chunks = list(D.iter_criteo(sample_file, chunksize=50, nrows=120))
    assert [len(c) for c in chunks] == [50, 50, 20]
    assert len(D.read_criteo(sample_file, nrows=0)) == 0


# ---------------------------------------------------------------- bad input


def bad_file(tmp_path, bad_row, at=1234, n=2000, eol="\n"):
    rows = [row("1")] * n
    rows[at - 1] = bad_row
    return write_lines(tmp_path / "bad.txt", rows, eol)


@pytest.mark.parametrize(
    "bad_row, column, words",
    [
        (row("1") + ["extra"], None, "got 41"),
        (row("1", ints=["3"] * 4 + ["abc"] + ["3"] * 8), "I5", "'abc'"),
        (row("1", ints=["1.5"] + ["3"] * 12), "I1", "'1.5'"),
        (row("1", ints=["0x1f"] + ["3"] * 12), "I1", "'0x1f'"),  # pyarrow takes it
        (row("2"), "label", "0 or 1"),
        (row(""), "label", "0 or 1"),
        ([], None, "empty line"),
    ],
)
def test_bad_line_is_named_by_file_line_and_column(tmp_path, bad_row, column, words):
    path = bad_file(tmp_path, bad_row)
    with pytest.raises(D.CriteoFormatError) as info:
        D.read_criteo(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert (err.line, err.column, err.path) == (1234, column, str(path))
    msg = str(err)
    assert msg.startswith(f"{path}, line 1234") and words in msg
    if column:
        assert f"column {column}:" in msg


def test_bad_line_number_exact_across_blocks_and_crlf(tmp_path):
    path = bad_file(tmp_path, row("1", ints=["x"] * 13), at=1777, eol="\r\n")
    with pytest.raises(D.CriteoFormatError, match="line 1777, column I1"):
        list(D.iter_tables(path, block_bytes=4096))


def test_bad_line_after_a_stripped_line_in_the_same_block(tmp_path):
    rows = [row("1"), row("0")[:3], row("1", ints=["9"] * 12 + ["oops"])]
    path = write_lines(tmp_path / "t.txt", rows)
    with pytest.raises(D.CriteoFormatError, match="line 3, column I13: .*'oops'"):
        D.read_criteo(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(D.CriteoFormatError, match="empty.txt: file is empty"):
        D.read_criteo(empty)
    empty_gz = tmp_path / "empty.txt.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    with pytest.raises(D.CriteoFormatError, match="file is empty"):
        D.read_criteo(empty_gz)
    with pytest.raises(D.CriteoFormatError, match="nope.txt: file not found"):
        D.read_criteo(tmp_path / "nope.txt")


def test_too_wide_line_is_blamed_not_the_first(tmp_path):
    path = write_lines(tmp_path / "t.txt", [row("1"), row("0") + ["7"], row("1")])
    with pytest.raises(D.CriteoFormatError, match=r"line 2: expected 40 .* got 41"):
        D.read_criteo(path)
    short_first = write_lines(tmp_path / "s.txt", [row("1")[:20], row("0")])
    assert D.read_criteo(short_first)["C26"].isna().tolist() == [True, False]


def test_wrong_width_first_line(tmp_path):
    path = write_lines(tmp_path / "t.txt", [["1", "2", "3"]])
    with pytest.raises(D.CriteoFormatError, match="line 1: expected 40"):
        D.read_criteo(path)


# -------------------------------------------------------------- preprocessing


def frame(cats_c1, ints_i1=None):
    """A small frame: C1 from cats_c1, other fields constant."""
    n = len(cats_c1)
    df = pd.DataFrame({D.LABEL: np.zeros(n, np.int8)})
    for c in D.NUM_COLS:
        df[c] = np.arange(n, dtype=np.float64) if ints_i1 is None else ints_i1
    for c in D.CAT_COLS:
        df[c] = ["0000000a"] * n
    df["C1"] = cats_c1
    return df


def test_min_count_oov_and_missing_indices():
    train = frame(["aaaaaaaa"] * 3 + ["bbbbbbbb"] * 2 + ["cccccccc"] * 4 + [None])
    pre = D.CriteoPreprocessor(min_count=3).fit(train)
    assert pre.vocab["C1"] == ["cccccccc", "aaaaaaaa"]  # by count; b is too rare
    _, x_cat = pre.transform(
        frame(["cccccccc", "aaaaaaaa", "bbbbbbbb", None, "", "never-seen", "12345678"])
    )
    assert x_cat[:, 0].tolist() == [
        2,
        3,
        D.OOV_INDEX,
        D.MISSING_INDEX,
        D.MISSING_INDEX,
        D.OOV_INDEX,
        D.OOV_INDEX,
    ]
    assert pre.categories[0] == 4


def test_non_hex_strings_are_categories_too():
    train = frame(["x1", "x1", "DEADBEEF", "DEADBEEF", "deadbeef", "deadbeef"])
    pre = D.CriteoPreprocessor(min_count=2).fit(train)
    assert sorted(pre.vocab["C1"]) == ["DEADBEEF", "deadbeef", "x1"]
    _, x_cat = pre.transform(frame(["x1", "DEADBEEF", "deadbeef", "x2"]))
    assert len(set(x_cat[:3, 0])) == 3 and x_cat[3, 0] == D.OOV_INDEX


def test_hand_edited_vocabulary_with_missing_and_repeated_values(tmp_path):
    pre = D.CriteoPreprocessor(min_count=1).fit(frame(["aaaaaaaa", "bbbbbbbb"]))
    d = pre.to_dict()
    d["vocab"]["C1"] = ["", "bbbbbbbb", "aaaaaaaa", "bbbbbbbb"]
    (tmp_path / "pre.json").write_text(json.dumps(d))
    edited = D.CriteoPreprocessor.load(tmp_path / "pre.json")
    _, x_cat = edited.transform(frame(["aaaaaaaa", "bbbbbbbb", None, "cccccccc"]))
    assert x_cat[:, 0].tolist() == [4, 3, D.MISSING_INDEX, D.OOV_INDEX]


def test_num_matrix_of_any_arrow_table_equals_the_frame_path(sample_file):
    df = D.read_criteo(sample_file)
    for table in (
        next(D.iter_tables(sample_file)),
        pa.Table.from_pandas(df),
        next(D.iter_tables(sample_file)).slice(7, 300),
    ):
        rows = slice(7, 307) if table.num_rows == 300 else slice(None)
        np.testing.assert_array_equal(
            preprocessing._num_matrix(table), preprocessing._num_matrix(df.iloc[rows])
        )


def test_category_codes_match_a_plain_python_reference():
    rng = np.random.default_rng(0)
    values = [f"{v:08x}" for v in rng.integers(0, 2**32, 500)]
    values += ["", None, "ABCDEF12", "1234567", "123456789", "0000000g", "xyz"] * 3
    codes = D.category_codes(pd.Series(values))
    by_value = {}
    for v, c in zip(values, codes.tolist()):
        if not v:
            assert c == D.MISSING_CODE
        elif len(v) == 8 and all(ch in "0123456789abcdef" for ch in v):
            assert c == int(v, 16)
        else:
            assert c >= 2**63  # hashed, away from hex values and MISSING_CODE
        by_value.setdefault(v or None, set()).add(c)
    assert all(len(cs) == 1 for cs in by_value.values())  # same value, same code
    hashed = {c for cs in by_value.values() for c in cs if c >= 2**63}
    assert len(hashed) == 5


def test_numeric_transform_scale_and_missing(sample_file):
    df = D.read_criteo(sample_file)
    for numeric in ("log1p", "criteo2014"):
        pre = D.CriteoPreprocessor(numeric=numeric).fit(df)
        x_num, _ = pre.transform(df)
        assert x_num.dtype == np.float32 and x_num.shape == (len(df), 13)
        assert np.abs(x_num).max() < 15  # counts up to 1.6M land at O(1)
        np.testing.assert_allclose(x_num.mean(0), 0, atol=0.15)  # missing -> mean
        assert (x_num[df[D.NUM_COLS].isna().to_numpy()] == 0).all()
    assert D.criteo2014(np.array([-1.0, 2, 3, 100]))[-1] == 21  # floor(log(100)²)


def test_fit_on_train_only_transform_any_split(sample_file):
    df = D.read_criteo(sample_file)
    tr, va, te = D.train_val_test_split(len(df), 0.2, 0.2, seed=1)
    pre = D.CriteoPreprocessor(min_count=2).fit(df.iloc[tr])
    assert pre.n_fit_rows == len(tr)
    x_num, x_cat = pre.transform(df.iloc[te])
    assert x_cat.dtype == np.int64 and x_cat.shape == (len(te), 26)
    assert (x_cat < np.array(pre.categories)).all() and (x_cat >= 0).all()
    assert (x_cat == D.OOV_INDEX).any()  # unseen test values: OOV, no crash


def test_save_load_gives_identical_transforms(tmp_path, sample_file):
    df = D.read_criteo(sample_file)
    pre = D.CriteoPreprocessor(min_count=3, numeric="criteo2014").fit(df[:2000])
    pre.save(tmp_path / "pre.json")
    loaded = D.CriteoPreprocessor.load(tmp_path / "pre.json")
    assert loaded.categories == pre.categories and loaded.numeric == "criteo2014"
    for a, b in zip(pre.transform(df), loaded.transform(df)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="not fitted"):
        D.CriteoPreprocessor().transform(df)


def test_train_val_test_split():
    tr, va, te = D.train_val_test_split(10_000, 0.1, 0.2, seed=3)
    assert len(np.intersect1d(tr, te)) == 0 and len(np.intersect1d(va, te)) == 0
    assert np.array_equal(np.sort(np.r_[tr, va, te]), np.arange(10_000))
    assert abs(len(va) - 1000) < 120 and abs(len(te) - 2000) < 160
    again = D.train_val_test_split(10_000, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    assert not np.array_equal(te, D.train_val_test_split(10_000, 0.1, 0.2, seed=4)[2])


# -------------------------------------------------------------- streaming


def test_streaming_arrays_equal_in_memory_preprocessing(tmp_path, sample_file):
    arrays = D.preprocess_to_arrays(
        sample_file,
        tmp_path / "arr",
        min_count=3,
        val_frac=0.1,
        test_frac=0.2,
        split_seed=5,
        block_bytes=20_000,
    )  # ~80 rows a block
    df = D.read_criteo(sample_file)
    tr, va, te = D.train_val_test_split(len(df), 0.1, 0.2, seed=5)
    pre = D.CriteoPreprocessor(min_count=3).fit(df.iloc[tr])
    x_num, x_cat = pre.transform(df)
    assert arrays.preprocessor.vocab == pre.vocab
    assert isinstance(arrays.x_cat, np.memmap) and arrays.x_cat.dtype == np.int32
    np.testing.assert_array_equal(arrays.x_cat, x_cat)
    np.testing.assert_allclose(arrays.x_num, x_num, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(arrays.y, df[D.LABEL])
    np.testing.assert_array_equal(np.flatnonzero(arrays.split == 2), te)
    assert len(arrays.dataset("val")) == len(va)


def test_streaming_blocks_with_values_that_need_64_bit_codes(tmp_path, world):
    # Pass 1 keeps 32-bit hex codes; a block holding a non-hex value, or the hex
    # value ffffffff (its missing marker), keeps 64-bit codes instead. Mix both
    # kinds of block, and each odd value in train and in val/test rows.
    df = world.sample(600)
    df.loc[100:139, "C1"] = "ffffffff"  # blocks with ffffffff, all else hex
    df.loc[400:439, "C2"] = "not-hex"  # blocks with a non-hex string
    df.loc[[450, 560], "C3"] = ["FFFFFFFF", "ffffffff"]  # too rare: out of vocab
    path = tmp_path / "odd.txt"
    write_frame(path, df)
    arrays = D.preprocess_to_arrays(
        path, tmp_path / "arr", min_count=2, split_seed=1, block_bytes=12_000
    )  # ~50 rows
    tr = D.train_val_test_split(len(df), seed=1)[0]
    pre = D.CriteoPreprocessor(min_count=2).fit(D.read_criteo(path).iloc[tr])
    assert "ffffffff" in pre.vocab["C1"] and "not-hex" in pre.vocab["C2"]
    assert arrays.preprocessor.vocab == pre.vocab
    np.testing.assert_array_equal(arrays.x_cat, pre.transform(D.read_criteo(path))[1])
    meta = json.loads((tmp_path / "arr" / "meta.json").read_text())
    assert 0 < meta["wide_code_rows"] < len(df)  # both kinds of block were there
    assert not list((tmp_path / "arr").glob("*partial*"))


def test_streaming_failure_keeps_the_earlier_arrays(tmp_path, sample_file):
    out = tmp_path / "arr"
    good = D.preprocess_to_arrays(sample_file, out, min_count=3)
    x_cat = np.array(good.x_cat)
    bad = tmp_path / "bad.txt"
    lines = sample_file.read_text().splitlines()
    lines[2500] = lines[2500].replace("\t", "\tx", 1)  # text in I1, deep in the file
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(D.CriteoFormatError, match="line 2501, column I1"):
        D.preprocess_to_arrays(bad, out, min_count=3, block_bytes=50_000)
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json",
        "preprocessor.json",
        "split.npy",
        "x_cat.npy",
        "x_num.npy",
        "y.npy",
    ]
    np.testing.assert_array_equal(D.load_arrays(out).x_cat, x_cat)


def test_streaming_keeps_precision_of_narrow_numeric_columns(tmp_path, world):
    # pass 1 stores numerics as float32: values far from zero with a tiny spread
    # must still standardise like the in-memory path (float64 throughout)
    df = world.sample(400)
    df["I1"] = 1e15 + 1e12 * (np.arange(400) % 7)  # log1p: 34.5 +- 0.003
    df["I2"] = -(2.0**26) - 8 * (np.arange(400) % 3)  # beyond float32's integers
    path = tmp_path / "narrow.txt"
    write_frame(path, df)
    for numeric in ("log1p", "criteo2014"):
        arrays = D.preprocess_to_arrays(
            path,
            tmp_path / numeric,
            numeric=numeric,
            min_count=1,
            val_frac=0,
            test_frac=0,
        )
        x_num = D.CriteoPreprocessor(1, numeric).fit(df).transform(df)[0]
        np.testing.assert_allclose(arrays.x_num, x_num, rtol=1e-5, atol=1e-5)


def test_streaming_refuses_an_unfitted_preprocessor_at_once(tmp_path, sample_file):
    with pytest.raises(RuntimeError, match="not fitted"):
        D.preprocess_to_arrays(
            sample_file, tmp_path / "arr", preprocessor=D.CriteoPreprocessor()
        )
    assert not (tmp_path / "arr").exists() or not list((tmp_path / "arr").iterdir())


def test_row_file_header_fits_criteo_sized_shapes(tmp_path):
    f = streaming._RowFile(tmp_path / "big.npy", np.int32, 26)
    f.append(np.arange(52, dtype=np.int32).reshape(2, 26))
    f.finish()
    np.testing.assert_array_equal(np.load(f.partial).ravel(), np.arange(52))
    f = streaming._RowFile(tmp_path / "huge.npy", np.float32, 13)
    f.rows = 45_840_617 * 100  # only the header is written: its size must not change
    f.finish()
    with open(f.partial, "rb") as fh:
        np.lib.format.read_magic(fh)
        assert np.lib.format.read_array_header_1_0(fh)[0] == (4_584_061_700, 13)
        assert fh.tell() == streaming._RowFile.HEADER_BYTES


def test_streaming_unlabelled_file_with_a_fitted_preprocessor(tmp_path, world):
    df = world.sample(500).drop(columns=D.LABEL)
    path = tmp_path / "test.txt"
    write_frame(path, df)
    pre = D.CriteoPreprocessor(min_count=1).fit(world.sample(500, start=500))
    arrays = D.preprocess_to_arrays(
        path, tmp_path / "arr", preprocessor=pre, val_frac=0, test_frac=0
    )
    assert arrays.y is None and (arrays.split == 0).all()
    np.testing.assert_array_equal(arrays.x_cat, pre.transform(df)[1])
    x_num, x_cat = arrays.dataset("all").__getitems__([0, 1, 2])
    assert x_num.shape == (3, 13) and x_cat.dtype == torch.int64


# ------------------------------------------------------------------ torch


def test_dataset_items_and_batches():
    x_num = np.random.default_rng(0).normal(size=(10, 13)).astype(np.float32)
    x_cat = np.arange(260).reshape(10, 26).astype(np.int32)
    y = np.arange(10) % 2
    ds = D.CTRDataset(x_num, x_cat, y)
    (xn, xc), yy = ds[3]
    assert xn.shape == (13,) and xc.dtype == torch.int64 and yy.dtype == torch.float32
    assert xc[0] == 78 and yy == 1
    (bn, bc), by = ds.__getitems__([4, 1, 1])
    assert bn.shape == (3, 13) and bn.dtype == torch.float32
    assert bc.shape == (3, 26) and bc.dtype == torch.int64
    assert by.tolist() == [0.0, 1.0, 1.0]
    sub = D.CTRDataset(x_num, x_cat, y, rows=[9, 8])
    assert len(sub) == 2 and sub.__getitems__([1])[0][1][0, 0] == 8 * 26
    xn_only, xc_only = D.CTRDataset(x_num, x_cat)[0]  # unlabelled: features only
    assert xn_only.shape == (13,) and xc_only.shape == (26,)
    with pytest.raises(IndexError):
        ds[10]


def test_loader_is_seeded_and_drops_a_partial_training_batch():
    n = 200_000
    rng = np.random.default_rng(0)
    ds = D.CTRDataset(
        rng.normal(size=(n, 13)).astype(np.float32),
        rng.integers(0, 100, (n, 26)),
        rng.integers(0, 2, n),
    )

    def first_labels(seed):
        batches = iter(D.make_loader(ds, 2048, True, seed=seed))
        return [next(batches)[1][:5].tolist() for _ in range(3)]

    assert first_labels(1) == first_labels(1) != first_labels(2)
    # training (shuffled) loaders drop the last partial batch; others keep it
    assert [len(b[1]) for b in D.make_loader(ds, 2048, True)] == [2048] * 97
    kept = list(D.make_loader(ds, 2048, shuffle=True, drop_last=False))
    assert len(kept) == 98 and kept[-1][1].shape == (n - 97 * 2048,)
    small = D.CTRDataset(*(a[:100] for a in (ds.x_num, ds.x_cat, ds.y)))
    assert [len(b[1]) for b in D.make_loader(small, 2048, True)] == [100]
    assert sum(len(b[1]) for b in D.make_loader(ds, 2048, False)) == n
    ordered = next(iter(D.make_loader(ds, 4, shuffle=False)))
    assert ordered[1].tolist() == ds.__getitems__([0, 1, 2, 3])[1].tolist()

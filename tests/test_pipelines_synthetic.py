"""Synthetic sources: dates, adding, copy_memory (no files)."""

import datetime as dt

import numpy as np
import pytest

from pipelines import adding, copy_memory, dates

SMALL = dict(num_train=400, num_validation=100, num_test=100)


# ------------------------------------------------------------------------------------ dates
def test_required_formats():
    d = dt.date(2018, 5, 9)
    written = {dates.FORMATS[i](d) for i in range(len(dates.FORMATS))}
    assert {"9 May 2018", "Wednesday 9 May 2018", "May 9, 2018", "Wed, May 9th 2018",
            "9th of May 2018", "2018/05/09", "09.05.2018"} <= written


def test_casings_and_ordinals():
    assert dates.apply_casing("9th of May 2018", "upper") == "9TH OF MAY 2018"
    assert dates.apply_casing("9th of May 2018", "lower") == "9th of may 2018"
    assert dates.apply_casing("Wed, May 9th 2018", "title") == "Wed, May 9th 2018"
    assert dates.apply_casing("9th of may 2018", "title") == "9th Of May 2018"
    assert [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]


def test_day_range():
    days = dates.all_days()
    assert days[0] == dt.date(1950, 1, 1) and days[-1] == dt.date(2049, 12, 31)
    assert len(days) == 36525


def all_pairs(s):
    src_vocab, tgt_vocab = s.info.source_vocabulary, s.info.target_vocabulary
    out = {}
    for name in ("train", "validation", "test"):
        pairs = []
        for (src, tgt_in), tgt_out in getattr(s, name).as_numpy_iterator():
            pairs += zip(src_vocab.decode(src), tgt_vocab.decode(tgt_out), strict=True)
            assert (tgt_in[:, 0] == 2).all()
        out[name] = pairs
    return out


def test_dates_targets_and_disjoint_days():
    s = dates.load(seed=0, batch_size=32, **SMALL)
    pairs = all_pairs(s)
    assert {k: len(v) for k, v in pairs.items()} == s.info.counts == {
        "train": 400, "validation": 100, "test": 100}
    days = {name: {iso for _, iso in p} for name, p in pairs.items()}
    assert not days["train"] & days["validation"]
    assert not days["train"] & days["test"]
    assert not days["validation"] & days["test"]
    for human, iso in pairs["train"]:
        d = dt.date.fromisoformat(iso)  # a valid ISO date in range
        assert dt.date(1950, 1, 1) <= d <= dt.date(2049, 12, 31)
        assert str(d.year) in human
    cases = {("upper" if h.isupper() else "lower" if h.islower() else "other")
             for h, _ in pairs["train"]}
    assert cases == {"upper", "lower", "other"}


def test_dates_deterministic_by_seed():
    a = dates.load(seed=5, **SMALL).info.test_examples
    b = dates.load(seed=5, **SMALL).info.test_examples
    c = dates.load(seed=6, **SMALL).info.test_examples
    assert a == b and a != c
    human, iso = a[0]
    assert isinstance(human, str) and len(iso) == 10 and iso[4] == "-"


def test_dates_target_vocabulary_is_digits_and_dash():
    s = dates.load(**SMALL)
    assert set(s.info.target_vocabulary.tokens[4:]) == set("0123456789-")


def test_dates_test_path(tmp_path):
    path = tmp_path / "dates.tsv"
    path.write_text("9 May 2018\t2018-05-09\nbad line\nMay 10, 2018\t2018-02-30\n",
                    encoding="utf-8")
    s = dates.load(test_path=str(path), **SMALL)
    assert s.info.counts["test"] == 1 and s.info.dropped == {"test_malformed": 2}
    train_days = {iso for _, iso in all_pairs(s)["train"]}
    assert "2018-05-09" not in train_days
    with pytest.raises(ValueError, match=r"dates.tsv', line 2: expected human<TAB>YYYY-MM-DD"):
        dates.load(test_path=str(path), strict=True, **SMALL)


def test_dates_argument_errors():
    with pytest.raises(ValueError, match="argument `num_train`. Expected a positive integer"):
        dates.load(num_train=0)


def test_dates_blank_lines_of_a_test_file_are_skipped_as_empty_even_when_strict(tmp_path):
    path = tmp_path / "dates.tsv"
    path.write_text("9 May 2018\t2018-05-09\n\nMay 10, 2018\t2018-05-10\n\n", encoding="utf-8")
    human, iso, dropped = dates.read_pairs(path, strict=True)
    assert iso == ["2018-05-09", "2018-05-10"] and dropped == {"empty": 2}


def test_dates_zero_test_share_leaves_no_test_day():
    # The days left over by rounding the shares down once made a test pool of one day, and
    # every test example that one date.
    s = dates.load(fractions=(0.9, 0.1, 0.0), **SMALL)
    assert s.info.extra["days"]["test"] == 0 and s.info.counts["test"] == 0
    assert sum(s.info.extra["days"].values()) == len(dates.all_days())


# ----------------------------------------------------------------------------------- adding
def test_adding_matches_definition():
    x, y = adding.generate(50, 20, np.random.default_rng(0))
    assert x.shape == (50, 20, 2) and y.shape == (50, 1) and x.dtype == np.float32
    markers = x[:, :, 1]
    assert (markers.sum(axis=1) == 2).all()
    assert (markers[:, :10].sum(axis=1) == 1).all() and (markers[:, 10:].sum(axis=1) == 1).all()
    expected = np.array([row[m == 1, 0].sum() for row, m in zip(x, markers, strict=True)])
    np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6)
    assert ((x[:, :, 0] >= 0) & (x[:, :, 0] < 1)).all()


def test_adding_datasets_and_baseline():
    s = adding.load(length=30, batch_size=50, **SMALL)
    x, y = next(iter(s.train))
    assert x.shape == (50, 30, 2) and y.shape == (50, 1)
    assert x.dtype.name == "float32" and y.dtype.name == "float32"
    ys = np.concatenate([b.numpy() for _, b in s.validation])
    assert ys.shape == (100, 1)
    # predicting 1.0 scores about 1/6: the documented baseline
    assert abs(np.mean((ys - 1.0) ** 2) - s.info.extra["baseline_mse"]) < 0.05
    assert s.info.task == "regression"


def test_adding_seeded_and_split_seeds_differ():
    a = adding.load(length=10, seed=1, **SMALL)
    b = adding.load(length=10, seed=1, **SMALL)
    xa, _ = next(iter(a.validation))
    xb, _ = next(iter(b.validation))
    xt, _ = next(iter(a.test))
    np.testing.assert_array_equal(xa.numpy(), xb.numpy())
    assert not np.array_equal(xa.numpy(), xt.numpy())


def test_adding_test_path(tmp_path):
    x, y = adding.generate(7, 10, np.random.default_rng(3))
    np.savez(tmp_path / "t.npz", x=x, y=y[:, 0])
    s = adding.load(length=10, test_path=str(tmp_path / "t.npz"), **SMALL)
    assert s.info.counts["test"] == 7
    with pytest.raises(ValueError, match=r"Expected x \[N, 12, 2\] and y \[N\]"):
        adding.load(length=12, test_path=str(tmp_path / "t.npz"), **SMALL)
    with pytest.raises(FileNotFoundError, match="Expected an .npz file"):
        adding.load(length=10, test_path=str(tmp_path / "none.npz"), **SMALL)
    with pytest.raises(ValueError, match="argument `length`. Expected an integer >= 2"):
        adding.load(length=1)


# ------------------------------------------------------------------------------ copy_memory
def test_copy_memory_layout():
    x, y = copy_memory.generate(5, 7, 3, 4, np.random.default_rng(0))
    assert x.shape == y.shape == (5, 7 + 6)
    symbols = x[:, :3]
    assert ((symbols >= 6) & (symbols < 10)).all()
    assert (x[:, 3:9] == 4).all() and (x[:, 9] == 5).all() and (x[:, 10:] == 4).all()
    assert (y[:, :10] == 4).all()
    np.testing.assert_array_equal(y[:, 10:], symbols)


def test_copy_memory_datasets_and_disjoint_splits():
    # 4**6 = 4096 strings: without redrawing, ~10 train/validation collisions are expected
    s = copy_memory.load(delay=10, copy_length=6, num_symbols=4, batch_size=64, **SMALL)
    info = s.info
    assert info.vocabulary.size == 4 + 2 + 4 and info.extra["total_length"] == 22
    strings = {}
    for name in ("train", "validation", "test"):
        rows = np.concatenate([x.numpy() for x, _ in getattr(s, name)])
        assert rows.shape == (info.counts[name], 22) and rows.dtype == np.int32
        strings[name] = {r[:6].tobytes() for r in rows}
    assert not strings["train"] & strings["validation"]
    assert not strings["train"] & strings["test"]
    text, target = info.test_examples[0]
    assert text[6:15] == "-" * 9 and text[15] == ":" and target == "-" * 16 + text[:6]
    assert info.extra["baseline_loss"] == pytest.approx(6 * np.log(4) / 22)


def test_copy_memory_errors():
    with pytest.raises(ValueError, match="argument `num_symbols`. Expected an integer in"):
        copy_memory.load(num_symbols=1)
    with pytest.raises(ValueError, match="argument `num_symbols`. Expected enough symbols"):
        copy_memory.load(num_symbols=2, copy_length=3)


def test_a_partial_pipeline_benchmark_never_overwrites_the_full_figures(
    load_benchmark, tmp_path, monkeypatch
):
    """benchmarks/pipelines.py with fewer sources or batches writes pipelines_partial.json
    (its documented quick look replaced the committed results/pipelines.json)."""
    import json

    script = load_benchmark("pipelines")
    monkeypatch.setattr(script, "RESULTS", tmp_path / "pipelines.json")
    assert script.main(["--sources", "dates", "--batches", "2", "--steps", "1"]) == 0
    assert not (tmp_path / "pipelines.json").exists()
    written = json.loads((tmp_path / "pipelines_partial.json").read_text())
    assert list(written["results"]) == ["dates"] and written["results"]["dates"]["status"] == "ok"

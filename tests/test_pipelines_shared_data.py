"""Sources on the shared data (../shared/data): counts as its README states, disjoint splits."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from pipelines import names, shakespeare, sst2, translation

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
README_NAMES = dict(Arabic=1797, Chinese=241, Czech=467, Dutch=267, English=3301, French=249,
                    German=652, Greek=183, Irish=209, Italian=638, Japanese=892, Korean=85,
                    Polish=125, Portuguese=67, Russian=8467, Scottish=90, Spanish=268,
                    Vietnamese=66)


def need(relative):
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    return path


def id_rows(ds, component=0):
    """Token-id tuples (padding removed) of one component of every batch."""
    rows = []
    for batch in ds.as_numpy_iterator():
        x = batch[0][component] if isinstance(batch[0], tuple) else batch[component]
        rows += [tuple(int(t) for t in r if t) for r in x]
    return rows


def assert_disjoint(rows_by_split):
    train = set(rows_by_split["train"])
    val = set(rows_by_split["validation"])
    test = set(rows_by_split["test"])
    assert not train & val and not train & test
    # rows with OOV (1) may collide by accident outside train
    assert not {r for r in val if 1 not in r} & {r for r in test if 1 not in r}


def test_names_counts_and_cleaning():
    folder = need("names")
    raw = {p.stem: len(p.read_text(encoding="utf-8").splitlines()) for p in folder.glob("*.txt")}
    assert raw == README_NAMES and sum(raw.values()) == 18_064
    s = names.load(data_dir=str(SHARED))
    info = s.info
    assert len(info.labels) == 18
    # 24 "To The First Page" lines and 8 with digits or punctuation (Rafaj1, Lu:, ...)
    assert info.dropped == {"artifact": 24, "invalid": 8}
    assert sum(info.counts.values()) == 18_064 - 32
    rows = {k: id_rows(getattr(s, k)) for k in ("train", "validation", "test")}
    assert {k: len(v) for k, v in rows.items()} == info.counts
    assert_disjoint(rows)
    assert info.class_weight[info.labels.index("Russian")] < 0.2  # Russian is ~47%
    assert "ż" in info.vocabulary.tokens and "ß" in info.vocabulary.tokens


def test_names_german_italian_subset():
    need("names")
    s = names.load(data_dir=str(SHARED), languages=("German", "Italian"))
    assert s.info.labels == ["German", "Italian"]
    assert sum(s.info.counts.values()) + s.info.dropped["ambiguous"] == 652 + 638


def test_sst2_counts():
    need("sentiment/sst2/train.tsv")
    texts, labels, dropped = sst2.read_labeled_tsv(SHARED / "sentiment/sst2/train.tsv")
    assert len(texts) == 60_614 and Counter(labels) == {0: 26_794, 1: 33_820} and not dropped
    _, dev_labels, _ = sst2.read_labeled_tsv(SHARED / "sentiment/sst2/dev.tsv")
    assert Counter(dev_labels) == {0: 428, 1: 444}
    s = sst2.load(data_dir=str(SHARED))
    info = s.info
    assert info.counts["test"] == 872 and len(info.extra["unlabeled_test"]) == 1_821
    assert info.counts["train"] + info.counts["validation"] == 60_614 - info.dropped.get(
        "in_test", 0) - info.dropped["validation_subphrase"]
    rows = {k: id_rows(getattr(s, k)) for k in ("train", "validation", "test")}
    assert len(set(rows["train"]) & set(rows["validation"])) == 0
    # Validation holds whole sentences, as long as the dev sentences, and none of their
    # long phrases is trained on.
    lengths = {k: np.mean([len(r) for r in rows[k]]) for k in rows}
    assert lengths["validation"] > 0.8 * lengths["test"] and lengths["train"] < 0.6 * lengths[
        "test"]
    train = {" ".join(map(str, r)) for r in rows["train"]}
    for row in rows["validation"][:50]:
        shortest = max(4, len(row) // 2)  # shorter spans ("the film") recur across sentences
        spans = {" ".join(map(str, row[i:j])) for i in range(len(row))
                 for j in range(i + shortest, len(row) + 1)}
        assert not spans & train


@pytest.mark.parametrize("direction", ["eng-spa", "spa-eng"])
def test_translation_counts_and_disjoint_sentences(direction):
    """No sentence of either language in two splits, whichever side is the source: 3,898 English
    sentences with several translations used to be split by their Spanish sources in `spa-eng`
    (2,058 of its 10,651 test references were training targets)."""
    need("spa-eng/spa.txt")
    english, spanish, dropped = translation.read_pairs(SHARED / "spa-eng/spa.txt")
    assert len(english) == 107_068 and not dropped
    s = translation.load(data_dir=str(SHARED), max_length=None, direction=direction)
    info = s.info
    assert sum(info.counts.values()) == 107_068 - info.dropped.get("duplicate", 0)
    for side in (0, 1):  # source ids; target ids (with the start token)
        assert_disjoint({k: id_rows(getattr(s, k), side) for k in ("train", "validation", "test")})


def test_shakespeare_counts_and_contiguous_split():
    path = need("tinyshakespeare/input.txt")
    text, dropped = shakespeare.read_text(path)
    assert len(text) == 1_003_856 and text.count("\n") == 35_526 and not dropped
    s = shakespeare.load(data_dir=str(SHARED))
    chars = s.info.extra["characters"]
    assert chars["train"] + chars["validation"] == 1_003_856
    assert text[chars["train"] - 1] == "\n"
    assert s.info.counts["train"] == (chars["train"] - 101) // 101 + 1
    assert s.test is None
    x, y = next(iter(s.validation))
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])

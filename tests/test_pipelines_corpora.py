"""sst2, translation and shakespeare on small files the tests write, bad input included."""

import numpy as np
import pytest

from pipelines import shakespeare, sst2, translation, tsv
from pipelines import splits as splits_module
from pipelines.text import Vocabulary

POSITIVE = ["a charming and often affecting journey", "a gorgeous , witty , seductive movie",
            "the acting is superb", "one of the best films of the year", "warm and funny"]
NEGATIVE = ["unflinchingly bleak and desperate", "a dull , boring mess", "the plot is a mess",
            "painfully slow", "no wit , only labored gags"]


def write_sst2(root, train_extra=b"", dev_rows=None):
    folder = root / "sentiment" / "sst2"
    folder.mkdir(parents=True)
    rows = [f"{t} \t1" for t in POSITIVE * 4] + [f"{t} \t0" for t in NEGATIVE * 4]
    rows = [f"{r.split(chr(9))[0]}{i}\t{r.split(chr(9))[1]}" for i, r in enumerate(rows)]
    (folder / "train.tsv").write_bytes(
        ("sentence\tlabel\n" + "\n".join(rows) + "\n").encode() + train_extra)
    dev_rows = dev_rows or ["it 's a charming and often affecting journey . \t1",
                            "boring \t0", "superb \t1"]
    (folder / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(dev_rows) + "\n",
                                    encoding="utf-8")
    (folder / "test.tsv").write_text("index\tsentence\n0\tuneasy mishmash .\n1\tgreat fun\n",
                                     encoding="utf-8")
    return folder


# ------------------------------------------------------------------------------------- sst2
def _without_bad_train_rows(folder):
    """A copy of `folder` whose train.tsv is well formed (strict then stops at test.tsv)."""
    clean = folder.parent / "clean"
    clean.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        data = (folder / name).read_bytes()
        if name == "train.tsv":
            data = data[: data.index(b"no tab here")]
        (clean / name).write_bytes(data)
    return clean


def test_sst2_counts_dropped_rows_and_unlabeled_test(tmp_path):
    bad = ("no tab here\nbroken \t2\nword \tpositive\nsquared \t\u00b2\nminus \t--1\n"
           "utf-16 \x00\t1\n").encode() + b"bad \xff bytes \t1\n\n"
    folder = write_sst2(tmp_path, train_extra=bad)
    with open(folder / "test.tsv", "ab") as f:
        f.write(b"2\tbad \xff\n3\n\n4\tfine again\n")
    s = sst2.load(data_dir=str(tmp_path), batch_size=8, validation_fraction=0.25)
    info = s.info
    assert info.labels == ["negative", "positive"]
    assert info.dropped == {"bad_label": 4, "empty": 1, "malformed": 1, "non_utf8": 2,
                            "unlabeled_test_non_utf8": 1, "unlabeled_test_malformed": 1,
                            "unlabeled_test_empty": 1}
    assert info.counts["test"] == 3
    assert info.counts["train"] + info.counts["validation"] == 40
    assert info.counts["validation"] == 10
    assert info.extra["unlabeled_test"] == ["uneasy mishmash .", "great fun", "fine again"]
    with pytest.raises(ValueError, match=r"test.tsv', line 4: not valid UTF-8 \(byte 0xff"):
        sst2.load(data_dir=str(tmp_path), validation_fraction=0.25, strict=True,
                  path=str(_without_bad_train_rows(folder)))
    x, y = next(iter(s.train))
    assert x.dtype.name == "int32" and y.dtype.name == "int32" and x.shape[0] == y.shape[0]


def test_a_blank_line_of_the_unlabeled_test_file_is_skipped_even_when_strict(tmp_path):
    path = tmp_path / "test.tsv"  # one trailing blank line once stopped every strict run
    path.write_text("index\tsentence\n0\tgreat fun\n\n", encoding="utf-8")
    texts, dropped = tsv.read_column(path, what="a test file", header=("index", "sentence"),
                                     column="sentence", strict=True)
    assert texts == ["great fun"] and dropped == {"empty": 1}


def test_sst2_validation_is_disjoint_from_train(tmp_path):
    write_sst2(tmp_path)
    s = sst2.load(data_dir=str(tmp_path), validation_fraction=0.25)
    vocab = s.info.vocabulary
    def texts(ds):
        return {t for x, _ in ds.as_numpy_iterator() for t in vocab.decode(x)}
    assert not texts(s.train) & texts(s.validation)


@pytest.mark.parametrize("max_length", ["x", 0, 2.5])
def test_sst2_max_length_is_checked(tmp_path, max_length):
    write_sst2(tmp_path)  # "x" reached a slice and failed there with a TypeError
    with pytest.raises(ValueError, match=r"argument `max_length`. Expected a positive integer"):
        sst2.load(data_dir=str(tmp_path), max_length=max_length)


def test_sample_indices_any_prefix_spans_the_split():
    # The files are sorted (names by language, pairs by length) and samples.json keeps the
    # first 64: in index order they were all German for names-de-it, all short for spa-eng.
    picks = splits_module.sample_indices(200, seed=0)
    assert sorted(picks) == list(range(200))
    assert min(picks[:64]) < 50 and max(picks[:64]) >= 150
    capped = splits_module.sample_indices(1000, seed=0, cap=256)
    assert len(set(capped)) == 256 and max(capped[:64]) >= 500
    assert picks != splits_module.sample_indices(200, seed=1)


def test_sentence_roots_gather_each_phrase_under_its_longest_container():
    keys = ["a very good movie .", "very good", "good", "movie", "a dull film", "dull",
            "very good movie", "film ,", "movie .", "dull film", "film"]
    assert sst2.sentence_roots(keys) == {
        "a very good movie .": "a very good movie .", "very good": "a very good movie .",
        "good": "a very good movie .", "movie": "a very good movie .",
        "very good movie": "a very good movie .", "a dull film": "a dull film",
        "dull": "a dull film", "film ,": "film ,",  # not a word span of "a dull film"
        # Spans that end a sentence (its last word included) belong to it too.
        "movie .": "a very good movie .", "dull film": "a dull film", "film": "a dull film",
    }


SENTENCES = [f"{t} number {i}" for i, t in enumerate(POSITIVE + NEGATIVE)]
PHRASES = [" ".join(t.split()[a:b]) for t in SENTENCES for a, b in [(0, 2), (1, 3), (0, -2)]]


def test_sentence_split_holds_out_whole_sentences_and_none_of_their_phrases():
    keys = SENTENCES + PHRASES
    split = sst2.sentence_split(keys, 0.2, seed=0)
    roots = sst2.sentence_roots(keys)
    held_out = {k for k, s in zip(keys, split, strict=True) if s == 1}
    assert len(held_out) == 2 and held_out <= set(SENTENCES)  # 20% of the 10 sentences
    for key, s in zip(keys, split, strict=True):
        expected = (1 if key in held_out else -1) if roots[key] in held_out else 0
        assert s == expected, key
    assert np.array_equal(sst2.sentence_split(keys, 0.2, seed=0), split)  # seeded


def test_sst2_validation_modes_and_their_counts(tmp_path):
    folder = write_sst2(tmp_path)
    labels = [i % 2 for i in range(len(SENTENCES + PHRASES))]
    rows = [f"{t} \t{y}" for t, y in zip(SENTENCES + PHRASES, labels, strict=True)]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    s = sst2.load(data_dir=str(tmp_path), validation_fraction=0.2, batch_size=4)
    split = sst2.sentence_split(SENTENCES + PHRASES, 0.2, seed=0)
    assert s.info.counts["validation"] == 2
    assert s.info.counts["train"] == int(np.sum(split == 0))
    assert s.info.dropped["validation_subphrase"] == int(np.sum(split == -1)) > 0
    by_phrase = sst2.load(data_dir=str(tmp_path), validation_fraction=0.2, batch_size=4,
                          validation="phrases")
    assert by_phrase.info.counts["validation"] == len(rows) // 5
    assert "validation_subphrase" not in by_phrase.info.dropped
    with pytest.raises(ValueError, match=r"validation.*'sentences', 'phrases'.*Received.*'words'"):
        sst2.load(data_dir=str(tmp_path), validation="words")


def test_sst2_strict_names_file_and_line(tmp_path):
    write_sst2(tmp_path, train_extra=b"broken \t2\n")
    with pytest.raises(ValueError, match=r"train.tsv', line 42: expected a label in \[0, 1\], "
                       r"got '2'. Received: 'broken \\t2'"):
        sst2.load(data_dir=str(tmp_path), strict=True)


def test_sst2_wrong_header(tmp_path):
    folder = write_sst2(tmp_path)
    (folder / "train.tsv").write_text("text,label\nfoo,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"with the header 'sentence\\tlabel'. Received: "
                       r"'text,label'"):
        sst2.load(data_dir=str(tmp_path))


def test_sst2_header_less_test_path(tmp_path):
    write_sst2(tmp_path)
    rows = tmp_path / "rows.tsv"
    rows.write_text("the acting is superb 2\t1\nsentence\tlabel\nboring \t0\n", encoding="utf-8")
    s = sst2.load(data_dir=str(tmp_path), test_path=str(rows))
    assert sorted(s.info.test_examples) == [("boring", 0), ("the acting is superb 2", 1)]
    assert s.info.dropped["test_bad_label"] == 1  # a header in the middle is a bad row


def test_sst2_unlabeled_file_as_test_path(tmp_path):
    folder = write_sst2(tmp_path)
    with pytest.raises(ValueError, match="it is GLUE's unlabeled test file"):
        sst2.load(data_dir=str(tmp_path), test_path=str(folder / "test.tsv"))


def test_sst2_test_path_and_overlap_removed(tmp_path):
    write_sst2(tmp_path)
    other = tmp_path / "mine.tsv"
    other.write_text("sentence\tlabel\nthe acting is superb 2\t1\n", encoding="utf-8")
    s = sst2.load(data_dir=str(tmp_path), test_path=str(other))
    assert s.info.counts["test"] == 1
    assert s.info.dropped["in_test"] == 1
    assert s.info.test_examples == [("the acting is superb 2", 1)]


def test_sst2_empty_and_missing_files(tmp_path):
    folder = write_sst2(tmp_path)
    (folder / "dev.tsv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"dev.tsv', but the file is empty"):
        sst2.load(data_dir=str(tmp_path))
    (folder / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"dev.tsv', but there is no such file"):
        sst2.load(data_dir=str(tmp_path))


def test_sst2_only_bad_rows(tmp_path):
    folder = write_sst2(tmp_path)
    (folder / "train.tsv").write_text("sentence\tlabel\nx\t7\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"no row is usable \(dropped: \{'bad_label': 1\}\)"):
        sst2.load(data_dir=str(tmp_path))


# ------------------------------------------------------------------------------ translation
ADJECTIVES = ["red", "blue", "green", "big", "small", "old"]
NOUNS = ["cat", "dog", "house", "car", "tree"]


def write_pairs(root, extra=b""):
    folder = root / "spa-eng"
    folder.mkdir(parents=True)
    lines = [f"I see the {adj} {noun}.\tVeo el {noun} {adj}.\tCC-BY 2.0 (France) "
             f"Attribution: tatoeba.org #{i}"
             for i, (adj, noun) in enumerate((a, n) for a in ADJECTIVES for n in NOUNS)]
    lines += ["Go.\tVe.", "Go.\tVete.", "Go.\tVaya.", "Go.\tVe.", "Who?\t¿Quién?"]
    lines += ["This sentence is far too long to keep because it has many words .\tCorta."]
    text = "\n".join(lines) + "\nonly one field\n\t\n"
    (folder / "spa.txt").write_bytes(text.encode() + extra)
    return folder / "spa.txt"


def test_translation_cleaning_counts(tmp_path):
    # A fourth field is not an attribution, and neither is a third that is the rest of a
    # sentence with a tab in it (once kept as "Pasa"): such lines are malformed, not pairs.
    # An empty third field (a trailing tab) cuts nothing short: that pair is kept.
    write_pairs(tmp_path, extra="Bad\xff\tMal\nGo on.\tSigue.\tCC-BY\textra\n"
                "Come in.\tPasa\tadelante.\nGo out.\tSal.\t\n".encode("latin-1"))
    s = translation.load(data_dir=str(tmp_path), max_length=8, batch_size=4)
    assert s.info.dropped == {"duplicate": 1, "empty": 1, "malformed": 3, "non_utf8": 1,
                              "too_long": 1}
    assert sum(s.info.counts.values()) == 30 + 4 + 1
    english, _, _ = translation.read_pairs(tmp_path / "spa-eng" / "spa.txt")
    assert "Go out." in english
    assert s.info.task == "seq2seq"


def test_skipped_lines_are_logged_with_file_and_line(tmp_path, caplog):
    path = write_pairs(tmp_path, extra=b"one\ntwo\nthree\n\nfour\n")
    lines = path.read_text().splitlines()
    with caplog.at_level("WARNING", logger="pipelines"):
        s = translation.load(data_dir=str(tmp_path), max_length=8, batch_size=4)
    assert s.info.dropped["malformed"] == 5
    logged = [r.getMessage() for r in caplog.records if "skipped (malformed)" in r.getMessage()]
    first = [n for n, line in enumerate(lines, 1) if line.strip() and "\t" not in line]
    assert [m.split(": skipped")[0] for m in logged] == [f"{str(path)!r}, line {n}"
                                                       for n in first[:3]]
    assert logged[0].endswith("'only one field'") and "only counted" in logged[-1]


def test_translation_elements_frame_start_and_end(tmp_path):
    write_pairs(tmp_path)
    s = translation.load(data_dir=str(tmp_path), max_length=8, batch_size=4)
    tgt_vocab = s.info.target_vocabulary
    for (src, tgt_in), tgt_out in s.train.as_numpy_iterator():
        assert src.dtype == tgt_in.dtype == tgt_out.dtype == np.int32
        assert tgt_in.shape == tgt_out.shape
        assert (tgt_in[:, 0] == 2).all()
        lengths = (tgt_out != 0).sum(axis=1)
        assert (tgt_out[np.arange(len(tgt_out)), lengths - 1] == 3).all()
        inner = (tgt_out[:, :-1] != 0) & (tgt_out[:, :-1] != 3)  # tgt_in is tgt_out shifted
        np.testing.assert_array_equal(tgt_in[:, 1:][inner], tgt_out[:, :-1][inner])
    src_text, tgt_text = s.info.test_examples[0]
    assert tgt_vocab.level == "word" and isinstance(src_text, str) and isinstance(tgt_text, str)


def test_translation_groups_by_source_sentence(tmp_path):
    write_pairs(tmp_path)
    for seed in range(4):
        s = translation.load(data_dir=str(tmp_path), seed=seed, fractions=(0.5, 0.25, 0.25))
        vocab = s.info.source_vocabulary
        sources, go = {}, []
        for name in ("train", "validation", "test"):
            for (src, _), _ in getattr(s, name).as_numpy_iterator():
                for text in vocab.decode(src):
                    if text in ("go .", "[UNK] ."):  # "go" is OOV when "Go." is not in train
                        go.append(name)
                    elif "[UNK]" not in text:  # OOV words may make two texts look alike
                        sources.setdefault(text, set()).add(name)
        assert all(len(v) == 1 for v in sources.values())
        assert len(go) == 3 and len(set(go)) == 1  # 3 translations of "Go." share one split


def test_translation_target_min_count_and_test_targets(tmp_path):
    write_pairs(tmp_path)
    s = translation.load(data_dir=str(tmp_path), direction="spa-eng", target_min_count=5)
    # "go" is in 3 pairs (under 5), "see" in 30: only "see" is kept on the target side,
    # while the source side keeps min_count=1 (every Spanish word of train).
    english = s.info.target_vocabulary.tokens
    spanish = s.info.source_vocabulary.tokens
    assert "see" in english and "go" not in english
    assert {"veo", "el"} <= set(spanish) and len(spanish) > len(english)
    # The raw references of the test split, in the test dataset's order.
    decoded = []
    for (_, _), tgt_out in s.test.as_numpy_iterator():
        decoded += s.info.target_vocabulary.decode(tgt_out)
    assert len(s.info.test_targets) == len(decoded) == s.info.counts["test"]
    words = [" ".join(t) for t in s.info.target_vocabulary.split(s.info.test_targets)]
    for raw, ids in zip(words, decoded, strict=True):
        assert len(raw.split()) == len(ids.split())
        assert all(a == b or b == "[UNK]" for a, b in zip(raw.split(), ids.split(), strict=True))
    with pytest.raises(ValueError, match=r"target_min_count"):
        translation.load(data_dir=str(tmp_path), target_min_count=0)


def test_translation_direction_and_errors(tmp_path):
    write_pairs(tmp_path)
    s = translation.load(data_dir=str(tmp_path), direction="spa-eng", lowercase=False)
    assert "Veo" in s.info.source_vocabulary.tokens
    assert "¿" in s.info.source_vocabulary.tokens
    with pytest.raises(ValueError, match=r"argument `direction`. Expected one of \{'eng-spa', "
                       r"'spa-eng'\}. Received: direction='eng-fra'"):
        translation.load(data_dir=str(tmp_path), direction="eng-fra")
    with pytest.raises(ValueError, match=r"spa.txt', line 37: expected english<TAB>translation"):
        translation.load(data_dir=str(tmp_path), strict=True)


def test_translation_splits_keep_linked_pairs_together(tmp_path):
    """Pairs linked by a shared sentence on either side, also through other pairs, share a split."""
    folder = tmp_path / "spa-eng"
    folder.mkdir()
    lines = [f"Sentence {i}.\tFrase {i}." for i in range(200)]
    for k in range(20):  # chain k: tired k - cansada k - weary k, 4 pairs
        lines += [f"Tired {k}.\tCansado {k}.", f"Tired {k}.\tCansada {k}.",
                  f"Weary {k}.\tCansada {k}.", f"Weary {k}.\tAgotado {k}."]
    (folder / "spa.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    words = {w for line in lines for w in line.lower().replace(".", " .").split()}
    vocab = Vocabulary(sorted(words), level="word", lowercase=True,
                       punctuation=translation.PUNCTUATION)
    for direction in ("eng-spa", "spa-eng"):
        for seed in range(3):
            s = translation.load(data_dir=str(tmp_path), direction=direction, seed=seed,
                                 fractions=(0.5, 0.25, 0.25), batch_size=500,
                                 vocabularies={"source": vocab, "target": vocab})
            where = {}
            for name in ("train", "validation", "test"):
                for batch in getattr(s, name):
                    (src, tgt_in), _ = batch
                    for row in (src if direction == "eng-spa" else tgt_in[:, 1:]).numpy():
                        first, number = vocab.tokens[row[0]], vocab.tokens[row[1]]
                        if first in ("tired", "weary"):
                            where.setdefault(number, set()).add(name)
            assert len(where) == 20 and all(len(v) == 1 for v in where.values()), where
            assert len({min(v) for v in where.values()}) > 1  # chains do go to different splits


def linked(*columns):
    return splits_module.linked_keys(*columns)


def test_linked_keys_are_connected_components():
    keys = linked(["a", "b", "c", "a", "d"], ["x", "y", "x", "z", "y"])
    assert keys[0] == keys[2] == keys[3] and keys[1] == keys[4] and keys[0] != keys[1]
    assert keys == linked(["a", "b", "c", "a", "d"], ["x", "y", "x", "z", "y"])  # deterministic
    # a chain joined only at its end still becomes one component, whatever the order
    chain = linked(["e1", "e2", "e2", "e3", "e1"], ["s1", "s1", "s2", "s2", "s3"])
    assert len(set(chain)) == 1
    assert linked(["p", "q"], ["p", "q"]) == ["0:p", "0:q"]  # equal text in two columns: no link


def test_translation_test_path(tmp_path):
    write_pairs(tmp_path)
    mine = tmp_path / "mine.txt"
    mine.write_text("I see the red cat.\tVeo el cat red.\nNew one.\tNueva.\n", encoding="utf-8")
    s = translation.load(data_dir=str(tmp_path), test_path=str(mine))
    assert s.info.counts["test"] == 2 and s.info.dropped["in_test_path"] == 1
    # A pair leaves train / validation when either side is a test sentence, in both directions.
    sides = tmp_path / "sides.txt"
    sides.write_text("I see the red cat.\tAlgo nuevo.\nSomething new.\tVeo el dog blue.\n",
                     encoding="utf-8")
    for direction in ("eng-spa", "spa-eng"):
        s = translation.load(data_dir=str(tmp_path), test_path=str(sides), direction=direction)
        assert s.info.counts["test"] == 2 and s.info.dropped["in_test_path"] == 2
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("just english\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"Expected sentence pairs in .*wrong.txt', but no line "
                       r"is usable \(dropped: \{'malformed': 1\}\)"):
        translation.load(data_dir=str(tmp_path), test_path=str(wrong))


# ------------------------------------------------------------------------------ shakespeare
def write_play(path, lines=300):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"SPEAKER {i % 7}:\nLine number {i}, my lord.\n\n" for i in range(lines))
    path.write_text(text, encoding="utf-8")
    return text


def test_shakespeare_contiguous_split_and_windows(tmp_path):
    text = write_play(tmp_path / "tinyshakespeare" / "input.txt")
    s = shakespeare.load(data_dir=str(tmp_path), seq_length=30, batch_size=8)
    cut = shakespeare.cut_points(text, (0.9, 0.1))[0]
    assert text[cut - 1] == "\n" and cut >= int(0.9 * len(text))
    assert s.test is None and s.info.task == "language_model"
    vocab = s.info.vocabulary
    for name, segment in (("train", text[:cut]), ("validation", text[cut:])):
        n = 0
        for x, y in getattr(s, name).as_numpy_iterator():
            assert x.shape[1] == 30 and x.dtype == np.int32
            np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
            for window, nxt in zip(vocab.decode(x), vocab.decode(y), strict=True):
                assert window in segment and window[1:] + nxt[-1] in segment
            n += len(x)
        assert n == s.info.counts[name] == (len(segment) - 31) // 31 + 1
    # No test split: the export checks' raw examples are held-out validation windows.
    assert s.info.test_examples
    for window, target in s.info.test_examples:
        assert window + target[-1] in text[cut:] and window[1:] == target[:-1]


def test_shakespeare_test_path_and_bad_input(tmp_path):
    write_play(tmp_path / "tinyshakespeare" / "input.txt")
    other = tmp_path / "rest.txt"
    other.write_bytes(b"ROMEO:\nBut soft, what light\nbad \xff line\n" * 5)
    s = shakespeare.load(data_dir=str(tmp_path), seq_length=10, test_path=str(other))
    assert s.info.dropped == {"test_non_utf8": 5}
    assert s.test is not None and s.info.counts["test"] > 0
    window, target = s.info.test_examples[0]
    assert window[1:] == target[:-1] and len(window) == 10
    # With test_path, the recipe's test share goes to training, as in the other sources.
    shared = shakespeare.load(data_dir=str(tmp_path), seq_length=10, test_path=str(other),
                              test_fraction=0.2)
    assert shared.info.extra["characters"] == s.info.extra["characters"]
    # A text whose last line break comes before the validation cut was a KeyError.
    (tmp_path / "one" / "tinyshakespeare").mkdir(parents=True)
    (tmp_path / "one" / "tinyshakespeare" / "input.txt").write_text("word " * 400 + "\n")
    with pytest.raises(ValueError, match=r"The validation text of .*input.txt is empty: splits "
                                         r"are cut at line breaks.*validation_fraction=0.1"):
        shakespeare.load(data_dir=str(tmp_path / "one"), seq_length=10)
    # A test text shorter than one window gave no test windows, and loss 0 at evaluation.
    with pytest.raises(ValueError, match=r"The test text \(.*rest.txt\) has 140 characters, "
                                         r"fewer than seq_length \+ 1 = 201"):
        shakespeare.load(data_dir=str(tmp_path), seq_length=200, test_path=str(other))
    with pytest.raises(ValueError, match="fewer than seq_length \\+ 1 = 5001"):
        shakespeare.load(data_dir=str(tmp_path), seq_length=5000)
    (tmp_path / "blank.txt").write_text("\n\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds only whitespace"):
        shakespeare.load(data_dir=str(tmp_path), test_path=str(tmp_path / "blank.txt"))
    with pytest.raises(ValueError, match=r"argument `validation_fraction`. Expected a float in "
                       r"\(0, 1\). Received: validation_fraction=0"):
        shakespeare.load(data_dir=str(tmp_path), validation_fraction=0)
    # A UTF-16 file decodes as UTF-8 with NULs: every line is refused, not read as text.
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("ROMEO:\nBut soft, what light\n" * 5, encoding="utf-16")
    with pytest.raises(ValueError, match=r"holds only whitespace \(dropped: \{'non_utf8': \d+\}"):
        shakespeare.read_text(utf16)
    utf16.write_text("ROMEO:\n", encoding="utf-16-le")  # no byte-order mark
    with pytest.raises(ValueError, match=r"utf16.txt', line 1: a NUL byte at column 2 "
                       r"\(UTF-16 text\?\). Expected UTF-8 text."):
        shakespeare.read_text(utf16, strict=True)


def test_shakespeare_cut_points_are_the_first_line_start_at_or_after_each_fraction():
    text = "ab\n" * 10  # lines start at 0, 3, ..., 27
    assert shakespeare.cut_points(text, (0.9, 0.1)) == [27]  # 27 is a line start: cut there
    assert shakespeare.cut_points(text, (0.5, 0.5)) == [15]
    assert shakespeare.cut_points(text, (0.45, 0.55)) == [15]  # 13 is mid-line: next start
    assert shakespeare.cut_points(text, (0.8, 0.1, 0.1)) == [24, 27]
    assert shakespeare.cut_points("one line, no break", (0.5, 0.5)) == [18]  # none: the end


def test_shakespeare_vocabulary_is_the_training_texts_only(tmp_path):
    # Built from every segment, it gave characters seen only in validation their own ids.
    path = tmp_path / "tinyshakespeare" / "input.txt"
    path.parent.mkdir(parents=True)
    path.write_text("ROMEO:\nMy lord, a line.\n\n" * 60 + "ZOUNDS:\n~ ~ ~\n" * 4)
    s = shakespeare.load(data_dir=str(tmp_path), seq_length=10)
    text = path.read_text()
    cut = shakespeare.cut_points(text, (0.9, 0.1))[0]
    assert "~" in text[cut:] and "~" not in text[:cut]
    assert set(s.info.vocabulary.tokens[4:]) == set(text[:cut])


def test_shakespeare_lowercase_vocabulary_lowercases(tmp_path):
    write_play(tmp_path / "tinyshakespeare" / "input.txt")
    vocab = shakespeare.load(data_dir=str(tmp_path), seq_length=10, lowercase=True).info.vocabulary
    assert vocab.lowercase and not any(t.isupper() for t in vocab.tokens[4:])  # after reserved
    np.testing.assert_array_equal(vocab.encode(["ROMEO"]).to_list(),
                                  vocab.encode(["romeo"]).to_list())
    assert 1 not in vocab.encode(["ROMEO"]).to_list()[0]  # no capital is out of vocabulary


# ------------------------------------------------------------- a trained run's vocabularies
@pytest.mark.parametrize("module,options,role,column,other", [
    (sst2, {}, "text", None, {"min_count": 2}),
    (translation, {}, "source", 0, {"min_count": 2}),
    (shakespeare, {"seq_length": 10}, "text", None, {"lowercase": True}),
])
def test_given_vocabularies_replace_the_built_ones(tmp_path, module, options, role, column,
                                                   other):
    """`keras-seq evaluate` encodes with the run's vocabularies, whatever the splits hold."""
    write_sst2(tmp_path)
    write_pairs(tmp_path)
    write_play(tmp_path / "tinyshakespeare" / "input.txt")
    run = module.load(data_dir=str(tmp_path), **options, **other).info.vocabularies
    built = module.load(data_dir=str(tmp_path), **options)
    given = module.load(data_dir=str(tmp_path), vocabularies=run, **options)
    assert given.info.vocabularies == run
    assert run[role].tokens != built.info.vocabularies[role].tokens

    def first_batch(splits):  # the first pass over train: same seed, same order
        x = next(iter(splits.train))[0]
        return np.asarray(x if column is None else x[column])

    texts = built.info.vocabularies[role].decode(first_batch(built))
    expected = [[t for t in row if t] for row in run[role].encode(texts).to_list()]
    assert [[t for t in row if t] for row in first_batch(given).tolist()] == expected

"""pipelines.names on small directories the tests write: cleaning, splits, bad input."""

import json
import unicodedata
from collections import Counter

import numpy as np
import pytest

import pipelines
from pipelines import names

GERMAN = ["Großmann", "Müller", "Schmidt", "Schmidt", "Weber", "Wagner", "Becker", "Hoffmann",
          "Schäfer", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Neumann", "Rossi"]
ITALIAN = ["Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
           "Marino", "Greco", "Bruno", "Gallo", "Conti", "De Luca", "D'Angelo"]
POLISH = ["Broż", "Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kowalczyk", "Kamiński",
          "Lewandowski", "Zieliński", "Szymański", "Woźniak", "Dąbrowski"]
BAD = ["", "   ", "Rafaj1", "Lu:", "To The First Page", "To The First\u00a0 Page"]


def write_names(root, extra_lines=b""):
    folder = root / "names"
    folder.mkdir(parents=True)
    (folder / "German.txt").write_text("\n".join(GERMAN + BAD) + "\n", encoding="utf-8")
    (folder / "Italian.txt").write_text("\n".join(f"{n}  " for n in ITALIAN) + "\n",
                                        encoding="utf-8")
    polish = "\n".join([unicodedata.normalize("NFD", POLISH[0])] + POLISH[1:]) + "\n"
    (folder / "Polish.txt").write_bytes(polish.encode("utf-8") + extra_lines)
    return folder


def with_test_dir(tmp_path, **files):
    """Write the names directory under ``tmp_path/a`` and a test directory of `files`
    (``{language: text}``); return the test directory."""
    write_names(tmp_path / "a")
    other = tmp_path / "other"
    other.mkdir()
    for language, text in files.items():
        (other / f"{language}.txt").write_text(text, encoding="utf-8")
    return other


def examples(ds, vocab):
    """(decoded name, label) of every element ([UNK] for characters unseen in training)."""
    out = []
    for x, y in ds.as_numpy_iterator():
        out += list(zip(vocab.decode(x), y.tolist(), strict=True))
    return out


def id_examples(ds):
    """(token ids without padding, label) of every element."""
    return [(tuple(int(t) for t in row if t), int(label))
            for x, y in ds.as_numpy_iterator() for row, label in zip(x, y, strict=True)]


@pytest.fixture
def loaded(tmp_path):
    write_names(tmp_path, extra_lines=b"Nowa\xffk\n")
    return names.load(data_dir=str(tmp_path), seed=0, batch_size=4)


def test_counts_and_dropped_lines(loaded):
    info = loaded.info
    assert info.task == "classification"
    assert info.labels == ["German", "Italian", "Polish"]
    assert info.dropped == {"artifact": 2, "empty": 2, "invalid": 2, "non_utf8": 1}
    assert sum(info.counts.values()) == len(GERMAN) + len(ITALIAN) + len(POLISH)


def test_splits_are_disjoint_and_cover_the_clean_names(loaded):
    vocab = loaded.info.vocabulary
    split_examples = {s: id_examples(getattr(loaded, s)) for s in ("train", "validation", "test")}
    for s, ex in split_examples.items():
        assert len(ex) == loaded.info.counts[s]
    keys = {s: {name for name, _ in ex} for s, ex in split_examples.items()}
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    everything = Counter(e for ex in split_examples.values() for e in ex)
    expected = Counter([(n, 0) for n in GERMAN] + [(n, 1) for n in ITALIAN]
                       + [(n, 2) for n in POLISH])
    expected = Counter({(tuple(vocab.encode(n).to_list()[0]), y): c
                        for (n, y), c in expected.items()})
    assert everything == expected  # NFD "Broż" arrives NFC, trailing spaces stripped
    assert "ż" in vocab.tokens or ("Broż", 2) in loaded.info.test_examples


def test_elements_and_class_weight(loaded):
    x, y = next(iter(loaded.train))
    assert x.dtype.name == "int32" and y.dtype.name == "int32"
    assert x.shape[0] == y.shape[0] <= 4 and len(x.shape) == 2
    train_labels = [label for _, label in examples(loaded.train, loaded.info.vocabulary)]
    counts = Counter(train_labels)
    for label, weight in loaded.info.class_weight.items():
        assert weight == pytest.approx(len(train_labels) / (3 * counts[label]))


def test_test_examples_are_raw_text_with_label_ids(loaded):
    vocab = loaded.info.vocabulary
    raw = [(tuple(vocab.encode(t).to_list()[0]), y) for t, y in loaded.info.test_examples]
    assert sorted(raw) == sorted(id_examples(loaded.test))
    assert all(isinstance(t, str) for t, _ in loaded.info.test_examples)


def test_info_save_writes_vocabulary_and_summary(loaded, tmp_path):
    path = loaded.info.save(tmp_path / "meta")
    summary = json.loads(path.read_text(encoding="utf-8"))
    assert summary["counts"] == loaded.info.counts and summary["task"] == "classification"
    assert summary["vocabulary_sizes"] == {"text": loaded.info.vocabulary.size}
    assert pipelines.Vocabulary.from_json(tmp_path / "meta" / "vocab_text.json") == \
        loaded.info.vocabulary


def test_dropped_lines_are_logged(tmp_path, caplog):
    write_names(tmp_path)
    with caplog.at_level("WARNING", logger="pipelines"):
        names.load(data_dir=str(tmp_path))
    assert "names: skipped {'artifact': 2, 'empty': 2, 'invalid': 2}" in caplog.text


def test_same_seed_same_split_other_seed_other_split(tmp_path):
    write_names(tmp_path)
    def test_names(seed):
        s = names.load(data_dir=str(tmp_path), seed=seed)
        return sorted(t for t, _ in s.info.test_examples)
    assert test_names(1) == test_names(1)
    assert test_names(1) != test_names(2)


def test_language_subset_removes_names_in_both(tmp_path):
    write_names(tmp_path)
    s = names.load(data_dir=str(tmp_path), languages=("German", "Italian"))
    assert s.info.labels == ["German", "Italian"]
    assert s.info.dropped["ambiguous"] == 2  # "Rossi" in both files
    everything = [n for split in (s.train, s.validation, s.test)
                  for n, _ in examples(split, s.info.vocabulary)]
    assert "Rossi" not in everything
    assert len(everything) == len(GERMAN) + len(ITALIAN) - 2


def test_deduplicate_and_lowercase(tmp_path):
    write_names(tmp_path)
    s = names.load(data_dir=str(tmp_path), deduplicate=True, lowercase=True)
    assert s.info.dropped["duplicate"] == 1  # the second "Schmidt"
    assert s.info.vocabulary.lowercase
    assert not any(c.isupper() for c in s.info.vocabulary.tokens[4:])


def test_lowercased_names_are_split_by_their_lowercase_form(tmp_path):
    """With `lowercase` (names-de-it), "Abel" and "ABEL" are one name to the model: split by
    the raw text, they fell into different splits and the test set held training names."""
    folder = tmp_path / "names"
    folder.mkdir()
    stems = [f"{a}{b}{c}" for a in "bdkt" for b in "aeiou" for c in "lmnr"]  # 80 names
    for language, ending in (("German", "berg"), ("Italian", "ini")):
        rows = [f"{s}{ending}".capitalize() for s in stems] + [f"{s}{ending}".upper() for s in stems]
        (folder / f"{language}.txt").write_text("\n".join(rows) + "\n")
    s = names.load(data_dir=str(tmp_path), lowercase=True, seed=1)
    found = {split: {n for n, _ in examples(getattr(s, split), s.info.vocabulary)}
             for split in ("train", "validation", "test")}
    assert all(found.values())
    assert not found["train"] & found["test"] and not found["train"] & found["validation"]
    assert not found["validation"] & found["test"]
    # A --test-data name in other capitals leaves training too.
    other = tmp_path / "other"
    other.mkdir()
    (other / "German.txt").write_text("BALBERG\n")
    s = names.load(data_dir=str(tmp_path), lowercase=True, test_path=str(other))
    assert s.info.dropped["in_test_path"] == 2  # "Balberg" and "BALBERG"
    trained = [n for split in (s.train, s.validation) for n, _ in examples(split, s.info.vocabulary)]
    assert "balberg" not in trained


def test_test_path_replaces_test_split(tmp_path):
    other = with_test_dir(tmp_path, German="Schmidt\nZimmermann\n")
    s = names.load(data_dir=str(tmp_path / "a"), test_path=str(other))
    assert s.info.counts["test"] == 2
    assert s.info.dropped["in_test_path"] == 2  # both "Schmidt" lines left training
    trained = [n for split in (s.train, s.validation) for n, _ in examples(split, s.info.vocabulary)]
    assert "Schmidt" not in trained


def test_test_path_with_unknown_language(tmp_path):
    other = with_test_dir(tmp_path, Klingon="Worf\n")
    with pytest.raises(ValueError, match=r"Expected <Language>.txt files for languages among"):
        names.load(data_dir=str(tmp_path / "a"), test_path=str(other))


def test_language_subset_reads_only_its_files_from_a_full_test_directory(tmp_path):
    # Polish is not a chosen language.
    other = with_test_dir(tmp_path, German="Wegner\nRusso\n", Italian="Gallini\n",
                          Polish="Nowak\n")
    s = names.load(data_dir=str(tmp_path / "a"), test_path=str(other),
                   languages=("German", "Italian"))
    assert sorted(examples(s.test, s.info.vocabulary)) == [("Gallini", 1), ("Wegner", 0)]
    # "Russo", Italian here and German there, is ambiguous across the two directories.
    assert s.info.dropped["test_ambiguous"] == 1
    assert s.info.dropped["ambiguous"] == 2 + 1  # both "Rossi" lines and the Italian "Russo"
    trained = [n for split in (s.train, s.validation) for n, _ in examples(split, s.info.vocabulary)]
    assert "Russo" not in trained and "Nowak" not in trained


@pytest.mark.parametrize("empty", ["\n", ""], ids=["blank-line", "0-byte"])
def test_test_directory_may_hold_an_empty_language_file(tmp_path, empty):
    other = with_test_dir(tmp_path, German="Wegner\n", Italian=empty)
    s = names.load(data_dir=str(tmp_path / "a"), test_path=str(other))
    assert examples(s.test, s.info.vocabulary) == [("Wegner", 0)]
    (other / "German.txt").write_text("Rafaj1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"but none has a valid line \(dropped: "):
        names.load(data_dir=str(tmp_path / "a"), test_path=str(other))


def test_language_subset_with_a_test_directory_missing_its_files(tmp_path):
    other = with_test_dir(tmp_path, Polish="Nowak\n")
    with pytest.raises(ValueError, match=r"at least one of \['German', 'Italian'\]. Received "
                                         r"files for \['Polish'\]"):
        names.load(data_dir=str(tmp_path / "a"), test_path=str(other),
                   languages=("German", "Italian"))


def test_given_vocabulary_encodes_every_split(tmp_path):
    write_names(tmp_path)
    trained = names.load(data_dir=str(tmp_path), seed=1).info.vocabulary
    built = names.load(data_dir=str(tmp_path), seed=2)
    assert built.info.vocabulary.tokens != trained.tokens
    given = names.load(data_dir=str(tmp_path), seed=2, vocabularies={"text": trained})
    assert given.info.vocabulary is trained
    # Same names in the same order (one pass: each pass reshuffles), as the given ids.
    built_examples = examples(built.train, built.info.vocabulary)
    rows = trained.encode([n for n, _ in built_examples]).to_list()
    assert id_examples(given.train) == [(tuple(r), y) for r, (_, y) in
                                        zip(rows, built_examples, strict=True)]


def test_test_path_not_a_directory(tmp_path):
    write_names(tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="Expected a directory of <Language>.txt files"):
        names.load(data_dir=str(tmp_path / "a"), test_path=str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=r"German.txt', but it is a file"):
        names.load(data_dir=str(tmp_path / "a"), test_path=str(tmp_path / "a/names/German.txt"))


def test_strict_mode_names_the_bad_line(tmp_path):
    write_names(tmp_path)
    with pytest.raises(ValueError, match=r"German.txt', line 19: not a name \(invalid\)"):
        names.load(data_dir=str(tmp_path), strict=True)


def test_strict_mode_non_utf8(tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "A.txt").write_bytes(b"Good\nBa\xe9d\n")
    (folder / "B.txt").write_bytes(b"Other\n")
    with pytest.raises(ValueError, match=r"A.txt', line 2: not valid UTF-8 \(byte 0xe9"):
        names.read_names_dir(folder, strict=True)


def test_missing_language_file(tmp_path):
    write_names(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"Expected Spanish.txt in"):
        names.load(data_dir=str(tmp_path), languages=("German", "Spanish"))


def test_empty_file_and_file_without_valid_names(tmp_path):
    folder = write_names(tmp_path)
    (folder / "Irish.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"Irish.txt', but the file is empty"):
        names.load(data_dir=str(tmp_path))
    (folder / "Irish.txt").write_text("123\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"Expected names in .*Irish.txt', but it has no valid"):
        names.load(data_dir=str(tmp_path))


def test_argument_errors(tmp_path):
    write_names(tmp_path)
    with pytest.raises(ValueError, match=r"argument `fractions`. Expected three non-negative"):
        names.load(data_dir=str(tmp_path), fractions=(0.5, 0.2, 0.2))
    # 5 (from --set languages=5) raised a TypeError; a repeated language read its file twice,
    # labelled every name with the second copy's id and scored a one-class task as 100%.
    for bad in ("German", 5, ("German", 7), ("German", "German"), ("German", "Italian", "German")):
        with pytest.raises(ValueError, match=r"argument `languages`. Expected a sequence of at"):
            names.load(data_dir=str(tmp_path), languages=bad)
    # Checked before any file is read: "a" and -1 failed in NumPy, "no" lowercased.
    for bad in ("a", -1):
        with pytest.raises(ValueError, match=r"argument `seed`. Expected a non-negative integer"):
            names.load(data_dir=str(tmp_path / "absent"), seed=bad)
    with pytest.raises(ValueError, match=r"argument `lowercase`. Expected a bool"):
        names.load(data_dir=str(tmp_path / "absent"), lowercase="no")


def test_registry_and_split_helpers():
    assert set(pipelines.SOURCES) == {"names", "sst2", "imdb", "shakespeare", "translation",
                                      "dates", "adding", "copy_memory"}
    assert pipelines.get_source("names").load is names.load
    with pytest.raises(ValueError, match=r"argument `name`. Expected one of \{'names'"):
        pipelines.get_source("mnist")
    split = pipelines.splits.assign_splits(["a", "b", "a", "c"] * 5, (0.4, 0.3, 0.3), seed=0)
    by_key = {}
    for key, s in zip(["a", "b", "a", "c"] * 5, split, strict=True):
        by_key.setdefault(key, set()).add(int(s))
    assert all(len(v) == 1 for v in by_key.values())
    np.testing.assert_array_equal(
        split, pipelines.splits.assign_splits(["a", "b", "a", "c"] * 5, (0.4, 0.3, 0.3), 0))


def test_pretrain_corpus_is_every_language_less_the_held_out_names(tmp_path):
    other = with_test_dir(tmp_path, German="Nowak\nZimmermann\n")  # Nowak: Polish here
    s = names.load(data_dir=str(tmp_path / "a"), languages=("German", "Italian"),
                   pretrain=True, test_path=str(other), fractions=(0.7, 0.3, 0.0), seed=1,
                   lowercase=True)
    p = s.pretrain
    assert p.info.labels == ["German", "Italian", "Polish"] and p.test is None
    assert p.info.vocabulary is s.info.vocabulary  # one vocabulary for both tasks

    vocab = s.info.vocabulary
    held = {n for part in (s.validation, s.test) for n, _ in examples(part, vocab)}
    assert {"nowak", "zimmermann"} <= held and len(held) > 2
    clean = [(n, lang) for lang, lines in
             (("German", GERMAN), ("Italian", ITALIAN), ("Polish", POLISH)) for n in lines]
    held_ids = {ids for part in (s.validation, s.test) for ids, _ in id_examples(part)}
    encoded = [(tuple(vocab.encode([n]).to_list()[0]), p.info.labels.index(lang))
               for n, lang in clean]
    expected = Counter(e for e in encoded if e[0] not in held_ids)
    assert Counter(id_examples(p.train) + id_examples(p.validation)) == expected
    # Its bad lines (German.txt's) and the names held out are counted, as the task's are.
    held_lines = len(clean) - sum(expected.values())
    assert held_lines > 2
    assert p.info.dropped == {"artifact": 2, "empty": 2, "invalid": 2, "held_out": held_lines}
    # The task's training names are part of it, with their languages ("Rossi", dropped from
    # the task as ambiguous, in both).
    trained = [(n, s.info.labels[y]) for n, y in examples(s.train, vocab)]
    corpus = [(n, p.info.labels[y]) for part in (p.train, p.validation)
              for n, y in examples(part, vocab)]
    assert trained and all(example in corpus for example in trained)
    assert "ń" in vocab.tokens  # built on the corpus, whose Polish names the task lacks
    assert "ń" not in names.load(data_dir=str(tmp_path / "a"), languages=("German", "Italian"),
                                 test_path=str(other), lowercase=True).info.vocabulary.tokens


def test_pretrain_vocabulary_knows_every_character_the_task_trains_on(tmp_path):
    # The vocabulary is built on the corpus's train split; a task training name that fell
    # in the corpus's validation split took characters only it has to the OOV id.
    write_names(tmp_path)
    with open(tmp_path / "names" / "Italian.txt", "a", encoding="utf-8") as f:
        f.write("Giùgovaz\n")
    missed = 0
    for seed in range(100):
        s = names.load(data_dir=str(tmp_path), languages=("German", "Italian"), pretrain=True,
                       fractions=(0.8, 0.2, 0.0), seed=seed)
        vocab = s.info.vocabulary
        in_train = "Giùgovaz" in {n for n, _ in examples(s.train, vocab)}
        in_corpus_train = "Giùgovaz" in {n for n, _ in examples(s.pretrain.train, vocab)}
        missed += in_train and not in_corpus_train
        assert all(1 not in ids for ids, _ in id_examples(s.train)), seed
        assert ("ù" in vocab.tokens) == (in_train or in_corpus_train), seed
        if missed:
            break
    assert missed  # the case arose


def test_pretrain_needs_a_language_subset(tmp_path):
    write_names(tmp_path)
    with pytest.raises(ValueError, match=r"argument `pretrain`. Expected false without "
                                         r"`languages`.*Received: pretrain=True"):
        names.load(data_dir=str(tmp_path), pretrain=True)
    assert names.load(data_dir=str(tmp_path), languages=("German", "Polish")).pretrain is None

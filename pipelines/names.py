"""`names`: surnames -> language of origin (PyTorch "classifying names" tutorial data).

Layout: a directory of ``<Language>.txt`` files, one UTF-8 surname per line; the label is the
file name (``<data_dir>/names/``). Public copy: the tutorial's ``data.zip``
(``data/names/*.txt``).

Cleaning, each count reported in ``info.dropped``:

- lines are stripped; ``"empty"`` lines dropped; lines that are not UTF-8 (``"non_utf8"``);
- ``"invalid"``: characters other than letters, inner spaces, apostrophes and hyphens
  (``Rafaj1``, ``Lu:``, ``Jevolojnov,``, ``Maxa/B``);
- ``"artifact"``: the scraped page footer ``To The First Page`` (24 lines of Russian.txt);
- ``"ambiguous"``: with a language subset (``languages=("German", "Italian")`` as in the seed
  tutorial), names present in more than one chosen language are removed (`drop_ambiguous`);
- ``"duplicate"``: repeated (name, language) lines, only with ``deduplicate=True`` (by default
  duplicates stay, as in the tutorial, and always share a split).

Splits: distinct names, stratified by language, seeded; a name is never in two splits.
With a language subset, ``pretrain=True`` adds ``Splits.pretrain``: every file's names, labelled
by all languages, less every name of the subset's validation and test splits (in any file), to
pretrain the model on before it learns the subset.
Element: ``(char_ids int32 [B, T], label int32 [B])``. ``info.class_weight`` balances the
languages (Russian is ~47% of all names).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from pipelines import _checks
from pipelines.classification import assemble, by_split
from pipelines.download import Remote, locate
from pipelines.files import read_lines, skip
from pipelines.splits import Splits, assign_splits, select
from pipelines.text import Vocabulary, normalize

LANGUAGES = (
    "Arabic",
    "Chinese",
    "Czech",
    "Dutch",
    "English",
    "French",
    "German",
    "Greek",
    "Irish",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Scottish",
    "Spanish",
    "Vietnamese",
)
REMOTE = Remote(
    url="https://download.pytorch.org/tutorial/data.zip",
    target="names",
    members={"data/names/": "names/"},
    about="PyTorch tutorial 'Classifying Names with a Character-Level RNN'",
)
# (train, validation, test) shares of the distinct names of the pretraining corpus.
PRETRAIN_FRACTIONS = (0.95, 0.05, 0.0)
_VALID = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")
_ARTIFACT = re.compile(r"to\s+the\s+first\s+page", re.IGNORECASE)


def clean_name(line: str) -> tuple[str | None, str | None]:
    """(name, None) for a usable line, else (None, reason)."""
    name = normalize(line.strip())
    if not name:
        return None, "empty"
    if _ARTIFACT.fullmatch(name):
        return None, "artifact"
    if not _VALID.fullmatch(name):
        return None, "invalid"
    return name, None


def read_names_dir(
    directory: str | Path,
    languages: Sequence[str] | None = None,
    *,
    strict: bool = False,
    allow_empty: bool = False,
) -> tuple[list[str], list[str], Counter, dict[str, int]]:
    """Read ``<Language>.txt`` files: (names, languages, dropped counts, kept lines per file).

    `allow_empty`: a file without a valid name is not an error (test data may hold no name
    of some language); at least one name must remain overall.

    Raises:
        FileNotFoundError: `directory` missing, holding no ``*.txt``, or lacking a requested
            language's file.
        ValueError: a file is empty or keeps no valid name; with `strict`, the first bad line.
    """
    directory = Path(directory)
    if not directory.is_dir():
        found = "it is a file" if directory.exists() else "there is no such directory"
        raise FileNotFoundError(
            f"Expected a directory of <Language>.txt files (one name per line) at "
            f"{str(directory)!r}, but {found}."
        )
    files = {p.stem: p for p in sorted(directory.glob("*.txt"))}
    if not files:
        raise FileNotFoundError(
            f"Expected <Language>.txt files (one name per line) in {str(directory)!r}, "
            "but it holds no .txt file."
        )
    chosen = list(files) if languages is None else list(languages)
    missing = [lang for lang in chosen if lang not in files]
    if missing:
        raise FileNotFoundError(
            f"Expected {missing[0]}.txt in {str(directory)!r} (requested language "
            f"{missing[0]!r}). Found: {sorted(files)}."
        )
    names, labels, dropped, kept = [], [], Counter(), {}
    for lang in chosen:
        if allow_empty and files[lang].stat().st_size == 0:
            kept[lang] = 0  # a 0-byte file holds no name, as one of blank lines does
            continue
        lines = read_lines(files[lang], f"a {lang} names file", strict=strict)
        dropped.update(lines.dropped)
        before = len(names)
        for number, line in lines:
            name, reason = clean_name(line)
            if name is None:
                if strict and reason != "empty":
                    raise ValueError(
                        f"{str(files[lang])!r}, line {number}: not a name "
                        f"({reason}). Received: {line!r}"
                    )
                skip(dropped, reason, files[lang], number, line)
                continue
            names.append(name)
            labels.append(lang)
        kept[lang] = len(names) - before
        if kept[lang] == 0 and not allow_empty:
            raise ValueError(
                f"Expected names in {str(files[lang])!r}, but it has no valid "
                f"line (dropped so far: {dict(dropped)})."
            )
    if not names:
        raise ValueError(
            f"Expected names in the <Language>.txt files of {str(directory)!r}, but none has "
            f"a valid line (dropped: {dict(dropped)})."
        )
    return names, labels, dropped, kept


def _read_test_dir(
    path: str, languages: Sequence[str] | None, label_names: Sequence[str], *, strict: bool
) -> tuple[list[str], list[str], Counter]:
    """The names of a `test_path` directory. With a language subset, only those languages'
    files are read, so the source's whole directory (all 18 files) serves as test data."""
    directory = Path(path)
    chosen = None
    if languages is not None and directory.is_dir():
        chosen = [lang for lang in languages if (directory / f"{lang}.txt").is_file()]
        if not chosen:
            raise ValueError(
                f"Invalid test data at {str(path)!r}. Expected <Language>.txt files for at least "
                f"one of {list(languages)}. Received files for "
                f"{sorted(p.stem for p in directory.glob('*.txt'))}."
            )
    test_names, test_langs, test_dropped, _ = read_names_dir(
        directory, chosen, strict=strict, allow_empty=True
    )
    unknown = sorted(set(test_langs) - set(label_names))
    if unknown:
        raise ValueError(
            f"Invalid test data at {str(path)!r}. Expected <Language>.txt files for "
            f"languages among {list(label_names)}. Received files for {unknown}."
        )
    return test_names, test_langs, test_dropped


def locate_data(
    *, data_dir: str | None = None, download: bool = True, path: str | None = None, **_
) -> Path:
    """The names directory: `path`, else ``names/`` in the data dir or cache, else downloaded."""
    if path:
        return Path(path)
    return locate(
        "names",
        what="the names dataset (<Language>.txt files)",
        explicit_dir=data_dir,
        remote=REMOTE,
        download=download,
        pattern="*.txt",
    )


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    path: str | None = None,
    languages: Sequence[str] | None = None,
    lowercase: bool = False,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    deduplicate: bool = False,
    drop_ambiguous: bool | None = None,
    download: bool = True,
    strict: bool = False,
    pretrain: bool = False,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Names by language as batched datasets.

    Args:
        path: the names directory itself (default: ``<data_dir>/names``).
        languages: a subset of file names (e.g. ``("German", "Italian")``); default all files.
            Labels follow this order (sorted file names by default).
        lowercase: lowercase names (the vocabulary then has no capitals).
        fractions: (train, validation, test) shares of the distinct names; with `test_path`
            the test share goes to training.
        deduplicate: drop repeated (name, language) lines.
        drop_ambiguous: drop names found in several chosen languages (default: only when
            `languages` is given).
        test_path: a directory in the same layout used as the test split (its names are
            removed from train / validation). With `languages`, only those languages' files
            are read from it, and `drop_ambiguous` applies across both directories
            (``dropped["test_ambiguous"]``).
        pretrain: with `languages`, also return ``Splits.pretrain``: the names of every file,
            labelled by all languages, without any name of this split's validation or test
            set, in a train split and a validation split (``PRETRAIN_FRACTIONS``). The
            vocabulary is then built on that training split, plus any character of this
            split's training names that it lacks.
    """
    _checks.positive_int("batch_size", batch_size)
    seed = _checks.seed("seed", seed)
    download = _checks.boolean("download", download)
    strict = _checks.boolean("strict", strict)
    lowercase = _checks.boolean("lowercase", lowercase)
    deduplicate = _checks.boolean("deduplicate", deduplicate)
    pretrain = _checks.boolean("pretrain", pretrain)
    if drop_ambiguous is not None:
        drop_ambiguous = _checks.boolean("drop_ambiguous", drop_ambiguous)
    fr = _checks.fractions("fractions", fractions)
    if languages is not None and (
        not isinstance(languages, Sequence) or isinstance(languages, str) or len(languages) < 2
        or not all(isinstance(lang, str) for lang in languages)
        or len(set(languages)) != len(languages)
    ):
        raise _checks.invalid(
            "languages", "a sequence of at least two distinct language names", languages
        )
    if pretrain and languages is None:
        raise _checks.invalid(
            "pretrain", "false without `languages` (it pretrains a language subset's model on "
            "all languages)", pretrain
        )
    directory = locate_data(data_dir=data_dir, download=download, path=path)
    names, langs, dropped, _ = read_names_dir(directory, languages, strict=strict)
    label_names = sorted(set(langs)) if languages is None else list(languages)
    index = {lang: i for i, lang in enumerate(label_names)}

    keys = [normalize(n, lowercase) for n in names]
    extra_test = None
    if test_path is not None:
        test_names, test_langs, test_dropped = _read_test_dir(
            test_path, languages, label_names, strict=strict
        )
        dropped.update({f"test_{k}": v for k, v in test_dropped.items()})
        extra_test = (test_names, test_langs, [normalize(n, lowercase) for n in test_names])
    if drop_ambiguous if drop_ambiguous is not None else languages is not None:
        # Over both directories: a name in two chosen languages is ambiguous wherever it is.
        seen: dict[str, set[str]] = {}
        pairs = zip(keys, langs, strict=True)
        if extra_test is not None:
            pairs = itertools.chain(pairs, zip(extra_test[2], extra_test[1], strict=True))
        for key, lang in pairs:
            seen.setdefault(key, set()).add(lang)
        keep = [len(seen[k]) == 1 for k in keys]
        dropped["ambiguous"] += keep.count(False)
        names, langs, keys = select(keep, names, langs, keys)
        if extra_test is not None:
            keep = [len(seen[k]) == 1 for k in extra_test[2]]
            dropped["test_ambiguous"] += keep.count(False)
            extra_test = select(keep, *extra_test)
    if deduplicate:
        first = set()
        keep = [
            (k, g) not in first and not first.add((k, g)) for k, g in zip(keys, langs, strict=True)
        ]
        dropped["duplicate"] += keep.count(False)
        names, langs, keys = select(keep, names, langs, keys)

    labels = [index[g] for g in langs]
    if extra_test is not None:
        test_keys = set(extra_test[2])
        keep = [k not in test_keys for k in keys]
        dropped["in_test_path"] += keep.count(False)
        names, _, keys, labels = select(keep, names, langs, keys, labels)
        fr = (fr[0] + fr[2], fr[1], 0.0)

    split = assign_splits(keys, fr, seed, strata=labels)
    groups = by_split(names, labels, split)
    if extra_test is not None:
        groups["test"] = (list(extra_test[0]), [index[g] for g in extra_test[1]])
    options = dict(
        languages=label_names,
        lowercase=lowercase,
        fractions=fr,
        deduplicate=deduplicate,
        drop_ambiguous=drop_ambiguous,
        test_path=test_path,
        pretrain=pretrain,
    )
    vocab_options = dict(level="char", lowercase=lowercase)
    common = dict(name="names", vocab_options=vocab_options, batch_size=batch_size, seed=seed)
    if pretrain:
        held_out = {
            normalize(n, lowercase) for part in ("validation", "test") for n in groups[part][0]
        }
        corpus, corpus_labels, corpus_dropped = _pretraining_corpus(
            directory, held_out, lowercase, seed, strict
        )
        if not vocabularies:
            # Some of this split's training names may be in the corpus's validation split:
            # characters only they have are added.
            built = Vocabulary.build(corpus["train"][0], **vocab_options)
            vocabularies = {"text": built.extended(groups["train"][0])}
    splits = assemble(
        splits=groups, label_names=label_names, dropped=dropped, options=options,
        extra={"directory": str(directory)}, vocabularies=vocabularies, **common,
    )
    if pretrain:
        related = assemble(
            splits={**corpus, "test": ([], [])}, label_names=corpus_labels,
            dropped=corpus_dropped,
            options={"pretrain_for": label_names}, vocabularies=splits.info.vocabularies,
            **common,
        )
        splits.pretrain = Splits(related.train, related.validation, None, related.info)
    return splits


def _pretraining_corpus(
    directory: Path, held_out: set[str], lowercase: bool, seed: int, strict: bool
) -> tuple[dict[str, tuple[list[str], list[int]]], list[str], Counter]:
    """``({"train": (names, labels), "validation": ...}, languages, dropped)``: every file's
    names whose key is not in `held_out`, labelled by all languages, split by
    PRETRAIN_FRACTIONS; `dropped` counts the files' bad lines and the held-out names."""
    names, langs, dropped, _ = read_names_dir(directory, strict=strict)
    keys = [normalize(n, lowercase) for n in names]
    keep = [k not in held_out for k in keys]
    dropped["held_out"] += keep.count(False)
    names, langs, keys = select(keep, names, langs, keys)
    label_names = sorted(set(langs))
    labels = [label_names.index(g) for g in langs]
    split = assign_splits(keys, PRETRAIN_FRACTIONS, seed, strata=labels)
    groups = by_split(names, labels, split)
    del groups["test"]
    return groups, label_names, dropped

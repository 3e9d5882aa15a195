"""`sst2`: GLUE SST-2 binary sentiment (0 negative, 1 positive), word level.

Layout (``<data_dir>/sentiment/sst2/``): ``train.tsv`` and ``dev.tsv`` with the header
``sentence<TAB>label``; ``test.tsv`` is GLUE's unlabeled test (``index<TAB>sentence``). Public
copy: GLUE's ``SST-2.zip``.

Splits: train.tsv holds every phrase of the SST parse trees of the training sentences, next to
the sentences. By default (``validation="sentences"``) it is cut by sentence: each phrase
joins the longest phrase that contains it as a word span (its sentence, `sentence_roots`), a
`validation_fraction` of the sentences goes to validation with all their phrases, and
validation keeps only the whole sentences, like the dev set; their sub-phrases are not trained
on either (``dropped["validation_subphrase"]``). Cut by phrase instead
(``validation="phrases"``), sub-phrases of training sentences land in validation: it then
scores ~93% while dev sentences score ~84%, and best-checkpoint selection follows the leak.
The labeled GLUE dev set (872 sentences) is the test split, the usual SST-2 evaluation; the
unlabeled GLUE test sentences are returned in ``info.extra["unlabeled_test"]`` (for
prediction and export warm-up). Dev sentences that also occur in train.tsv are removed from
training (``dropped["in_test"]``).

Element: ``(word_ids int32 [B, T], label int32 [B])``; training batches are bucketed by length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipelines import _checks
from pipelines.classification import assemble, by_split
from pipelines.download import Remote, locate
from pipelines.splits import Splits, assign_splits, select
from pipelines.text import Vocabulary, normalize
from pipelines.tsv import read_column, read_labeled

LABELS = ["negative", "positive"]
VALIDATIONS = ("sentences", "phrases")
HEADER = ("sentence", "label")
REMOTE = Remote(
    url="https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
    target="sentiment/sst2/train.tsv",
    members={f"SST-2/{f}": f"sentiment/sst2/{f}" for f in ("train.tsv", "dev.tsv", "test.tsv")},
    about="GLUE benchmark, SST-2",
)


def read_labeled_tsv(
    path: str | Path, *, strict: bool = False
) -> tuple[list[str], list[int], Counter]:
    """(sentences, labels, dropped) of an SST-2 ``sentence<TAB>label`` file.

    Raises:
        ValueError: for GLUE's unlabeled test layout (``index<TAB>sentence``), naming it.
    """
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as f:
            first = f.readline().decode("utf-8", "replace").strip().split("\t")
        if first == ["index", "sentence"]:
            raise ValueError(
                f"Expected labeled SST-2 data at {str(path)!r} (header 'sentence<TAB>label'), "
                "but it is GLUE's unlabeled test file (header 'index<TAB>sentence'); it has no "
                "labels to evaluate against."
            )
    return read_labeled(
        path,
        what="an SST-2 TSV file (sentence<TAB>label)",
        header=HEADER,
        text_column="sentence",
        label_column="label",
        num_labels=2,
        strict=strict,
    )


def sentence_roots(keys: Sequence[str]) -> dict[str, str]:
    """``{phrase: root}``: the root of a phrase is the longest phrase of `keys` holding it as a
    contiguous word span (ties: the first in sorted order), i.e. its sentence; a root is its
    own root. Phrases of a sentence missing from the file gather under their longest phrase.
    """
    by_words: dict[tuple[str, ...], str] = {}
    for key in keys:
        by_words.setdefault(tuple(key.split()), key)
    roots: dict[str, str] = {}
    for words in sorted(by_words, key=lambda w: (-len(w), w)):
        key = by_words[words]
        if key in roots:
            continue
        roots[key] = key
        for i in range(len(words)):
            for j in range(i + 1, len(words) + 1):
                inner = by_words.get(words[i:j])
                if inner is not None and inner not in roots:
                    roots[inner] = key
    return {key: roots[by_words[tuple(key.split())]] for key in keys}


def sentence_split(keys: Sequence[str], fraction: float, seed: int) -> np.ndarray:
    """Per phrase: 0 train, 1 validation (a whole sentence), -1 neither (a sub-phrase of a
    validation sentence). A `fraction` of the sentences (`sentence_roots`) is held out."""
    roots = sentence_roots(keys)
    split = assign_splits([roots[k] for k in keys], (1 - fraction, fraction, 0.0), seed)
    inner = np.array([roots[k] != k for k in keys], dtype=bool)
    return np.where((split == 1) & inner, -1, split)


def locate_data(
    *, data_dir: str | None = None, download: bool = True, path: str | None = None, **_
) -> Path:
    """The SST-2 folder (train.tsv, dev.tsv, test.tsv): `path`, else found or downloaded."""
    if path:
        return Path(path)
    return locate(
        "sentiment/sst2/train.tsv",
        what="the SST-2 train file",
        explicit_dir=data_dir,
        remote=REMOTE,
        download=download,
    ).parent


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    path: str | None = None,
    validation_fraction: float = 0.05,
    validation: str = "sentences",
    lowercase: bool = True,
    max_tokens: int | None = None,
    min_count: int = 1,
    max_length: int | None = None,
    download: bool = True,
    strict: bool = False,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """SST-2 as batched datasets (see module docstring).

    Args:
        path: the folder holding train.tsv / dev.tsv (default ``<data_dir>/sentiment/sst2``).
        test_path: a labeled ``sentence<TAB>label`` TSV used as the test split instead of dev.
        validation: ``"sentences"`` (whole held-out sentences, see the module docstring) or
            ``"phrases"`` (a `validation_fraction` of the distinct phrases).
        max_tokens, min_count: vocabulary size limits. max_length: truncate longer sentences.
    """
    seed = _checks.seed("seed", seed)
    download = _checks.boolean("download", download)
    strict = _checks.boolean("strict", strict)
    lowercase = _checks.boolean("lowercase", lowercase)
    _checks.positive_int("batch_size", batch_size)
    vf = _checks.fraction("validation_fraction", validation_fraction)
    _checks.one_of("validation", validation, VALIDATIONS)
    folder = locate_data(data_dir=data_dir, download=download, path=path)
    texts, labels, dropped = read_labeled_tsv(folder / "train.tsv", strict=strict)
    test_file = Path(test_path) if test_path is not None else folder / "dev.tsv"
    test_texts, test_labels, test_dropped = read_labeled_tsv(test_file, strict=strict)
    dropped.update({f"test_{k}": v for k, v in test_dropped.items()})

    test_keys = {normalize(t, lowercase) for t in test_texts}
    keys = [normalize(t, lowercase) for t in texts]
    keep = [k not in test_keys for k in keys]
    dropped["in_test"] += keep.count(False)
    texts, labels, keys = select(keep, texts, labels, keys)

    if validation == "sentences":
        split = sentence_split(keys, vf, seed)
        keep = split >= 0
        dropped["validation_subphrase"] += int(np.sum(~keep))
        texts, labels, split = select(keep, texts, labels, split)
    else:
        split = assign_splits(keys, (1 - vf, vf, 0.0), seed)
    groups = by_split(texts, labels, np.asarray(split))
    groups["test"] = (test_texts, test_labels)
    extra: dict = {"directory": str(folder), "test_file": str(test_file)}
    if (folder / "test.tsv").is_file():
        unlabeled, unlabeled_dropped = read_column(
            folder / "test.tsv",
            what="GLUE's unlabeled SST-2 test file",
            header=("index", "sentence"),
            column="sentence",
            strict=strict,
        )
        dropped.update({f"unlabeled_test_{k}": v for k, v in unlabeled_dropped.items()})
        extra["unlabeled_test"] = unlabeled
    options = dict(
        validation_fraction=vf,
        validation=validation,
        lowercase=lowercase,
        max_tokens=max_tokens,
        min_count=min_count,
        max_length=max_length,
        test_path=test_path,
    )
    return assemble(
        name="sst2",
        splits=groups,
        label_names=LABELS,
        vocab_options=dict(
            level="word", lowercase=lowercase, max_tokens=max_tokens, min_count=min_count
        ),
        batch_size=batch_size,
        seed=seed,
        dropped=Counter(dropped),
        options=options,
        max_length=max_length,
        bucket=True,
        extra=extra,
        vocabularies=vocabularies,
    )

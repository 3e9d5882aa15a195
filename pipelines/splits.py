"""What a source returns (`Splits`, `SourceInfo`) and deterministic, leak-free split assignment."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines._checks import one_of
from pipelines.text import Vocabulary

logger = logging.getLogger("pipelines")
TASKS = ("classification", "language_model", "seq2seq", "regression")
SPLIT_NAMES = ("train", "validation", "test")
MAX_TEST_EXAMPLES = 256


@dataclass
class SourceInfo:
    """Metadata of a loaded source.

    Attributes:
        name: source name (``"names"``, ``"sst2"``, ...).
        task: ``"classification" | "language_model" | "seq2seq" | "regression"``.
        vocabulary: the vocabulary of single-vocabulary tasks (classification, language model).
        source_vocabulary, target_vocabulary: the two vocabularies of seq2seq tasks.
        labels: class names, index = label id (classifiers).
        counts: examples per split, e.g. ``{"train": 14423, "validation": 1804, "test": 1805}``.
        dropped: lines or examples removed while reading, by reason (``"non_utf8"``,
            ``"malformed"``, ``"bad_label"``, ``"empty"``, ``"invalid"``, ``"duplicate"``, ...).
        class_weight: ``{label: n_train / (n_classes * n_train_label)}`` (classifiers), for
            ``model.fit(class_weight=...)``.
        test_examples: up to 256 raw test examples, ``(text, target)``: target is the label id
            (classification), the target text (seq2seq), the next-character text (language
            model); ``(x, y)`` arrays for the synthetic numeric tasks.
        test_targets: every raw target text of the test split, in the test dataset's order
            (seq2seq): the references of BLEU, with words the vocabulary does not know.
        batch_size, seed: what the datasets were built with.
        options: the source options used (for reproducibility).
        extra: source-specific facts (e.g. ``"unlabeled_test"`` texts for sst2, layouts).
        fingerprint: `pipelines.batching.fingerprint` of the encoded splits.
    """

    name: str
    task: str
    vocabulary: Vocabulary | None = None
    source_vocabulary: Vocabulary | None = None
    target_vocabulary: Vocabulary | None = None
    labels: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    class_weight: dict[int, float] = field(default_factory=dict)
    test_examples: list[tuple[Any, Any]] = field(default_factory=list)
    test_targets: list[str] = field(default_factory=list, repr=False)
    batch_size: int = 64
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        one_of("task", self.task, TASKS)
        if self.dropped:
            logger.warning("%s: skipped %s", self.name, self.dropped)

    @property
    def vocabularies(self) -> dict[str, Vocabulary]:
        """The vocabularies present: ``{"text": ...}`` or ``{"source": ..., "target": ...}``."""
        found = {
            "text": self.vocabulary,
            "source": self.source_vocabulary,
            "target": self.target_vocabulary,
        }
        return {k: v for k, v in found.items() if v is not None}

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description (no datasets, no vocabulary contents)."""
        return {
            "name": self.name,
            "task": self.task,
            "labels": list(self.labels),
            "counts": dict(self.counts),
            "dropped": dict(self.dropped),
            "class_weight": {str(k): v for k, v in self.class_weight.items()},
            "vocabulary_sizes": {k: v.size for k, v in self.vocabularies.items()},
            "batch_size": self.batch_size,
            "seed": self.seed,
            "options": _jsonable(self.options),
            "fingerprint": self.fingerprint,
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``info.json`` and ``vocab_<role>.json`` files into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for role, vocab in self.vocabularies.items():
            vocab.to_json(directory / f"vocab_{role}.json")
        path = directory / "info.json"
        path.write_text(
            json.dumps(self.summary(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return path

    @staticmethod
    def load_vocabularies(directory: str | os.PathLike) -> dict[str, Vocabulary]:
        """The ``vocab_<role>.json`` files `save` wrote: ``{role: Vocabulary}`` (may be empty)."""
        directory = Path(directory)
        return {
            role: Vocabulary.from_json(directory / f"vocab_{role}.json")
            for role in ("text", "source", "target")
            if (directory / f"vocab_{role}.json").is_file()
        }


@dataclass
class Splits:
    """Batched datasets of a source and its metadata. `test` may be `None` (shakespeare).

    `pretrain`: a larger related task to train the model on first (its own train and
    validation splits and labels, encoded with this task's vocabulary), or None; e.g.
    ``names.load(languages=..., pretrain=True)``: every language's names.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset | None
    info: SourceInfo
    pretrain: Splits | None = None


def assign_splits(
    keys: Sequence[str],
    fractions: tuple[float, float, float],
    seed: int,
    strata: Sequence[Any] | None = None,
) -> np.ndarray:
    """Split index (0 train, 1 validation, 2 test) per example, deterministic in `seed`.

    Examples with the same key always share a split, so no example (e.g. a name that occurs
    several times, or in several languages) is in two splits. With `strata` (e.g. labels) the
    distinct keys of each stratum, in sorted stratum order, are shuffled and cut by
    `fractions` (keys already placed by an earlier stratum keep their split), so every class
    is represented in proportion. Counts per stratum: ``round(n * f_val)``, ``round(n * f_test)``,
    the rest train.
    """
    keys = list(keys)
    strata = [0] * len(keys) if strata is None else list(strata)
    rng = np.random.default_rng(seed)
    placed: dict[str, int] = {}
    by_stratum: dict[Any, set[str]] = {}
    for key, stratum in zip(keys, strata, strict=True):
        by_stratum.setdefault(stratum, set()).add(key)
    for stratum in sorted(by_stratum, key=repr):
        free = sorted(k for k in by_stratum[stratum] if k not in placed)
        order = rng.permutation(len(free))
        n_val = int(np.floor(len(free) * fractions[1] + 0.5))
        n_test = int(np.floor(len(free) * fractions[2] + 0.5))
        for rank, i in enumerate(order):
            placed[free[i]] = 1 if rank < n_val else 2 if rank < n_val + n_test else 0
    return np.array([placed[k] for k in keys], dtype=np.int64)


def linked_keys(*columns: Sequence[str]) -> list[str]:
    """One `assign_splits` key per example, shared by every example linked to it by an equal value
    in any column, directly or through other examples (connected components): a sentence with
    two translations, one of which translates a third sentence, puts all three pairs in one
    split. The key is the component's smallest ``"<column index>:<value>"``."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    rows = [[f"{c}:{v}" for c, v in enumerate(values)] for values in zip(*columns, strict=True)]
    for row in rows:
        roots = sorted({find(v) for v in row})
        for root in roots[1:]:
            parent[root] = roots[0]  # the smaller root wins: the key is the component's minimum
    return [find(row[0]) for row in rows]


def balanced_class_weight(labels: Sequence[int], num_classes: int) -> dict[int, float]:
    """``n / (num_classes * n_c)`` per class (1.0 for a class absent from `labels`)."""
    counts = Counter(int(y) for y in labels)
    n = len(labels)
    return {c: (n / (num_classes * counts[c]) if counts[c] else 1.0) for c in range(num_classes)}


def sample_indices(n: int, seed: int, cap: int = MAX_TEST_EXAMPLES) -> list[int]:
    """Up to `cap` indices of range(n) in a seeded random order, so that every prefix of them
    is a sample of the whole split, not of its start (the files are sorted: names by language,
    sentence pairs by length)."""
    return np.random.default_rng(seed).permutation(n)[:cap].tolist()


def select(keep: Sequence[bool], *columns: Sequence[Any]) -> tuple[list[Any], ...]:
    """The rows of each column where `keep` is true."""
    return tuple([x for x, k in zip(col, keep, strict=True) if k] for col in columns)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

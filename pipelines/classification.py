"""Shared assembly of text-classification sources (names, sst2, imdb).

Element format: ``(token_ids int32 [B, T], label int32 [B])``, token ids padded with 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines import _checks
from pipelines.batching import batched, fingerprint
from pipelines.splits import SourceInfo, Splits, balanced_class_weight, sample_indices
from pipelines.text import Vocabulary


def assemble(
    *,
    name: str,
    splits: dict[str, tuple[list[str], list[int]]],
    label_names: Sequence[str],
    vocab_options: dict[str, Any],
    batch_size: int,
    seed: int,
    dropped: Counter,
    options: dict[str, Any],
    max_length: int | None = None,
    bucket: bool = False,
    extra: dict[str, Any] | None = None,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Build the vocabulary on the train texts, encode every split and batch it.

    Args:
        splits: ``{"train": (texts, labels), "validation": ..., "test": ...}``.
        max_length: keep the first `max_length` tokens of longer texts.
        bucket: bucket training batches by length (long, variable texts).
        vocabularies: the vocabularies to encode with, ``{role: Vocabulary}`` as in
            ``SourceInfo.vocabularies`` (evaluating a trained model); default: built on
            the training split.
    """
    _checks.optional_positive_int("max_length", max_length)
    train_texts, train_labels = splits["train"]
    if not train_texts and not vocabularies:
        raise ValueError(
            f"Source {name!r} has no training examples left after cleaning "
            f"and splitting (dropped: {dict(dropped)})."
        )
    if vocabularies:
        vocab = vocabularies["text"]
    else:
        vocab = Vocabulary.build(train_texts, **vocab_options)
    datasets, counts, encoded = {}, {}, {}
    for split, (texts, labels) in splits.items():
        ids = vocab.encode(texts)
        if max_length is not None:
            ids = ids[:, :max_length]
        keep = np.flatnonzero(ids.row_lengths().numpy() > 0)
        if len(keep) < len(texts):
            dropped["no_tokens"] += len(texts) - len(keep)
            ids = tf.gather(ids, keep)
            labels = [labels[i] for i in keep]
            splits[split] = ([texts[i] for i in keep], labels)
        counts[split] = len(labels)
        lengths = ids.row_lengths().numpy()
        y = np.asarray(labels, dtype=np.int32).reshape(-1)
        encoded[split] = (ids, y)
        datasets[split] = batched(
            (ids, y),
            training=split == "train",
            batch_size=batch_size,
            seed=seed,
            bucketing="sorted" if bucket else None,
            lengths=lengths,
        )
    test_texts, test_labels = splits["test"]
    info = SourceInfo(
        name=name,
        task="classification",
        vocabulary=vocab,
        labels=list(label_names),
        counts=counts,
        dropped={k: v for k, v in sorted(dropped.items()) if v},
        fingerprint=fingerprint(encoded),
        class_weight=balanced_class_weight(splits["train"][1], len(label_names)),
        test_examples=[
            (test_texts[i], int(test_labels[i])) for i in sample_indices(len(test_texts), seed)
        ],
        batch_size=batch_size,
        seed=seed,
        options=options,
        extra=extra or {},
    )
    return Splits(datasets["train"], datasets["validation"], datasets["test"], info)


def by_split(
    texts: Sequence[str], labels: Sequence[int], split: np.ndarray
) -> dict[str, tuple[list[str], list[int]]]:
    """Group examples by split index (0 train, 1 validation, 2 test), keeping file order."""
    out: dict[str, tuple[list[str], list[int]]] = {
        "train": ([], []),
        "validation": ([], []),
        "test": ([], []),
    }
    names = ("train", "validation", "test")
    for text, label, s in zip(texts, labels, split, strict=True):
        out[names[int(s)]][0].append(text)
        out[names[int(s)]][1].append(int(label))
    return out

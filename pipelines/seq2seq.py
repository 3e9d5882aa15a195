"""Shared assembly of sequence-to-sequence sources (translation, dates).

Element format: ``((src_ids int32 [B, Ts], tgt_in_ids int32 [B, Tt]), tgt_out_ids int32 [B, Tt])``.
The target is framed as ``[2, t1, ..., tn, 3]``; ``tgt_in = [2, t1, ..., tn]`` (starts with the
start id) and ``tgt_out = [t1, ..., tn, 3]`` (ends with the end id); padding is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipelines import transforms as T
from pipelines.batching import batched, fingerprint
from pipelines.splits import SourceInfo, Splits, sample_indices
from pipelines.text import Vocabulary


def assemble(
    *,
    name: str,
    splits: dict[str, tuple[list[str], list[str]]],
    source_options: dict[str, Any],
    target_options: dict[str, Any],
    batch_size: int,
    seed: int,
    dropped: Counter,
    options: dict[str, Any],
    bucket: bool = True,
    extra: dict[str, Any] | None = None,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Build both vocabularies on the train pairs, encode every split and batch it.

    Args:
        splits: ``{"train": (sources, targets), "validation": ..., "test": ...}`` (raw text).
        bucket: bucket training batches by the longer side's length.
        vocabularies: the vocabularies to encode with, ``{role: Vocabulary}`` as in
            ``SourceInfo.vocabularies`` (evaluating a trained model); default: built on
            the training split.
    """
    train_src, train_tgt = splits["train"]
    if not train_src and not vocabularies:
        raise ValueError(
            f"Source {name!r} has no training pairs left after cleaning and "
            f"splitting (dropped: {dict(dropped)})."
        )
    if vocabularies:
        src_vocab, tgt_vocab = vocabularies["source"], vocabularies["target"]
    else:
        src_vocab = Vocabulary.build(train_src, **source_options)
        tgt_vocab = Vocabulary.build(train_tgt, **target_options)
    datasets, counts, encoded = {}, {}, {}
    for split, (src, tgt) in splits.items():
        src_ids = src_vocab.encode(src)
        tgt_ids = tgt_vocab.encode(tgt, add_start=True, add_end=True)
        counts[split], encoded[split] = len(src), (src_ids, tgt_ids)
        longest = np.maximum(src_ids.row_lengths().numpy(), tgt_ids.row_lengths().numpy() - 1)
        datasets[split] = batched(
            (src_ids, tgt_ids),
            training=split == "train",
            batch_size=batch_size,
            seed=seed,
            maps=[T.teacher_forcing()],
            bucketing="sorted" if bucket else None,
            lengths=longest,
        )
    test_src, test_tgt = splits["test"]
    info = SourceInfo(
        name=name,
        task="seq2seq",
        source_vocabulary=src_vocab,
        target_vocabulary=tgt_vocab,
        counts=counts,
        dropped={k: v for k, v in sorted(dropped.items()) if v},
        test_examples=[(test_src[i], test_tgt[i]) for i in sample_indices(len(test_src), seed)],
        test_targets=list(test_tgt),
        fingerprint=fingerprint(encoded),
        batch_size=batch_size,
        seed=seed,
        options=options,
        extra=extra or {},
    )
    return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

"""The shared recipe from encoded examples (in memory) to batched `tf.data.Dataset`s.

The examples live in tensors (`RaggedTensor [N, None]` for token ids, arrays otherwise); the
pipeline moves only example *indices* and gathers a whole batch at once, which keeps `tf.data`'s
per-element overhead out of the way (about 5x faster than slicing examples one by one)::

    training:   range(N) -> shuffle(N, seed) -> length_sorted_batches (or batch) -> gather rows
                -> per-batch maps (e.g. teacher_forcing) -> to_dense (pad with 0) -> prefetch
    evaluation: range(N) -> batch -> gather rows -> maps -> to_dense -> cache -> prefetch

Evaluation order is the example order; the training order is reshuffled every epoch, the same
sequence of epochs for the same `seed`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines import transforms as T


def _leaves(structure: Any) -> list[tf.Tensor | tf.RaggedTensor]:
    return [
        leaf if isinstance(leaf, tf.RaggedTensor) else tf.convert_to_tensor(leaf)
        for leaf in tf.nest.flatten(structure)
    ]


def fingerprint(splits: Mapping[str, Any]) -> str:
    """sha256 of every split's encoded examples (token ids, row lengths, targets), in order: the
    same for the same data, split and vocabularies, different when any example changes. A
    resumed run compares it with the run's (`SourceInfo.fingerprint`)."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(name.encode())
        for leaf in _leaves(splits[name]):
            parts = ([leaf.flat_values, *leaf.nested_row_lengths()]
                     if isinstance(leaf, tf.RaggedTensor) else [leaf])
            for part in parts:
                array = np.ascontiguousarray(part.numpy())
                digest.update(f"{array.dtype}{array.shape}".encode())
                digest.update(array.tobytes())
    return digest.hexdigest()


def num_examples(structure: Any) -> int:
    first = tf.nest.flatten(structure)[0]
    return int(first.nrows() if isinstance(first, tf.RaggedTensor) else first.shape[0])


def gather_rows(structure: Any):
    """A function mapping an index vector ``[B]`` to the rows of `structure` (ragged stay ragged)."""
    leaves = _leaves(structure)

    def rows(indices: tf.Tensor):
        return tf.nest.pack_sequence_as(structure, [tf.gather(leaf, indices) for leaf in leaves])

    return rows


def examples_dataset(structure: Any) -> tf.data.Dataset:
    """Unbatched dataset of single examples (ragged rows become 1-D tensors), for element-level
    transforms such as `T.padded_batch` or `T.filter_by_length`."""
    leaves = _leaves(structure)

    def example(index: tf.Tensor):
        return tf.nest.pack_sequence_as(structure, [leaf[index] for leaf in leaves])

    return tf.data.Dataset.range(num_examples(structure)).map(
        example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def batched(
    structure: Any,
    *,
    training: bool,
    batch_size: int,
    seed: int,
    maps: Sequence[T.Transform] = (),
    bucketing: str | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
    boundaries: Sequence[int] | None = None,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """The batched dataset of `structure` (see module docstring).

    Args:
        maps: per-batch transforms on ragged batches, before padding (e.g. `teacher_forcing()`).
        bucketing: how training batches group examples by `lengths` (one per example):
            ``"sorted"``: `T.length_sorted_batches` (vectorized, the default of the sources);
            ``"boundaries"``: `T.bucket_by_length` at `boundaries` (tf.data's
            `bucket_by_sequence_length`, per element, ~10x slower); `None`: random batches.
    """
    n = num_examples(structure)
    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.apply(T.shuffle(max(1, n), seed=seed))
        if bucketing == "sorted":
            ds = ds.apply(T.length_sorted_batches(lengths, batch_size, seed, 64, drop_remainder))
        elif bucketing == "boundaries":
            table = tf.constant(np.asarray(lengths, dtype=np.int32))
            ds = ds.apply(
                T.bucket_by_length(
                    boundaries or T.length_boundaries(lengths),
                    batch_size,
                    lambda i: tf.gather(table, i),
                    drop_remainder,
                )
            )
        else:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    else:
        ds = ds.batch(batch_size)
    ds = ds.map(gather_rows(structure), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    for transform in maps:
        ds = ds.apply(transform)
    ds = ds.apply(T.to_dense())
    if not training:
        ds = ds.apply(T.cache())
    return ds.apply(T.prefetch())

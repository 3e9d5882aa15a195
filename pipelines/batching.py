"""The shared recipe from encoded examples to batched `tf.data.Dataset`s.

``training=True``: examples -> per-example maps -> cache -> seeded shuffle -> bucketing by length
(or padded batching) -> prefetch(AUTOTUNE). ``training=False``: the same without shuffle and
bucketing, so evaluation order is the example order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines import transforms as T

SHUFFLE_BUFFER = 100_000


def examples_dataset(structure: Any) -> tf.data.Dataset:
    """Dataset of examples from arrays / `RaggedTensor`s sharing their first dimension.

    A `RaggedTensor [N, None]` leaf yields 1-D tensors (rows), sliced from its flat values, which
    is much faster in `tf.data` than slicing the ragged tensor itself.
    """
    leaves = tf.nest.flatten(structure)
    inputs, rebuild = [], []
    for leaf in leaves:
        if isinstance(leaf, tf.RaggedTensor):
            values = leaf.flat_values
            inputs.append((leaf.row_starts(), leaf.row_lengths()))
            rebuild.append(values)
        else:
            inputs.append(tf.convert_to_tensor(leaf))
            rebuild.append(None)

    def example(*sliced):
        out = []
        for item, values in zip(sliced, rebuild, strict=True):
            if values is None:
                out.append(item)
            else:
                start, length = item
                out.append(values[start : start + length])
        return tf.nest.pack_sequence_as(structure, out)

    return tf.data.Dataset.from_tensor_slices(tuple(inputs)).map(
        example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )


def batched(
    structure: Any,
    *,
    training: bool,
    batch_size: int,
    seed: int,
    maps: Sequence[T.Transform] = (),
    boundaries: Sequence[int] | None = None,
    length_fn: T.LengthFn = T.longest_length,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """The batched dataset of `structure` (see module docstring).

    Args:
        maps: per-example transforms applied before caching (e.g. `teacher_forcing()`).
        boundaries: length-bucket boundaries for training batches; `None` or empty: plain
            padded batches.
    """
    n = int(tf.nest.flatten(structure)[0].shape[0])
    ds = examples_dataset(structure)
    for transform in maps:
        ds = ds.apply(transform)
    ds = ds.apply(T.cache())
    if training:
        ds = ds.apply(T.shuffle(max(1, min(n, SHUFFLE_BUFFER)), seed=seed))
        ds = ds.apply(T.bucket_by_length(boundaries or [], batch_size, length_fn, drop_remainder))
    else:
        ds = ds.apply(T.padded_batch(batch_size))
    return ds.apply(T.prefetch())


def ragged(rows: Sequence[Sequence[int]] | np.ndarray) -> tf.RaggedTensor:
    """int32 `RaggedTensor` of Python rows."""
    return tf.ragged.constant(list(rows), dtype=tf.int32, ragged_rank=1)

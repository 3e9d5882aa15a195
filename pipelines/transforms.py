"""`tf.data` transforms as `dataset.apply(...)` factories.

Each factory validates its options and returns a function `Dataset -> Dataset`, e.g.::

    ds = (examples_dataset((ids, labels))      # pipelines.batching; ids: RaggedTensor [N, None]
          .apply(filter_by_length(max_length=50))
          .apply(shuffle(10_000, seed=0))
          .apply(bucket_by_length([8, 16, 32], batch_size=64))
          .apply(prefetch()))

Element conventions: a "sequence" is a 1-D int tensor; length functions take the element's
components as positional arguments (as `tf.data` passes them) and return an int32 scalar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from pipelines._checks import boolean, invalid, positive_int
from pipelines._checks import seed as check_seed

Transform = Callable[[tf.data.Dataset], tf.data.Dataset]
LengthFn = Callable[..., tf.Tensor]


def first_length(*components) -> tf.Tensor:
    """Length of the first (possibly nested) component: ``len(x)`` for ``(x, y)``."""
    first = tf.nest.flatten(components)[0]
    return tf.shape(first, out_type=tf.int32)[0]


def longest_length(*components) -> tf.Tensor:
    """Largest length over all 1-D components (e.g. source and target of a pair)."""
    lengths = [
        tf.shape(c, out_type=tf.int32)[0] for c in tf.nest.flatten(components) if c.shape.rank == 1
    ]
    return tf.reduce_max(tf.stack(lengths))


def filter_by_length(
    max_length: int | None = None, min_length: int = 1, length_fn: LengthFn = longest_length
) -> Transform:
    """Keep elements with ``min_length <= length_fn(element) <= max_length``."""
    positive_int("min_length", min_length)
    if max_length is not None:
        positive_int("max_length", max_length)
        if max_length < min_length:
            raise invalid("max_length", f"an integer >= min_length={min_length}", max_length)

    def keep(*components):
        n = length_fn(*components)
        ok = n >= min_length
        return ok if max_length is None else tf.logical_and(ok, n <= max_length)

    return lambda ds: ds.filter(keep)


def padded_batch(batch_size: int, drop_remainder: bool = False) -> Transform:
    """Batch, right-padding every sequence component with 0 to the longest in the batch."""
    positive_int("batch_size", batch_size)
    drop_remainder = boolean("drop_remainder", drop_remainder)
    return lambda ds: ds.padded_batch(batch_size, drop_remainder=drop_remainder)


def length_boundaries(lengths: Sequence[int], num_buckets: int = 8) -> list[int]:
    """Bucket boundaries at the quantiles of `lengths` (distinct, increasing, > 1)."""
    positive_int("num_buckets", num_buckets)
    if len(lengths) == 0 or num_buckets == 1:
        return []
    qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, num_buckets + 1)[1:-1])
    return sorted({int(q) + 1 for q in qs if int(q) + 1 > 1})


def bucket_by_length(
    boundaries: Sequence[int],
    batch_size: int,
    length_fn: LengthFn = longest_length,
    drop_remainder: bool = False,
) -> Transform:
    """Group elements of similar length into padded batches (`bucket_by_sequence_length`).

    Bucket ``i`` holds lengths in ``[boundaries[i-1], boundaries[i])``; every bucket batches
    `batch_size` elements, padded with 0 to the longest in the batch. Less padding means less
    wasted recurrent computation; the order of batches is mixed by length.
    """
    positive_int("batch_size", batch_size)
    drop_remainder = boolean("drop_remainder", drop_remainder)
    if isinstance(boundaries, (str, bytes)) or not all(
        isinstance(b, (int, np.integer)) and not isinstance(b, bool) for b in boundaries
    ):
        raise invalid("boundaries", "strictly increasing positive integers", boundaries)
    boundaries = [int(b) for b in boundaries]
    if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
        raise invalid("boundaries", "strictly increasing positive integers", boundaries)
    if not boundaries:
        return padded_batch(batch_size, drop_remainder)

    def apply(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.bucket_by_sequence_length(
            length_fn,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            padding_values=None,
            drop_remainder=drop_remainder,
        )

    return apply


def length_sorted_batches(
    lengths: Sequence[int] | np.ndarray,
    batch_size: int,
    seed: int,
    pool_batches: int = 64,
    drop_remainder: bool = False,
) -> Transform:
    """Batch a dataset of example *indices* into batches of similar length, vectorized.

    Takes ``pool_batches * batch_size`` indices at a time (shuffle them first), sorts them by
    ``lengths[index]``, cuts the pool into batches and shuffles the batches (seeded). The same
    aim as `bucket_by_length` (little padding), but the work is per pool, not per element, so
    it runs ~10x faster than `bucket_by_sequence_length` on this machine. Output: int64 index
    vectors ``[<= batch_size]``; gather the rows afterwards.
    """
    positive_int("batch_size", batch_size)
    positive_int("pool_batches", pool_batches)
    seed = check_seed("seed", seed)
    drop_remainder = boolean("drop_remainder", drop_remainder)
    table = tf.constant(np.asarray(lengths, dtype=np.int32))

    def sorted_batches(indices: tf.Tensor) -> tf.data.Dataset:
        order = tf.argsort(tf.gather(table, indices), stable=True)
        indices = tf.gather(indices, order)
        size = tf.shape(indices, out_type=tf.int64)[0]
        rows = (size + batch_size - 1) // batch_size
        padded = tf.pad(indices, [[0, rows * batch_size - size]], constant_values=-1)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(padded, [rows, batch_size]))

    def unpad(indices: tf.Tensor) -> tf.Tensor:
        return tf.boolean_mask(indices, indices >= 0)

    def apply(ds: tf.data.Dataset) -> tf.data.Dataset:
        ds = ds.batch(batch_size * pool_batches).flat_map(sorted_batches)
        ds = ds.shuffle(pool_batches, seed=seed).map(unpad)
        if drop_remainder:
            ds = ds.filter(lambda i: tf.shape(i)[0] == batch_size)
        return ds

    return apply


def _drop_last(t):
    return t[:, :-1] if isinstance(t, tf.RaggedTensor) else t[..., :-1]


def _drop_first(t):
    return t[:, 1:] if isinstance(t, tf.RaggedTensor) else t[..., 1:]


def shift_for_language_model() -> Transform:
    """``ids -> (ids[..., :-1], ids[..., 1:])``: predict each next token.

    Works on single sequences ``[T+1]``, on equal-length batches ``[B, T+1]`` and on ragged
    batches ``[B, None]`` (apply before padding).
    """
    return lambda ds: ds.map(
        lambda ids: (_drop_last(ids), _drop_first(ids)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def teacher_forcing() -> Transform:
    """``(src, tgt) -> ((src, tgt[..., :-1]), tgt[..., 1:])`` for targets framed ``[2, ..., 3]``.

    The decoder input starts with the start id 2 and the decoder target ends with the end id 3.
    Works on single examples and on ragged batches (apply before padding: on a padded batch
    the decoder input of a short row would keep its end id).
    """
    return lambda ds: ds.map(
        lambda src, tgt: ((src, _drop_last(tgt)), _drop_first(tgt)),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def to_dense() -> Transform:
    """Pad every ragged component of a batch with 0 to the longest row (padded batching of
    batches assembled as `RaggedTensor`s)."""

    def dense(*components):
        out = tf.nest.map_structure(
            lambda t: t.to_tensor(0) if isinstance(t, tf.RaggedTensor) else t,
            components,
            expand_composites=False,
        )
        return out[0] if len(out) == 1 else out

    return lambda ds: ds.map(dense, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def windows(size: int, shift: int | None = None) -> Transform:
    """Cut each long 1-D sequence into windows of `size` every `shift` steps (default `size`).

    A trailing part shorter than `size` is dropped. Windows never cross the end of a sequence,
    so windows of two different texts (e.g. a train and a validation segment) never mix.
    """
    positive_int("size", size)
    shift = size if shift is None else positive_int("shift", shift)

    def cut(sequence: tf.Tensor) -> tf.data.Dataset:
        return tf.data.Dataset.from_tensor_slices(tf.signal.frame(sequence, size, shift))

    return lambda ds: ds.flat_map(cut)


def shuffle(buffer_size: int, seed: int, reshuffle_each_iteration: bool = True) -> Transform:
    """Seeded shuffle: the same `seed` gives the same order in every run (epoch by epoch)."""
    positive_int("buffer_size", buffer_size)
    seed = check_seed("seed", seed)
    reshuffle_each_iteration = boolean("reshuffle_each_iteration", reshuffle_each_iteration)
    return lambda ds: ds.shuffle(
        buffer_size, seed=seed, reshuffle_each_iteration=reshuffle_each_iteration
    )


def cache(filename: str = "") -> Transform:
    """Cache elements after the first pass (in memory, or in `filename`)."""
    return lambda ds: ds.cache(filename)


def prefetch(buffer_size: int = tf.data.AUTOTUNE) -> Transform:
    """Overlap input preparation with training (`AUTOTUNE` by default)."""
    return lambda ds: ds.prefetch(buffer_size)


__all__ = [
    "bucket_by_length",
    "cache",
    "filter_by_length",
    "first_length",
    "length_boundaries",
    "length_sorted_batches",
    "longest_length",
    "padded_batch",
    "prefetch",
    "shift_for_language_model",
    "shuffle",
    "teacher_forcing",
    "to_dense",
    "windows",
]

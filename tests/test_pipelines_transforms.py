"""pipelines.transforms and pipelines.batching: each factory against hand-computed results."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import transforms as T
from pipelines.batching import batched, examples_dataset, fingerprint

ROWS = [[5, 6, 7], [8], [9, 10], [11, 12, 13, 14, 15]]


def ragged_rows():
    return tf.ragged.constant(ROWS, dtype=tf.int32)


def sequences():
    return examples_dataset(ragged_rows())


def as_lists(ds):
    return [x.tolist() for x in ds.as_numpy_iterator()]


def test_examples_dataset_slices_ragged_rows_and_arrays():
    ds = examples_dataset((ragged_rows(), np.arange(4, dtype=np.int32)))
    got = [(x.tolist(), int(y)) for x, y in ds.as_numpy_iterator()]
    assert got == [(r, i) for i, r in enumerate(ROWS)]


def test_filter_by_length():
    ds = sequences().apply(T.filter_by_length(max_length=3, min_length=2))
    assert as_lists(ds) == [[5, 6, 7], [9, 10]]


def test_filter_by_length_errors():
    with pytest.raises(ValueError, match="argument `max_length`. Expected an integer >= "):
        T.filter_by_length(max_length=1, min_length=2)
    with pytest.raises(ValueError, match="argument `min_length`. Expected a positive integer"):
        T.filter_by_length(min_length=0)


@pytest.mark.parametrize("seed", ["a", -1, 1.5])
def test_seeds_are_checked(seed):
    # "a" failed inside tf.data's string formatting; 1.5 was truncated.
    with pytest.raises(ValueError, match=r"argument `seed`. Expected a non-negative integer"):
        T.shuffle(4, seed)
    with pytest.raises(ValueError, match=r"argument `seed`. Expected a non-negative integer"):
        T.length_sorted_batches([1, 2, 3], 2, seed)


def test_bucket_boundaries_are_integers_not_coerced():
    # [2.7, 5.1] became [2, 5], and ["3", "5"] was accepted.
    for bad in ([2.7, 5.1], ["3", "5"], "35", [True, 5]):
        with pytest.raises(ValueError, match=r"argument `boundaries`. Expected strictly increasing"):
            T.bucket_by_length(bad, batch_size=2)
    assert as_lists(sequences().apply(T.bucket_by_length(np.array([3, 5]), batch_size=8)))


def test_padded_batch_pads_with_zero_to_longest_in_batch():
    batches = list(sequences().apply(T.padded_batch(2)).as_numpy_iterator())
    np.testing.assert_array_equal(batches[0], [[5, 6, 7], [8, 0, 0]])
    np.testing.assert_array_equal(batches[1], [[9, 10, 0, 0, 0], [11, 12, 13, 14, 15]])


def test_bucket_by_length_groups_similar_lengths():
    rows = [[4] * n for n in (1, 9, 2, 8, 1, 9, 2, 8)]
    ds = examples_dataset(tf.ragged.constant(rows, dtype=tf.int32))
    ds = ds.apply(T.bucket_by_length([5], batch_size=2, length_fn=T.first_length))
    shapes = sorted(b.shape for b in ds.as_numpy_iterator())
    # short rows (len < 5) batch together, long ones together: no batch mixes 1-2 with 8-9
    assert shapes == [(2, 2), (2, 2), (2, 9), (2, 9)]


def test_bucket_boundaries_validated():
    with pytest.raises(ValueError, match="argument `boundaries`. Expected strictly increasing"):
        T.bucket_by_length([5, 3], batch_size=2)


def test_length_sorted_batches():
    lengths = np.random.default_rng(0).integers(1, 50, size=200)
    def make():
        ds = tf.data.Dataset.range(200).apply(T.shuffle(200, seed=1))
        return ds.apply(T.length_sorted_batches(lengths, batch_size=8, seed=2, pool_batches=25))

    batches = as_lists(make())
    assert sorted(i for b in batches for i in b) == list(range(200))  # each index once
    assert all(len(b) == 8 for b in batches)
    # one pool of 200 sorted by length: a batch spans a narrow length range
    spans = [lengths[b].max() - lengths[b].min() for b in batches]
    assert max(spans) <= 8 and np.mean(spans) < 4
    assert as_lists(make()) == batches  # same seeds, same batches


def test_length_sorted_batches_remainder():
    ds = tf.data.Dataset.range(10).apply(T.length_sorted_batches(np.arange(10), 4, seed=0,
                                                                 pool_batches=2))
    assert sorted(len(b) for b in as_lists(ds)) == [2, 4, 4]
    ds = tf.data.Dataset.range(10).apply(T.length_sorted_batches(np.arange(10), 4, seed=0,
                                                                 pool_batches=2,
                                                                 drop_remainder=True))
    assert sorted(len(b) for b in as_lists(ds)) == [4, 4]


def test_length_boundaries_are_quantiles():
    assert T.length_boundaries(list(range(1, 101)), num_buckets=4) == [26, 51, 76]
    assert T.length_boundaries([], 4) == []


def test_shift_for_language_model():
    ds = tf.data.Dataset.from_tensors(tf.constant([1, 2, 3, 4]))
    (x, y), = list(ds.apply(T.shift_for_language_model()).as_numpy_iterator())
    assert x.tolist() == [1, 2, 3] and y.tolist() == [2, 3, 4]


def test_teacher_forcing_frames_start_and_end():
    src = tf.ragged.constant([[7, 8]], dtype=tf.int32)
    tgt = tf.ragged.constant([[2, 5, 6, 3]], dtype=tf.int32)
    ds = examples_dataset((src, tgt)).apply(T.teacher_forcing())
    ((s, t_in), t_out), = list(ds.as_numpy_iterator())
    assert s.tolist() == [7, 8]
    assert t_in.tolist() == [2, 5, 6] and t_out.tolist() == [5, 6, 3]


def test_ragged_batch_transforms_then_to_dense():
    src = tf.ragged.constant([[7, 8], [9]], dtype=tf.int32)
    tgt = tf.ragged.constant([[2, 5, 6, 3], [2, 4, 3]], dtype=tf.int32)
    ds = tf.data.Dataset.from_tensors((src, tgt)).apply(T.teacher_forcing()).apply(T.to_dense())
    ((s, t_in), t_out), = list(ds.as_numpy_iterator())
    np.testing.assert_array_equal(s, [[7, 8], [9, 0]])
    np.testing.assert_array_equal(t_in, [[2, 5, 6], [2, 4, 0]])  # no end id left in t_in
    np.testing.assert_array_equal(t_out, [[5, 6, 3], [4, 3, 0]])
    lm = tf.data.Dataset.from_tensors(tgt).apply(T.shift_for_language_model())
    (x, y), = list(lm.apply(T.to_dense()).as_numpy_iterator())
    np.testing.assert_array_equal(x, [[2, 5, 6], [2, 4, 0]])
    np.testing.assert_array_equal(y, [[5, 6, 3], [4, 3, 0]])


def test_windows():
    ds = tf.data.Dataset.from_tensors(tf.range(10))
    assert as_lists(ds.apply(T.windows(4))) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert as_lists(ds.apply(T.windows(4, shift=3))) == [[0, 1, 2, 3], [3, 4, 5, 6],
                                                         [6, 7, 8, 9]]


def test_windows_never_cross_sequences():
    ds = tf.data.Dataset.from_tensor_slices(tf.constant([[0, 1, 2], [10, 11, 12]]))
    assert as_lists(ds.apply(T.windows(2, shift=1))) == [[0, 1], [1, 2], [10, 11], [11, 12]]


def test_seeded_shuffle_is_reproducible_and_a_permutation():
    ds = tf.data.Dataset.range(50)
    a = as_lists(ds.apply(T.shuffle(50, seed=3)).batch(50))[0]
    b = as_lists(ds.apply(T.shuffle(50, seed=3)).batch(50))[0]
    c = as_lists(ds.apply(T.shuffle(50, seed=4)).batch(50))[0]
    assert a == b and a != c and sorted(a) == list(range(50))


def test_batched_training_keeps_every_example_once():
    labels = np.arange(4, dtype=np.int32)
    ds = batched((ragged_rows(), labels), training=True, batch_size=3, seed=0,
                 bucketing="boundaries", boundaries=[3], lengths=[len(r) for r in ROWS])
    seen, groups = {}, []
    for x, y in ds.as_numpy_iterator():
        assert x.dtype == np.int32 and x.ndim == 2
        groups.append(sorted(y.tolist()))
        for row, label in zip(x, y, strict=True):
            seen[int(label)] = [int(t) for t in row if t != 0]
    assert seen == {i: r for i, r in enumerate(ROWS)}
    assert sorted(groups) == [[0, 3], [1, 2]]  # lengths 3, 5 vs 1, 2: bucketed apart


@pytest.mark.parametrize("bucketing", [None, "sorted", "boundaries"])
def test_training_batches_are_shuffled_afresh_every_epoch_and_evaluation_is_not(bucketing):
    n = 64
    rows = tf.ragged.constant([[4] * (1 + i % 5) for i in range(n)])
    options = dict(batch_size=8, seed=0, bucketing=bucketing, lengths=[1 + i % 5 for i in range(n)],
                   boundaries=[3])
    ds = batched((rows, np.arange(n, dtype=np.int32)), training=True, **options)
    epochs = [np.concatenate([y for _, y in ds.as_numpy_iterator()]) for _ in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(n))  # every example once
        assert order.tolist() != list(range(n))  # not the file's order
    assert epochs[0].tolist() != epochs[1].tolist()  # reshuffled, not cached
    again = batched((rows, np.arange(n, dtype=np.int32)), training=True, **options)
    assert np.concatenate([y for _, y in again.as_numpy_iterator()]).tolist() == epochs[0].tolist()
    evaluation = batched((rows, np.arange(n, dtype=np.int32)), training=False, batch_size=8, seed=0)
    for _ in range(2):
        assert np.concatenate([y for _, y in evaluation.as_numpy_iterator()]).tolist() == list(range(n))


def test_training_shuffles_the_whole_dataset_not_a_window():
    """The shuffle buffer holds every example: the last quarter of the file is spread over the
    epoch (mean position about n/2; a quarter-size buffer holds it back past 3n/4 - n/4)."""
    n = 400
    rows = tf.ragged.constant([[4]] * n)
    ds = batched((rows, np.arange(n, dtype=np.int32)), training=True, batch_size=16, seed=0)
    order = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    positions = np.argsort(order)  # positions[i]: where example i came in the epoch
    assert positions[3 * n // 4 :].mean() < 0.6 * n, positions[3 * n // 4 :].mean()


def test_batched_evaluation_keeps_order():
    ds = batched((ragged_rows(), np.arange(4, dtype=np.int32)), training=False, batch_size=3,
                 seed=0)
    assert [y.tolist() for _, y in ds.as_numpy_iterator()] == [[0, 1, 2], [3]]


def test_fingerprint_changes_with_any_example_split_or_row_boundary():
    ids = tf.ragged.constant([[4, 5], [6]])
    y = np.array([0, 1], np.int32)
    base = fingerprint({"train": (ids, y), "test": (ids, y)})
    assert base == fingerprint({"test": (ids, y), "train": (tf.ragged.constant([[4, 5], [6]]), y)})
    for other in (
        {"train": (tf.ragged.constant([[4], [5, 6]]), y), "test": (ids, y)},  # same flat ids
        {"train": (ids, y[::-1]), "test": (ids, y)},  # a label
        {"validation": (ids, y), "test": (ids, y)},  # a split's name
        {"train": (tf.ragged.constant([[4, 5], [7]]), y), "test": (ids, y)},  # a token
        {"train": (ids, y.astype(np.int64)), "test": (ids, y)},  # the dtype
    ):
        assert fingerprint(other) != base


@pytest.mark.parametrize("bucketing", [None, "sorted", "boundaries"])
def test_drop_remainder_gives_full_training_batches_and_evaluation_every_example(bucketing):
    n, size = 50, 8
    rows = tf.ragged.constant([[4] * (1 + i % 5) for i in range(n)])
    options = dict(batch_size=size, seed=0, bucketing=bucketing, drop_remainder=True,
                   lengths=[1 + i % 5 for i in range(n)], boundaries=[3])
    training = batched((rows, np.arange(n, dtype=np.int32)), training=True, **options)
    sizes = [len(y) for _, y in training.as_numpy_iterator()]
    assert sizes and set(sizes) == {size}
    evaluation = batched((rows, np.arange(n, dtype=np.int32)), training=False, **options)
    assert np.concatenate([y for _, y in evaluation.as_numpy_iterator()]).tolist() == list(range(n))

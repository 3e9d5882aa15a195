"""Text <-> ids inside a serving graph, matching ``pipelines.text.Vocabulary`` exactly."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

__all__ = ["at_least_one_step", "decode_ids", "padded_ids"]

PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3


def padded_ids(vocabulary: Any, text: tf.Tensor) -> tf.Tensor:
    """``text`` string ``[N]`` -> int32 ids ``[N, T]``, right-padded with 0, ``T >= 1``.

    The vocabulary's in-graph tokenizer (``Vocabulary.tokenize_tf``); an empty text becomes
    one padding step, which the models mask.
    """
    return at_least_one_step(vocabulary.tokenize_tf(text).to_tensor(default_value=PAD_ID))


def at_least_one_step(ids: tf.Tensor) -> tf.Tensor:
    """Ids ``[N, T]`` right-padded with 0 to ``T >= 1`` (unchanged when ``T >= 1``)."""
    return tf.pad(ids, [[0, 0], [0, tf.maximum(1 - tf.shape(ids)[1], 0)]])


def decode_ids(vocabulary: Any, ids: tf.Tensor) -> tf.Tensor:
    """int ids ``[N, L]`` -> string ``[N]``, as ``Vocabulary.decode`` (defaults) does.

    Decoding stops at the first end id (3); padding (0), start (2) and end are dropped; an
    unknown id shows as ``[UNK]``; word-level tokens are joined by one space.
    """
    ids = tf.cast(ids, tf.int32)
    tokens = tf.constant(list(vocabulary.tokens), dtype=tf.string)
    before_end = tf.equal(tf.cumsum(tf.cast(tf.equal(ids, END_ID), tf.int32), axis=1), 0)
    special = tf.equal(ids, PAD_ID) | tf.equal(ids, START_ID)
    in_range = (ids >= 0) & (ids < vocabulary.size)
    words = tf.gather(tokens, tf.where(in_range, ids, OOV_ID))  # (N, L)
    keep = before_end & ~special
    separator = "" if vocabulary.level == "char" else " "
    words = tf.ragged.boolean_mask(words, keep)
    return tf.strings.reduce_join(words, axis=1, separator=separator)

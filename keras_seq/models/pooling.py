"""Pooling of a masked sequence of vectors into one vector (for sequence classification)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq import _validate
from keras_seq.ops import export_padding

__all__ = ["AttentionPooling", "masked_max", "masked_mean"]


def masked_mean(sequences: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """``sum_t m_t h_t / max(sum_t m_t, 1)``: ``[B, T, D], [B, T] -> [B, D]``.

    A row with no valid step pools to the zero vector. Inside ``export_mode(padding="none")``
    the mask (all-True) is dropped: a plain mean is one TFLite ``MEAN``, whose int8 result
    stays in its input's range, where the sum of an int8 file saturated on texts longer than
    its calibration samples.
    """
    if mask is None or export_padding() == "none":
        return tf.reduce_mean(sequences, axis=1)
    valid = tf.cast(mask, tf.bool)[:, :, None]  # (B, T, 1)
    m = tf.cast(valid, sequences.dtype)
    total = tf.reduce_sum(tf.where(valid, sequences, 0.0), axis=1)  # (B, D); NaN padding too
    count = tf.maximum(tf.reduce_sum(m, axis=1), 1.0)  # (B, 1)
    return total / count


def masked_max(sequences: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """``max_t`` over the valid steps, per feature: ``[B, T, D], [B, T] -> [B, D]``.

    A row with no valid step pools to the zero vector. Inside ``export_mode(padding="none")``
    the mask (all-True) is dropped.
    """
    if mask is None or export_padding() == "none":
        return tf.reduce_max(sequences, axis=1)
    valid = tf.cast(mask, tf.bool)[:, :, None]  # (B, T, 1)
    lowest = tf.cast(sequences.dtype.min, sequences.dtype)
    pooled = tf.reduce_max(tf.where(valid, sequences, lowest), axis=1)  # (B, D)
    return tf.where(tf.reduce_any(valid, axis=1), pooled, tf.zeros_like(pooled))


@keras.saving.register_keras_serializable(package="keras_seq")
class AttentionPooling(keras.layers.Layer):
    """Learned attention pooling over the valid steps (Yang et al. 2016, "HAN")::

        u_t = tanh(h_t W + b)            [B, T, A]
        s_t = u_t . w                    [B, T]
        a   = softmax over valid t of s  [B, T]   (exactly 0 at padding)
        out = sum_t a_t h_t              [B, D]

    Weights: ``kernel`` W [D, A], ``bias`` b [A], ``context`` w [A]. A row with no valid
    step pools to the zero vector (never NaN).

    Example:
        >>> pool = AttentionPooling(16)
        >>> pool(tf.ones((2, 5, 8)), mask=tf.constant([[True, True, False, False, False]] * 2)).shape
        TensorShape([2, 8])
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = _validate.positive_int("units", units)
        self.supports_masking = True

    def build(self, input_shape) -> None:
        dim = _validate.feature_dim(input_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=(dim, self.units), initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.context = self.add_weight(
            name="context", shape=(self.units,), initializer="glorot_uniform"
        )

    def attention_weights(self, sequences: tf.Tensor, mask: tf.Tensor | None = None) -> tf.Tensor:
        """The pooling weights ``a`` ``[B, T]`` (callable outside ``__call__``, where Keras does
        not cast the weights to the compute dtype)."""
        kernel, bias, context = (
            tf.cast(w, self.compute_dtype) for w in (self.kernel, self.bias, self.context)
        )
        u = tf.tanh(tf.nn.bias_add(tf.tensordot(sequences, kernel, axes=1), bias))
        scores = tf.tensordot(u, context, axes=1)  # (B, T)
        if mask is None:
            return tf.nn.softmax(scores, axis=-1)
        valid = tf.cast(mask, tf.bool)
        scores = tf.where(valid, scores, tf.cast(-1e9, scores.dtype))
        return tf.where(valid, tf.nn.softmax(scores, axis=-1), tf.zeros_like(scores))

    def call(self, sequences, mask=None):
        shape = tuple(sequences.shape)
        _validate.sequence_shape(self.name, shape)
        if shape[-1] is not None and shape[-1] != self.kernel.shape[0]:
            raise ValueError(
                f"Invalid input for layer `{self.name}`. Expected inputs with last dimension "
                f"{self.kernel.shape[0]} (the size the weights were built for). "
                f"Received: inputs.shape={shape}"
            )
        if mask is not None:
            _validate.sequence_mask(self.name, mask, shape)
            # Padding never reaches the output nor, even as NaN, the gradients.
            sequences = tf.where(tf.cast(mask, tf.bool)[:, :, None], sequences, 0.0)
        weights = self.attention_weights(sequences, mask)
        return tf.einsum("bt,btd->bd", weights, sequences)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def compute_mask(self, inputs, mask=None):
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units}

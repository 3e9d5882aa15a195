"""Shared machinery of the fused recurrent kernels (:mod:`fast_lstm`, :mod:`fast_gru`,
:mod:`fast_rnn`).

A fused kernel runs one recurrent level over time-major, per-gate projected inputs
``P_g [T, B, U]`` (one ``[T*B, D] @ [D, U]`` GEMM per gate, outside the loop) and recurrent
kernels ``R_g [U, U]``. Keeping every gate in its own tensor means the loop never splits or
concatenates (on CPU those copies cost as much as the elementwise math), and the per-gate
GEMMs of a step are independent, so TensorFlow's executor runs them on both cores at once.

Training kernels are ``tf.custom_gradient`` functions. The forward loop stores each step's
gate activations and states; the backward loop carries only ``dh`` (and ``dc``) and does one
small GEMM per gate per step; every weight gradient is a large GEMM after the loop
(``dR_g = H_prev^T @ dZ_g`` over all ``T*B`` rows, ``dW_g = X^T @ dZ_g`` by autodiff of the
projection). Elementwise factors that do not depend on the recurrence (gate derivatives,
masks) are computed for all steps at once, so a backward step is a handful of multiplies.

Masks follow ``keras.layers.RNN``: at a masked step the states are carried over. With ``m``
the ``[T, B, 1]`` float mask, the backward pass folds ``m`` into the per-step factors and
lets ``(1 - m) * dh`` (and ``dc``) pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

# Steps per loop iteration. Unrolling divides TensorFlow's per-iteration control-flow cost
# (a few Switch/Merge/NextIteration nodes per loop variable) by this factor.
UNROLL = 4

Carry = tuple


def time_loop(
    steps: tf.Tensor,
    step: Callable[[tf.Tensor, Carry], Carry],
    carry: Sequence,
    *,
    reverse: bool = False,
    unroll: int = UNROLL,
) -> Carry:
    """Run ``carry = step(t, carry)`` for ``t = 0 .. steps-1`` (``steps-1 .. 0`` if reverse).

    ``carry`` is a tuple of tensors and ``tf.TensorArray`` s. The loop body holds ``unroll``
    steps; the remainder runs in a second loop of single steps.
    """
    carry = tuple(carry)
    steps = tf.convert_to_tensor(steps, tf.int32)

    def index(t):
        return steps - 1 - t if reverse else t

    def block(t, *c):
        for j in range(unroll):
            c = step(index(t + j), tuple(c))
        return (t + unroll, *c)

    def single(t, *c):
        return (t + 1, *step(index(t), tuple(c)))

    start = tf.constant(0)
    if unroll > 1:
        blocks = steps // unroll
        start, *carry = tf.while_loop(
            lambda t, *_: t < blocks * unroll, block, (start, *carry),
            maximum_iterations=blocks,
        )
    _, *carry = tf.while_loop(
        lambda t, *_: t < steps, single, (start, *carry),
        maximum_iterations=steps - start,
    )
    return tuple(carry)


def sequence_store(steps: tf.Tensor, like: tf.Tensor, first: tf.Tensor | None = None):
    """A TensorArray for one ``[B, U]`` tensor per step (``steps + 1`` slots with ``first``
    written at slot 0, so ``stack()[:-1]`` and ``stack()[1:]`` are the previous and the
    current values without a copy)."""
    size = steps if first is None else steps + 1
    store = tf.TensorArray(like.dtype, size=size, element_shape=like.shape)
    return store if first is None else store.write(0, first)


class MaskFactors:
    """Per-step mask tensors of one level, computed once for all steps.

    Args:
        keep: ``[T, B]`` boolean (True = valid step), time-major, or None.
    """

    def __init__(self, keep: tf.Tensor | None, dtype=tf.float32) -> None:
        self.keep = None if keep is None else tf.cast(keep, tf.bool)[:, :, None]  # (T, B, 1)
        self.m = None if keep is None else tf.cast(self.keep, dtype)  # (T, B, 1)

    def carry(self, t: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
        """The state after step ``t``: ``new`` where valid, ``old`` where masked."""
        return new if self.keep is None else tf.where(self.keep[t], new, old)

    def valid(self, factor: tf.Tensor) -> tf.Tensor:
        """``m * factor``: a backward factor that is zero at masked steps."""
        return factor if self.m is None else factor * self.m

    def carried(self, factor: tf.Tensor) -> tf.Tensor:
        """``m * factor + (1 - m)``: the state's own derivative through a step."""
        return factor if self.keep is None else tf.where(self.keep, factor, 1.0)

    def passthrough(self) -> tf.Tensor | None:
        """``1 - m`` (``[T, B, 1]``): the share of ``dh`` that skips a masked step."""
        return None if self.m is None else 1.0 - self.m


def transposed(kernels: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Explicit transposes: ``matmul(a, b, transpose_b=True)`` is ~2.5x slower on CPU (oneDNN)
    than ``matmul(a, transpose(b))`` for the per-step shapes."""
    return [tf.transpose(k) for k in kernels]


def weight_gradients(h_prev: tf.Tensor, dzs: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """``dR_g = H_prev^T @ dZ_g`` as one ``[U, T*B] @ [T*B, U]`` GEMM per gate."""
    units = h_prev.shape[-1]
    rows = tf.reshape(h_prev, [-1, units])
    return [tf.linalg.matmul(rows, tf.reshape(dz, [-1, units]), transpose_a=True) for dz in dzs]

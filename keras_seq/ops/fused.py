"""Shared machinery of the fused recurrent kernels (:mod:`fast_lstm`, :mod:`fast_gru`,
:mod:`fast_rnn`).

A fused kernel runs one recurrent level over time-major inputs ``x [T, B, D]`` with every
gate ``g`` in its own tensors: ``W_g [D, U]``, ``b_g [U]``, ``R_g [U, U]``. Keeping gates
apart means the loop never splits or concatenates (on CPU those copies cost as much as the
elementwise math), and the per-gate GEMMs of a step are independent, so TensorFlow's
executor runs them on both cores at once.

Time is cut into chunks of :func:`chunk_size` steps. Per chunk, the forward pass projects
the chunk's inputs with one ``[n*B, D] @ [D, U]`` GEMM per gate, then loops over its steps
storing gate activations and states. The backward pass (``tf.custom_gradient``) walks the
chunks in reverse: per-step factors that do not depend on the recurrence (gate derivatives,
masks) for the whole chunk at once, a reverse loop that carries only ``dh`` (and ``dc``) and
does one small GEMM per gate per step, then the chunk's weight and input gradients as large
GEMMs (``dR_g += H_prev^T dZ_g``, ``dW_g += X^T dZ_g``, ``dX = sum_g dZ_g W_g^T``). Chunking
keeps the training memory at the activations the backward pass needs (the projections and
``dZ`` exist for one chunk at a time) while the GEMMs stay large.

Masks follow ``keras.layers.RNN``: at a masked step the states are carried over. The
backward pass folds the float mask ``m`` into the per-step factors and lets ``(1 - m) dh``
(and ``dc``) pass through a masked step unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

# Steps per loop iteration. Unrolling divides TensorFlow's per-iteration control-flow cost
# (a few Switch/Merge/NextIteration nodes per loop variable) by this factor.
UNROLL = 4
# Chunks: at least MIN_CHUNK steps, and at most about T / CHUNKS steps. A chunk's projections,
# backward factors and dZ are alive at once, so memory grows with the chunk; the chunk's GEMMs
# have chunk * B rows, so speed wants it large.
MIN_CHUNK = 16
CHUNKS = 16
# Chunks in flight at once: 2 lets the next chunk's elementwise preparation and the previous
# chunk's GEMMs overlap the current chunk's loop without holding every chunk's temporaries.
CHUNKS_IN_FLIGHT = 2

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


def chunk_size(steps: tf.Tensor) -> tf.Tensor:
    """Steps per chunk: ``max(MIN_CHUNK, ceil(T / CHUNKS))``."""
    return tf.maximum(MIN_CHUNK, (steps + CHUNKS - 1) // CHUNKS)


def chunk_loop(
    steps: tf.Tensor,
    body: Callable[[tf.Tensor, tf.Tensor, tf.Tensor, Carry], Carry],
    carry: Sequence,
    *,
    reverse: bool = False,
) -> Carry:
    """Run ``carry = body(k, start, stop, carry)`` over the chunks ``[start, stop)`` of
    ``0 .. steps-1`` (last chunk first if reverse)."""
    size = chunk_size(steps)
    count = (steps + size - 1) // size

    def loop_body(j, *c):
        k = count - 1 - j if reverse else j
        start = k * size
        stop = tf.minimum(start + size, steps)
        return (j + 1, *body(k, start, stop, tuple(c)))

    _, *carry = tf.while_loop(
        lambda j, *_: j < count, loop_body, (tf.constant(0), *carry),
        maximum_iterations=count, parallel_iterations=CHUNKS_IN_FLIGHT,
    )
    return tuple(carry)


def chunk_count(steps: tf.Tensor) -> tf.Tensor:
    size = chunk_size(steps)
    return (steps + size - 1) // size


def sequence_store(steps: tf.Tensor, like: tf.Tensor, first: tf.Tensor | None = None):
    """A TensorArray for one ``[B, U]`` tensor per step (``steps + 1`` slots with ``first``
    written at slot 0, so ``stack()[:-1]`` and ``stack()[1:]`` are the previous and the
    current values without a copy)."""
    size = steps if first is None else steps + 1
    store = tf.TensorArray(like.dtype, size=size, element_shape=like.shape)
    return store if first is None else store.write(0, first)


def chunk_of(store, start: tf.Tensor, stop: tf.Tensor) -> tf.Tensor:
    """Steps ``start .. stop-1`` of a stored sequence: a slice of a stacked tensor (no copy)
    or a gather from a TensorArray. Keeping the forward pass's TensorArrays unstacked for the
    backward pass avoids a full-size copy per stored activation (memory)."""
    if isinstance(store, tf.TensorArray):
        return store.gather(tf.range(start, stop))
    return store[start:stop]


def chunk_store(steps: tf.Tensor, like: tf.Tensor):
    """A TensorArray for one ``[n, B, D]`` chunk per slot; ``concat()`` gives ``[T, B, D]``."""
    return tf.TensorArray(like.dtype, size=chunk_count(steps), infer_shape=False,
                          element_shape=tf.TensorShape([None]).concatenate(like.shape[1:]))


def project(x: tf.Tensor, kernels: Sequence[tf.Tensor], biases: Sequence) -> list[tf.Tensor]:
    """``P_g = x W_g + b_g`` for ``x [n, B, D]``: one ``[n*B, D] @ [D, U]`` GEMM per gate."""
    rows = tf.reshape(x, [-1, x.shape[-1]])
    shape = tf.shape(x)
    projected = []
    for w, b in zip(kernels, biases):
        p = tf.linalg.matmul(rows, w)
        if b is not None:
            p = tf.nn.bias_add(p, b)
        p = tf.reshape(p, tf.stack([shape[0], shape[1], w.shape[-1]]))
        p.set_shape(x.shape[:2].concatenate([w.shape[-1]]))
        projected.append(p)
    return projected


def gemm_t(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """``A^T B`` over all leading axes: ``[..., M]^T [..., N] -> [M, N]``."""
    return tf.linalg.matmul(tf.reshape(a, [-1, a.shape[-1]]), tf.reshape(b, [-1, b.shape[-1]]),
                            transpose_a=True)


def input_gradients(x, kernels_t, dzs, has_bias):
    """For one chunk: ``(dW_g = X^T dZ_g, db_g = sum dZ_g, dX = sum_g dZ_g W_g^T)``."""
    d_kernels = [gemm_t(x, dz) for dz in dzs]
    d_biases = [tf.reduce_sum(dz, [0, 1]) for dz in dzs] if has_bias else []
    dx = tf.add_n([tf.linalg.matmul(tf.reshape(dz, [-1, dz.shape[-1]]), wt)
                   for dz, wt in zip(dzs, kernels_t)])
    return d_kernels, d_biases, tf.reshape(dx, tf.shape(x))


def state_gradient(upstream: tf.Tensor | None, x: tf.Tensor, units: int) -> tf.Tensor:
    """The incoming gradient of a final state, zeros ``[B, U]`` when there is none."""
    if upstream is not None:
        return upstream
    return tf.zeros(tf.stack([tf.shape(x)[1], units]), x.dtype)


def add(totals: Sequence[tf.Tensor], parts: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    return [a + b for a, b in zip(totals, parts)]


def transposed(kernels: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Explicit transposes: ``matmul(a, b, transpose_b=True)`` is ~2.5x slower on CPU (oneDNN)
    than ``matmul(a, transpose(b))`` for the per-step shapes."""
    return [tf.transpose(k) for k in kernels]


class MaskFactors:
    """Mask tensors of a level (or of one chunk of it).

    Args:
        keep: ``[T, B]`` boolean (True = valid step), time-major, or None.
    """

    def __init__(self, keep: tf.Tensor | None, dtype=tf.float32) -> None:
        self.keep = None if keep is None else tf.cast(keep, tf.bool)[:, :, None]  # (T, B, 1)
        self.m = None if keep is None else tf.cast(self.keep, dtype)  # (T, B, 1)

    def chunk(self, start: tf.Tensor, stop: tf.Tensor) -> MaskFactors:
        part = MaskFactors(None)
        if self.keep is not None:
            part.keep, part.m = self.keep[start:stop], self.m[start:stop]
        return part

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

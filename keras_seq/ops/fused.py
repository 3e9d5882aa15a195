"""Shared machinery of the fused recurrent kernels (:mod:`fast_lstm`, :mod:`fast_gru`,
:mod:`fast_rnn`).

A fused kernel runs one recurrent level over inputs ``x [B, T, D]`` (processed in reverse
time with ``go_backwards``) as one ``tf.custom_gradient`` op (:func:`run_level`). Time is cut
into chunks of :func:`chunk_size` steps. Per chunk, the forward pass projects the chunk's
inputs with one large GEMM (``P = x W + b`` over ``n*B`` rows), then an *inner loop* runs
the chunk's steps and returns the activations its backward pass needs, stacked per chunk.
The backward pass walks the chunks in reverse: an inner loop that carries only ``dh`` (and
``dc``) and does the step's small GEMM with the transposed recurrent kernel, then the
chunk's weight and input gradients as large GEMMs (``dR += H_prev^T dZ``, ``dW += X^T dZ``,
``db += sum dZ``, ``dX = dZ W^T``). Chunking keeps the training memory at the activations
the backward pass needs (projections and ``dZ`` exist for one chunk at a time) while the
GEMMs stay large.

Two engines run the inner loops and compute the same thing:

* ``"graph"``: plain TensorFlow ops, every gate in its own ``[B, U]`` tensor and weight, so
  the loop never splits or concatenates (on CPU those copies cost as much as the elementwise
  math) and the per-gate GEMMs of a step run concurrently on both cores. Best when a step is
  GEMM-bound (wide steps, e.g. LSTM with 256 units).
* ``"xla"``: each chunk's loop is one ``tf.function(jit_compile=True)`` computation with the
  gates in one tensor. XLA fuses a step's elementwise work and has no per-op executor cost,
  which dominates narrow steps, batch-1 inference, and any step when other processes share
  the cores. XLA compiles once per chunk shape (batch size, chunk length).

:func:`train_engine` and :func:`engine` pick one from static shapes; results agree either way.
Without ``training`` the forward pass stores nothing, and a gradient, if one is asked for,
reruns it with the training engine, storing.

Masks follow ``keras.layers.RNN``: at a masked step the states are carried over. Backward
passes multiply the step's gradients by the float mask ``m`` and let ``(1 - m) dh`` (and
``dc``) pass through a masked step unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import tensorflow as tf

# Steps per loop iteration of the graph engine. Unrolling divides TensorFlow's
# per-iteration control-flow cost (Switch/Merge/NextIteration per loop variable) by this.
UNROLL = 4
# Chunks: at least MIN_CHUNK steps, at most about T / CHUNKS steps. A chunk's projections,
# backward factors and dZ are alive at once, so memory grows with the chunk; the chunk's GEMMs
# have n * B rows, so speed wants it large.
MIN_CHUNK = 8
CHUNKS = 32
# Chunks in flight at once: 2 lets the next chunk's projection and the previous chunk's
# gradient GEMMs overlap the current chunk's loop without holding every chunk's temporaries.
CHUNKS_IN_FLIGHT = 2
# Inference keeps nothing for a backward pass, so its chunks are longer (fewer XLA calls);
# XLA compiles once per distinct chunk length, so at most INFERENCE_CHUNK times per batch size.
INFERENCE_CHUNK = 64
# Inference runs the XLA engine when a step has at most this many gate activations
# (B * G*U) for a static batch size B. Measured here: XLA is 2-9x faster at batch 1, while at
# batch 64 the graph engine wins for LSTM/GRU (H=128, 256) and XLA for SimpleRNN. Only speed
# depends on this.
XLA_MAX_STEP_ELEMENTS = 16384
# Training runs the XLA engine when a step has at most this many gate units (G*U): small
# steps are dominated by per-op costs, which XLA removes and which grow when other processes
# share the cores; larger steps are GEMM-bound and faster with the graph engine's concurrent
# per-gate GEMMs.
XLA_MAX_TRAIN_WIDTH = 768


def engine(batch: int | None, units: int, gates: int) -> str:
    """The inference engine, ``"xla"`` or ``"graph"``, for a static batch size (or None)."""
    if batch is None or not xla_available():
        return "graph"
    return "xla" if batch * gates * units <= XLA_MAX_STEP_ELEMENTS else "graph"


def train_engine(units: int, gates: int) -> str:
    """The training engine, ``"xla"`` or ``"graph"``, from the step's width."""
    return "xla" if xla_available() and gates * units <= XLA_MAX_TRAIN_WIDTH else "graph"


@functools.cache
def xla_available() -> bool:
    """Whether this TensorFlow build can JIT-compile on CPU (probed once)."""
    try:
        with tf.init_scope():  # run eagerly even when first asked while tracing
            probe = tf.function(lambda a: tf.tanh(a) * 2.0, jit_compile=True)
            return float(probe(tf.constant(0.5))) > 0.0
    except Exception:  # noqa: BLE001 - any failure means "no XLA here"
        return False


def jit(function: Callable) -> Callable:
    """``tf.function(jit_compile=True)``, compiled once per input shapes and dtypes."""
    return tf.function(function, jit_compile=True, reduce_retracing=False, autograph=False)


def no_gradient(recurrent_mask: tf.Tensor | None) -> tf.Tensor | None:
    """The recurrent-dropout mask, cut from the tape: it is built from ``ones_like(h0)``, so a
    watched initial state made tapes record a differentiable copy of the loops that capture it
    (which XLA cannot build: "TensorList crossing the XLA/TF boundary")."""
    return None if recurrent_mask is None else tf.stop_gradient(recurrent_mask)


# -- a level as one custom-gradient op ----------------------------------------------------------
def run_level(
    x: tf.Tensor,
    params: Sequence[tf.Tensor],
    states: Sequence[tf.Tensor],
    *,
    train,
    infer,
    training: bool,
    return_sequences: bool,
    go_backwards: bool,
):
    """Run a recurrent level with a hand-written gradient.

    ``train`` and ``infer`` are engines with ``forward(x, params, states, store,
    return_sequences, go_backwards) -> (final_states, saved, outputs)`` and
    ``backward(x, params, saved, d_outputs, d_states, go_backwards) -> (dx, d_params,
    d_states)``. With ``training`` the ``train`` engine's forward stores what its backward
    needs; otherwise the ``infer`` engine runs a lean forward pass and a gradient, if one is
    asked for, reruns the forward pass with ``train``, storing.

    Returns ``(outputs [T, B, U] or None, *final_states)``.
    """
    n_params, n_states = len(params), len(states)

    @tf.custom_gradient
    def level(x, *args):
        # The gradient is grad() below: keep tapes from recording (and XLA from compiling)
        # a differentiable copy of the loops.
        x, args = tf.stop_gradient(x), [tf.stop_gradient(a) for a in args]
        ps, initial = args[:n_params], args[n_params:]
        engine_ = train if training else infer
        finals, saved, outputs = engine_.forward(x, ps, initial, training, return_sequences,
                                                 go_backwards)

        def grad(*upstream):
            stored = saved
            if not training:
                stored = train.forward(x, ps, initial, True, False, go_backwards)[1]
            d_outputs = upstream[0] if return_sequences else None
            d_states = [state_gradient(u, f)
                        for u, f in zip(upstream[-n_states:], finals, strict=True)]
            dx, d_params, d_states = train.backward(x, ps, stored, d_outputs, d_states,
                                                    go_backwards)
            return (dx, *d_params, *d_states)

        return ((outputs, *finals) if return_sequences else tuple(finals)), grad

    results = level(x, *params, *states)
    results = list(results) if isinstance(results, (list, tuple)) else [results]
    return (results[0], *results[1:]) if return_sequences else (None, *results)


# -- loops -----------------------------------------------------------------------------------
def time_loop(
    steps,
    step: Callable[[tf.Tensor, tuple], tuple],
    carry: Sequence,
    *,
    reverse: bool = False,
    unroll: int = 1,
) -> tuple:
    """Run ``carry = step(t, carry)`` for ``t = 0 .. steps-1`` (``steps-1 .. 0`` if reverse).

    ``carry`` is a tuple of tensors and ``tf.TensorArray`` s. With ``unroll > 1`` the loop
    body holds ``unroll`` steps and the remainder runs in a second loop of single steps.
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
        lambda t, *_: t < steps, single, (start, *carry), maximum_iterations=steps - start,
    )
    return tuple(carry)


def chunk_size(steps: tf.Tensor, minimum: int | None = None) -> tf.Tensor:
    """Steps per chunk: ``max(minimum, ceil(T / CHUNKS))`` (``minimum`` MIN_CHUNK), the
    second term rounded up to a multiple of 8 so that XLA sees few distinct chunk shapes."""
    share = ((steps + CHUNKS - 1) // CHUNKS + 7) // 8 * 8
    return tf.maximum(minimum or MIN_CHUNK, share)


def chunk_count(steps: tf.Tensor, minimum: int | None = None) -> tf.Tensor:
    size = chunk_size(steps, minimum)
    return (steps + size - 1) // size


def chunk_loop(
    steps: tf.Tensor,
    body: Callable[[tf.Tensor, tf.Tensor, tf.Tensor, tuple], tuple],
    carry: Sequence,
    *,
    reverse: bool = False,
    minimum: int | None = None,
) -> tuple:
    """Run ``carry = body(k, start, stop, carry)`` over the chunks ``[start, stop)`` of
    ``0 .. steps-1`` (last chunk first if reverse), chunks of :func:`chunk_size` steps."""
    size, count = chunk_size(steps, minimum), chunk_count(steps, minimum)

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


def step_store(steps, like: tf.Tensor, first: tf.Tensor | None = None) -> tf.TensorArray:
    """A TensorArray for one ``[B, W]`` tensor per step (``steps + 1`` slots with ``first``
    written at slot 0, so ``stack()[:-1]`` and ``stack()[1:]`` are the values before and
    after each step without a copy)."""
    size = steps if first is None else steps + 1
    store = tf.TensorArray(like.dtype, size=size, element_shape=like.shape)
    return store if first is None else store.write(0, first)


def chunk_store(steps, like: tf.Tensor | None = None, dtype=tf.float32, minimum=None):
    """A TensorArray with one ``[n, ...]`` chunk per slot (``n`` may differ between slots);
    ``concat()`` gives ``[T, ...]`` when every chunk is ``[n, *like.shape]``."""
    shape = None if like is None else tf.TensorShape([None]).concatenate(like.shape)
    return tf.TensorArray(dtype if like is None else like.dtype,
                          size=chunk_count(steps, minimum), infer_shape=False,
                          element_shape=shape)


# -- the two halves of a level ---------------------------------------------------------------
def chunk_inputs(x: tf.Tensor, start, stop, go_backwards: bool) -> tf.Tensor:
    """Processing steps ``start .. stop-1`` of ``x [B, T, D]``, time-major ``[n, B, D]``: a
    chunk-sized copy (a time-major copy of the whole sequence would be alive at the peak)."""
    if not go_backwards:
        return tf.transpose(x[:, start:stop], [1, 0, 2])
    steps = tf.shape(x)[1]
    return tf.reverse(tf.transpose(x[:, steps - stop:steps - start], [1, 0, 2]), [0])


def forward(
    x: tf.Tensor,
    kernels: Sequence[tf.Tensor],
    biases: Sequence,
    states: Sequence[tf.Tensor],
    inner: Callable,
    *,
    return_sequences: bool,
    go_backwards: bool = False,
    saved_count: int = 0,
    chunk: int | None = None,
):
    """Chunked forward pass.

    ``inner(ps, states, start, stop) -> (states, saved, outputs)`` runs one chunk, with
    ``ps`` the chunk's projections ``[n, B, W_g]``, ``saved`` ``saved_count`` tensors for the
    backward pass (or none) and ``outputs`` the chunk's ``[n, B, U]`` outputs (or None).
    ``go_backwards`` processes time in reverse; ``chunk`` overrides :data:`MIN_CHUNK`.

    Returns ``(final_states, saved, outputs)``: ``saved`` a :class:`Saved` (chunks read back
    without a copy), ``outputs [T, B, U]`` time-major in processing order when
    ``return_sequences``.
    """
    steps = tf.shape(x)[1]
    like, n_states = states[0], len(states)
    saved = [chunk_store(steps, dtype=x.dtype, minimum=chunk) for _ in range(saved_count)]
    outputs = [chunk_store(steps, like, minimum=chunk)] if return_sequences else []

    shapes = []  # static shapes of the saved tensors (TensorArrays of chunks forget them)

    def body(k, start, stop, carry):
        current, stores = list(carry[:n_states]), carry[n_states:]
        ps = project(chunk_inputs(x, start, stop, go_backwards), kernels, biases)
        current, chunk_saved, chunk_outputs = inner(ps, current, start, stop)
        shapes[:] = [tf.TensorShape([None]).concatenate(v.shape[1:]) for v in chunk_saved]
        written = [s.write(k, v) for s, v in zip(stores[:saved_count], chunk_saved, strict=True)]
        if return_sequences:
            written.append(stores[-1].write(k, chunk_outputs))
        return (*current, *written)

    carry = chunk_loop(steps, body, (*states, *saved, *outputs), minimum=chunk)
    final, stores = list(carry[:n_states]), list(carry[n_states:])
    result = None
    if return_sequences:
        result = stores.pop().concat()
        result.set_shape([x.shape[1], x.shape[0], like.shape[-1]])
    return final, Saved(stores, shapes), result


class Saved:
    """What a forward pass kept for its backward pass: per chunk, a list of tensors."""

    def __init__(self, stores: list[tf.TensorArray], shapes: list[tf.TensorShape]) -> None:
        self.stores, self.shapes = stores, shapes

    def read(self, k: tf.Tensor) -> list[tf.Tensor]:
        values = [s.read(k) for s in self.stores]
        for value, shape in zip(values, self.shapes, strict=True):
            value.set_shape(shape)
        return values


def backward(
    x: tf.Tensor,
    kernels: Sequence[tf.Tensor],
    has_bias: bool,
    d_states: Sequence[tf.Tensor],
    totals: Sequence[tf.Tensor],
    inner: Callable,
    *,
    go_backwards: bool = False,
    chunk: int | None = None,
):
    """Chunked backward pass (``chunk`` as given to :func:`forward`).

    ``inner(k, start, stop, d_states) -> (d_states, dzs, recurrent_grads)`` runs one chunk
    in reverse: ``dzs`` the chunk's ``[n, B, W_g]`` gradients of the projections and
    ``recurrent_grads`` the chunk's contributions to the gradients listed in ``totals``
    (recurrent kernels and any extra weights, same shapes).

    Returns ``(dx [B, T, D], d_kernels, d_biases, totals, d_initial_states)``.
    """
    steps = tf.shape(x)[1]
    wts = transposed(kernels)
    n_states, n_totals = len(d_states), len(totals)
    sums = [tf.zeros_like(w) for w in kernels]
    sums += [tf.zeros_like(w[0]) for w in kernels] if has_bias else []

    def body(k, start, stop, carry):
        d_states, dxs = carry[:n_states], carry[n_states]
        totals, sums = carry[n_states + 1:n_states + 1 + n_totals], carry[n_states + 1 + n_totals:]
        d_states, dzs, recurrent_grads = inner(k, start, stop, list(d_states))
        xs = chunk_inputs(x, start, stop, go_backwards)
        d_ws, d_bs, dx = input_gradients(xs, wts, dzs, has_bias)
        return (*d_states, dxs.write(k, dx), *add(totals, recurrent_grads),
                *add(sums, d_ws + d_bs))

    carry = chunk_loop(steps, body,
                       (*d_states, chunk_store(steps, x[:, 0], minimum=chunk), *totals, *sums),
                       reverse=True, minimum=chunk)
    d_states, dxs = list(carry[:n_states]), carry[n_states]
    totals, sums = list(carry[n_states + 1:n_states + 1 + n_totals]), list(
        carry[n_states + 1 + n_totals:])
    dx = dxs.concat()  # (T, B, D) in processing order; pruned when nothing needs it
    if go_backwards:
        dx = tf.reverse(dx, [0])
    dx = tf.transpose(dx, [1, 0, 2])
    dx.set_shape(x.shape)
    n_kernels = len(kernels)
    return dx, sums[:n_kernels], sums[n_kernels:], totals, d_states


# -- GEMM helpers ----------------------------------------------------------------------------
def project(x: tf.Tensor, kernels: Sequence[tf.Tensor], biases: Sequence) -> list[tf.Tensor]:
    """``P_g = x W_g + b_g`` for ``x [n, B, D]``: one ``[n*B, D] @ [D, W_g]`` GEMM each."""
    rows = tf.reshape(x, [-1, x.shape[-1]])
    shape = tf.shape(x)
    projected = []
    for w, b in zip(kernels, biases or [None] * len(kernels), strict=True):
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
                   for dz, wt in zip(dzs, kernels_t, strict=True)])
    return d_kernels, d_biases, tf.reshape(dx, tf.shape(x))


def transposed(kernels: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Explicit transposes: on CPU (oneDNN) ``matmul(a, b, transpose_b=True)`` is ~2.5x
    slower than ``matmul(a, transpose(b))`` for the per-step shapes."""
    return [tf.transpose(k) for k in kernels]


def add(totals: Sequence[tf.Tensor], parts: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    return [a + b for a, b in zip(totals, parts, strict=True)]


def state_gradient(upstream: tf.Tensor | None, like: tf.Tensor) -> tf.Tensor:
    """The incoming gradient of a final state, zeros when there is none."""
    return tf.zeros_like(like) if upstream is None else upstream


# -- masks -----------------------------------------------------------------------------------
class Mask:
    """The ``[T, B, 1]`` mask of a level (or of one chunk of it), boolean and float.

    Args:
        keep: ``[T, B]`` boolean (True = valid step), time-major, or None.
    """

    def __init__(self, keep: tf.Tensor | None, dtype=tf.float32) -> None:
        self.keep = None if keep is None else tf.cast(keep, tf.bool)[:, :, None]
        self.m = None if keep is None else tf.cast(self.keep, dtype)

    def __bool__(self) -> bool:
        return self.keep is not None

    def chunk(self, start, stop) -> Mask:
        part = Mask(None)
        if self.keep is not None:
            part.keep, part.m = self.keep[start:stop], self.m[start:stop]
        return part

    def carry(self, t, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
        """The state after step ``t``: ``new`` where valid, ``old`` where masked."""
        return new if self.keep is None else tf.where(self.keep[t], new, old)

    def valid(self, factor: tf.Tensor) -> tf.Tensor:
        """``m * factor``: a backward factor that is zero at masked steps."""
        return factor if self.m is None else factor * self.m

    def carried(self, factor: tf.Tensor) -> tf.Tensor:
        """``m * factor + (1 - m)``: the state's own derivative through a step."""
        return factor if self.keep is None else tf.where(self.keep, factor, 1.0)

    def passthrough(self) -> tf.Tensor | None:
        """``1 - m``: the share of a state gradient that skips a masked step."""
        return None if self.m is None else 1.0 - self.m

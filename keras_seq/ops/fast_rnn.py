"""Fused Elman RNN level: ``h_t = act(P[t] + h R)`` with a hand-written, chunked backward.

``P = x W + b`` per chunk; ``h`` in ``h R`` is ``h * recurrent_mask`` under recurrent dropout.
Backward, with ``dh`` the gradient of ``h_t`` and ``act'`` read off the stored outputs
(``1 - h^2`` for tanh, ``h (1 - h)`` for sigmoid, ``h > 0`` for relu, 1 for linear)::

    dz = dh * act'(h_t)          dh_prev = dz R^T

then, per chunk, ``dR += H_prev^T dZ``, ``dW += X^T dZ``, ``db += sum dZ``, ``dX = dZ W^T``.
"""

from __future__ import annotations

import tensorflow as tf

from keras_seq.ops import fused

# activation name -> (activation, (y, dy) -> dy * act'(z) from the activation's output y)
ACTIVATIONS = {
    "tanh": (tf.tanh, lambda y, dy: tf.raw_ops.TanhGrad(y=y, dy=dy)),
    "sigmoid": (tf.sigmoid, lambda y, dy: tf.raw_ops.SigmoidGrad(y=y, dy=dy)),
    "relu": (tf.nn.relu, lambda y, dy: tf.raw_ops.ReluGrad(gradients=dy, features=y)),
    "linear": (tf.identity, lambda y, dy: dy),
}


def simple_rnn(
    inputs: tf.Tensor,
    kernel: tf.Tensor,
    bias: tf.Tensor | None,
    recurrent_kernel: tf.Tensor,
    h0: tf.Tensor,
    *,
    activation: str = "tanh",
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    go_backwards: bool = False,
    training: bool = True,
    engine: str | None = None,
) -> tuple[tf.Tensor | None, tf.Tensor]:
    """Run an Elman RNN over a whole sequence.

    Args:
        inputs: ``x [B, T, D]``.
        kernel: ``W [D, U]``; bias: ``b [U]`` or None; recurrent_kernel: ``R [U, U]``.
        h0: ``[B, U]`` initial state.
        activation: a key of :data:`ACTIVATIONS`.
        keep, recurrent_mask, return_sequences, training, engine: as
            :func:`keras_seq.ops.fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    mask = fused.Mask(keep, h0.dtype)
    units = recurrent_kernel.shape[0]
    engine = "graph" if training else engine or fused.engine(h0.shape[0], units, 1)
    n_bias = 0 if bias is None else 1

    @tf.custom_gradient
    def kernel_fn(x, w, *args):
        # The gradient is grad() below: keep tapes from recording (and XLA from compiling)
        # a differentiable copy of the loops.
        x, w, args = tf.stop_gradient(x), tf.stop_gradient(w), [tf.stop_gradient(a) for a in args]
        b, (r, h0) = (args[0] if n_bias else None), args[n_bias:]
        if engine == "xla":
            inner = _xla_inner(r, activation, mask, recurrent_mask, return_sequences)
            (h,), _, outputs = fused.forward(x, [w], [b], [h0], inner,
                                             return_sequences=return_sequences,
                                             go_backwards=go_backwards,
                                             chunk=fused.INFERENCE_CHUNK)
            saved = None
        else:
            (h,), saved, outputs = _forward(x, w, b, r, h0, activation, mask, recurrent_mask,
                                            training, return_sequences, go_backwards)

        def grad(*upstream):
            stored = saved
            if not training:  # the inference-mode forward kept nothing: run it again
                stored = _forward(x, w, b, r, h0, activation, mask, recurrent_mask, True,
                                  False, go_backwards)[1]
            d_outputs = upstream[0] if return_sequences else None
            inner = _backward(r, stored, activation, mask, recurrent_mask, d_outputs)
            dx, (d_w,), d_bs, (d_r,), (dh0,) = fused.backward(
                x, [w], n_bias > 0, [fused.state_gradient(upstream[-1], h)],
                [tf.zeros_like(r)], inner, go_backwards=go_backwards)
            return (dx, d_w, *d_bs, d_r, dh0)

        return ((outputs, h) if return_sequences else h), grad

    biases = [] if bias is None else [bias]
    results = kernel_fn(inputs, kernel, *biases, recurrent_kernel, h0)
    return tuple(results) if return_sequences else (None, results)


def _forward(x, w, b, r, h0, activation, mask, recurrent_mask, store, return_sequences,
             go_backwards):
    act = ACTIVATIONS[activation][0]
    collect = store or return_sequences

    def inner(ps, states, start, stop):
        (p,), (h,) = ps, states
        steps = stop - start
        hidden = [fused.step_store(steps, h, h)] if collect else []

        def step(j, carry):
            h, *stores = carry
            hr = h if recurrent_mask is None else h * recurrent_mask
            h_new = mask.carry(start + j, act(p[j] + tf.linalg.matmul(hr, r)), h)
            return (h_new, *[s.write(j + 1, h_new) for s in stores])

        h, *stores = fused.time_loop(steps, step, (h, *hidden), unroll=fused.UNROLL)
        stacked = [s.stack() for s in stores]  # h's [n + 1]
        outputs = stacked[0][1:] if return_sequences else None
        return [h], (stacked if store else []), outputs

    return fused.forward(x, [w], [b], [h0], inner, return_sequences=return_sequences,
                         go_backwards=go_backwards, saved_count=1 if store else 0)


def _backward(r, saved, activation, mask, recurrent_mask, d_outputs):
    derivative = ACTIVATIONS[activation][1]
    (rt,) = fused.transposed([r])

    def inner(k, start, stop, d_states):
        (hidden,) = saved.read(k)  # (n + 1, B, U)
        part = mask.chunk(start, stop)
        valid, passthrough = part.m, part.passthrough()
        steps = stop - start

        def step(j, carry):
            dh, dzs = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dz = derivative(hidden[j + 1], dh if valid is None else dh * valid[j])
            dh_prev = tf.linalg.matmul(dz, rt)
            if recurrent_mask is not None:
                dh_prev = dh_prev * recurrent_mask
            if passthrough is not None:
                dh_prev = dh_prev + dh * passthrough[j]
            return (dh_prev, dzs.write(j, dz))

        dh, dzs = fused.time_loop(steps, step, (d_states[0], fused.step_store(steps, hidden[0])),
                                  reverse=True, unroll=fused.UNROLL)
        dz = dzs.stack()
        h_prev = hidden[:-1] if recurrent_mask is None else hidden[:-1] * recurrent_mask
        return [dh], [dz], [fused.gemm_t(h_prev, dz)]

    return inner


# -- XLA engine: inference forward -----------------------------------------------------------
def _xla_inner(r, activation, mask, recurrent_mask, return_sequences):
    def inner(ps, states, start, stop):
        keep = None if not mask else mask.keep[start:stop]
        h, hidden = _xla_forward(ps[0], r, states[0], keep, recurrent_mask, activation,
                                 return_sequences)
        h.set_shape(states[0].shape)
        return [h], [], hidden

    return inner


@fused.jit
def _xla_forward(p, r, h, keep, recurrent_mask, activation, collect):
    """One chunk: ``p [n, B, U]`` -> ``(h, outputs [n, B, U] or None)``."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    act = ACTIVATIONS[activation][0]
    hidden = fused.step_store(steps, h)

    def body(t, h, hidden):
        hr = h if recurrent_mask is None else h * recurrent_mask
        h_new = act(p[t] + tf.linalg.matmul(hr, r))
        if keep is not None:
            h_new = tf.where(keep[t], h_new, h)
        return t + 1, h_new, (hidden.write(t, h_new) if collect else hidden)

    _, h, hidden = tf.while_loop(lambda t, *_: t < steps, body, (0, h, hidden),
                                 maximum_iterations=steps)
    return h, (hidden.stack() if collect else None)

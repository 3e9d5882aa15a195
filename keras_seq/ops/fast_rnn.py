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
    recurrent: tf.Tensor,
    h0: tf.Tensor,
    *,
    activation: str = "tanh",
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    training: bool = True,
) -> tuple[tf.Tensor | None, tf.Tensor]:
    """Run an Elman RNN over a whole sequence.

    Args:
        inputs: ``x [T, B, D]`` (time-major).
        kernel: ``W [D, U]``; bias: ``b [U]`` or None; recurrent: ``R [U, U]``.
        h0: ``[B, U]`` initial state.
        activation: a key of :data:`ACTIVATIONS`.
        keep, recurrent_mask, return_sequences, training: as :func:`fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    act, derivative = ACTIVATIONS[activation]
    masks = fused.MaskFactors(keep, h0.dtype)
    if not training:
        all_h, h = _forward(inputs, kernel, bias, recurrent, h0, act, masks, recurrent_mask,
                            collect=return_sequences)
        return (None if all_h is None else all_h.stack()[1:]), h

    @tf.custom_gradient
    def run(x, w, r, h0, *bias):
        b = bias[0] if bias else None
        all_h, h = _forward(x, w, b, r, h0, act, masks, recurrent_mask, collect=True)
        if return_sequences:  # else the states stay in their TensorArray (fused.chunk_of)
            all_h = all_h.stack()

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            return _backward(x, w, bool(bias), r, all_h, derivative, masks, recurrent_mask,
                             d_outputs, upstream[-1])

        return ((all_h[1:], h) if return_sequences else h), grad

    results = run(inputs, kernel, recurrent, h0, *([] if bias is None else [bias]))
    return tuple(results) if return_sequences else (None, results)


def _forward(x, w, b, r, h0, act, masks, recurrent_mask, *, collect):
    steps = tf.shape(x)[0]
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []

    def chunk(k, start, stop, carry):
        (p,) = fused.project(x[start:stop], [w], [b])

        def step(j, carry):
            h, *stores = carry
            hr = h if recurrent_mask is None else h * recurrent_mask
            h_new = masks.carry(start + j, act(p[j] + tf.linalg.matmul(hr, r)), h)
            return (h_new, *[s.write(start + j + 1, h_new) for s in stores])

        return fused.time_loop(stop - start, step, carry)

    h, *stores = fused.chunk_loop(steps, chunk, (h0, *hs))
    return (stores[0] if collect else None), h  # (T+1) states with h0 first


def _backward(x, w, has_bias, r, all_h, derivative, masks, recurrent_mask, d_outputs, dh):
    steps = tf.shape(x)[0]
    (rt,), (wt,) = fused.transposed([r]), fused.transposed([w])
    dh = fused.state_gradient(dh, x, r.shape[0])
    totals = [tf.zeros_like(r), tf.zeros_like(w)] + ([tf.zeros_like(w[0])] if has_bias else [])

    def chunk(k, start, stop, carry):
        dh, dxs, *totals = carry
        part = masks.chunk(start, stop)
        hs = fused.chunk_of(all_h, start, stop + 1)  # (n+1, B, U)
        h_prev = hs[:-1]
        valid, passthrough = part.m, part.passthrough()
        size = stop - start

        def step(j, carry):
            dh, dzs = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dz = derivative(hs[j + 1], dh if valid is None else dh * valid[j])
            dh_prev = tf.linalg.matmul(dz, rt)
            if recurrent_mask is not None:
                dh_prev = dh_prev * recurrent_mask
            if passthrough is not None:
                dh_prev = dh_prev + dh * passthrough[j]
            return (dh_prev, dzs.write(j, dz))

        dh, dzs = fused.time_loop(size, step, (dh, fused.sequence_store(size, dh)),
                                  reverse=True)
        dz = dzs.stack()
        if recurrent_mask is not None:
            h_prev = h_prev * recurrent_mask
        d_ws, d_bs, dx = fused.input_gradients(x[start:stop], [wt], [dz], has_bias)
        parts = [fused.gemm_t(h_prev, dz)] + d_ws + d_bs
        return (dh, dxs.write(k, dx), *fused.add(totals, parts))

    dh0, dxs, *totals = fused.chunk_loop(
        steps, chunk, (dh, fused.chunk_store(steps, x), *totals), reverse=True)
    dx = dxs.concat()
    dx.set_shape(x.shape)
    return (dx, totals[1], totals[0], dh0, *totals[2:])

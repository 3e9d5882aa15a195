"""Fused Elman RNN level: ``h_t = act(P[t] + h R)`` with a hand-written backward pass.

``P = x W + b`` is precomputed; ``h`` in ``h R`` is ``h * recurrent_mask`` under recurrent
dropout. Backward, with ``dh`` the gradient of ``h_t`` and ``act'`` read off the stored
outputs (``1 - h^2`` for tanh, ``h (1 - h)`` for sigmoid, ``h > 0`` for relu, 1 for linear)::

    dz = dh * act'(h_t)          dh_prev = dz R^T

then ``dR = H_prev^T dZ`` and ``dP = dZ`` for all steps at once.
"""

from __future__ import annotations

import tensorflow as tf

from keras_seq.ops import fused

# activation name -> (activation, derivative as a function of the activation's output)
ACTIVATIONS = {
    "tanh": (tf.tanh, lambda y: 1.0 - tf.square(y)),
    "sigmoid": (tf.sigmoid, lambda y: y * (1.0 - y)),
    "relu": (tf.nn.relu, lambda y: tf.cast(y > 0, y.dtype)),
    "linear": (tf.identity, tf.ones_like),
}


def simple_rnn(
    projected: tf.Tensor | list,
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
        projected: ``P [T, B, U]`` (time-major), or a one-element list of it.
        recurrent: ``R [U, U]``.
        h0: ``[B, U]`` initial state.
        activation: a key of :data:`ACTIVATIONS`.
        keep, recurrent_mask, return_sequences, training: as :func:`fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    if isinstance(projected, (list, tuple)):
        (projected,) = projected
    act, derivative = ACTIVATIONS[activation]
    masks = fused.MaskFactors(keep, h0.dtype)
    if not training:
        all_h, h = _forward(projected, recurrent, h0, act, masks, recurrent_mask,
                            collect=return_sequences)
        return (None if all_h is None else all_h[1:]), h

    @tf.custom_gradient
    def kernel(p, r, h0):
        all_h, h = _forward(p, r, h0, act, masks, recurrent_mask, collect=True)
        outputs = all_h[1:]

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            return _backward(all_h, r, derivative, masks, recurrent_mask, d_outputs,
                             upstream[-1])

        return ((outputs, h) if return_sequences else h), grad

    results = kernel(projected, recurrent, h0)
    return tuple(results) if return_sequences else (None, results)


def _forward(p, r, h0, act, masks, recurrent_mask, *, collect):
    steps = tf.shape(p)[0]
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []

    def step(t, carry):
        h, *stores = carry
        hr = h if recurrent_mask is None else h * recurrent_mask
        h_new = masks.carry(t, act(p[t] + tf.linalg.matmul(hr, r)), h)
        return (h_new, *[s.write(t + 1, h_new) for s in stores])

    h, *stores = fused.time_loop(steps, step, (h0, *hs))
    return (stores[0].stack() if collect else None), h  # (T+1, B, U) with h0 first


def _backward(all_h, r, derivative, masks, recurrent_mask, d_outputs, dh):
    h_prev = all_h[:-1]
    d_act = masks.valid(derivative(all_h[1:]))  # (T, B, U)
    passthrough = masks.passthrough()
    (rt,) = fused.transposed([r])
    steps = tf.shape(d_act)[0]
    dh = tf.zeros_like(h_prev[0]) if dh is None else dh
    dzs = fused.sequence_store(steps, dh)

    def step(t, carry):
        dh, dzs = carry
        if d_outputs is not None:
            dh = dh + d_outputs[t]
        dz = dh * d_act[t]
        dh_prev = tf.linalg.matmul(dz, rt)
        if recurrent_mask is not None:
            dh_prev = dh_prev * recurrent_mask
        if passthrough is not None:
            dh_prev = dh_prev + dh * passthrough[t]
        return (dh_prev, dzs.write(t, dz))

    dh0, dzs = fused.time_loop(steps, step, (dh, dzs), reverse=True)
    dz = dzs.stack()
    if recurrent_mask is not None:
        h_prev = h_prev * recurrent_mask
    return dz, fused.weight_gradients(h_prev, [dz])[0], dh0

"""Fused LSTM level: per-gate forward loop and a hand-written backward pass.

Forward, per step (gate order i, f, c, o as Keras; ``P_g = x W_g + b_g`` precomputed)::

    i = sigmoid(P_i[t] + h R_i)    f = sigmoid(P_f[t] + h R_f)
    g = tanh(P_c[t] + h R_c)       o = sigmoid(P_o[t] + h R_o)
    c = f * c + i * g              h = o * tanh(c)

(``h`` in the products with ``R`` is ``h * recurrent_mask`` under recurrent dropout.)

Backward, with ``dh``/``dc`` the gradients of the states after step ``t`` and the factors
``A = o (1 - tanh(c)^2)``, ``D_i = i'(z) g``, ``D_f = f'(z) c_prev``, ``D_c = g'(z) i``,
``D_o = o'(z) tanh(c)`` computed for all steps at once::

    dc += dh * A[t]
    dz_i = dc * D_i[t]   dz_f = dc * D_f[t]   dz_c = dc * D_c[t]   dz_o = dh * D_o[t]
    dc_prev = dc * f[t]
    dh_prev = sum_g dz_g @ R_g^T

then ``dR_g = H_prev^T dZ_g`` and ``dP_g = dZ_g`` for all steps at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)


def lstm(
    projected: Sequence[tf.Tensor],
    recurrent: Sequence[tf.Tensor],
    h0: tf.Tensor,
    c0: tf.Tensor,
    *,
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    training: bool = True,
) -> tuple[tf.Tensor | None, tf.Tensor, tf.Tensor]:
    """Run a standard LSTM (sigmoid gates, tanh) over a whole sequence.

    Args:
        projected: ``P_i, P_f, P_c, P_o``, each ``[T, B, U]`` (time-major).
        recurrent: ``R_i, R_f, R_c, R_o``, each ``[U, U]``.
        h0, c0: ``[B, U]`` initial states.
        keep: optional ``[T, B]`` boolean mask (False: carry the states over).
        recurrent_mask: optional ``[B, U]`` recurrent-dropout mask applied to ``h``.
        return_sequences: also return the state ``h`` after every step.
        training: True for the custom-gradient kernel (stores activations for its
            backward pass); False for a lean forward loop (autodiff still works, slower).

    Returns:
        ``(H [T, B, U] or None, h_T, c_T)``.
    """
    projected, recurrent = list(projected), list(recurrent)
    masks = fused.MaskFactors(keep, h0.dtype)
    if not training:
        return _forward(projected, recurrent, h0, c0, masks, recurrent_mask,
                        store=False, collect=return_sequences)[:3]

    @tf.custom_gradient
    def kernel(p_i, p_f, p_c, p_o, r_i, r_f, r_c, r_o, h0, c0):
        ps, rs = [p_i, p_f, p_c, p_o], [r_i, r_f, r_c, r_o]
        outputs, h, c, saved = _forward(ps, rs, h0, c0, masks, recurrent_mask,
                                        store=True, collect=True)

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            dh, dc = upstream[-2], upstream[-1]
            return _backward(saved, rs, masks, recurrent_mask, d_outputs, dh, dc)

        results = (outputs, h, c) if return_sequences else (h, c)
        return results, grad

    results = kernel(*projected, *recurrent, h0, c0)
    return tuple(results) if return_sequences else (None, *results)


def _forward(ps, rs, h0, c0, masks, recurrent_mask, *, store, collect):
    steps = tf.shape(ps[0])[0]
    p_i, p_f, p_c, p_o = ps
    r_i, r_f, r_c, r_o = rs
    gates = [fused.sequence_store(steps, h0) for _ in range(4)] if store else []
    states = [fused.sequence_store(steps, h0, c0)] if store else []
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []

    def step(t, carry):
        h, c, *stores = carry
        hr = h if recurrent_mask is None else h * recurrent_mask
        i = tf.sigmoid(p_i[t] + tf.linalg.matmul(hr, r_i))
        f = tf.sigmoid(p_f[t] + tf.linalg.matmul(hr, r_f))
        g = tf.tanh(p_c[t] + tf.linalg.matmul(hr, r_c))
        o = tf.sigmoid(p_o[t] + tf.linalg.matmul(hr, r_o))
        c_new = masks.carry(t, f * c + i * g, c)
        h_new = masks.carry(t, o * tf.tanh(c_new), h)
        written = []
        if store:
            written = [s.write(t, v) for s, v in zip(stores[:4], (i, f, g, o))]
            written.append(stores[4].write(t + 1, c_new))
        if collect:
            written.append(stores[-1].write(t + 1, h_new))
        return (h_new, c_new, *written)

    h, c, *stores = fused.time_loop(steps, step, (h0, c0, *gates, *states, *hs))
    all_h = stores[-1].stack() if collect else None  # (T+1, B, U), h0 first
    outputs = None if all_h is None else all_h[1:]
    saved = None
    if store:
        saved = [s.stack() for s in stores[:5]] + [all_h]
    return outputs, h, c, saved


def _backward(saved, rs, masks, recurrent_mask, d_outputs, dh, dc):
    i, f, g, o, all_c, all_h = saved
    c_prev, c = all_c[:-1], all_c[1:]
    tc = tf.tanh(c)
    a = masks.valid(TanhGrad(y=tc, dy=o))  # dc += dh * a
    d_i = masks.valid(SigmoidGrad(y=i, dy=g))
    d_f = masks.valid(SigmoidGrad(y=f, dy=c_prev))
    d_c = masks.valid(TanhGrad(y=g, dy=i))
    d_o = masks.valid(SigmoidGrad(y=o, dy=tc))
    f_carry = masks.carried(f)
    passthrough = masks.passthrough()
    rts = fused.transposed(rs)
    steps = tf.shape(i)[0]
    dh = tf.zeros_like(all_h[0]) if dh is None else dh
    dc = tf.zeros_like(all_h[0]) if dc is None else dc
    stores = [fused.sequence_store(steps, dh) for _ in range(4)]

    def step(t, carry):
        dh, dc, *stores = carry
        if d_outputs is not None:
            dh = dh + d_outputs[t]
        dc = dc + dh * a[t]
        dzs = (dc * d_i[t], dc * d_f[t], dc * d_c[t], dh * d_o[t])
        dh_prev = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts)])
        if recurrent_mask is not None:
            dh_prev = dh_prev * recurrent_mask
        if passthrough is not None:
            dh_prev = dh_prev + dh * passthrough[t]
        written = [s.write(t, dz) for s, dz in zip(stores, dzs)]
        return (dh_prev, dc * f_carry[t], *written)

    dh0, dc0, *stores = fused.time_loop(steps, step, (dh, dc, *stores), reverse=True)
    dzs = [s.stack() for s in stores]
    h_prev = all_h[:-1]
    if recurrent_mask is not None:
        h_prev = h_prev * recurrent_mask
    return (*dzs, *fused.weight_gradients(h_prev, dzs), dh0, dc0)

"""Fused GRU level: per-gate forward loop and a hand-written backward pass.

Gate order z, r, h (Keras's). ``P_g = x W_g + b_g`` is precomputed; with ``reset_after`` the
recurrent biases of ``z`` and ``r`` are folded into ``P_z``, ``P_r`` and only the candidate's
recurrent bias ``b'_h`` stays in the loop. ``h`` in the products with ``R`` is
``h * recurrent_mask`` under recurrent dropout.

``reset_after=True`` (Keras / cuDNN / PyTorch)::

    z = sigmoid(P_z[t] + h R_z)     r = sigmoid(P_r[t] + h R_r)
    q = h R_h + b'_h                n = tanh(P_h[t] + r * q)
    h_t = n + z * (h - n)           (= z h + (1 - z) n)

backward, with ``dh`` the gradient of ``h_t`` and factors computed for all steps at once
(``K_n = (1 - z) n'``, ``K_z = (h - n) z'``, ``K_r = K_n q r'``, ``K_q = K_n r``)::

    dz_z = dh K_z[t]    dz_r = dh K_r[t]    dq = dh K_q[t]
    dh_prev = dh z[t] + dz_z R_z^T + dz_r R_r^T + dq R_h^T

``reset_after=False`` (Cho et al.): ``n = tanh(P_h[t] + (r * h) R_h)``; backward
``ds = dh K_n[t] R_h^T``, ``dz_r = ds h r'``, ``dh_prev = dh z + dz_z R_z^T + dz_r R_r^T + ds r``.

The backward loop stores only ``dh`` (and ``ds``) per step; every ``dZ`` is then one
elementwise product over all steps, and ``dR_g = H_prev^T dZ_g`` one GEMM.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)


def gru(
    projected: Sequence[tf.Tensor],
    recurrent: Sequence[tf.Tensor],
    h0: tf.Tensor,
    *,
    recurrent_bias: tf.Tensor | None = None,
    reset_after: bool = True,
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    training: bool = True,
) -> tuple[tf.Tensor | None, tf.Tensor]:
    """Run a standard GRU (sigmoid gates, tanh candidate) over a whole sequence.

    Args:
        projected: ``P_z, P_r, P_h``, each ``[T, B, U]`` (time-major).
        recurrent: ``R_z, R_r, R_h``, each ``[U, U]``.
        h0: ``[B, U]`` initial state.
        recurrent_bias: ``b'_h [U]`` (``reset_after`` only) or None.
        reset_after: the candidate's reset gate applies after (True) or before the GEMM.
        keep, recurrent_mask, return_sequences, training: as :func:`fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    projected, recurrent = list(projected), list(recurrent)
    masks = fused.MaskFactors(keep, h0.dtype)
    forward, backward = (_forward_after, _backward_after) if reset_after else (
        _forward_before, _backward_before)
    has_bias = recurrent_bias is not None and reset_after
    if not training:
        biases = [recurrent_bias] if has_bias else []
        return forward(projected, recurrent, biases, h0, masks, recurrent_mask,
                       store=False, collect=return_sequences)[:2]

    @tf.custom_gradient
    def kernel(*args):
        ps, rs, biases, h0 = list(args[:3]), list(args[3:6]), list(args[6:-1]), args[-1]
        outputs, h, saved = forward(ps, rs, biases, h0, masks, recurrent_mask,
                                    store=True, collect=True)

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            return backward(saved, rs, biases, masks, recurrent_mask, d_outputs, upstream[-1])

        return ((outputs, h) if return_sequences else h), grad

    biases = [recurrent_bias] if has_bias else []
    results = kernel(*projected, *recurrent, *biases, h0)
    return tuple(results) if return_sequences else (None, results)


def _stores(steps, h0, count, store, collect):
    gates = [fused.sequence_store(steps, h0) for _ in range(count)] if store else []
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []
    return gates, hs


def _finish(h, stores, store, collect):
    all_h = stores[-1].stack() if collect else None  # (T+1, B, U), h0 first
    outputs = None if all_h is None else all_h[1:]
    saved = [s.stack() for s in stores[:-1]] + [all_h] if store else None
    return outputs, h, saved


def _forward_after(ps, rs, biases, h0, masks, recurrent_mask, *, store, collect):
    steps = tf.shape(ps[0])[0]
    (p_z, p_r, p_h), (r_z, r_r, r_h) = ps, rs
    gates, hs = _stores(steps, h0, 4, store, collect)

    def step(t, carry):
        h, *stores = carry
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z[t] + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r[t] + tf.linalg.matmul(hr, r_r))
        q = tf.linalg.matmul(hr, r_h)
        if biases:
            q = tf.nn.bias_add(q, biases[0])
        n = tf.tanh(p_h[t] + r * q)
        h_new = masks.carry(t, n + z * (h - n), h)
        written = [s.write(t, v) for s, v in zip(stores[:4], (z, r, q, n))] if store else []
        if collect:
            written.append(stores[-1].write(t + 1, h_new))
        return (h_new, *written)

    h, *stores = fused.time_loop(steps, step, (h0, *gates, *hs))
    return _finish(h, stores, store, collect)


def _backward_after(saved, rs, biases, masks, recurrent_mask, d_outputs, dh):
    z, r, q, n, all_h = saved
    h_prev = all_h[:-1]
    k_n = masks.valid(TanhGrad(y=n, dy=1.0 - z))
    k_z = masks.valid(SigmoidGrad(y=z, dy=h_prev - n))
    k_r = SigmoidGrad(y=r, dy=q) * k_n
    k_q = k_n * r
    z_carry = masks.carried(z)
    rts = fused.transposed(rs)
    steps = tf.shape(z)[0]
    dh = tf.zeros_like(h_prev[0]) if dh is None else dh
    dhs = fused.sequence_store(steps, dh)

    def step(t, carry):
        dh, dhs = carry
        if d_outputs is not None:
            dh = dh + d_outputs[t]
        dzs = (dh * k_z[t], dh * k_r[t], dh * k_q[t])
        mm = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts)])
        if recurrent_mask is not None:
            mm = mm * recurrent_mask
        return (dh * z_carry[t] + mm, dhs.write(t, dh))

    dh0, dhs = fused.time_loop(steps, step, (dh, dhs), reverse=True)
    dh_all = dhs.stack()
    dz_z, dz_r, dq, dz_h = dh_all * k_z, dh_all * k_r, dh_all * k_q, dh_all * k_n
    if recurrent_mask is not None:
        h_prev = h_prev * recurrent_mask
    d_rs = fused.weight_gradients(h_prev, [dz_z, dz_r, dq])
    d_bias = [tf.reduce_sum(dq, [0, 1])] if biases else []
    return (dz_z, dz_r, dz_h, *d_rs, *d_bias, dh0)


def _forward_before(ps, rs, biases, h0, masks, recurrent_mask, *, store, collect):
    steps = tf.shape(ps[0])[0]
    (p_z, p_r, p_h), (r_z, r_r, r_h) = ps, rs
    gates, hs = _stores(steps, h0, 3, store, collect)

    def step(t, carry):
        h, *stores = carry
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z[t] + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r[t] + tf.linalg.matmul(hr, r_r))
        n = tf.tanh(p_h[t] + tf.linalg.matmul(r * hr, r_h))
        h_new = masks.carry(t, n + z * (h - n), h)
        written = [s.write(t, v) for s, v in zip(stores[:3], (z, r, n))] if store else []
        if collect:
            written.append(stores[-1].write(t + 1, h_new))
        return (h_new, *written)

    h, *stores = fused.time_loop(steps, step, (h0, *gates, *hs))
    return _finish(h, stores, store, collect)


def _backward_before(saved, rs, biases, masks, recurrent_mask, d_outputs, dh):
    z, r, n, all_h = saved
    h_prev = all_h[:-1]
    hr_prev = h_prev if recurrent_mask is None else h_prev * recurrent_mask
    k_n = masks.valid(TanhGrad(y=n, dy=1.0 - z))
    k_z = masks.valid(SigmoidGrad(y=z, dy=h_prev - n))
    k_r = SigmoidGrad(y=r, dy=hr_prev)
    z_carry = masks.carried(z)
    rt_z, rt_r, rt_h = fused.transposed(rs)
    steps = tf.shape(z)[0]
    dh = tf.zeros_like(h_prev[0]) if dh is None else dh
    dhs, dss = fused.sequence_store(steps, dh), fused.sequence_store(steps, dh)

    def step(t, carry):
        dh, dhs, dss = carry
        if d_outputs is not None:
            dh = dh + d_outputs[t]
        ds = tf.linalg.matmul(dh * k_n[t], rt_h)  # gradient of s = r * h
        mm = tf.add_n([
            tf.linalg.matmul(dh * k_z[t], rt_z),
            tf.linalg.matmul(ds * k_r[t], rt_r),
            ds * r[t],
        ])
        if recurrent_mask is not None:
            mm = mm * recurrent_mask
        return (dh * z_carry[t] + mm, dhs.write(t, dh), dss.write(t, ds))

    dh0, dhs, dss = fused.time_loop(steps, step, (dh, dhs, dss), reverse=True)
    dh_all, ds_all = dhs.stack(), dss.stack()
    dz_z, dz_r, dz_h = dh_all * k_z, ds_all * k_r, dh_all * k_n
    d_rs = fused.weight_gradients(hr_prev, [dz_z, dz_r])
    d_rs.append(fused.weight_gradients(r * hr_prev, [dz_h])[0])
    return (dz_z, dz_r, dz_h, *d_rs, dh0)

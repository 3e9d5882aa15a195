"""Fused LSTM level: per-gate forward loop and a hand-written, chunked backward pass.

Forward, per step (gate order i, f, c, o as Keras; ``P_g = x W_g + b_g`` per chunk)::

    i = sigmoid(P_i[t] + h R_i)    f = sigmoid(P_f[t] + h R_f)
    g = tanh(P_c[t] + h R_c)       o = sigmoid(P_o[t] + h R_o)
    c = f * c + i * g              h = o * tanh(c)

(``h`` in the products with ``R`` is ``h * recurrent_mask`` under recurrent dropout.)

Backward, with ``dh``/``dc`` the gradients of the states after step ``t`` and the factors
``A = o (1 - tanh(c)^2)``, ``D_i = i'(z) g``, ``D_f = f'(z) c_prev``, ``D_c = g'(z) i``,
``D_o = o'(z) tanh(c)`` computed for a whole chunk at once::

    dc += dh * A[t]
    dz_i = dc * D_i[t]   dz_f = dc * D_f[t]   dz_c = dc * D_c[t]   dz_o = dh * D_o[t]
    dc_prev = dc * f[t]
    dh_prev = sum_g dz_g @ R_g^T

then, per chunk, ``dR_g += H_prev^T dZ_g``, ``dW_g += X^T dZ_g``, ``dX = sum_g dZ_g W_g^T``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)
GATES = 4


def lstm(
    inputs: tf.Tensor,
    kernels: Sequence[tf.Tensor],
    biases: Sequence[tf.Tensor] | None,
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
        inputs: ``x [T, B, D]`` (time-major).
        kernels: ``W_i, W_f, W_c, W_o``, each ``[D, U]``.
        biases: ``b_i, b_f, b_c, b_o``, each ``[U]``, or None.
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
    kernels, recurrent = list(kernels), list(recurrent)
    biases = list(biases) if biases is not None else []
    masks = fused.MaskFactors(keep, h0.dtype)
    if not training:
        outputs, h, c, _ = _forward(inputs, kernels, biases, recurrent, h0, c0, masks,
                                    recurrent_mask, store=False,
                                    return_sequences=return_sequences)
        return outputs, h, c

    @tf.custom_gradient
    def kernel(x, *args):
        ws, bs = list(args[:GATES]), list(args[GATES:-GATES - 2])
        rs, h0, c0 = list(args[-GATES - 2:-2]), args[-2], args[-1]
        outputs, h, c, saved = _forward(x, ws, bs, rs, h0, c0, masks, recurrent_mask,
                                        store=True, return_sequences=return_sequences)

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            return _backward(x, ws, bool(bs), rs, saved, masks, recurrent_mask,
                             d_outputs, upstream[-2], upstream[-1])

        return ((outputs, h, c) if return_sequences else (h, c)), grad

    results = kernel(inputs, *kernels, *biases, *recurrent, h0, c0)
    return tuple(results) if return_sequences else (None, *results)


def _forward(x, ws, bs, rs, h0, c0, masks, recurrent_mask, *, store, return_sequences):
    steps = tf.shape(x)[0]
    r_i, r_f, r_c, r_o = rs
    gates = [fused.sequence_store(steps, h0) for _ in range(GATES)] if store else []
    cells = [fused.sequence_store(steps, h0, c0)] if store else []
    collect = store or return_sequences
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []

    def chunk(k, start, stop, carry):
        p_i, p_f, p_c, p_o = fused.project(x[start:stop], ws, bs or [None] * GATES)

        def step(j, carry):
            t = start + j
            h, c, *stores = carry
            hr = h if recurrent_mask is None else h * recurrent_mask
            i = tf.sigmoid(p_i[j] + tf.linalg.matmul(hr, r_i))
            f = tf.sigmoid(p_f[j] + tf.linalg.matmul(hr, r_f))
            g = tf.tanh(p_c[j] + tf.linalg.matmul(hr, r_c))
            o = tf.sigmoid(p_o[j] + tf.linalg.matmul(hr, r_o))
            c_new = masks.carry(t, f * c + i * g, c)
            h_new = masks.carry(t, o * tf.tanh(c_new), h)
            written = []
            if store:
                written = [s.write(t, v) for s, v in zip(stores[:GATES], (i, f, g, o))]
                written.append(stores[GATES].write(t + 1, c_new))
            if collect:
                written.append(stores[-1].write(t + 1, h_new))
            return (h_new, c_new, *written)

        return fused.time_loop(stop - start, step, carry)

    h, c, *stores = fused.chunk_loop(steps, chunk, (h0, c0, *gates, *cells, *hs))
    if not store:
        return (stores[0].stack()[1:] if collect else None), h, c, None
    # Activations stay in their TensorArrays for the backward pass; only the outputs are
    # stacked, when asked for.
    all_h = stores[-1].stack() if return_sequences else stores[-1]  # (T+1, B, U), h0 first
    outputs = all_h[1:] if return_sequences else None
    return outputs, h, c, stores[:GATES + 1] + [all_h]


def _backward(x, ws, has_bias, rs, saved, masks, recurrent_mask, d_outputs, dh, dc):
    i, f, g, o, all_c, all_h = saved
    steps = tf.shape(x)[0]
    rts, wts = fused.transposed(rs), fused.transposed(ws)
    dh = fused.state_gradient(dh, x, rs[0].shape[0])
    dc = fused.state_gradient(dc, x, rs[0].shape[0])
    totals = [tf.zeros_like(r) for r in rs] + [tf.zeros_like(w) for w in ws]
    if has_bias:
        totals += [tf.zeros_like(w[0]) for w in ws]

    def chunk(k, start, stop, carry):
        dh, dc, dxs, *totals = carry
        part = masks.chunk(start, stop)
        i_, f_, g_, o_ = (fused.chunk_of(s, start, stop) for s in (i, f, g, o))
        cs = fused.chunk_of(all_c, start, stop + 1)
        c_prev, tc = cs[:-1], tf.tanh(cs[1:])
        a = part.valid(TanhGrad(y=tc, dy=o_))  # dc += dh * a
        d_i = part.valid(SigmoidGrad(y=i_, dy=g_))
        d_f = part.valid(SigmoidGrad(y=f_, dy=c_prev))
        d_c = part.valid(TanhGrad(y=g_, dy=i_))
        d_o = part.valid(SigmoidGrad(y=o_, dy=tc))
        f_carry = part.carried(f_)
        passthrough = part.passthrough()
        n = stop - start
        stores = [fused.sequence_store(n, dh) for _ in range(GATES)]

        def step(j, carry):
            dh, dc, *stores = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dc = dc + dh * a[j]
            dzs = (dc * d_i[j], dc * d_f[j], dc * d_c[j], dh * d_o[j])
            dh_prev = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts)])
            if recurrent_mask is not None:
                dh_prev = dh_prev * recurrent_mask
            if passthrough is not None:
                dh_prev = dh_prev + dh * passthrough[j]
            written = [s.write(j, dz) for s, dz in zip(stores, dzs)]
            return (dh_prev, dc * f_carry[j], *written)

        dh, dc, *stores = fused.time_loop(n, step, (dh, dc, *stores), reverse=True)
        dzs = [s.stack() for s in stores]
        h_prev = fused.chunk_of(all_h, start, stop)
        if recurrent_mask is not None:
            h_prev = h_prev * recurrent_mask
        d_rs = [fused.gemm_t(h_prev, dz) for dz in dzs]
        d_ws, d_bs, dx = fused.input_gradients(x[start:stop], wts, dzs, has_bias)
        return (dh, dc, dxs.write(k, dx), *fused.add(totals, d_rs + d_ws + d_bs))

    dh0, dc0, dxs, *totals = fused.chunk_loop(
        steps, chunk, (dh, dc, fused.chunk_store(steps, x), *totals), reverse=True)
    d_rs, d_ws, d_bs = totals[:GATES], totals[GATES:2 * GATES], totals[2 * GATES:]
    dx = dxs.concat()
    dx.set_shape(x.shape)
    return (dx, *d_ws, *d_bs, *d_rs, dh0, dc0)

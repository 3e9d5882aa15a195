"""Fused GRU level: per-gate forward loop and a hand-written, chunked backward pass.

Gate order z, r, h (Keras's). ``P_g = x W_g + b_g`` per chunk; with ``reset_after`` the
recurrent biases of ``z`` and ``r`` are folded into ``b_z``, ``b_r`` by the caller and only
the candidate's recurrent bias ``b'_h`` stays in the loop. ``h`` in the products with ``R``
is ``h * recurrent_mask`` under recurrent dropout.

``reset_after=True`` (Keras / cuDNN / PyTorch)::

    z = sigmoid(P_z[t] + h R_z)     r = sigmoid(P_r[t] + h R_r)
    q = h R_h + b'_h                n = tanh(P_h[t] + r * q)
    h_t = n + z * (h - n)           (= z h + (1 - z) n)

backward, with ``dh`` the gradient of ``h_t`` and factors computed per chunk
(``K_n = (1 - z) n'``, ``K_z = (h - n) z'``, ``K_r = K_n q r'``, ``K_q = K_n r``)::

    dz_z = dh K_z[t]    dz_r = dh K_r[t]    dq = dh K_q[t]
    dh_prev = dh z[t] + dz_z R_z^T + dz_r R_r^T + dq R_h^T

``reset_after=False`` (Cho et al.): ``n = tanh(P_h[t] + (r * h) R_h)``; backward
``ds = dh K_n[t] R_h^T``, ``dz_r = ds h r'``, ``dh_prev = dh z + dz_z R_z^T + dz_r R_r^T + ds r``.

The backward loop stores only ``dh`` (and ``ds``) per step; every ``dZ`` of a chunk is then
one elementwise product, and the weight and input gradients GEMMs over the chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)
GATES = 3


def gru(
    inputs: tf.Tensor,
    kernels: Sequence[tf.Tensor],
    biases: Sequence[tf.Tensor] | None,
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
        inputs: ``x [T, B, D]`` (time-major).
        kernels: ``W_z, W_r, W_h``, each ``[D, U]``.
        biases: ``b_z, b_r, b_h`` (input side, see above), each ``[U]``, or None.
        recurrent: ``R_z, R_r, R_h``, each ``[U, U]``.
        h0: ``[B, U]`` initial state.
        recurrent_bias: ``b'_h [U]`` (``reset_after`` only) or None.
        reset_after: the reset gate applies after (True) or before the candidate's GEMM.
        keep, recurrent_mask, return_sequences, training: as :func:`fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    kernels, recurrent = list(kernels), list(recurrent)
    biases = list(biases) if biases is not None else []
    extra = [recurrent_bias] if recurrent_bias is not None and reset_after else []
    masks = fused.MaskFactors(keep, h0.dtype)
    forward, backward = (_forward_after, _backward_after) if reset_after else (
        _forward_before, _backward_before)
    if not training:
        outputs, h, _ = forward(inputs, kernels, biases, recurrent, extra, h0, masks,
                                recurrent_mask, store=False, return_sequences=return_sequences)
        return outputs, h

    n_bias, n_extra = len(biases), len(extra)

    @tf.custom_gradient
    def kernel(x, *args):
        ws, args = list(args[:GATES]), args[GATES:]
        bs, args = list(args[:n_bias]), args[n_bias:]
        rs, args = list(args[:GATES]), args[GATES:]
        extra, h0 = list(args[:n_extra]), args[-1]
        outputs, h, saved = forward(x, ws, bs, rs, extra, h0, masks, recurrent_mask,
                                    store=True, return_sequences=return_sequences)

        def grad(*upstream):
            d_outputs = upstream[0] if return_sequences else None
            return backward(x, ws, bool(bs), rs, extra, saved, masks, recurrent_mask,
                            d_outputs, upstream[-1])

        return ((outputs, h) if return_sequences else h), grad

    results = kernel(inputs, *kernels, *biases, *recurrent, *extra, h0)
    return tuple(results) if return_sequences else (None, results)


def _run_forward(x, ws, bs, h0, gate_count, store, return_sequences, cell):
    """Chunked forward loop; ``cell(t, p_j, h) -> (h_new, activations)``."""
    steps = tf.shape(x)[0]
    collect = store or return_sequences
    gates = [fused.sequence_store(steps, h0) for _ in range(gate_count)] if store else []
    hs = [fused.sequence_store(steps, h0, h0)] if collect else []

    def chunk(k, start, stop, carry):
        ps = fused.project(x[start:stop], ws, bs or [None] * GATES)

        def step(j, carry):
            t = start + j
            h, *stores = carry
            h_new, values = cell(t, [p[j] for p in ps], h)
            written = [s.write(t, v) for s, v in zip(stores, values)] if store else []
            if collect:
                written.append(stores[-1].write(t + 1, h_new))
            return (h_new, *written)

        return fused.time_loop(stop - start, step, carry)

    h, *stores = fused.chunk_loop(steps, chunk, (h0, *gates, *hs))
    if not store:
        return (stores[0].stack()[1:] if collect else None), h, None
    # Activations stay in their TensorArrays for the backward pass (see fused.chunk_of).
    all_h = stores[-1].stack() if return_sequences else stores[-1]  # (T+1, B, U), h0 first
    outputs = all_h[1:] if return_sequences else None
    return outputs, h, stores[:-1] + [all_h]


def _forward_after(x, ws, bs, rs, extra, h0, masks, recurrent_mask, *, store, return_sequences):
    r_z, r_r, r_h = rs

    def cell(t, ps, h):
        p_z, p_r, p_h = ps
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r + tf.linalg.matmul(hr, r_r))
        q = tf.linalg.matmul(hr, r_h)
        if extra:
            q = tf.nn.bias_add(q, extra[0])
        n = tf.tanh(p_h + r * q)
        return masks.carry(t, n + z * (h - n), h), (z, r, q, n)

    return _run_forward(x, ws, bs, h0, 4, store, return_sequences, cell)


def _forward_before(x, ws, bs, rs, extra, h0, masks, recurrent_mask, *, store, return_sequences):
    r_z, r_r, r_h = rs

    def cell(t, ps, h):
        p_z, p_r, p_h = ps
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r + tf.linalg.matmul(hr, r_r))
        n = tf.tanh(p_h + tf.linalg.matmul(r * hr, r_h))
        return masks.carry(t, n + z * (h - n), h), (z, r, n)

    return _run_forward(x, ws, bs, h0, 3, store, return_sequences, cell)


def _run_backward(x, ws, has_bias, rs, extra, all_h, dh, chunk_grads):
    """Chunked backward driver. ``chunk_grads(start, stop, part, dh, h_prev)`` returns
    ``(dh_prev, [dZ_z, dZ_r, dZ_h], [dR_z, dR_r, dR_h], [db'_h] or [])`` for one chunk."""
    steps = tf.shape(x)[0]
    wts = fused.transposed(ws)
    dh = fused.state_gradient(dh, x, rs[0].shape[0])
    totals = [tf.zeros_like(r) for r in rs] + [tf.zeros_like(w) for w in ws]
    totals += [tf.zeros_like(w[0]) for w in ws] if has_bias else []
    totals += [tf.zeros_like(e) for e in extra]

    def chunk(k, start, stop, carry):
        dh, dxs, *totals = carry
        h_prev = fused.chunk_of(all_h, start, stop)
        dh, dzs, d_rs, d_extra = chunk_grads(start, stop, dh, h_prev)
        d_ws, d_bs, dx = fused.input_gradients(x[start:stop], wts, dzs, has_bias)
        return (dh, dxs.write(k, dx), *fused.add(totals, d_rs + d_ws + d_bs + d_extra))

    dh0, dxs, *totals = fused.chunk_loop(
        steps, chunk, (dh, fused.chunk_store(steps, x), *totals), reverse=True)
    d_rs, totals = totals[:GATES], totals[GATES:]
    d_ws, totals = totals[:GATES], totals[GATES:]
    d_bs, d_extra = totals[:len(totals) - len(extra)], totals[len(totals) - len(extra):]
    dx = dxs.concat()
    dx.set_shape(x.shape)
    return (dx, *d_ws, *d_bs, *d_rs, *d_extra, dh0)


def _backward_after(x, ws, has_bias, rs, extra, saved, masks, recurrent_mask, d_outputs, dh):
    z, r, q, n, all_h = saved
    rts = fused.transposed(rs)

    def chunk_grads(start, stop, dh, h_prev):
        part = masks.chunk(start, stop)
        z_, r_, q_, n_ = (fused.chunk_of(s, start, stop) for s in (z, r, q, n))
        k_n = part.valid(TanhGrad(y=n_, dy=1.0 - z_))
        k_z = part.valid(SigmoidGrad(y=z_, dy=h_prev - n_))
        k_r = SigmoidGrad(y=r_, dy=q_) * k_n
        k_q = k_n * r_
        z_carry = part.carried(z_)
        size = stop - start

        def step(j, carry):
            dh, dhs = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dzs = (dh * k_z[j], dh * k_r[j], dh * k_q[j])
            mm = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts)])
            if recurrent_mask is not None:
                mm = mm * recurrent_mask
            return (dh * z_carry[j] + mm, dhs.write(j, dh))

        dh, dhs = fused.time_loop(size, step, (dh, fused.sequence_store(size, dh)),
                                  reverse=True)
        dh_all = dhs.stack()
        dz_z, dz_r, dq, dz_h = dh_all * k_z, dh_all * k_r, dh_all * k_q, dh_all * k_n
        hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        d_rs = [fused.gemm_t(hr, dz) for dz in (dz_z, dz_r, dq)]
        d_extra = [tf.reduce_sum(dq, [0, 1])] if extra else []
        return dh, [dz_z, dz_r, dz_h], d_rs, d_extra

    return _run_backward(x, ws, has_bias, rs, extra, all_h, dh, chunk_grads)


def _backward_before(x, ws, has_bias, rs, extra, saved, masks, recurrent_mask, d_outputs, dh):
    z, r, n, all_h = saved
    rt_z, rt_r, rt_h = fused.transposed(rs)

    def chunk_grads(start, stop, dh, h_prev):
        part = masks.chunk(start, stop)
        z_, r_, n_ = (fused.chunk_of(s, start, stop) for s in (z, r, n))
        hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        k_n = part.valid(TanhGrad(y=n_, dy=1.0 - z_))
        k_z = part.valid(SigmoidGrad(y=z_, dy=h_prev - n_))
        k_r = SigmoidGrad(y=r_, dy=hr)
        z_carry = part.carried(z_)
        size = stop - start

        def step(j, carry):
            dh, dhs, dss = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            ds = tf.linalg.matmul(dh * k_n[j], rt_h)  # gradient of s = r * h
            mm = tf.add_n([
                tf.linalg.matmul(dh * k_z[j], rt_z),
                tf.linalg.matmul(ds * k_r[j], rt_r),
                ds * r_[j],
            ])
            if recurrent_mask is not None:
                mm = mm * recurrent_mask
            return (dh * z_carry[j] + mm, dhs.write(j, dh), dss.write(j, ds))

        dh, dhs, dss = fused.time_loop(
            size, step, (dh, fused.sequence_store(size, dh), fused.sequence_store(size, dh)),
            reverse=True)
        dh_all, ds_all = dhs.stack(), dss.stack()
        dz_z, dz_r, dz_h = dh_all * k_z, ds_all * k_r, dh_all * k_n
        d_rs = [fused.gemm_t(hr, dz_z), fused.gemm_t(hr, dz_r), fused.gemm_t(r_ * hr, dz_h)]
        return dh, [dz_z, dz_r, dz_h], d_rs, []

    return _run_backward(x, ws, has_bias, rs, extra, all_h, dh, chunk_grads)

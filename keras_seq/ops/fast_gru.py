"""Fused GRU level: chunked forward loop and a hand-written backward pass.

Gate order z, r, h (Keras's). ``P = x W + b`` per chunk; with ``reset_after`` the recurrent
biases of ``z`` and ``r`` are folded into ``b`` by the caller and only the candidate's
recurrent bias ``b'_h`` stays in the loop. ``h`` in the products with ``R`` is
``h * recurrent_mask`` under recurrent dropout.

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

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)
GATES = 3


def gru(
    inputs: tf.Tensor,
    kernel: tf.Tensor,
    bias: tf.Tensor | None,
    recurrent_kernel: tf.Tensor,
    h0: tf.Tensor,
    *,
    recurrent_bias: tf.Tensor | None = None,
    reset_after: bool = True,
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    go_backwards: bool = False,
    training: bool = True,
    engine: str | None = None,
) -> tuple[tf.Tensor | None, tf.Tensor]:
    """Run a standard GRU (sigmoid gates, tanh candidate) over a whole sequence.

    Args:
        inputs: ``x [B, T, D]``.
        kernel: ``W [D, 3U]``; bias: input-side ``b [3U]`` (see above) or None;
            recurrent_kernel: ``R [U, 3U]`` (Keras's layout, gates z, r, h).
        h0: ``[B, U]`` initial state.
        recurrent_bias: ``b'_h [U]`` (``reset_after`` only) or None.
        reset_after: the reset gate applies after (True) or before the candidate's GEMM.
        keep, recurrent_mask, return_sequences, training, engine: as
            :func:`keras_seq.ops.fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] or None, h_T)``.
    """
    mask = fused.Mask(keep, h0.dtype)
    units = recurrent_kernel.shape[0]
    engine = "graph" if training else engine or fused.engine(h0.shape[0], units, GATES)
    forward, backward = (_forward_after, _backward_after) if reset_after else (
        _forward_before, _backward_before)
    extra = [recurrent_bias] if recurrent_bias is not None and reset_after else []
    n_bias, n_extra = (0 if bias is None else 1), len(extra)

    @tf.custom_gradient
    def kernel_fn(x, w, *args):
        # The gradient is grad() below: keep tapes from recording (and XLA from compiling)
        # a differentiable copy of the loops.
        x, w, args = tf.stop_gradient(x), tf.stop_gradient(w), [tf.stop_gradient(a) for a in args]
        b, args = (args[0] if n_bias else None), args[n_bias:]
        r, extra, h0 = args[0], args[1:1 + n_extra], args[-1]
        if engine == "xla":
            (h,), _, outputs = fused.forward(
                x, [w], [b], [h0],
                _xla_inner(r, extra, reset_after, mask, recurrent_mask, return_sequences),
                return_sequences=return_sequences, go_backwards=go_backwards,
                chunk=fused.INFERENCE_CHUNK)
            saved = None
        else:
            (h,), saved, outputs = forward(x, w, b, r, extra, h0, mask, recurrent_mask,
                                           training, return_sequences, go_backwards)

        def grad(*upstream):
            stored = saved
            if not training:  # the inference-mode forward kept nothing: run it again
                stored = forward(x, w, b, r, extra, h0, mask, recurrent_mask, True, False,
                                 go_backwards)[1]
            d_outputs = upstream[0] if return_sequences else None
            rs = tf.split(r, GATES, axis=1)
            inner = backward(rs, stored, mask, recurrent_mask, d_outputs, n_extra > 0)
            totals = [tf.zeros_like(v) for v in rs + list(extra)]
            dx, d_ws, d_bs, totals, (dh0,) = fused.backward(
                x, tf.split(w, GATES, axis=1), n_bias > 0,
                [fused.state_gradient(upstream[-1], h)], totals, inner, go_backwards=go_backwards)
            d_bias = [tf.concat(d_bs, 0)] if n_bias else []
            return (dx, tf.concat(d_ws, 1), *d_bias, tf.concat(totals[:GATES], 1),
                    *totals[GATES:], dh0)

        return ((outputs, h) if return_sequences else h), grad

    biases = [] if bias is None else [bias]
    results = kernel_fn(inputs, kernel, *biases, recurrent_kernel, *extra, h0)
    return tuple(results) if return_sequences else (None, results)


# -- graph engine: one tensor per gate ---------------------------------------------------------
def _run_forward(x, w, b, h0, store, return_sequences, go_backwards, saved_gates, cell):
    """Chunked forward loop; ``cell(t, [p_z, p_r, p_h] at t, h) -> (h_new, activations)``."""
    collect = store or return_sequences

    def inner(ps, states, start, stop):
        (h,) = states
        steps = stop - start
        gates = [fused.step_store(steps, h) for _ in range(saved_gates)] if store else []
        hidden = [fused.step_store(steps, h, h)] if collect else []

        def step(j, carry):
            h, *stores = carry
            h_new, values = cell(start + j, [p[j] for p in ps], h)
            written = []
            if store:
                written = [s.write(j, v)
                           for s, v in zip(stores[:saved_gates], values, strict=True)]
            if collect:
                written.append(stores[-1].write(j + 1, h_new))
            return (h_new, *written)

        h, *stores = fused.time_loop(steps, step, (h, *gates, *hidden), unroll=fused.UNROLL)
        stacked = [s.stack() for s in stores]  # activations [n]; h's [n + 1]
        outputs = stacked[-1][1:] if return_sequences else None
        return [h], (stacked if store else []), outputs

    ws = tf.split(w, GATES, axis=1)
    bs = [None] * GATES if b is None else tf.split(b, GATES)
    return fused.forward(x, ws, bs, [h0], inner, return_sequences=return_sequences,
                         go_backwards=go_backwards, saved_count=saved_gates + 1 if store else 0)


def _forward_after(x, w, b, r, extra, h0, mask, recurrent_mask, store, return_sequences,
                   go_backwards):
    r_z, r_r, r_h = tf.split(r, GATES, axis=1)

    def cell(t, ps, h):
        p_z, p_r, p_h = ps
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r + tf.linalg.matmul(hr, r_r))
        q = tf.linalg.matmul(hr, r_h)
        if extra:
            q = tf.nn.bias_add(q, extra[0])
        n = tf.tanh(p_h + r * q)
        return mask.carry(t, n + z * (h - n), h), (z, r, q, n)

    return _run_forward(x, w, b, h0, store, return_sequences, go_backwards, 4, cell)


def _forward_before(x, w, b, r, extra, h0, mask, recurrent_mask, store, return_sequences,
                    go_backwards):
    r_z, r_r, r_h = tf.split(r, GATES, axis=1)

    def cell(t, ps, h):
        p_z, p_r, p_h = ps
        hr = h if recurrent_mask is None else h * recurrent_mask
        z = tf.sigmoid(p_z + tf.linalg.matmul(hr, r_z))
        r = tf.sigmoid(p_r + tf.linalg.matmul(hr, r_r))
        n = tf.tanh(p_h + tf.linalg.matmul(r * hr, r_h))
        return mask.carry(t, n + z * (h - n), h), (z, r, n)

    return _run_forward(x, w, b, h0, store, return_sequences, go_backwards, 3, cell)


def _backward_after(rs, saved, mask, recurrent_mask, d_outputs, has_extra):
    rts = fused.transposed(rs)

    def inner(k, start, stop, d_states):
        z, r, q, n, hidden = saved.read(k)
        h_prev = hidden[:-1]
        part = mask.chunk(start, stop)
        k_n = part.valid(TanhGrad(y=n, dy=1.0 - z))
        k_z = part.valid(SigmoidGrad(y=z, dy=h_prev - n))
        k_r = SigmoidGrad(y=r, dy=q) * k_n
        k_q = k_n * r
        z_carry = part.carried(z)
        steps = stop - start

        def step(j, carry):
            dh, dhs = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dzs = (dh * k_z[j], dh * k_r[j], dh * k_q[j])
            mm = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts, strict=True)])
            if recurrent_mask is not None:
                mm = mm * recurrent_mask
            return (dh * z_carry[j] + mm, dhs.write(j, dh))

        dh, dhs = fused.time_loop(steps, step, (d_states[0], fused.step_store(steps, h_prev[0])),
                                  reverse=True, unroll=fused.UNROLL)
        dh_all = dhs.stack()
        dz_z, dz_r, dq, dz_h = dh_all * k_z, dh_all * k_r, dh_all * k_q, dh_all * k_n
        hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        grads = [fused.gemm_t(hr, dz) for dz in (dz_z, dz_r, dq)]
        if has_extra:
            grads.append(tf.reduce_sum(dq, [0, 1]))  # b'_h
        return [dh], [dz_z, dz_r, dz_h], grads

    return inner


def _backward_before(rs, saved, mask, recurrent_mask, d_outputs, has_extra):
    rt_z, rt_r, rt_h = fused.transposed(rs)

    def inner(k, start, stop, d_states):
        z, r, n, hidden = saved.read(k)
        h_prev = hidden[:-1]
        part = mask.chunk(start, stop)
        hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        k_n = part.valid(TanhGrad(y=n, dy=1.0 - z))
        k_z = part.valid(SigmoidGrad(y=z, dy=h_prev - n))
        k_r = SigmoidGrad(y=r, dy=hr)
        z_carry = part.carried(z)
        steps = stop - start

        def step(j, carry):
            dh, dhs, dss = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            ds = tf.linalg.matmul(dh * k_n[j], rt_h)  # gradient of s = r * h
            mm = tf.add_n([
                tf.linalg.matmul(dh * k_z[j], rt_z),
                tf.linalg.matmul(ds * k_r[j], rt_r),
                ds * r[j],
            ])
            if recurrent_mask is not None:
                mm = mm * recurrent_mask
            return (dh * z_carry[j] + mm, dhs.write(j, dh), dss.write(j, ds))

        stores = (fused.step_store(steps, h_prev[0]), fused.step_store(steps, h_prev[0]))
        dh, dhs, dss = fused.time_loop(steps, step, (d_states[0], *stores), reverse=True,
                                       unroll=fused.UNROLL)
        dh_all, ds_all = dhs.stack(), dss.stack()
        dz_z, dz_r, dz_h = dh_all * k_z, ds_all * k_r, dh_all * k_n
        grads = [fused.gemm_t(hr, dz_z), fused.gemm_t(hr, dz_r), fused.gemm_t(r * hr, dz_h)]
        return [dh], [dz_z, dz_r, dz_h], grads

    return inner


# -- XLA engine: inference forward, gates in one [B, 3U] tensor -------------------------------
def _xla_inner(r, extra, reset_after, mask, recurrent_mask, return_sequences):
    recurrent_bias = extra[0] if extra else None

    def inner(ps, states, start, stop):
        keep = None if not mask else mask.keep[start:stop]
        h, hidden = _xla_forward(ps[0], r, recurrent_bias, states[0], keep, recurrent_mask,
                                 reset_after, return_sequences)
        h.set_shape(states[0].shape)
        return [h], [], hidden

    return inner


@fused.jit
def _xla_forward(p, r, recurrent_bias, h, keep, recurrent_mask, reset_after, collect):
    """One chunk: ``p [n, B, 3U]`` -> ``(h, outputs [n, B, U] or None)``."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    units = h.shape[-1]
    hidden = fused.step_store(steps, h)

    def body(t, h, hidden):
        hr = h if recurrent_mask is None else h * recurrent_mask
        p_z, p_r, p_h = tf.split(p[t], 3, axis=1)
        if reset_after:
            m_z, m_r, q = tf.split(tf.linalg.matmul(hr, r), 3, axis=1)
            if recurrent_bias is not None:
                q = q + recurrent_bias
            z, r_gate = tf.sigmoid(p_z + m_z), tf.sigmoid(p_r + m_r)
            n = tf.tanh(p_h + r_gate * q)
        else:
            m_z, m_r = tf.split(tf.linalg.matmul(hr, r[:, :2 * units]), 2, axis=1)
            z, r_gate = tf.sigmoid(p_z + m_z), tf.sigmoid(p_r + m_r)
            n = tf.tanh(p_h + tf.linalg.matmul(r_gate * hr, r[:, 2 * units:]))
        h_new = n + z * (h - n)
        if keep is not None:
            h_new = tf.where(keep[t], h_new, h)
        return t + 1, h_new, (hidden.write(t, h_new) if collect else hidden)

    _, h, hidden = tf.while_loop(lambda t, *_: t < steps, body, (0, h, hidden),
                                 maximum_iterations=steps)
    return h, (hidden.stack() if collect else None)

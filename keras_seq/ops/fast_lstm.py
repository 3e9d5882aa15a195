"""Fused LSTM level: chunked forward loop and a hand-written backward pass.

Forward, per step (gate order i, f, c, o as Keras; ``P = x W + b`` per chunk)::

    i = sigmoid(P_i[t] + h R_i)    f = sigmoid(P_f[t] + h R_f)
    g = tanh(P_c[t] + h R_c)       o = sigmoid(P_o[t] + h R_o)
    c = f * c + i * g              h = o * tanh(c)

(``h`` in the products with ``R`` is ``h * recurrent_mask`` under recurrent dropout.)

Backward, with ``dh``/``dc`` the gradients of the states after step ``t`` and the factors
``A = o (1 - tanh(c)^2)``, ``D_i = i' g``, ``D_f = f' c_prev``, ``D_c = g' i``,
``D_o = o' tanh(c)`` computed for a whole chunk at once::

    dc += dh * A[t]
    dz_i = dc D_i[t]   dz_f = dc D_f[t]   dz_c = dc D_c[t]   dz_o = dh D_o[t]
    dc_prev = dc * f[t]
    dh_prev = sum_g dz_g @ R_g^T

then, per chunk, ``dR_g += H_prev^T dZ_g``, ``dW_g += X^T dZ_g``, ``db_g += sum dZ_g``,
``dX = sum_g dZ_g W_g^T`` (:func:`keras_seq.ops.fused.backward`).
"""

from __future__ import annotations

import tensorflow as tf

from keras_seq.ops import fused

SigmoidGrad = tf.raw_ops.SigmoidGrad  # SigmoidGrad(y, dy) = dy * y * (1 - y)
TanhGrad = tf.raw_ops.TanhGrad  # TanhGrad(y, dy) = dy * (1 - y^2)
GATES = 4


def lstm(
    inputs: tf.Tensor,
    kernel: tf.Tensor,
    bias: tf.Tensor | None,
    recurrent_kernel: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    *,
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    go_backwards: bool = False,
    training: bool = True,
    engine: str | None = None,
) -> tuple[tf.Tensor | None, tf.Tensor, tf.Tensor]:
    """Run a standard LSTM (sigmoid gates, tanh) over a whole sequence.

    Args:
        inputs: ``x [B, T, D]``.
        kernel: ``W [D, 4U]``; bias: ``b [4U]`` or None; recurrent_kernel: ``R [U, 4U]``
            (Keras's layout, gates i, f, c, o).
        h0, c0: ``[B, U]`` initial states.
        keep: optional ``[T, B]`` boolean mask (False: carry the states over).
        recurrent_mask: optional ``[B, U]`` recurrent-dropout mask applied to ``h``.
        return_sequences: also return the state ``h`` after every step.
        training: True stores the activations the backward pass needs; False runs a lean
            forward pass, and a gradient, if one is asked for, runs it again storing them.
        engine: forward engine when not training, ``"xla"`` or ``"graph"``; default
            :func:`keras_seq.ops.fused.engine`.

    Returns:
        ``(H [T, B, U] or None, h_T, c_T)``.
    """
    mask = fused.Mask(keep, h0.dtype)
    units = recurrent_kernel.shape[0]
    if training:
        engine = "graph"
    engine = engine or fused.engine(h0.shape[0], units, GATES)
    n_bias = 0 if bias is None else 1

    @tf.custom_gradient
    def kernel_fn(x, w, *args):
        # The gradient is grad() below: keep tapes from recording (and XLA from compiling)
        # a differentiable copy of the loops.
        x, w, args = tf.stop_gradient(x), tf.stop_gradient(w), [tf.stop_gradient(a) for a in args]
        b, (r, h0, c0) = (args[0] if n_bias else None), args[n_bias:]
        if engine == "xla":
            (h, c), _, outputs = fused.forward(
                x, [w], [b], [h0, c0], _xla_inner(r, mask, recurrent_mask, return_sequences),
                return_sequences=return_sequences, go_backwards=go_backwards,
                chunk=fused.INFERENCE_CHUNK)
            saved = None
        else:
            (h, c), saved, outputs = _graph_forward(x, w, b, r, h0, c0, mask, recurrent_mask,
                                                    training, return_sequences, go_backwards)

        def grad(*upstream):
            stored = saved
            if not training:  # the inference-mode forward kept nothing: run it again
                stored = _graph_forward(x, w, b, r, h0, c0, mask, recurrent_mask, True,
                                        False, go_backwards)[1]
            d_outputs = upstream[0] if return_sequences else None
            d_states = [fused.state_gradient(upstream[-2], h),
                        fused.state_gradient(upstream[-1], c)]
            rs = tf.split(r, GATES, axis=1)
            inner = _graph_backward(rs, stored, mask, recurrent_mask, d_outputs)
            dx, d_ws, d_bs, d_rs, (dh0, dc0) = fused.backward(
                x, tf.split(w, GATES, axis=1), n_bias > 0, d_states,
                [tf.zeros_like(r) for r in rs], inner, go_backwards=go_backwards)
            d_bias = [tf.concat(d_bs, 0)] if n_bias else []
            return (dx, tf.concat(d_ws, 1), *d_bias, tf.concat(d_rs, 1), dh0, dc0)

        return ((outputs, h, c) if return_sequences else (h, c)), grad

    biases = [] if bias is None else [bias]
    results = kernel_fn(inputs, kernel, *biases, recurrent_kernel, h0, c0)
    return tuple(results) if return_sequences else (None, *results)


# -- graph engine: one tensor per gate ---------------------------------------------------------
def _graph_forward(x, w, b, r, h0, c0, mask, recurrent_mask, store, return_sequences,
                   go_backwards):
    r_i, r_f, r_c, r_o = tf.split(r, GATES, axis=1)
    collect = store or return_sequences

    def inner(ps, states, start, stop):
        p_i, p_f, p_c, p_o = ps
        h, c = states
        steps = stop - start
        gates = [fused.step_store(steps, h) for _ in range(GATES)] if store else []
        cells = [fused.step_store(steps, c, c)] if store else []
        hidden = [fused.step_store(steps, h, h)] if collect else []

        def step(j, carry):
            t = start + j
            h, c, *stores = carry
            hr = h if recurrent_mask is None else h * recurrent_mask
            i = tf.sigmoid(p_i[j] + tf.linalg.matmul(hr, r_i))
            f = tf.sigmoid(p_f[j] + tf.linalg.matmul(hr, r_f))
            g = tf.tanh(p_c[j] + tf.linalg.matmul(hr, r_c))
            o = tf.sigmoid(p_o[j] + tf.linalg.matmul(hr, r_o))
            c_new = mask.carry(t, f * c + i * g, c)
            h_new = mask.carry(t, o * tf.tanh(c_new), h)
            written = []
            if store:
                written = [s.write(j, v)
                           for s, v in zip(stores[:GATES], (i, f, g, o), strict=True)]
                written.append(stores[GATES].write(j + 1, c_new))
            if collect:
                written.append(stores[-1].write(j + 1, h_new))
            return (h_new, c_new, *written)

        h, c, *stores = fused.time_loop(steps, step, (h, c, *gates, *cells, *hidden),
                                        unroll=fused.UNROLL)
        stacked = [s.stack() for s in stores]  # i, f, g, o [n]; c's, h's [n + 1]
        outputs = stacked[-1][1:] if return_sequences else None
        return [h, c], (stacked if store else []), outputs

    ws = tf.split(w, GATES, axis=1)
    bs = [None] * GATES if b is None else tf.split(b, GATES)
    return fused.forward(x, ws, bs, [h0, c0], inner, return_sequences=return_sequences,
                         go_backwards=go_backwards, saved_count=GATES + 2 if store else 0)


def _graph_backward(rs, saved, mask, recurrent_mask, d_outputs):
    rts = fused.transposed(rs)

    def inner(k, start, stop, d_states):
        i, f, g, o, cells, hidden = saved.read(k)
        part = mask.chunk(start, stop)
        c_prev, tc = cells[:-1], tf.tanh(cells[1:])
        a = part.valid(TanhGrad(y=tc, dy=o))  # dc += dh * a
        d_i = part.valid(SigmoidGrad(y=i, dy=g))
        d_f = part.valid(SigmoidGrad(y=f, dy=c_prev))
        d_c = part.valid(TanhGrad(y=g, dy=i))
        d_o = part.valid(SigmoidGrad(y=o, dy=tc))
        f_carry, passthrough = part.carried(f), part.passthrough()
        steps = stop - start
        stores = [fused.step_store(steps, d_states[0]) for _ in range(GATES)]

        def step(j, carry):
            dh, dc, *stores = carry
            if d_outputs is not None:
                dh = dh + d_outputs[start + j]
            dc = dc + dh * a[j]
            dzs = (dc * d_i[j], dc * d_f[j], dc * d_c[j], dh * d_o[j])
            dh_prev = tf.add_n([tf.linalg.matmul(dz, rt) for dz, rt in zip(dzs, rts, strict=True)])
            if recurrent_mask is not None:
                dh_prev = dh_prev * recurrent_mask
            if passthrough is not None:
                dh_prev = dh_prev + dh * passthrough[j]
            written = [s.write(j, dz) for s, dz in zip(stores, dzs, strict=True)]
            return (dh_prev, dc * f_carry[j], *written)

        dh, dc, *stores = fused.time_loop(steps, step, (*d_states, *stores), reverse=True,
                                          unroll=fused.UNROLL)
        dzs = [s.stack() for s in stores]
        h_prev = hidden[:-1] if recurrent_mask is None else hidden[:-1] * recurrent_mask
        return [dh, dc], dzs, [fused.gemm_t(h_prev, dz) for dz in dzs]

    return inner


# -- XLA engine: inference forward, gates in one [B, 4U] tensor -------------------------------
def _xla_inner(r, mask, recurrent_mask, return_sequences):
    def inner(ps, states, start, stop):
        keep = None if not mask else mask.keep[start:stop]
        h, c, hidden = _xla_forward(ps[0], r, states[0], states[1], keep, recurrent_mask,
                                    return_sequences)
        h.set_shape(states[0].shape)
        c.set_shape(states[1].shape)
        return [h, c], [], hidden

    return inner


@fused.jit
def _xla_forward(p, r, h, c, keep, recurrent_mask, collect):
    """One chunk: ``p [n, B, 4U]`` -> ``(h, c, outputs [n, B, U] or None)``."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    hidden = fused.step_store(steps, h)

    def body(t, h, c, hidden):
        hr = h if recurrent_mask is None else h * recurrent_mask
        z_i, z_f, z_c, z_o = tf.split(p[t] + tf.linalg.matmul(hr, r), 4, axis=1)
        i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_c), tf.sigmoid(z_o)
        c_new = f * c + i * g
        h_new = o * tf.tanh(c_new)
        if keep is not None:
            c_new, h_new = tf.where(keep[t], c_new, c), tf.where(keep[t], h_new, h)
        return t + 1, h_new, c_new, (hidden.write(t, h_new) if collect else hidden)

    _, h, c, hidden = tf.while_loop(lambda t, *_: t < steps, body, (0, h, c, hidden),
                                    maximum_iterations=steps)
    return h, c, (hidden.stack() if collect else None)

"""Fused LSTM level: chunked forward loop and a hand-written backward pass.

Forward, per step (gate order i, f, c, o as Keras; ``P = x W + b`` per chunk)::

    i = sigmoid(P_i[t] + h R_i)    f = sigmoid(P_f[t] + h R_f)
    g = tanh(P_c[t] + h R_c)       o = sigmoid(P_o[t] + h R_o)
    c = f * c + i * g              h = o * tanh(c)

(``h`` in the products with ``R`` is ``h * recurrent_mask`` under recurrent dropout.)

Backward, with ``dh``/``dc`` the gradients of the states after step ``t``::

    dc += dh * A            A = o (1 - tanh(c)^2)
    dz_i = dc g i'    dz_f = dc c_prev f'    dz_c = dc i g'    dz_o = dh tanh(c) o'
    dc_prev = dc * f        dh_prev = sum_g dz_g @ R_g^T

then, per chunk, ``dR += H_prev^T dZ``, ``dW += X^T dZ``, ``db += sum dZ``, ``dX = dZ W^T``
(:func:`keras_seq.ops.fused.backward`). The graph engine keeps each gate in its own tensor
and computes ``A`` and the ``D_g`` factors for a chunk at once; the XLA engine keeps the
gates in one ``[B, 4U]`` tensor and compiles each chunk's loop.
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
        keep: optional ``[T, B]`` boolean mask in processing order (False: carry the states
            over).
        recurrent_mask: optional ``[B, U]`` recurrent-dropout mask applied to ``h``.
        return_sequences: also return the state ``h`` after every step.
        go_backwards: process time in reverse (outputs in processing order).
        training: True stores the activations the backward pass needs; False runs a lean
            forward pass, and a gradient, if one is asked for, runs it again storing them.
        engine: ``"xla"`` or ``"graph"`` for every pass; default
            :func:`keras_seq.ops.fused.train_engine` / :func:`keras_seq.ops.fused.engine`.

    Returns:
        ``(H [T, B, U] time-major in processing order, or None; h_T; c_T)``.
    """
    units, has_bias = recurrent_kernel.shape[0], bias is not None

    recurrent_mask = fused.no_gradient(recurrent_mask)

    def make(name, chunk=None):
        kind = _XlaEngine if name == "xla" else _GraphEngine
        return kind(fused.Mask(keep, h0.dtype), recurrent_mask, has_bias, chunk)

    train = make(engine or fused.train_engine(units, GATES))
    infer = make(engine or fused.engine(h0.shape[0], units, GATES), fused.INFERENCE_CHUNK)
    params = [kernel, *([bias] if has_bias else []), recurrent_kernel]
    return fused.run_level(inputs, params, [h0, c0], train=train, infer=infer,
                           training=training, return_sequences=return_sequences,
                           go_backwards=go_backwards)


class _Engine:
    def __init__(self, mask, recurrent_mask, has_bias, chunk=None):
        self.mask, self.recurrent_mask = mask, recurrent_mask
        self.has_bias, self.chunk = has_bias, chunk

    def unpack(self, params):
        """``(W, b or None, R)``."""
        return params[0], (params[1] if self.has_bias else None), params[-1]

    def pack(self, dw, db, dr):
        return [dw, *([db] if self.has_bias else []), dr]


class _GraphEngine(_Engine):
    """One tensor per gate; the four per-gate GEMMs of a step run concurrently."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r = self.unpack(params)
        r_i, r_f, r_c, r_o = tf.split(r, GATES, axis=1)
        mask, recurrent_mask = self.mask, self.recurrent_mask
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
        return fused.forward(x, ws, bs, states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards, saved_count=GATES + 2 if store else 0,
                             chunk=self.chunk)

    def backward(self, x, params, saved, d_outputs, d_states, go_backwards):
        w, _, r = self.unpack(params)
        rs = tf.split(r, GATES, axis=1)
        rts = fused.transposed(rs)
        mask, recurrent_mask = self.mask, self.recurrent_mask

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
                dh_prev = tf.add_n([tf.linalg.matmul(dz, rt)
                                    for dz, rt in zip(dzs, rts, strict=True)])
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

        dx, d_ws, d_bs, d_rs, d_states = fused.backward(
            x, tf.split(w, GATES, axis=1), self.has_bias, d_states,
            [tf.zeros_like(v) for v in rs], inner, go_backwards=go_backwards,
            chunk=self.chunk)
        d_b = tf.concat(d_bs, 0) if self.has_bias else None
        return dx, self.pack(tf.concat(d_ws, 1), d_b, tf.concat(d_rs, 1)), d_states


class _XlaEngine(_Engine):
    """Gates in one ``[B, 4U]`` tensor; each chunk's loop is one XLA computation."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r = self.unpack(params)
        mask, recurrent_mask = self.mask, self.recurrent_mask

        def inner(ps, states, start, stop):
            keep = mask.keep[start:stop] if mask else None
            h, c, acts, cells, hidden = _xla_forward(
                ps[0], r, states[0], states[1], keep, recurrent_mask, store,
                store or return_sequences)
            h.set_shape(states[0].shape)
            c.set_shape(states[1].shape)
            outputs = hidden[1:] if return_sequences else None
            return [h, c], ([acts, cells, hidden] if store else []), outputs

        return fused.forward(x, [w], [b], states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards, saved_count=3 if store else 0,
                             chunk=self.chunk)

    def backward(self, x, params, saved, d_outputs, d_states, go_backwards):
        w, _, r = self.unpack(params)
        rt = tf.transpose(r)
        mask, recurrent_mask = self.mask, self.recurrent_mask

        def inner(k, start, stop, d_states):
            acts, cells, hidden = saved.read(k)
            keep = mask.keep[start:stop] if mask else None
            dys = None if d_outputs is None else d_outputs[start:stop]
            dz, dh, dc = _xla_backward(acts, cells, rt, d_states[0], d_states[1], dys, keep,
                                       recurrent_mask)
            dz.set_shape(acts.shape)
            dh.set_shape(d_states[0].shape)
            dc.set_shape(d_states[1].shape)
            h_prev = hidden[:-1] if recurrent_mask is None else hidden[:-1] * recurrent_mask
            return [dh, dc], [dz], [fused.gemm_t(h_prev, dz)]

        dx, (dw,), d_bs, (dr,), d_states = fused.backward(
            x, [w], self.has_bias, d_states, [tf.zeros_like(r)], inner,
            go_backwards=go_backwards, chunk=self.chunk)
        return dx, self.pack(dw, d_bs[0] if d_bs else None, dr), d_states


@fused.jit
def _xla_forward(p, r, h, c, keep, recurrent_mask, store, collect):
    """One chunk: ``p [n, B, 4U]`` -> ``(h, c, acts [n, B, 4U], c's [n+1], h's [n+1])``
    (None for what is not stored)."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    acts = fused.step_store(steps, p[0])
    cells, hidden = fused.step_store(steps, c, c), fused.step_store(steps, h, h)

    def body(t, h, c, acts, cells, hidden):
        hr = h if recurrent_mask is None else h * recurrent_mask
        z_i, z_f, z_c, z_o = tf.split(p[t] + tf.linalg.matmul(hr, r), 4, axis=1)
        i, f, g, o = tf.sigmoid(z_i), tf.sigmoid(z_f), tf.tanh(z_c), tf.sigmoid(z_o)
        c_new = f * c + i * g
        if keep is not None:
            c_new = tf.where(keep[t], c_new, c)
        h_new = o * tf.tanh(c_new)
        if keep is not None:
            h_new = tf.where(keep[t], h_new, h)
        if store:
            acts = acts.write(t, tf.concat([i, f, g, o], axis=1))
            cells = cells.write(t + 1, c_new)
        if collect:
            hidden = hidden.write(t + 1, h_new)
        return t + 1, h_new, c_new, acts, cells, hidden

    _, h, c, acts, cells, hidden = tf.while_loop(
        lambda t, *_: t < steps, body, (0, h, c, acts, cells, hidden), maximum_iterations=steps)
    return (h, c, acts.stack() if store else None, cells.stack() if store else None,
            hidden.stack() if collect else None)


@fused.jit
def _xla_backward(acts, cells, rt, dh, dc, dys, keep, recurrent_mask):
    """One chunk in reverse: ``-> (dZ [n, B, 4U], dh, dc)``."""
    steps = tf.shape(acts)[0]
    dzs = fused.step_store(steps, acts[0])

    def body(j, dh, dc, dzs):
        t = steps - 1 - j
        if dys is not None:
            dh = dh + dys[t]
        i, f, g, o = tf.split(acts[t], 4, axis=1)
        c_prev, tc = cells[t], tf.tanh(cells[t + 1])
        dh_v, dc_v = dh, dc
        if keep is not None:
            m = tf.cast(keep[t], dh.dtype)
            dh_v, dc_v = dh * m, dc * m
        dc_t = dc_v + dh_v * o * (1.0 - tc * tc)
        dz = tf.concat([dc_t * g * i * (1.0 - i), dc_t * c_prev * f * (1.0 - f),
                        dc_t * i * (1.0 - g * g), dh_v * tc * o * (1.0 - o)], axis=1)
        mm = tf.linalg.matmul(dz, rt)
        if recurrent_mask is not None:
            mm = mm * recurrent_mask
        dh_prev, dc_prev = mm, dc_t * f
        if keep is not None:  # a masked step passes the state gradients through
            dh_prev, dc_prev = mm + (dh - dh_v), dc_prev + (dc - dc_v)
        return j + 1, dh_prev, dc_prev, dzs.write(t, dz)

    _, dh, dc, dzs = tf.while_loop(lambda j, *_: j < steps, body, (0, dh, dc, dzs),
                                   maximum_iterations=steps)
    return dzs.stack(), dh, dc

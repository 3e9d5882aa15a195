"""Fused GRU level: chunked forward loop and a hand-written backward pass.

Gate order z, r, h (Keras's). ``P = x W + b`` per chunk; with ``reset_after`` the recurrent
biases of ``z`` and ``r`` are folded into ``b`` by the caller and only the candidate's
recurrent bias ``b'_h`` stays in the loop. ``h`` in the products with ``R`` is
``h * recurrent_mask`` under recurrent dropout.

``reset_after=True`` (Keras / cuDNN / PyTorch)::

    z = sigmoid(P_z[t] + h R_z)     r = sigmoid(P_r[t] + h R_r)
    q = h R_h + b'_h                n = tanh(P_h[t] + r * q)
    h_t = n + z * (h - n)           (= z h + (1 - z) n)

backward, with ``dh`` the gradient of ``h_t`` (``K_n = (1 - z) n'``, ``K_z = (h - n) z'``,
``K_r = K_n q r'``, ``K_q = K_n r``)::

    dz_z = dh K_z    dz_r = dh K_r    dq = dh K_q
    dh_prev = dh z + dz_z R_z^T + dz_r R_r^T + dq R_h^T

``reset_after=False`` (Cho et al.): ``n = tanh(P_h[t] + (r * h) R_h)``; backward
``ds = dh K_n R_h^T``, ``dz_r = ds h r'``, ``dh_prev = dh z + dz_z R_z^T + dz_r R_r^T + ds r``.

Per chunk, ``dR += H_prev^T dZ`` (``(r h)^T dZ_h`` for ``R_h`` when not ``reset_after``),
``dW += X^T dZ``, ``db += sum dZ``, ``dX = dZ W^T``. The graph engine keeps each gate in its
own tensor, computes the ``K`` factors for a chunk at once and stores only ``dh`` (and ``ds``)
per step; the XLA engine keeps the gates in one tensor and compiles each chunk's loop.
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
        keep, recurrent_mask, return_sequences, go_backwards, training, engine: as
            :func:`keras_seq.ops.fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] time-major in processing order, or None; h_T)``.
    """
    units = recurrent_kernel.shape[0]
    has_bias = bias is not None
    has_extra = recurrent_bias is not None and reset_after

    recurrent_mask = fused.no_gradient(recurrent_mask)

    def make(name, chunk=None):
        kind = _XlaEngine if name == "xla" else _GraphEngine
        return kind(fused.Mask(keep, h0.dtype), recurrent_mask, has_bias, has_extra,
                    reset_after, chunk)

    train = make(engine or fused.train_engine(units, GATES))
    infer = make(engine or fused.engine(h0.shape[0], units, GATES), fused.INFERENCE_CHUNK)
    params = [kernel, *([bias] if has_bias else []), recurrent_kernel,
              *([recurrent_bias] if has_extra else [])]
    return fused.run_level(inputs, params, [h0], train=train, infer=infer, training=training,
                           return_sequences=return_sequences, go_backwards=go_backwards)


class _Engine:
    def __init__(self, mask, recurrent_mask, has_bias, has_extra, reset_after, chunk=None):
        self.mask, self.recurrent_mask = mask, recurrent_mask
        self.has_bias, self.has_extra = has_bias, has_extra
        self.reset_after, self.chunk = reset_after, chunk

    def unpack(self, params):
        """``(W, b or None, R, b'_h or None)``."""
        b = params[1] if self.has_bias else None
        r = params[2] if self.has_bias else params[1]
        return params[0], b, r, (params[-1] if self.has_extra else None)

    def pack(self, dw, db, dr, d_extra):
        return [dw, *([db] if self.has_bias else []), dr, *([d_extra] if self.has_extra else [])]


class _GraphEngine(_Engine):
    """One tensor per gate; the per-gate GEMMs of a step run concurrently."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r, extra = self.unpack(params)
        r_z, r_r, r_h = tf.split(r, GATES, axis=1)
        mask, recurrent_mask, reset_after = self.mask, self.recurrent_mask, self.reset_after
        saved_gates = 4 if reset_after else 3
        collect = store or return_sequences

        def cell(t, ps, h):
            p_z, p_r, p_h = ps
            hr = h if recurrent_mask is None else h * recurrent_mask
            z = tf.sigmoid(p_z + tf.linalg.matmul(hr, r_z))
            r = tf.sigmoid(p_r + tf.linalg.matmul(hr, r_r))
            if reset_after:
                q = tf.linalg.matmul(hr, r_h)
                if extra is not None:
                    q = tf.nn.bias_add(q, extra)
                n = tf.tanh(p_h + r * q)
                values = (z, r, q, n)
            else:
                n = tf.tanh(p_h + tf.linalg.matmul(r * hr, r_h))
                values = (z, r, n)
            return mask.carry(t, n + z * (h - n), h), values

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
        return fused.forward(x, ws, bs, states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards,
                             saved_count=saved_gates + 1 if store else 0, chunk=self.chunk)

    def backward(self, x, params, saved, d_outputs, d_states, go_backwards):
        w, _, r, extra = self.unpack(params)
        rs = tf.split(r, GATES, axis=1)
        chunk_grads = (self._after if self.reset_after else self._before)(rs, saved, d_outputs)
        totals = [tf.zeros_like(v) for v in rs] + ([tf.zeros_like(extra)] if self.has_extra
                                                    else [])
        dx, d_ws, d_bs, totals, d_states = fused.backward(
            x, tf.split(w, GATES, axis=1), self.has_bias, d_states, totals, chunk_grads,
            go_backwards=go_backwards, chunk=self.chunk)
        d_b = tf.concat(d_bs, 0) if self.has_bias else None
        d_extra = totals[GATES] if self.has_extra else None
        return dx, self.pack(tf.concat(d_ws, 1), d_b, tf.concat(totals[:GATES], 1),
                             d_extra), d_states

    def _after(self, rs, saved, d_outputs):
        rts = fused.transposed(rs)
        mask, recurrent_mask, has_extra = self.mask, self.recurrent_mask, self.has_extra

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
                mm = tf.add_n([tf.linalg.matmul(dz, rt)
                               for dz, rt in zip(dzs, rts, strict=True)])
                if recurrent_mask is not None:
                    mm = mm * recurrent_mask
                return (dh * z_carry[j] + mm, dhs.write(j, dh))

            dh, dhs = fused.time_loop(steps, step, (d_states[0], fused.step_store(steps, z[0])),
                                      reverse=True, unroll=fused.UNROLL)
            dh_all = dhs.stack()
            dz_z, dz_r, dq, dz_h = dh_all * k_z, dh_all * k_r, dh_all * k_q, dh_all * k_n
            hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
            grads = [fused.gemm_t(hr, dz) for dz in (dz_z, dz_r, dq)]
            if has_extra:
                grads.append(tf.reduce_sum(dq, [0, 1]))  # b'_h
            return [dh], [dz_z, dz_r, dz_h], grads

        return inner

    def _before(self, rs, saved, d_outputs):
        rt_z, rt_r, rt_h = fused.transposed(rs)
        mask, recurrent_mask = self.mask, self.recurrent_mask

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

            stores = (fused.step_store(steps, z[0]), fused.step_store(steps, z[0]))
            dh, dhs, dss = fused.time_loop(steps, step, (d_states[0], *stores), reverse=True,
                                           unroll=fused.UNROLL)
            dh_all, ds_all = dhs.stack(), dss.stack()
            dz_z, dz_r, dz_h = dh_all * k_z, ds_all * k_r, dh_all * k_n
            grads = [fused.gemm_t(hr, dz_z), fused.gemm_t(hr, dz_r), fused.gemm_t(r * hr, dz_h)]
            return [dh], [dz_z, dz_r, dz_h], grads

        return inner


class _XlaEngine(_Engine):
    """Gates in one tensor; each chunk's loop is one XLA computation."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r, extra = self.unpack(params)
        mask, recurrent_mask, reset_after = self.mask, self.recurrent_mask, self.reset_after

        def inner(ps, states, start, stop):
            keep = mask.keep[start:stop] if mask else None
            h, acts, hidden = _xla_forward(ps[0], r, extra, states[0], keep, recurrent_mask,
                                           reset_after, store, store or return_sequences)
            h.set_shape(states[0].shape)
            outputs = hidden[1:] if return_sequences else None
            return [h], ([acts, hidden] if store else []), outputs

        return fused.forward(x, [w], [b], states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards, saved_count=2 if store else 0,
                             chunk=self.chunk)

    def backward(self, x, params, saved, d_outputs, d_states, go_backwards):
        w, _, r, extra = self.unpack(params)
        units = r.shape[0]
        rt = tf.transpose(r)
        mask, recurrent_mask, reset_after = self.mask, self.recurrent_mask, self.reset_after

        def inner(k, start, stop, d_states):
            acts, hidden = saved.read(k)
            keep = mask.keep[start:stop] if mask else None
            dys = None if d_outputs is None else d_outputs[start:stop]
            h_prev = hidden[:-1]
            hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
            q = None
            if reset_after:  # q = h R_h + b'_h again, one GEMM per chunk (saves storing it)
                (q,) = fused.project(hr, [r[:, 2 * units:]], [extra])
            dz, dz_rec, dh = _xla_backward(acts, hidden, q, rt, d_states[0], dys, keep,
                                           recurrent_mask)
            dz.set_shape(acts.shape[:2].concatenate([3 * units]))
            dh.set_shape(d_states[0].shape)
            if reset_after:
                dz_rec.set_shape(dz.shape)
                grads = [fused.gemm_t(hr, dz_rec)]
                if extra is not None:
                    grads.append(tf.reduce_sum(dz_rec[..., 2 * units:], [0, 1]))
            else:
                s = acts[..., units:2 * units] * hr  # r * h
                grads = [tf.concat([fused.gemm_t(hr, dz[..., :2 * units]),
                                    fused.gemm_t(s, dz[..., 2 * units:])], axis=1)]
            return [dh], [dz], grads

        totals = [tf.zeros_like(r)] + ([tf.zeros_like(extra)] if extra is not None else [])
        dx, (dw,), d_bs, totals, d_states = fused.backward(
            x, [w], self.has_bias, d_states, totals, inner, go_backwards=go_backwards,
            chunk=self.chunk)
        d_extra = totals[1] if self.has_extra else None
        return dx, self.pack(dw, d_bs[0] if d_bs else None, totals[0], d_extra), d_states


@fused.jit
def _xla_forward(p, r, recurrent_bias, h, keep, recurrent_mask, reset_after, store, collect):
    """One chunk: ``p [n, B, 3U]`` -> ``(h, acts [n, B, 3U] = [z, r, n], h's [n+1])``
    (None for what is not stored)."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    units = h.shape[-1]
    acts = fused.step_store(steps, tf.concat([h] * 3, axis=1))
    hidden = fused.step_store(steps, h, h)

    def body(t, h, acts, hidden):
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
        if store:
            acts = acts.write(t, tf.concat([z, r_gate, n], axis=1))
        if collect:
            hidden = hidden.write(t + 1, h_new)
        return t + 1, h_new, acts, hidden

    _, h, acts, hidden = tf.while_loop(lambda t, *_: t < steps, body, (0, h, acts, hidden),
                                       maximum_iterations=steps)
    return h, (acts.stack() if store else None), (hidden.stack() if collect else None)


@fused.jit
def _xla_backward(acts, hidden, q, rt, dh, dys, keep, recurrent_mask):
    """One chunk in reverse: ``-> (dZ [n, B, 3U], dZ for R or None, dh)``; ``rt = R^T
    [3U, U]``; ``q [n, B, U]`` for ``reset_after``, None otherwise."""
    reset_after = q is not None
    steps = tf.shape(acts)[0]
    units = dh.shape[-1]
    like = tf.concat([dh, dh, dh], axis=1)
    dzs, recs = fused.step_store(steps, like), fused.step_store(steps, like)

    def body(j, dh, dzs, recs):
        t = steps - 1 - j
        if dys is not None:
            dh = dh + dys[t]
        dh_v = dh if keep is None else dh * tf.cast(keep[t], dh.dtype)
        h_prev = hidden[t]
        z, r, n = tf.split(acts[t], 3, axis=1)
        dn = dh_v * (1.0 - z) * (1.0 - n * n)
        dz_z = dh_v * (h_prev - n) * z * (1.0 - z)
        if reset_after:
            dq = dn * r
            dz_r = dn * q[t] * r * (1.0 - r)
            mm = tf.linalg.matmul(tf.concat([dz_z, dz_r, dq], axis=1), rt)
            recs = recs.write(t, tf.concat([dz_z, dz_r, dq], axis=1))
        else:
            hr = h_prev if recurrent_mask is None else h_prev * recurrent_mask
            ds = tf.linalg.matmul(dn, rt[2 * units:])  # gradient of s = r * h
            dz_r = ds * hr * r * (1.0 - r)
            mm = tf.linalg.matmul(tf.concat([dz_z, dz_r], axis=1), rt[:2 * units]) + ds * r
        if recurrent_mask is not None:
            mm = mm * recurrent_mask
        dh_prev = dh_v * z + mm + (dh - dh_v)  # a masked step passes dh through
        return j + 1, dh_prev, dzs.write(t, tf.concat([dz_z, dz_r, dn], axis=1)), recs

    _, dh, dzs, recs = tf.while_loop(lambda j, *_: j < steps, body, (0, dh, dzs, recs),
                                     maximum_iterations=steps)
    return dzs.stack(), (recs.stack() if reset_after else None), dh

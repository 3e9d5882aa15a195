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

# Training chunks of at least this many steps: a step keeps one [B, U] state, so a chunk's
# working set is small and longer chunks (fewer, larger GEMMs and XLA calls) pay off.
MIN_CHUNK = 32

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
    recurrent_kernel: tf.Tensor,
    h0: tf.Tensor,
    *,
    activation: str = "tanh",
    keep: tf.Tensor | None = None,
    recurrent_mask: tf.Tensor | None = None,
    return_sequences: bool = False,
    go_backwards: bool = False,
    training: bool = True,
    engine: str | None = None,
) -> tuple[tf.Tensor | None, tf.Tensor]:
    """Run an Elman RNN over a whole sequence.

    Args:
        inputs: ``x [B, T, D]``.
        kernel: ``W [D, U]``; bias: ``b [U]`` or None; recurrent_kernel: ``R [U, U]``.
        h0: ``[B, U]`` initial state.
        activation: a key of :data:`ACTIVATIONS`.
        keep, recurrent_mask, return_sequences, go_backwards, training, engine: as
            :func:`keras_seq.ops.fast_lstm.lstm`.

    Returns:
        ``(H [T, B, U] time-major in processing order, or None; h_T)``.
    """
    units, has_bias = recurrent_kernel.shape[0], bias is not None

    recurrent_mask = fused.no_gradient(recurrent_mask)

    def make(name, chunk=None):
        kind = _XlaEngine if name == "xla" else _GraphEngine
        return kind(fused.Mask(keep, h0.dtype), recurrent_mask, has_bias, activation, chunk)

    train = make(engine or fused.train_engine(units, 1), MIN_CHUNK)
    infer = make(engine or fused.engine(h0.shape[0], units, 1), fused.INFERENCE_CHUNK)
    params = [kernel, *([bias] if has_bias else []), recurrent_kernel]
    return fused.run_level(inputs, params, [h0], train=train, infer=infer, training=training,
                           return_sequences=return_sequences, go_backwards=go_backwards)


class _Engine:
    def __init__(self, mask, recurrent_mask, has_bias, activation, chunk=None):
        self.mask, self.recurrent_mask = mask, recurrent_mask
        self.has_bias, self.activation, self.chunk = has_bias, activation, chunk

    def unpack(self, params):
        """``(W, b or None, R)``."""
        return params[0], (params[1] if self.has_bias else None), params[-1]

    def pack(self, dw, db, dr):
        return [dw, *([db] if self.has_bias else []), dr]

    def backward(self, x, params, saved, d_outputs, d_states, go_backwards):
        w, _, r = self.unpack(params)
        inner = self.chunk_backward(r, saved, d_outputs)
        dx, (dw,), d_bs, (dr,), d_states = fused.backward(
            x, [w], self.has_bias, d_states, [tf.zeros_like(r)], inner,
            go_backwards=go_backwards, chunk=self.chunk)
        return dx, self.pack(dw, d_bs[0] if d_bs else None, dr), d_states


class _GraphEngine(_Engine):
    """Plain TensorFlow ops per step."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r = self.unpack(params)
        act = ACTIVATIONS[self.activation][0]
        mask, recurrent_mask = self.mask, self.recurrent_mask
        collect = store or return_sequences

        def inner(ps, states, start, stop):
            (p,), (h,) = ps, states
            steps = stop - start
            hidden = [fused.step_store(steps, h, h)] if collect else []

            def step(j, carry):
                h, *stores = carry
                hr = h if recurrent_mask is None else h * recurrent_mask
                h_new = mask.carry(start + j, act(p[j] + tf.linalg.matmul(hr, r)), h)
                return (h_new, *[s.write(j + 1, h_new) for s in stores])

            h, *stores = fused.time_loop(steps, step, (h, *hidden), unroll=fused.UNROLL)
            stacked = [s.stack() for s in stores]  # h's [n + 1]
            outputs = stacked[0][1:] if return_sequences else None
            return [h], (stacked if store else []), outputs

        return fused.forward(x, [w], [b], states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards, saved_count=1 if store else 0,
                             chunk=self.chunk)

    def chunk_backward(self, r, saved, d_outputs):
        derivative = ACTIVATIONS[self.activation][1]
        (rt,) = fused.transposed([r])
        mask, recurrent_mask = self.mask, self.recurrent_mask

        def inner(k, start, stop, d_states):
            (hidden,) = saved.read(k)  # (n + 1, B, U)
            part = mask.chunk(start, stop)
            valid, passthrough = part.m, part.passthrough()
            steps = stop - start

            def step(j, carry):
                dh, dzs = carry
                if d_outputs is not None:
                    dh = dh + d_outputs[start + j]
                dz = derivative(hidden[j + 1], dh if valid is None else dh * valid[j])
                dh_prev = tf.linalg.matmul(dz, rt)
                if recurrent_mask is not None:
                    dh_prev = dh_prev * recurrent_mask
                if passthrough is not None:
                    dh_prev = dh_prev + dh * passthrough[j]
                return (dh_prev, dzs.write(j, dz))

            dh, dzs = fused.time_loop(steps, step, (d_states[0], fused.step_store(steps, hidden[0])),
                                      reverse=True, unroll=fused.UNROLL)
            dz = dzs.stack()
            h_prev = hidden[:-1] if recurrent_mask is None else hidden[:-1] * recurrent_mask
            return [dh], [dz], [fused.gemm_t(h_prev, dz)]

        return inner


class _XlaEngine(_Engine):
    """Each chunk's loop is one XLA computation."""

    def forward(self, x, params, states, store, return_sequences, go_backwards):
        w, b, r = self.unpack(params)
        mask, recurrent_mask, activation = self.mask, self.recurrent_mask, self.activation

        def inner(ps, states, start, stop):
            keep = mask.keep[start:stop] if mask else None
            h, hidden = _xla_forward(ps[0], r, states[0], keep, recurrent_mask, activation,
                                     store or return_sequences)
            h.set_shape(states[0].shape)
            outputs = hidden[1:] if return_sequences else None
            return [h], ([hidden] if store else []), outputs

        return fused.forward(x, [w], [b], states, inner, return_sequences=return_sequences,
                             go_backwards=go_backwards, saved_count=1 if store else 0,
                             chunk=self.chunk)

    def chunk_backward(self, r, saved, d_outputs):
        rt = tf.transpose(r)
        mask, recurrent_mask, activation = self.mask, self.recurrent_mask, self.activation

        def inner(k, start, stop, d_states):
            (hidden,) = saved.read(k)
            keep = mask.keep[start:stop] if mask else None
            dys = None if d_outputs is None else d_outputs[start:stop]
            dz, dh = _xla_backward(hidden, rt, d_states[0], dys, keep, recurrent_mask,
                                   activation)
            dz.set_shape(hidden[1:].shape)
            dh.set_shape(d_states[0].shape)
            h_prev = hidden[:-1] if recurrent_mask is None else hidden[:-1] * recurrent_mask
            return [dh], [dz], [fused.gemm_t(h_prev, dz)]

        return inner


@fused.jit
def _xla_forward(p, r, h, keep, recurrent_mask, activation, collect):
    """One chunk: ``p [n, B, U]`` -> ``(h, h's [n+1, B, U] or None)``."""
    steps = tf.shape(p)[0]  # static inside XLA, whatever the trace saw
    act = ACTIVATIONS[activation][0]
    hidden = fused.step_store(steps, h, h)

    def body(t, h, hidden):
        hr = h if recurrent_mask is None else h * recurrent_mask
        h_new = act(p[t] + tf.linalg.matmul(hr, r))
        if keep is not None:
            h_new = tf.where(keep[t], h_new, h)
        return t + 1, h_new, (hidden.write(t + 1, h_new) if collect else hidden)

    _, h, hidden = tf.while_loop(lambda t, *_: t < steps, body, (0, h, hidden),
                                 maximum_iterations=steps)
    return h, (hidden.stack() if collect else None)


@fused.jit
def _xla_backward(hidden, rt, dh, dys, keep, recurrent_mask, activation):
    """One chunk in reverse from the states ``h's [n+1, B, U]``: ``-> (dZ [n, B, U], dh)``."""
    steps = tf.shape(hidden)[0] - 1
    derivative = ACTIVATIONS[activation][1]
    dzs = fused.step_store(steps, dh)

    def body(j, dh, dzs):
        t = steps - 1 - j
        if dys is not None:
            dh = dh + dys[t]
        dh_v = dh if keep is None else dh * tf.cast(keep[t], dh.dtype)
        dz = derivative(hidden[t + 1], dh_v)
        mm = tf.linalg.matmul(dz, rt)
        if recurrent_mask is not None:
            mm = mm * recurrent_mask
        return j + 1, mm + (dh - dh_v), dzs.write(t, dz)  # a masked step passes dh through

    _, dh, dzs = tf.while_loop(lambda j, *_: j < steps, body, (0, dh, dzs),
                               maximum_iterations=steps)
    return dzs.stack(), dh

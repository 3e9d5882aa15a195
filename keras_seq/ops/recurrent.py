"""The time loop shared by every recurrent layer.

``recurrence`` runs any cell step over a sequence whose input projection was already
computed for all time steps at once (one large GEMM outside the loop). It owns what
``keras.layers.RNN`` owns: masks, ``go_backwards``, output collection, and Keras's exact
semantics for padded steps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

Step = Callable[[tf.Tensor, list], tuple[tf.Tensor, list]]


def recurrence(
    step: Step,
    projected: tf.Tensor,
    initial_states: Sequence[tf.Tensor],
    *,
    output_size: int,
    mask: tf.Tensor | None = None,
    go_backwards: bool = False,
    zero_output_for_mask: bool = False,
    return_sequences: bool = True,
) -> tuple[tf.Tensor, tf.Tensor | None, list[tf.Tensor]]:
    """Run ``step`` over time.

    Args:
        step: ``(projected_t [B, G], states) -> (output_t [B, U], new_states)``.
        projected: ``[B, T, G]`` projected inputs.
        initial_states: list of ``[B, S]`` tensors.
        output_size: ``U``, the width of ``output_t``.
        mask: optional ``[B, T]`` boolean; at a masked step the states are carried over
            and the output is the previous output (zeros if ``zero_output_for_mask``),
            exactly as ``keras.layers.RNN``.
        go_backwards: process time in reverse; outputs come back in processing order,
            as Keras returns them.
        return_sequences: also collect every step's output.

    Returns:
        ``(last_output [B, U], outputs [B, T, U] or None, final_states)``.
    """
    x = tf.transpose(projected, [1, 0, 2])  # (T, B, G)
    m = None if mask is None else tf.transpose(tf.cast(mask, tf.bool), [1, 0])  # (T, B)
    if go_backwards:
        x = tf.reverse(x, [0])
        m = None if m is None else tf.reverse(m, [0])
    steps = tf.shape(x)[0]
    batch = tf.shape(x)[1]
    dtype = projected.dtype
    zeros = tf.zeros(tf.stack([batch, output_size]), dtype=dtype)
    inputs_ta = tf.TensorArray(dtype, size=steps, clear_after_read=False).unstack(x)
    mask_ta = None if m is None else tf.TensorArray(tf.bool, size=steps).unstack(m)
    # Without sequences the loop carries a scalar: an unwritten TensorArray breaks XLA's
    # gradient of the loop (ZerosLike of an uninitialized list).
    outputs_ta = tf.TensorArray(dtype, size=steps) if return_sequences else tf.constant(0)
    states = [tf.convert_to_tensor(s, dtype=dtype) for s in initial_states]

    def body(t, outputs_ta, prev_output, *states):
        output, new_states = step(inputs_ta.read(t), list(states))
        if mask_ta is not None:
            keep = mask_ta.read(t)[:, None]  # (B, 1)
            new_states = [tf.where(keep, new, old) for new, old in zip(new_states, states, strict=True)]
            output = tf.where(keep, output, zeros if zero_output_for_mask else prev_output)
        if return_sequences:
            outputs_ta = outputs_ta.write(t, output)
        return (t + 1, outputs_ta, output, *new_states)

    # Static shapes for the loop carries: batch may be unknown, widths are known.
    state_shapes = [tf.TensorShape([None, s.shape[-1]]) for s in states]
    loop = tf.while_loop(
        lambda t, *_: t < steps,
        body,
        (tf.constant(0), outputs_ta, zeros, *states),
        shape_invariants=(
            tf.TensorShape([]),
            tf.TensorShape(None if return_sequences else []),
            tf.TensorShape([None, output_size]),
            *state_shapes,
        ),
        maximum_iterations=steps,
        swap_memory=True,
    )
    _, outputs_ta, last_output, *final_states = loop
    outputs = None
    if return_sequences:
        # The reshape keeps zero steps' (empty) stack [0, B, U] instead of [0].
        stacked = tf.reshape(outputs_ta.stack(), tf.stack([steps, batch, output_size]))
        outputs = tf.transpose(stacked, [1, 0, 2])  # (B, T, U)
        outputs.set_shape([projected.shape[0], projected.shape[1], output_size])
    last_output.set_shape([projected.shape[0], output_size])
    for s, init in zip(final_states, states, strict=True):
        s.set_shape(init.shape)
    return last_output, outputs, list(final_states)

"""Dispatch a recurrent level to a fused kernel (see :mod:`keras_seq.ops.fused`).

Fast path (:func:`fast_level` returns a result) for float32 levels of exactly these cells:

* ``LSTMCell`` with ``activation="tanh"``, ``recurrent_activation="sigmoid"``, no peephole,
  no coupled gates (:func:`keras_seq.ops.fast_lstm.lstm`);
* ``GRUCell`` with ``activation="tanh"``, ``recurrent_activation="sigmoid"``, both
  ``reset_after`` forms (:func:`keras_seq.ops.fast_gru.gru`);
* ``SimpleRNNCell`` with ``activation`` in ``tanh``, ``relu``, ``sigmoid``, ``linear``
  (:func:`keras_seq.ops.fast_rnn.simple_rnn`);

with or without bias, masks, ``go_backwards``, initial states, input and recurrent dropout,
``zero_output_for_mask``. Everything else (other activations, LSTM variants, subclasses of the
cells, non-float32 dtypes, export mode) returns None and runs the generic runner.

Both modes run one custom-gradient op per level: ``training=True`` stores the activations the
hand-written backward pass needs; otherwise a lean forward pass (on the XLA engine for small
static batches, e.g. batch 1) stores nothing, and a gradient, if one is asked for, reruns the
forward pass storing them. XLA-compiled inner loops appear in traced graphs outside export
mode; exporters trace in :func:`keras_seq.ops.export_mode`, where this returns None.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_seq import cells
from keras_seq.ops import fast_gru, fast_lstm, fast_rnn, in_export_mode


def fast_level(
    cell, x, states, *, recurrent_mask, mask, go_backwards, return_sequences,
    zero_output_for_mask, training,
):
    """Return ``(last, outputs, final_states)`` from a fused kernel, or None to use the
    generic runner (:func:`keras_seq.ops.recurrence`).

    Args mirror :meth:`RecurrentLayer.run_level`: ``x [B, T, D]`` (input dropout already
    applied), ``states`` the level's initial states, ``recurrent_mask [B, U]`` or None,
    ``mask [B, T]`` boolean or None.
    """
    if in_export_mode() or not _supported(cell, x):
        return None
    if tf.__internal__.get_enclosing_xla_context() is not None:
        # Inside jit_compile (Keras's "auto" on a GPU): the chunk loops size their stores at
        # run time, which XLA refuses; the generic runner compiles.
        return None
    training = training if isinstance(training, bool) else training is not None
    keep = None
    if mask is not None:
        keep = tf.transpose(tf.cast(mask, tf.bool), [1, 0])  # (T, B)
        if go_backwards:
            keep = tf.reverse(keep, [0])
    options = {
        "keep": keep,
        "recurrent_mask": recurrent_mask,
        "return_sequences": return_sequences,
        "go_backwards": go_backwards,
        "training": bool(training),
    }
    kernel, recurrent_kernel = _tensor(cell.kernel), _tensor(cell.recurrent_kernel)
    if isinstance(cell, cells.LSTMCell):
        outputs, h, c = fast_lstm.lstm(
            x, kernel, _tensor(cell.bias), recurrent_kernel, states[0], states[1], **options
        )
        final_states = [h, c]
    elif isinstance(cell, cells.GRUCell):
        bias, recurrent_bias = _gru_biases(cell)
        outputs, h = fast_gru.gru(
            x, kernel, bias, recurrent_kernel, states[0], recurrent_bias=recurrent_bias,
            reset_after=cell.reset_after, **options,
        )
        final_states = [h]
    else:
        outputs, h = fast_rnn.simple_rnn(
            x, kernel, _tensor(cell.bias), recurrent_kernel, states[0],
            activation=keras.activations.serialize(cell.activation), **options,
        )
        final_states = [h]
    return _outputs(x, keep, outputs, h, zero_output_for_mask, cell.units) + (final_states,)


def _supported(cell, x) -> bool:
    if x.dtype != tf.float32 or cell.compute_dtype != "float32" or x.shape[1] == 0:
        return False
    names = keras.activations.serialize(cell.activation)
    kind = type(cell)  # exact types only: a subclass may change the step
    if kind is cells.SimpleRNNCell:
        return names in fast_rnn.ACTIVATIONS
    if kind not in (cells.LSTMCell, cells.GRUCell) or names != "tanh":
        return False
    if keras.activations.serialize(cell.recurrent_activation) != "sigmoid":
        return False
    return kind is cells.GRUCell or cell.is_standard


def _tensor(weight):
    return None if weight is None else tf.convert_to_tensor(weight)


def _gru_biases(cell):
    """The input-side bias (with ``reset_after``, ``z`` and ``r`` absorb their recurrent
    biases) and the candidate's recurrent bias ``b'_h`` (``reset_after``) or None."""
    if cell.bias is None:
        return None, None
    bias = _tensor(cell.bias)
    if not cell.reset_after:
        return bias, None
    units = cell.units
    b_in, b_rec = bias[0], bias[1]
    absorbed = tf.concat([b_rec[: 2 * units], tf.zeros_like(b_rec[2 * units:])], 0)
    return b_in + absorbed, b_rec[2 * units:]


def _outputs(x, keep, outputs, h, zero_output_for_mask, units):
    """Keras's outputs from the per-step states: at a masked step the previous output (zeros
    before the first valid step), or zeros with ``zero_output_for_mask``."""
    last = h
    if keep is not None:
        valid = keep if zero_output_for_mask else tf.cumsum(tf.cast(keep, tf.int32), 0) > 0
        factor = tf.cast(valid, h.dtype)[:, :, None]  # (T, B, 1)
        last = h * factor[-1]
        if outputs is not None:
            outputs = outputs * factor
    if outputs is not None:
        outputs = tf.transpose(outputs, [1, 0, 2])  # (B, T, U)
        outputs.set_shape([x.shape[0], x.shape[1], units])
    last.set_shape([x.shape[0], units])
    return last, outputs

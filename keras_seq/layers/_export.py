"""Dispatch a recurrent level to its exporter-shaped graph (:mod:`keras_seq.ops.export_graph`).

Standard cells (Keras's activations, no peephole / coupled gates) trace the loop shapes that
become a fused TFLite LSTM and native ONNX LSTM / GRU / RNN nodes. Other cells run their own
step in the loop shape both converters take (:func:`keras_seq.ops.export_graph.generic`): a
builtins-only TFLite ``WHILE`` and an ONNX ``Loop``.

Masks follow the ``padding`` promise of :func:`keras_seq.ops.export_mode`:

* ``"any"``: the mask goes to the generic masked loop (TFLite ``WHILE``, ONNX ``Loop``);
* ``"right"``: the mask is a right-padding (prefix) mask, so it is turned into lengths
  ``n_b = sum_t mask[b, t]`` and the level runs in the sequence-length form (ONNX native
  nodes with ``sequence_lens``); Keras's outputs for such a mask are rebuilt exactly
  (:func:`keras_seq.ops.export_graph._keras_outputs`). A mask that is not a prefix gives
  wrong results: the exporter must only feed right-padded inputs;
* ``"none"``: inputs are never padded, the mask is all-True and is dropped (fused TFLite LSTM).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_seq import cells
from keras_seq.ops import export_graph, export_padding

# Attribute of a graph: {id(mask): (mask, lengths)}, one lengths tensor per mask (_lengths).
# Kept on the graph itself so that it lives and dies with it.
_CACHE = "_keras_seq_mask_lengths"


def _lengths(mask: tf.Tensor) -> tf.Tensor:
    """``n_b = sum_t mask[b, t]`` (int32 ``[B]``), computed once per mask tensor and graph.

    The levels of a stack and both directions of a ``Bidirectional`` receive the same mask
    tensor. Sharing one lengths tensor lets tf2onnx see that a forward and a backward node
    have the same ``sequence_lens`` and merge them into one ``direction="bidirectional"`` node
    (two separate ``Sum`` ops differ to it by their constants' names).
    """
    if tf.executing_eagerly():
        return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    graph = tf.compat.v1.get_default_graph()
    cache = getattr(graph, _CACHE, None)
    if cache is None:
        cache = {}
        setattr(graph, _CACHE, cache)
    hit = cache.get(id(mask))
    if hit is None or hit[0] is not mask:
        hit = cache[id(mask)] = (mask, tf.reduce_sum(tf.cast(mask, tf.int32), axis=1))
    return hit[1]


def _name(fn) -> str | None:
    try:
        return keras.activations.serialize(fn)
    except (ValueError, TypeError):
        return None


def export_level(cell, x, states, *, mask, go_backwards, return_sequences, zero_output_for_mask):
    """``(last, outputs or None, final_states)`` from the export graph."""
    options = dict(mask=mask, go_backwards=go_backwards, return_sequences=return_sequences,
                   zero_output_for_mask=zero_output_for_mask)
    result = _standard_level(cell, x, states, **options)
    if result is not None:
        return result
    if export_padding() == "none":
        mask = None  # the exporter feeds unpadded inputs: the mask is all-True
    outputs, finals = export_graph.generic(
        cell.step, cell.project_inputs(x), states, go_backwards=go_backwards, mask=mask,
        zero_output_for_mask=zero_output_for_mask,
    )
    return outputs[:, -1], (outputs if return_sequences else None), finals


def _standard_level(cell, x, states, *, mask, go_backwards, return_sequences,
                    zero_output_for_mask):
    """:func:`export_level` for standard cells (native nodes, fused LSTM); None for others."""
    padding = export_padding()
    lengths = None
    if padding == "none":
        mask = None  # the exporter feeds unpadded inputs: the mask is all-True
    elif padding == "right" and mask is not None:
        lengths = _lengths(mask)  # (B,) valid prefix lengths
        mask = None
    # The sequence-length form returns Keras's last output itself (not outputs[:, -1]), so a
    # level that only needs its last output does not consume the sequence.
    sequences = return_sequences if lengths is not None else True
    options = dict(
        go_backwards=go_backwards, return_sequences=sequences, mask=mask, lengths=lengths,
        zero_output_for_mask=zero_output_for_mask,
    )
    gated = isinstance(cell, (cells.LSTMCell, cells.GRUCell))
    if gated and (_name(cell.activation), _name(cell.recurrent_activation)) != ("tanh", "sigmoid"):
        return None
    if isinstance(cell, cells.LSTMCell):
        if not cell.is_standard:
            return None
        outputs, h, c = export_graph.lstm(
            x, states[0], states[1], cell.kernel, cell.recurrent_kernel, cell.bias, **options
        )
        finals = [h, c]
    elif isinstance(cell, cells.GRUCell):
        outputs, h = export_graph.gru(
            x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias,
            reset_after=cell.reset_after, **options,
        )
        finals = [h]
    elif isinstance(cell, cells.SimpleRNNCell):
        activation = _name(cell.activation)
        if activation not in ("tanh", "relu", "sigmoid", "linear"):
            return None
        outputs, h = export_graph.simple_rnn(
            x, states[0], cell.kernel, cell.recurrent_kernel, cell.bias,
            activation=activation, **options,
        )
        finals = [h]
    else:
        return None
    if not sequences:
        return outputs, None, finals  # `outputs` is the last output
    last = outputs[:, -1]
    return last, (outputs if return_sequences else None), finals

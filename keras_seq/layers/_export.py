"""Dispatch a recurrent level to its exporter-shaped graph (:mod:`keras_seq.ops.export_graph`).

Standard cells (Keras's activations, no peephole / coupled gates) trace the loop shapes that
become a fused TFLite LSTM and native ONNX LSTM / GRU / RNN nodes. Other cells return None and
keep the training graph, which is itself a builtins-only ``WHILE`` loop.
"""

from __future__ import annotations

import keras

from keras_seq import cells
from keras_seq.ops import export_graph, export_padding


def _name(fn) -> str | None:
    try:
        return keras.activations.serialize(fn)
    except (ValueError, TypeError):
        return None


def export_level(cell, x, states, *, mask, go_backwards, return_sequences, zero_output_for_mask):
    """``(last, outputs or None, final_states)`` from the export graph, or None."""
    if export_padding() == "none":
        mask = None  # the exporter feeds unpadded inputs: the mask is all-True
    options = dict(
        go_backwards=go_backwards, return_sequences=True, mask=mask,
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
    last = outputs[:, -1]
    return last, (outputs if return_sequences else None), finals

"""The golden registry: every public layer once, with a sample input.

Conformance checks (config round trip, ``.keras`` save/load, export) loop over
:data:`PUBLIC_LAYERS`, so a new layer is covered by adding one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from keras_seq import layers
from keras_seq.models import AttentionPooling

B, T, D, U = 3, 6, 4, 5


@dataclass(frozen=True)
class LayerCase:
    """A public layer configuration and how to call it."""

    name: str
    make: Callable[[], keras.layers.Layer]
    # Returns the positional inputs (arrays); the first has shape (B, T, ...) or (B, ...).
    inputs: Callable[[np.random.Generator], tuple[np.ndarray, ...]]
    call_kwargs: dict[str, Any] = field(default_factory=dict)


def _sequence(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    return (rng.normal(size=(B, T, D)).astype("float32"),)


def _attention_inputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    query = rng.normal(size=(B, 2, U)).astype("float32")
    values = rng.normal(size=(B, T, U)).astype("float32")
    return query, values


PUBLIC_LAYERS: tuple[LayerCase, ...] = (
    LayerCase("simple_rnn", lambda: layers.SimpleRNN(U, return_sequences=True), _sequence),
    LayerCase(
        "simple_rnn_relu_backwards",
        lambda: layers.SimpleRNN(U, activation="relu", go_backwards=True),
        _sequence,
    ),
    LayerCase("lstm", lambda: layers.LSTM(U, return_sequences=True), _sequence),
    LayerCase(
        "lstm_stacked_state",
        lambda: layers.LSTM(U, num_layers=2, return_state=True, inter_layer_dropout=0.1),
        _sequence,
    ),
    LayerCase("lstm_peephole", lambda: layers.LSTM(U, peephole=True), _sequence),
    LayerCase(
        "lstm_coupled_peephole",
        lambda: layers.LSTM(U, coupled_gates=True, peephole=True, return_sequences=True),
        _sequence,
    ),
    LayerCase("gru", lambda: layers.GRU(U, return_sequences=True), _sequence),
    LayerCase("gru_cho", lambda: layers.GRU(U, reset_after=False, dropout=0.2), _sequence),
    LayerCase(
        "bidirectional_lstm",
        lambda: layers.Bidirectional(layers.LSTM(U, return_sequences=True)),
        _sequence,
    ),
    LayerCase(
        "bidirectional_gru_stacked_sum",
        lambda: layers.Bidirectional(layers.GRU(U, num_layers=2), merge_mode="sum"),
        _sequence,
    ),
    LayerCase("bahdanau", lambda: layers.BahdanauAttention(7), _attention_inputs),
    LayerCase(
        "bahdanau_normalized",
        lambda: layers.BahdanauAttention(7, normalize=True),
        _attention_inputs,
    ),
    LayerCase("luong_dot", lambda: layers.LuongAttention("dot", scale=True), _attention_inputs),
    LayerCase("luong_general", lambda: layers.LuongAttention("general"), _attention_inputs),
    LayerCase(
        "luong_concat", lambda: layers.LuongAttention("concat", units=7), _attention_inputs
    ),
    LayerCase("attention_pooling", lambda: AttentionPooling(7), _sequence),
)

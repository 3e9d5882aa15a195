"""Keras layers: recurrent runners and attention."""

from keras_seq.layers.attention import BahdanauAttention, LuongAttention
from keras_seq.layers.bidirectional import Bidirectional
from keras_seq.layers.recurrent import GRU, LSTM, SimpleRNN

__all__ = [
    "GRU",
    "LSTM",
    "BahdanauAttention",
    "Bidirectional",
    "LuongAttention",
    "SimpleRNN",
]

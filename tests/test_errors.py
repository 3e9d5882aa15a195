"""Bad input fails early with Keras-style messages: argument, expected, received."""

import keras
import numpy as np
import pytest

from keras_seq import cells, layers


@pytest.mark.parametrize("units", [0, -3, 2.5, True, "8"])
def test_units(units):
    with pytest.raises(ValueError, match=r"argument `units`. Expected a positive integer. Received: units="):
        layers.LSTM(units)


def test_activation():
    with pytest.raises(ValueError, match=r"argument `activation`.*Received: activation='tanhh'"):
        layers.SimpleRNN(4, activation="tanhh")
    with pytest.raises(ValueError, match=r"argument `recurrent_activation`"):
        cells.GRUCell(4, recurrent_activation="nope")


def test_rates():
    with pytest.raises(ValueError, match=r"argument `dropout`. Expected a float in \[0, 1\). Received: dropout=1.5"):
        layers.GRU(4, dropout=1.5)
    with pytest.raises(ValueError, match=r"argument `inter_layer_dropout`.*Received: inter_layer_dropout=-0.1"):
        layers.GRU(4, num_layers=2, inter_layer_dropout=-0.1)


def test_merge_mode():
    with pytest.raises(
        ValueError,
        match=r"argument `merge_mode`. Expected one of \{'concat', 'sum', 'mul', 'ave', None\}. "
        r"Received: merge_mode='max'",
    ):
        layers.Bidirectional(layers.LSTM(4), merge_mode="max")
    with pytest.raises(ValueError, match=r"argument `layer`. Expected a keras_seq recurrent layer"):
        layers.Bidirectional(keras.layers.LSTM(4))


@pytest.mark.parametrize("make_backward,match", [
    (lambda: layers.LSTM(4, num_layers=2, return_sequences=True),
     r"Expected a keras_seq recurrent layer with go_backwards=True"),
    (lambda: layers.LSTM(4, go_backwards=True, return_sequences=True),
     r"Expected the same `num_layers` as the forward layer \(2\). Received: num_layers=1"),
    (lambda: layers.LSTM(6, num_layers=2, go_backwards=True, return_sequences=True),
     r"Expected the same `units` as the forward layer \(4\). Received: units=6"),
    (lambda: layers.LSTM(4, num_layers=2, go_backwards=True),
     r"Expected the same `return_sequences` as the forward layer \(True\). "
     r"Received: return_sequences=False"),
    (lambda: layers.GRU(4, num_layers=2, go_backwards=True, return_sequences=True),
     r"Expected the forward layer's type, LSTM. Received: GRU"),
], ids=["forward-direction", "num_layers", "units", "return_sequences", "type"])
def test_backward_layer_must_mirror_the_forward_layer(make_backward, match):
    forward = layers.LSTM(4, num_layers=2, return_sequences=True)
    with pytest.raises(ValueError, match=r"argument `backward_layer`. " + match):
        layers.Bidirectional(forward, backward_layer=make_backward())


def test_wrong_rank():
    with pytest.raises(ValueError, match=r"Expected a 3D tensor \(batch, timesteps, features\). Received: inputs.shape=\(2, 5\)"):
        layers.LSTM(4)(np.zeros((2, 5), "float32"))


def test_feature_size_mismatch():
    layer = layers.GRU(4)
    layer(np.zeros((2, 5, 3), "float32"))
    with pytest.raises(ValueError, match=r"Expected inputs with last dimension 3.*Received: inputs.shape=\(2, 5, 7\)"):
        layer(np.zeros((2, 5, 7), "float32"))


def test_mask_shape_mismatch():
    with pytest.raises(ValueError, match=r"Invalid `mask`.*Expected shape \(batch, timesteps\) = \(2, 5\). Received: mask.shape=\(2, 4\)"):
        layers.SimpleRNN(4)(np.zeros((2, 5, 3), "float32"), mask=np.ones((2, 4), bool))


def test_initial_state_count_and_shape():
    x = np.zeros((2, 5, 3), "float32")
    with pytest.raises(ValueError, match=r"Invalid `initial_state`.*Expected a list of 2 tensors.*Received: 1 tensors"):
        layers.LSTM(4)(x, initial_state=[np.zeros((2, 4), "float32")])
    with pytest.raises(ValueError, match=r"Invalid `initial_state\[0\]`.*Expected shape \(2, 4\). Received: shape=\(2, 6\)"):
        layers.GRU(4)(x, initial_state=[np.zeros((2, 6), "float32")])


@pytest.mark.parametrize("rows", [1, 3])
def test_initial_state_of_another_batch_is_refused_not_broadcast(rows):
    # A (1, 4) state was broadcast over a batch of 2 (and (3, 4) failed inside the loop).
    x = np.zeros((2, 5, 3), "float32")
    with pytest.raises(ValueError, match=rf"Invalid `initial_state\[1\]`.*Expected shape \(2, 4\). Received: shape=\({rows}, 4\)"):
        layers.LSTM(4)(x, initial_state=[np.zeros((2, 4), "float32"), np.zeros((rows, 4), "float32")])
    bidirectional = layers.Bidirectional(layers.GRU(4))
    with pytest.raises(ValueError, match=rf"Invalid `initial_state\[0\]`.*Received: shape=\({rows}, 4\)"):
        bidirectional(x, initial_state=[np.zeros((2, 4), "float32"), np.zeros((rows, 4), "float32")])


@pytest.mark.parametrize("make, states, k, expected, received", [
    (lambda: cells.LSTMCell(4), [(2, 4), (1, 4)], 1, r"\(2, 4\)", r"\(1, 4\)"),
    (lambda: cells.GRUCell(4), [(3, 4)], 0, r"\(2, 4\)", r"\(3, 4\)"),
    (lambda: cells.SimpleRNNCell(4), [(2, 6)], 0, r"\(2, 4\)", r"\(2, 6\)"),
    (lambda: cells.LSTMCell(4, peephole=True), [(2, 4), (4,)], 1, r"\(2, 4\)", r"\(4,\)"),
], ids=["lstm-batch", "gru-batch", "rnn-width", "lstm-rank"])
def test_a_cells_states_of_another_shape_are_refused_not_broadcast(make, states, k, expected,
                                                                    received):
    # A (1, 4) state broadcast over a batch of 2: one step returned (2, 4) silently.
    x = np.zeros((2, 3), "float32")
    with pytest.raises(ValueError, match=rf"Invalid `states\[{k}\]` for cell .*Expected shape "
                       rf"{expected}. Received: shape={received}"):
        make()(x, [np.zeros(shape, "float32") for shape in states])


def test_a_cells_state_count_is_checked():
    with pytest.raises(ValueError, match=r"Invalid `states` for cell .*Expected 2 tensors "
                       r"\(sizes \[4, 4\]\). Received: 1 tensors"):
        cells.LSTMCell(4)(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])
    h, (new,) = cells.GRUCell(4)(np.zeros((2, 3), "float32"), [np.zeros((2, 4), "float32")])
    assert h.shape == new.shape == (2, 4)


def test_bidirectional_initial_state_count():
    # Two tensors for an LSTM pair that needs four were split in halves and reported as one.
    x = np.zeros((2, 5, 3), "float32")
    with pytest.raises(ValueError, match=r"Invalid `initial_state`.*Expected a list of 4 tensors: the forward layer's 2, then the backward layer's 2. Received: 2 tensors"):
        layers.Bidirectional(layers.LSTM(4))(x, initial_state=[np.zeros((2, 4), "float32")] * 2)


@pytest.mark.parametrize("make,argument", [
    (lambda v: layers.LSTM(4, return_sequences=v), "return_sequences"),
    (lambda v: layers.GRU(4, go_backwards=v), "go_backwards"),
    (lambda v: layers.SimpleRNN(4, return_state=v), "return_state"),
    (lambda v: cells.LSTMCell(4, peephole=v), "peephole"),
    (lambda v: cells.LSTMCell(4, coupled_gates=v), "coupled_gates"),
    (lambda v: cells.GRUCell(4, reset_after=v), "reset_after"),
    (lambda v: cells.SimpleRNNCell(4, use_bias=v), "use_bias"),
])
def test_flags_are_bools_not_truthy_values(make, argument):
    # bool("False") is True: LSTM(8, return_sequences="False") returned sequences.
    for value in ["False", 0, None]:
        with pytest.raises(ValueError, match=rf"argument `{argument}`. Expected a bool. Received: {argument}="):
            make(value)
    assert make(np.bool_(False)) is not None


@pytest.mark.parametrize("seed", ["a", 1.7, -1])
def test_seed(seed):
    with pytest.raises(ValueError, match=r"argument `seed`. Expected None or a non-negative integer"):
        layers.LSTM(4, dropout=0.5, seed=seed)


def test_numpy_numbers_are_accepted_as_keras_accepts_them():
    layer = layers.LSTM(np.int64(4), num_layers=np.int32(2), dropout=np.float32(0.25), seed=np.int64(3))
    assert (layer.units, layer.num_layers, layer.cell.dropout) == (4, 2, 0.25)
    assert type(layer.units) is int and layer(np.zeros((2, 5, 3), "float32")).shape == (2, 4)


def test_stateful_needs_static_batch():
    with pytest.raises(ValueError, match=r"stateful=True.*batch size must be static"):
        keras.Sequential([keras.Input((5, 3)), layers.LSTM(4, stateful=True)])

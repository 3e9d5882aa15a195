"""keras_seq recurrent layers equal keras.layers with copied weights, option by option."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import numpy_lstm_step, sigmoid

from keras_seq import cells, layers

B, T, D, U = 3, 6, 4, 5
FWD_TOL, GRAD_TOL = 1e-5, 1e-4

# (ours, keras's, shared constructor options)
KINDS = {
    "simple_rnn": (layers.SimpleRNN, keras.layers.SimpleRNN, {}),
    "simple_rnn_relu": (layers.SimpleRNN, keras.layers.SimpleRNN, {"activation": "relu"}),
    "lstm": (layers.LSTM, keras.layers.LSTM, {}),
    "lstm_no_forget_bias": (
        layers.LSTM, keras.layers.LSTM, {"unit_forget_bias": False, "use_bias": True}
    ),
    "gru": (layers.GRU, keras.layers.GRU, {}),
    "gru_cho": (layers.GRU, keras.layers.GRU, {"reset_after": False}),
    "gru_no_bias": (layers.GRU, keras.layers.GRU, {"use_bias": False}),
}
OPTIONS = {
    "last": {},
    "sequences": {"return_sequences": True},
    "state": {"return_state": True},
    "backwards_sequences_state": {
        "go_backwards": True, "return_sequences": True, "return_state": True
    },
    "backwards_last": {"go_backwards": True},
}


def mixed_mask():
    return np.array([[1] * T, [1] * 4 + [0] * 2, [1] * 1 + [0] * 5], dtype=bool)


def as_list(y):
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


def max_diff(a, b):
    a, b = as_list(a), as_list(b)
    assert len(a) == len(b)
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def twins(kind, **options):
    ours_cls, keras_cls, shared = KINDS[kind]
    reference = keras_cls(U, **shared, **options)
    ours = ours_cls(U, **shared, **options)
    reference.build((None, T, D))
    ours.build((None, T, D))
    # Random (not initial) weights so biases and gates all matter.
    rng = np.random.default_rng(7)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    ours.set_weights(reference.get_weights())
    return ours, reference


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_forward_equals_keras(kind, option, masked, rng):
    ours, reference = twins(kind, **OPTIONS[option])
    x = rng.normal(size=(B, T, D)).astype("float32")
    mask = mixed_mask() if masked else None
    assert max_diff(ours(x, mask=mask), reference(x, mask=mask)) < FWD_TOL


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru", "gru_cho"])
def test_initial_state_equals_keras(kind, rng):
    ours, reference = twins(kind, return_sequences=True, return_state=True)
    x = rng.normal(size=(B, T, D)).astype("float32")
    n_states = 2 if kind == "lstm" else 1
    init = [rng.normal(size=(B, U)).astype("float32") for _ in range(n_states)]
    got = ours(x, initial_state=init, mask=mixed_mask())
    want = reference(x, initial_state=init, mask=mixed_mask())
    assert max_diff(got, want) < FWD_TOL


@pytest.mark.parametrize("kind", ["simple_rnn", "lstm", "gru", "gru_cho"])
@pytest.mark.parametrize("backwards", [False, True])
def test_gradients_equal_keras(kind, backwards, rng):
    ours, reference = twins(kind, return_sequences=True, go_backwards=backwards)
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    target = tf.constant(rng.normal(size=(B, T, U)).astype("float32"))
    mask = mixed_mask()

    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum((layer(x, mask=mask) - target) ** 2)
        return tape.gradient(loss, [x, *layer.trainable_weights])

    got, want = grads(ours), grads(reference)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=GRAD_TOL, rtol=GRAD_TOL)


def test_mask_from_embedding_and_masking_layer(rng):
    """Masks propagated by Embedding(mask_zero) and keras.layers.Masking are honoured."""
    ids = np.array([[5, 3, 2, 0, 0, 0], [1, 2, 3, 4, 5, 6], [7, 0, 0, 0, 0, 0]])
    for kind in ["lstm", "gru", "simple_rnn"]:
        ours, reference = twins(kind, return_sequences=True)
        embed = keras.layers.Embedding(10, D, mask_zero=True)
        tokens = keras.Input((T,), dtype="int32")
        m_ours = keras.Model(tokens, ours(embed(tokens)))
        m_ref = keras.Model(tokens, reference(embed(tokens)))
        assert max_diff(m_ours(ids), m_ref(ids)) < FWD_TOL

        x = rng.normal(size=(B, T, D)).astype("float32")
        x[0, 3:] = 0.0
        x[2, 1:] = 0.0
        seq = keras.Input((T, D))
        masking = keras.layers.Masking(0.0)
        got = keras.Model(seq, ours(masking(seq)))(x)
        want = keras.Model(seq, reference(masking(seq)))(x)
        assert max_diff(got, want) < FWD_TOL
        # Padded steps repeat the last valid output (Keras's zero_output_for_mask=False).
        y = np.asarray(ours(x, mask=x.any(-1)))
        np.testing.assert_array_equal(y[0, 3:], np.repeat(y[0, 2:3], 3, axis=0))
        np.testing.assert_array_equal(y[2, 1:], np.repeat(y[2, 0:1], 5, axis=0))


def assert_bidirectional_equal(ours, reference, rng):
    """Random weights copied from `reference` into `ours`; outputs equal with and without a mask."""
    x = rng.normal(size=(B, T, D)).astype("float32")
    reference(x)
    ours(x)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in reference.get_weights()]
    reference.set_weights(weights)
    ours.set_weights(weights)
    mask = mixed_mask()
    assert max_diff(ours(x, mask=mask), reference(x, mask=mask)) < FWD_TOL
    assert max_diff(ours(x), reference(x)) < FWD_TOL


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave", None])
@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_equals_keras(merge_mode, kind, return_sequences, rng):
    ours_cls, keras_cls, shared = KINDS[kind]
    opts = {"return_sequences": return_sequences, "return_state": True, **shared}
    reference = keras.layers.Bidirectional(keras_cls(U, **opts), merge_mode=merge_mode)
    ours = layers.Bidirectional(ours_cls(U, **opts), merge_mode=merge_mode)
    assert_bidirectional_equal(ours, reference, rng)


def test_bidirectional_with_explicit_backward_layer_equals_keras(rng):
    reference = keras.layers.Bidirectional(
        keras.layers.GRU(U, return_sequences=True),
        backward_layer=keras.layers.GRU(U, return_sequences=True, go_backwards=True,
                                        use_bias=False))
    ours = layers.Bidirectional(
        layers.GRU(U, return_sequences=True),
        backward_layer=layers.GRU(U, return_sequences=True, go_backwards=True, use_bias=False))
    assert_bidirectional_equal(ours, reference, rng)


def test_bidirectional_backward_direction_skips_padding(rng):
    """The backward pass of a right-padded row starts at its last valid step."""
    layer = layers.Bidirectional(layers.GRU(U, return_sequences=True), merge_mode=None)
    x = rng.normal(size=(1, T, D)).astype("float32")
    padded = np.concatenate([x[:, :4], rng.normal(size=(1, 2, D)).astype("float32")], axis=1)
    mask = np.array([[1, 1, 1, 1, 0, 0]], bool)
    _, backward = layer(padded, mask=mask)
    _, backward_short = layer(x[:, :4])
    np.testing.assert_allclose(backward[:, :4], backward_short, atol=FWD_TOL)
    np.testing.assert_array_equal(backward[:, 4:], 0.0)  # zero_output_for_mask, as Keras


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_stacked_equals_keras_stack(kind, rng):
    ours_cls, keras_cls, shared = KINDS[kind]
    ours = ours_cls(U, num_layers=2, return_sequences=True, return_state=True, **shared)
    first = keras_cls(U, return_sequences=True, return_state=True, **shared)
    second = keras_cls(U, return_sequences=True, return_state=True, **shared)
    x = rng.normal(size=(B, T, D)).astype("float32")
    mask = mixed_mask()
    out1 = first(x, mask=mask)
    out2 = second(out1[0], mask=mask)
    ours(x)
    assert [w.shape for w in ours.get_weights()] == [
        w.shape for w in first.get_weights() + second.get_weights()
    ]
    ours.set_weights(first.get_weights() + second.get_weights())
    got = ours(x, mask=mask)
    assert max_diff(got, [out2[0], *out1[1:], *out2[1:]]) < FWD_TOL


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
def test_stacked_backwards_runs_every_level_backwards_over_valid_steps(kind, rng):
    """Unpadded, a go_backwards stack is Keras's backwards layer under a forward one (which
    reads the first's outputs, in processing order: backwards in time). Right padding then
    changes nothing: the second level once read the padding and skipped the row's last valid
    steps, its input in processing order and the mask in input order."""
    ours_cls, keras_cls, shared = KINDS[kind]
    options = dict(return_sequences=True, return_state=True, **shared)
    ours = ours_cls(U, num_layers=2, go_backwards=True, **options)
    first = keras_cls(U, go_backwards=True, **options)
    second = keras_cls(U, **options)
    x = rng.normal(size=(1, 4, D)).astype("float32")
    out1 = first(x)
    out2 = second(out1[0])
    ours(x)
    ours.set_weights(first.get_weights() + second.get_weights())
    short = as_list(ours(x))
    assert max_diff(short, [out2[0], *out1[1:], *out2[1:]]) < FWD_TOL

    padded = np.concatenate([x, rng.normal(size=(1, 2, D)).astype("float32")], axis=1)
    padded_out = as_list(ours(padded, mask=np.array([[1, 1, 1, 1, 0, 0]], bool)))
    # Sequences come in processing order, so a right-padded row's padding comes first.
    assert max_diff([padded_out[0][:, 2:], *padded_out[1:]], short) < FWD_TOL


def test_cell_runs_inside_keras_rnn(rng):
    from keras_seq import cells

    x = rng.normal(size=(B, T, D)).astype("float32")
    for ours_cell, layer in [
        (cells.LSTMCell(U, peephole=True), layers.LSTM(U, peephole=True)),
        (cells.GRUCell(U, reset_after=False), layers.GRU(U, reset_after=False)),
        (cells.SimpleRNNCell(U), layers.SimpleRNN(U)),
    ]:
        rnn = keras.layers.RNN(ours_cell, return_sequences=True)
        rnn(x)
        layer = type(layer).from_config({**layer.get_config(), "return_sequences": True})
        layer(x)
        layer.set_weights(rnn.get_weights())
        np.testing.assert_allclose(rnn(x, mask=mixed_mask()), layer(x, mask=mixed_mask()), atol=FWD_TOL)


def test_stateful_continues_from_last_state(rng):
    layer = layers.LSTM(U, stateful=True, return_sequences=True)
    full = layers.LSTM(U, return_sequences=True)
    x = rng.normal(size=(B, T, D)).astype("float32")
    layer(x[:, :3])
    full(x)
    full.set_weights(layer.get_weights())
    assert len(layer.get_weights()) == 3  # states are not weights, as in Keras
    layer.reset_state()
    first, second = layer(x[:, :3]), layer(x[:, 3:])
    np.testing.assert_allclose(np.concatenate([first, second], 1), full(x), atol=FWD_TOL)
    layer.reset_state()
    np.testing.assert_allclose(layer(x[:, :3]), first, atol=FWD_TOL)


def test_input_dropout_is_one_mask_per_sequence():
    """Variational dropout: the same input mask at every step (linear identity cell)."""
    layer = layers.SimpleRNN(D, activation="linear", dropout=0.5, return_sequences=True, seed=3)
    x = np.ones((64, T, D), "float32")
    layer(x)
    layer.set_weights([np.eye(D), np.zeros((D, D)), np.zeros(D)])
    y = np.asarray(layer(x, training=True))
    np.testing.assert_array_equal(y, np.repeat(y[:, :1], T, axis=1))
    assert set(np.unique(y)) == {0.0, 2.0}
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_recurrent_dropout_is_one_mask_per_sequence():
    layer = layers.SimpleRNN(D, activation="linear", recurrent_dropout=0.5, return_sequences=True, seed=5)
    x = np.zeros((64, 3, D), "float32")
    layer(x)
    layer.set_weights([np.zeros((D, D)), np.eye(D), np.zeros(D)])
    h0 = np.ones((64, D), "float32")
    y = np.asarray(layer(x, initial_state=[h0], training=True))
    # h1 = m, h2 = m*m with the same mask m in {0, 2}.
    np.testing.assert_array_equal(y[:, 1], y[:, 0] * y[:, 0])
    assert set(np.unique(y[:, 0])) == {0.0, 2.0}


# -- recurrent dropout on the cells' one-step path, against NumPy -------------------------------
# float64 keeps every level off the fused (float32) kernels: each runs the generic runner,
# which calls `cell.step` once per time step. Peephole and coupled LSTMs take it in any dtype.
ONE_STEP_KINDS = {
    "lstm": (layers.LSTM, {}),
    "lstm_peephole": (layers.LSTM, {"peephole": True}),
    "lstm_coupled": (layers.LSTM, {"coupled_gates": True}),
    "lstm_peephole_coupled": (layers.LSTM, {"peephole": True, "coupled_gates": True}),
    "gru": (layers.GRU, {}),
    "gru_cho": (layers.GRU, {"reset_after": False}),
    "simple_rnn": (layers.SimpleRNN, {}),
}
INPUT_RATE, RECURRENT_RATE = 0.25, 0.5


def numpy_one_step(kind, weights, x, states, recurrent_masks):
    """The cells' documented equations, ``h_{t-1}`` read as ``h_{t-1} * recurrent_masks[t]``
    in every product with the recurrent kernel (one mask for all gates: keras.layers.LSTMCell
    and GRUCell compute the same with their per-gate masks all equal); the carried ``h_{t-1}``
    (GRU's ``z * h_{t-1}``) is unmasked. ``x [B, T, D]`` has its input dropout applied.
    Returns ``[outputs [B, T, U], *final_states]``."""
    options = ONE_STEP_KINDS[kind][1]
    kernel, recurrent = weights[0], weights[1]
    h, c = states[0], states[1] if len(states) > 1 else None
    outputs = []
    for t in range(x.shape[1]):
        x_t, h_rec = x[:, t], h * recurrent_masks[t]
        if kind == "simple_rnn":
            h = np.tanh(x_t @ kernel + h_rec @ recurrent + weights[2])
        elif kind.startswith("lstm"):
            peephole = weights[3] if options.get("peephole") else None
            h, c = numpy_lstm_step(x_t, h_rec, c, kernel, recurrent, weights[2], peephole,
                                   options.get("coupled_gates", False))
        else:
            w_z, w_r, w_h = np.split(kernel, 3, axis=-1)
            r_z, r_r, r_h = np.split(recurrent, 3, axis=-1)
            if options.get("reset_after", True):  # bias [2, 3U]: input, recurrent
                b_z, b_r, b_h = np.split(weights[2][0], 3)
                rb_z, rb_r, rb_h = np.split(weights[2][1], 3)
                z = sigmoid(x_t @ w_z + b_z + h_rec @ r_z + rb_z)
                r = sigmoid(x_t @ w_r + b_r + h_rec @ r_r + rb_r)
                n = np.tanh(x_t @ w_h + b_h + r * (h_rec @ r_h + rb_h))
            else:  # Cho et al.: bias [3U], the reset gate before the product
                b_z, b_r, b_h = np.split(weights[2], 3)
                z = sigmoid(x_t @ w_z + b_z + h_rec @ r_z)
                r = sigmoid(x_t @ w_r + b_r + h_rec @ r_r)
                n = np.tanh(x_t @ w_h + b_h + (r * h_rec) @ r_h)
            h = z * h + (1.0 - z) * n
        outputs.append(h)
    return [np.stack(outputs, 1), h] + ([] if c is None else [c])


def record_calls(cell, name):
    """Wrap the cell's method `name` (on the instance); the list gets each call's result."""
    results, method = [], getattr(cell, name)

    def spy(*args, **kwargs):
        result = method(*args, **kwargs)
        results.append(result)
        return result

    setattr(cell, name, spy)
    return results


@pytest.mark.parametrize("dropout", [0.0, INPUT_RATE], ids=["recurrent", "input_and_recurrent"])
@pytest.mark.parametrize("kind", ONE_STEP_KINDS)
def test_recurrent_dropout_on_one_step_path_equals_numpy(kind, dropout, rng):
    """training=True with recurrent_dropout on the generic one-step runner: the layer's
    outputs and final states are the NumPy cell equations run with the very masks the layer
    drew (recorded from the cell's own mask methods), ``h_{t-1} * mask`` in the recurrent
    products, inverted-dropout scaled by ``1 / (1 - rate)``."""
    layer_class, options = ONE_STEP_KINDS[kind]
    layer = layer_class(U, dropout=dropout, recurrent_dropout=RECURRENT_RATE, seed=4,
                        return_sequences=True, return_state=True, dtype="float64", **options)
    layer.build((B, T, D))
    weights = [rng.normal(scale=0.5, size=w.shape) for w in layer.get_weights()]  # biases too
    layer.set_weights(weights)
    x = rng.normal(size=(B, T, D))
    init = [rng.normal(size=(B, U)) for _ in layer.state_sizes]
    cell = layer.cell
    input_masks = record_calls(cell, "dropout_mask")
    recurrent_masks = record_calls(cell, "recurrent_dropout_mask")
    steps = record_calls(cell, "step")

    got = [np.asarray(v) for v in layer(x, initial_state=init, training=True)]

    assert len(steps) == T  # the one-step path, not a fused kernel
    assert len(recurrent_masks) == 1  # one mask per sequence
    recurrent_mask = np.asarray(recurrent_masks[0])
    assert recurrent_mask.shape == (B, U)
    assert set(np.unique(recurrent_mask)) == {0.0, 1.0 / (1.0 - RECURRENT_RATE)}
    input_mask = np.ones((B, D))
    if dropout:
        assert len(input_masks) == 1
        input_mask = np.asarray(input_masks[0])
        assert input_mask.shape == (B, D)
        assert set(np.unique(input_mask)) == {0.0, 1.0 / (1.0 - INPUT_RATE)}
    else:
        assert input_masks == []
    dropped_x = x * input_mask[:, None, :]
    want = numpy_one_step(kind, weights, dropped_x, init, [recurrent_mask] * T)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    # The recurrent mask mattered: without it the reference is far from the layer.
    unmasked = numpy_one_step(kind, weights, dropped_x, init, [np.ones((B, U))] * T)
    assert np.abs(unmasked[0] - got[0]).max() > 1e-2


@pytest.mark.parametrize("kind", ONE_STEP_KINDS)
def test_cell_call_dropout_per_step_equals_numpy(kind, rng):
    """The Keras cell contract, ``cell(x_t, states, training=True)`` (what keras.layers.RNN
    calls): each call draws its own input and recurrent masks (documented on ``call``), and
    the step is the NumPy equations with those masks."""
    layer_class, options = ONE_STEP_KINDS[kind]
    cell = layer_class.cell_class(U, dropout=INPUT_RATE, recurrent_dropout=RECURRENT_RATE,
                                  seed=6, dtype="float64", **options)
    cell.build((B, D))
    weights = [rng.normal(scale=0.5, size=w.shape) for w in cell.get_weights()]
    cell.set_weights(weights)
    x = rng.normal(size=(B, T, D))
    init = [rng.normal(size=(B, U)) for _ in cell.state_sizes]
    input_masks = record_calls(cell, "dropout_mask")
    recurrent_masks = record_calls(cell, "recurrent_dropout_mask")

    outputs, states = [], [tf.constant(s) for s in init]
    for t in range(T):
        output, states = cell(tf.constant(x[:, t]), states, training=True)
        outputs.append(np.asarray(output))
    got = [np.stack(outputs, 1), *(np.asarray(s) for s in states)]

    assert len(input_masks) == len(recurrent_masks) == T  # one of each per step
    input_masks = np.stack([np.asarray(m) for m in input_masks], 1)  # (B, T, D)
    recurrent_masks = [np.asarray(m) for m in recurrent_masks]
    assert input_masks.shape == (B, T, D) and recurrent_masks[0].shape == (B, U)
    assert set(np.unique(input_masks)) == {0.0, 1.0 / (1.0 - INPUT_RATE)}
    assert set(np.unique(recurrent_masks)) == {0.0, 1.0 / (1.0 - RECURRENT_RATE)}
    assert not np.array_equal(recurrent_masks[0], recurrent_masks[1])  # drawn per step
    want = numpy_one_step(kind, weights, x * input_masks, init, recurrent_masks)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)
    unmasked = numpy_one_step(kind, weights, x * input_masks, init, [np.ones((B, U))] * T)
    assert np.abs(unmasked[0] - got[0]).max() > 1e-2


def test_inter_layer_dropout_only_in_training(rng):
    layer = layers.GRU(U, num_layers=3, inter_layer_dropout=0.5, seed=1)
    x = rng.normal(size=(B, T, D)).astype("float32")
    inference = layer(x)
    np.testing.assert_array_equal(inference, layer(x, training=False))
    assert np.abs(np.asarray(layer(x, training=True)) - inference).max() > 1e-3


def test_inter_layer_dropout_draws_its_own_stream_with_a_seed():
    """With `seed`, the mask between levels started as a copy of level 0's input mask (both
    streams were seeded with `seed`), and stayed one in every step without recurrent dropout."""
    layer = layers.SimpleRNN(4, num_layers=2, dropout=0.5, inter_layer_dropout=0.5, seed=11)
    layer(np.ones((2, 3, 4), "float32"))
    for _ in range(3):  # both streams advance by one draw per training step
        level_0 = np.asarray(layer.cells[0].dropout_mask(tf.ones((64, 4)))).ravel()
        between = np.asarray(keras.random.dropout(tf.ones((64, 4)), 0.5,
                                                  seed=layer._inter_dropout_seed)).ravel()
        assert 0.3 < np.mean(level_0 == between) < 0.7  # independent masks agree about half


def test_weight_layout_matches_keras_names():
    ours, reference = twins("gru")
    assert [w.shape for w in ours.weights] == [w.shape for w in reference.weights]
    assert [w.name for w in ours.weights] == [w.name for w in reference.weights]


def test_bidirectional_stateful_equals_keras_across_calls_and_resets(rng):
    # It failed on its first call (the cells were built twice).
    reference = keras.layers.Bidirectional(keras.layers.LSTM(U, stateful=True))
    ours = layers.Bidirectional(layers.LSTM(U, stateful=True))
    x = rng.normal(size=(B, T, D)).astype("float32")
    reference(x)
    ours(x)
    ours.set_weights(reference.get_weights())
    reference.reset_state()
    ours.reset_state()
    first = np.asarray(ours(x[:, :3]))
    np.testing.assert_allclose(first, reference(x[:, :3]), atol=FWD_TOL)
    np.testing.assert_allclose(ours(x[:, 3:]), reference(x[:, 3:]), atol=FWD_TOL)  # carried
    ours.reset_state()
    np.testing.assert_allclose(ours(x[:, :3]), first, atol=FWD_TOL)


def test_stateful_float64_and_integer_inputs_as_keras(rng):
    # Both failed: float32 state variables under a float64 layer, and int inputs multiplied
    # by float kernels (keras.layers promote them).
    x = rng.normal(size=(B, T, D))
    reference, ours = keras.layers.GRU(U, stateful=True, dtype="float64"), layers.GRU(
        U, stateful=True, dtype="float64")
    reference(x)
    ours(x)
    ours.set_weights(reference.get_weights())
    for layer in (reference, ours):
        layer.reset_state()
    for chunk in (x[:, :3], x[:, 3:]):
        got = ours(chunk)
        assert got.dtype == "float64"
        np.testing.assert_allclose(got, reference(chunk), atol=1e-12)
    ints = rng.integers(-3, 4, size=(B, T, D)).astype("int32")
    ours, reference = twins("lstm")
    assert max_diff(ours(ints), reference(ints)) < FWD_TOL
    bidirectional = layers.Bidirectional(layers.LSTM(U))
    np.testing.assert_array_equal(bidirectional(ints), bidirectional(ints.astype("float32")))


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_a_one_row_state_at_an_unknown_batch_broadcasts_on_every_path_like_keras(kind):
    # Only the generic runner broadcast it: the fused kernels failed at run time ("Incompatible
    # shapes during merge: [1,4] vs. [3,4]"), in training and in inference.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5, 3)).astype("float32")
    reference = getattr(keras.layers, kind)(4, return_sequences=True)
    ours = getattr(layers, kind)(4, return_sequences=True)
    reference(x), ours(x)
    ours.set_weights(reference.get_weights())
    states = [rng.normal(size=(1, 4)).astype("float32") for _ in ours.state_sizes]
    want = reference(x, initial_state=[np.repeat(s, 3, axis=0) for s in states])
    for batch in (None, 3):  # the inputs' batch unknown, or only the states'
        signature = [tf.TensorSpec([batch, None, 3]), [tf.TensorSpec([None, 4]) for _ in states]]
        for training in (False, True):
            call = tf.function(lambda x, s: ours(x, initial_state=s, training=training),  # noqa: B023
                               input_signature=signature)
            np.testing.assert_allclose(call(x, states), want, atol=1e-5)


def test_recurrent_dropout_in_export_mode_is_refused_not_dropped():
    # Export graphs have no recurrent dropout: training=True applied the input dropout only.
    from keras_seq.ops import export_mode

    layer = layers.LSTM(4, recurrent_dropout=0.5, seed=1)
    x = np.ones((2, 3, 3), "float32")
    layer(x)
    with export_mode(), pytest.raises(ValueError, match=r"Expected training=False .* Received: "
                                                         r"training=True with recurrent_dropout=0.5"):
        layer(x, training=True)
    with export_mode():
        np.testing.assert_allclose(layer(x, training=False), layer(x), atol=1e-6)


FROZEN = {
    "SimpleRNN": lambda cls: cls(U, trainable=False),
    "LSTM": lambda cls: cls(U, trainable=False),
    "GRU": lambda cls: cls(U, trainable=False),
    "Bidirectional": lambda cls: (
        layers.Bidirectional if cls is layers.LSTM else keras.layers.Bidirectional
    )(cls(U, trainable=False)),
}


@pytest.mark.parametrize("kind", FROZEN)
def test_a_layer_made_frozen_is_not_trained_like_keras(kind, rng, tmp_path):
    """trainable=False at construction, or set on a built layer and saved, freezes every
    variable: the cells' weights are the layer's (they used to stay trainable)."""
    x = rng.normal(size=(B, T, D)).astype("float32")
    y = np.ones((B, 1), "float32")

    def trainable_count(make):
        model = keras.Sequential([keras.Input((T, D)), make(), keras.layers.Dense(1)])
        return len(model.trainable_weights), model

    pair = (layers.LSTM, keras.layers.LSTM) if kind == "Bidirectional" else (
        getattr(layers, kind), getattr(keras.layers, kind))
    (n_ours, model), (n_keras, _) = (trainable_count(lambda c=c: FROZEN[kind](c)) for c in pair)
    assert n_ours == n_keras == 2  # only the Dense layer's kernel and bias
    frozen = model.layers[0]
    before = [w.numpy().copy() for w in frozen.weights]
    model.compile(keras.optimizers.SGD(0.5), "mse")
    model.fit(x, y, epochs=2, verbose=0)
    assert all(np.array_equal(b, w.numpy()) for b, w in zip(before, frozen.weights, strict=True))

    # Frozen after building, then saved: it loads frozen.
    layer = getattr(layers, kind)(U) if kind != "Bidirectional" else layers.Bidirectional(
        layers.GRU(U))
    built = keras.Sequential([keras.Input((T, D)), layer, keras.layers.Dense(1)])
    layer.trainable = False
    built.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert len(loaded.trainable_weights) == 2


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_cho", "simple_rnn"])
@pytest.mark.parametrize("return_state", [False, True])
def test_activity_regularizer_adds_the_loss_keras_adds(kind, return_state, rng, tmp_path):
    """Applied to the outputs and returned states, as keras.layers.LSTM / GRU do (it was
    accepted, saved and never applied). Keras's own SimpleRNN drops it, so SimpleRNN is
    checked against the regularizer's formula (Keras divides it by the batch size)."""
    ours, reference = twins(
        kind, activity_regularizer=keras.regularizers.L2(0.3), return_sequences=True,
        return_state=return_state,
    )
    x = rng.normal(size=(B, T, D)).astype("float32")
    outputs = as_list(ours(x))
    expected = [0.3 * float(np.sum(np.square(o))) / B for o in outputs]
    if kind != "simple_rnn":
        reference(x)
        expected = [float(v) for v in reference.losses]
    assert len(ours.losses) == len(expected) == len(outputs)
    np.testing.assert_allclose([float(v) for v in ours.losses], expected, rtol=1e-5)

    config = ours.get_config()
    assert config["activity_regularizer"]["config"] == {"l2": pytest.approx(0.3)}
    model = keras.Sequential([keras.Input((T, D)), type(ours).from_config(config)])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    loaded(x)
    assert len(loaded.losses) == len(outputs)


@pytest.mark.parametrize("return_state", [False, True])
def test_bidirectional_applies_each_directions_activity_regularizer_like_keras(
    return_state, rng
):
    opts = {"return_sequences": True, "return_state": return_state,
            "activity_regularizer": keras.regularizers.L1(0.2)}
    reference = keras.layers.Bidirectional(keras.layers.GRU(U, **opts))
    ours = layers.Bidirectional(layers.GRU(U, **opts))
    assert_bidirectional_equal(ours, reference, rng)
    x = rng.normal(size=(B, T, D)).astype("float32")
    reference(x)
    ours(x)
    assert len(ours.losses) == len(reference.losses) == 2 * (2 if return_state else 1)
    np.testing.assert_allclose(
        sorted(float(v) for v in ours.losses), sorted(float(v) for v in reference.losses),
        rtol=1e-5,
    )


@pytest.mark.parametrize("kind", ["SimpleRNN", "LSTM", "GRU"])
def test_a_keras_layer_config_loads_and_options_read_through_like_keras(kind):
    reference = getattr(keras.layers, kind)(
        U, kernel_initializer="he_normal", recurrent_regularizer="l2", bias_constraint="non_neg",
        **({"reset_after": False, "recurrent_activation": "hard_sigmoid"} if kind == "GRU" else {}),
        **({"unit_forget_bias": False} if kind == "LSTM" else {}),
    )
    ours = getattr(layers, kind).from_config(reference.get_config())
    names = ["activation", "use_bias", "dropout", "recurrent_dropout", "kernel_initializer",
             "recurrent_initializer", "bias_initializer", "kernel_regularizer",
             "recurrent_regularizer", "bias_regularizer", "kernel_constraint",
             "recurrent_constraint", "bias_constraint"]
    names += {"LSTM": ["recurrent_activation", "unit_forget_bias"],
              "GRU": ["recurrent_activation", "reset_after"], "SimpleRNN": []}[kind]
    ser = keras.saving.serialize_keras_object
    for name in names:
        assert ser(getattr(ours, name)) == ser(getattr(reference, name)), name
    states = ours.get_initial_state(2)
    expected = reference.get_initial_state(2)
    expected = expected if isinstance(expected, list) else [expected]
    assert [tuple(s.shape) for s in states] == [tuple(s.shape) for s in expected]
    assert not any(np.any(np.asarray(s)) for s in states)
    assert len(layers.LSTM(U, num_layers=3).get_initial_state(4)) == 6
    with pytest.raises(ValueError, match=r"`unroll`.*Received: unroll=True"):
        getattr(layers, kind)(U, unroll=True)


@pytest.mark.parametrize("kind", ["SimpleRNNCell", "GRUCell"])
def test_a_single_state_cell_returns_what_it_was_given_like_keras(kind, rng):
    x = rng.normal(size=(2, D)).astype("float32")
    h = rng.normal(size=(2, U)).astype("float32")
    ours, reference = getattr(cells, kind)(U), getattr(keras.layers, kind)(U)
    _, bare = ours(x, h)
    _, nested = ours(x, [h])
    _, keras_bare = reference(x, h)
    assert not isinstance(bare, (list, tuple)) and not isinstance(keras_bare, (list, tuple))
    assert isinstance(nested, list) and len(nested) == 1
    np.testing.assert_array_equal(np.asarray(bare), np.asarray(nested[0]))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("wrap", ["plain", "stacked", "bidirectional"])
def test_nan_at_padded_steps_reaches_no_output_or_gradient(kind, wrap, rng):
    """Padding holds anything (here NaN): outputs and every gradient equal those of the same
    batch with zeros there. (keras.layers' gradients turn NaN: the backward pass multiplies
    the padding's inputs by 0.)"""
    ours_cls, _, shared = KINDS[kind]
    layer = ours_cls(U, return_sequences=True, num_layers=2 if wrap == "stacked" else 1, **shared)
    if wrap == "bidirectional":
        layer = layers.Bidirectional(layer)
    mask = mixed_mask()
    clean = rng.normal(size=(B, T, D)).astype("float32") * mask[:, :, None]
    dirty = np.where(mask[:, :, None], clean, np.nan).astype("float32")

    def run(x, training):
        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, mask=mask, training=training)
            loss = tf.reduce_sum(tf.where(mask[:, :, None], y, 0.0) ** 2)
        return [y, *tape.gradient(loss, [x, *layer.trainable_weights])]

    for training in (False, True):
        want, got = run(clean, training), run(dirty, training)
        got[1] = tf.where(mask[:, :, None], got[1], 0.0)  # d/dx at the padding is not used
        for g, w in zip(got, want, strict=True):
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, w, atol=1e-6, rtol=1e-6)


def test_bidirectional_refuses_a_backwards_layer_like_keras():
    with pytest.raises(ValueError):
        keras.layers.Bidirectional(keras.layers.GRU(U, go_backwards=True))
    with pytest.raises(ValueError, match=r"`layer`.*go_backwards=False.*Received: go_backwards=True"):
        layers.Bidirectional(layers.GRU(U, go_backwards=True))


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("backwards", [False, True])
def test_zero_steps_give_empty_sequences_and_the_initial_states(kind, backwards, rng):
    ours_cls, _, shared = KINDS[kind]
    layer = ours_cls(U, return_sequences=True, return_state=True, go_backwards=backwards, **shared)
    states = [rng.normal(size=(B, U)).astype("float32") for _ in layer.state_sizes]
    x = np.zeros((B, 0, D), "float32")
    graph = tf.function(lambda x: layer(x, initial_state=states))
    for outputs, *finals in (layer(x, initial_state=states), graph(x)):
        assert tuple(outputs.shape) == (B, 0, U)
        for got, want in zip(finals, states, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_cho", "simple_rnn"])
def test_the_one_step_path_equals_keras_with_nonzero_biases(kind, rng):
    """float64 runs the cells' own step (as decoding, float64 and export graphs do), not the
    fused float32 kernels: with random biases it must still be Keras's equation."""
    ours_cls, keras_cls, shared = KINDS[kind]
    options = dict(return_sequences=True, return_state=True, dtype="float64", **shared)
    reference, ours = keras_cls(U, **options), ours_cls(U, **options)
    reference.build((None, T, D))
    ours.build((None, T, D))
    reference.set_weights([rng.normal(scale=0.5, size=w.shape) for w in reference.get_weights()])
    ours.set_weights(reference.get_weights())
    assert all(np.abs(w).min() > 0 for w in ours.get_weights())  # biases included
    x = rng.normal(size=(B, T, D))
    got, want = ours(x, mask=mixed_mask()), reference(x, mask=mixed_mask())
    assert got[0].dtype == "float64"
    assert max_diff(got, want) < 1e-10


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_bidirectional_initial_states_go_to_their_directions_like_keras(kind, rng):
    ours_cls, keras_cls, shared = KINDS[kind]
    opts = {"return_sequences": True, "return_state": True, **shared}
    reference = keras.layers.Bidirectional(keras_cls(U, **opts))
    ours = layers.Bidirectional(ours_cls(U, **opts))
    x = rng.normal(size=(B, T, D)).astype("float32")
    reference(x)
    ours(x)
    ours.set_weights(reference.get_weights())
    states = [rng.normal(size=(B, U)).astype("float32")
              for _ in range(2 * len(ours.forward_layer.state_sizes))]
    got = ours(x, initial_state=states, mask=mixed_mask())
    want = reference(x, initial_state=states, mask=mixed_mask())
    assert max_diff(got, want) < FWD_TOL

"""Fused kernels (keras_seq.ops.fast_*) equal the generic runner and keras.layers.

Every fused path is checked on both engines (graph and XLA): the training kernel
(``training=True``, activations stored by the forward pass) and the inference forward
(``training=False``; its gradient reruns the forward pass, storing). Chunks are made tiny so
a sequence spans several chunks, the last one partial.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq import cells, layers
from keras_seq.layers import _fast
from keras_seq.layers import recurrent as recurrent_layers
from keras_seq.ops import export_mode, fast_gru, fast_lstm, fast_rnn, fused, recurrence

B, T, D, U = 3, 11, 4, 5
FWD_TOL, GRAD_TOL = 1e-5, 1e-4

KINDS = {
    "lstm": (layers.LSTM, keras.layers.LSTM, {}),
    "lstm_no_bias": (layers.LSTM, keras.layers.LSTM, {"use_bias": False}),
    "gru": (layers.GRU, keras.layers.GRU, {}),
    "gru_cho": (layers.GRU, keras.layers.GRU, {"reset_after": False}),
    "gru_no_bias": (layers.GRU, keras.layers.GRU, {"use_bias": False}),
    "simple_rnn": (layers.SimpleRNN, keras.layers.SimpleRNN, {}),
    "simple_rnn_relu": (layers.SimpleRNN, keras.layers.SimpleRNN, {"activation": "relu"}),
}
PATHS = ["train_graph", "train_xla", "infer_graph", "infer_xla"]


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """T=11 -> chunks of 8 and 3 steps (unrolled blocks of 4, a remainder loop)."""
    monkeypatch.setattr(fused, "MIN_CHUNK", 2)
    monkeypatch.setattr(fast_rnn, "MIN_CHUNK", 2)
    monkeypatch.setattr(fused, "CHUNKS", 2)
    monkeypatch.setattr(fused, "INFERENCE_CHUNK", 2)


@pytest.fixture
def taken(monkeypatch):
    """Records, per call of the layers' dispatch, whether a fused kernel answered."""
    calls = []

    def spy(*args, **kwargs):
        result = _fast.fast_level(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(recurrent_layers, "fast_level", spy)
    return calls


def generic_only(monkeypatch):
    monkeypatch.setattr(recurrent_layers, "fast_level", lambda *a, **k: None)


def mixed_mask():
    lengths = [T, 6, 1]  # full, padded after 6 steps, a single step
    return np.arange(T)[None, :] < np.array(lengths)[:, None]


def initial_states(kind, rng):
    """Random initial states for one level of `kind` (LSTM kinds have ``h`` and ``c``)."""
    return [tf.constant(rng.normal(size=(B, U)).astype("float32"))
            for _ in range(2 if kind.startswith("lstm") else 1)]


def twins(kind, **options):
    ours_cls, keras_cls, shared = KINDS[kind]
    reference = keras_cls(U, **shared, **options)
    ours = ours_cls(U, **shared, **options)
    reference.build((None, T, D))
    ours.build((None, T, D))
    rng = np.random.default_rng(7)
    weights = [
        rng.normal(scale=0.5, size=w.shape).astype("float32") for w in reference.get_weights()
    ]
    reference.set_weights(weights)
    ours.set_weights(weights)
    return ours, reference


def outputs_and_grads(layer, x, init, mask, training=None):
    """All outputs (sequence or last, then states) and d(loss)/d(x, init, weights)."""
    with tf.GradientTape() as tape:
        tape.watch([x, *init])
        kwargs = {} if training is None else {"training": training}
        y = layer(x, initial_state=init, mask=mask, **kwargs)
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        loss = tf.add_n([tf.reduce_sum(tf.sin(3.0 * v)) for v in ys])
    grads = tape.gradient(loss, [x, *init, *layer.trainable_weights])
    return [np.asarray(v) for v in ys], [np.asarray(g) for g in grads]


def assert_close(got, want, tol):
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=tol, rtol=tol)


def use_engine(name, monkeypatch):
    """Make every fused pass (training and inference) run on one engine."""
    if name == "xla" and not fused.xla_available():
        pytest.skip("this TensorFlow build cannot JIT-compile on CPU")
    big = 1 << 30
    monkeypatch.setattr(fused, "XLA_MAX_TRAIN_WIDTH", big if name == "xla" else 0)
    monkeypatch.setattr(fused, "XLA_MAX_STEP_ELEMENTS", big if name == "xla" else 0)


def run_path(path, layer, x, init, mask, monkeypatch):
    mode, engine = path.split("_")
    use_engine(engine, monkeypatch)
    return outputs_and_grads(layer, x, init, mask, training=mode == "train")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("direction", ["sequences_forward", "last_backwards"])
@pytest.mark.parametrize("kind", [k for k in KINDS if "no_bias" not in k])
def test_fused_equals_keras(kind, direction, masked, path, rng, monkeypatch, taken):
    check_against_keras(kind, direction, masked, path, rng, monkeypatch, taken)


@pytest.mark.parametrize("path", ["train_graph", "infer_xla"])
@pytest.mark.parametrize("kind", ["lstm_no_bias", "gru_no_bias"])
def test_fused_without_bias_equals_keras(kind, path, rng, monkeypatch, taken):
    check_against_keras(kind, "sequences_forward", True, path, rng, monkeypatch, taken)


def check_against_keras(kind, direction, masked, path, rng, monkeypatch, taken):
    sequences = direction == "sequences_forward"
    ours, reference = twins(
        kind, return_sequences=sequences, go_backwards=not sequences, return_state=True
    )
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    n_states = 2 if kind.startswith("lstm") else 1
    init = [tf.constant(rng.normal(size=(B, U)).astype("float32")) for _ in range(n_states)]
    mask = mixed_mask() if masked else None
    want_y, want_g = outputs_and_grads(reference, x, init, mask)
    got_y, got_g = run_path(path, ours, x, init, mask, monkeypatch)
    assert taken and all(taken), "the fused kernel was not used"
    assert_close(got_y, want_y, FWD_TOL)
    assert_close(got_g, want_g, GRAD_TOL)


@pytest.mark.parametrize("engine", ["graph", "xla"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_cho", "simple_rnn"])
def test_fused_equals_generic_runner(kind, engine, rng, monkeypatch):
    use_engine(engine, monkeypatch)
    ours, _ = twins(kind, return_sequences=True, return_state=True)
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    init = initial_states(kind, rng)
    fused_y, fused_g = outputs_and_grads(ours, x, init, mixed_mask(), training=True)
    generic_only(monkeypatch)
    generic_y, generic_g = outputs_and_grads(ours, x, init, mixed_mask(), training=True)
    assert_close(fused_y, generic_y, FWD_TOL)
    assert_close(fused_g, generic_g, GRAD_TOL)


def _kernel_call(cell, x, init, recurrent_mask, training):
    """Call the fused kernel of ``cell`` directly."""
    kernel, recurrent = cell.kernel.value, cell.recurrent_kernel.value
    bias = None if cell.bias is None else cell.bias.value
    options = {"recurrent_mask": recurrent_mask, "return_sequences": True, "training": training}
    if isinstance(cell, cells.LSTMCell):
        outputs, h, c = fast_lstm.lstm(x, kernel, bias, recurrent, *init, **options)
        return [outputs, h, c]
    if isinstance(cell, cells.GRUCell):
        input_bias, recurrent_bias = _fast._gru_biases(cell)
        outputs, h = fast_gru.gru(x, kernel, input_bias, recurrent, *init,
                                  recurrent_bias=recurrent_bias, reset_after=cell.reset_after,
                                  **options)
        return [outputs, h]
    outputs, h = fast_rnn.simple_rnn(x, kernel, bias, recurrent, *init, **options)
    return [outputs, h]


@pytest.mark.parametrize("engine", ["graph", "xla"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_cho", "simple_rnn"])
def test_recurrent_dropout_mask_equals_cell_step(kind, training, engine, rng, monkeypatch):
    """Kernels apply a recurrent-dropout mask as the cells' own step does."""
    use_engine(engine, monkeypatch)
    ours, _ = twins(kind)
    cell = ours.cell
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    init = initial_states(kind, rng)
    dropped = tf.constant((rng.random((B, U)) > 0.4).astype("float32") / 0.6)
    weights = [cell.kernel, cell.recurrent_kernel] + ([cell.bias] if cell.bias is not None else [])

    def grads(run):
        with tf.GradientTape() as tape:
            tape.watch([x, *init])
            ys = run()
            loss = tf.add_n([tf.reduce_sum(tf.sin(3.0 * v)) for v in ys])
        return [np.asarray(v) for v in ys], tape.gradient(loss, [x, *init, *weights])

    def generic():
        last, outputs, states = recurrence(
            lambda p, s: cell.step(p, s, dropped), cell.project_inputs(x), init,
            output_size=U)
        return [tf.transpose(outputs, [1, 0, 2]), *states]

    def fused_kernel():
        return _kernel_call(cell, x, init, dropped, training)  # outputs time-major

    want_y, want_g = grads(generic)
    got_y, got_g = grads(fused_kernel)
    assert_close(got_y, want_y, FWD_TOL)
    assert_close(got_g, want_g, GRAD_TOL)


@pytest.mark.parametrize("engine", ["graph", "xla"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_dropout_equals_generic_runner(kind, engine, rng, monkeypatch):
    """Input and recurrent dropout at training time: same masks, same results, also for the
    gradients of watched initial states (a decoder's, from its encoder). The recurrent mask
    is built from ``ones_like(h0)``: eagerly, a watched h0 made the XLA engine fail with
    "TensorList crossing the XLA/TF boundary"."""
    use_engine(engine, monkeypatch)
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    init = initial_states(kind, rng)

    def run():  # a fresh layer with the same seed draws the same dropout masks
        layer, _ = twins(kind, return_sequences=True, dropout=0.3, recurrent_dropout=0.4,
                         seed=3)
        with tf.GradientTape() as tape:
            tape.watch([x, *init])
            y = layer(x, initial_state=init, mask=mixed_mask(), training=True)
            loss = tf.reduce_sum(tf.sin(3.0 * y))
        return [np.asarray(y)], tape.gradient(loss, [x, *init, *layer.trainable_weights])

    fused_y, fused_g = run()
    generic_only(monkeypatch)
    generic_y, generic_g = run()
    assert_close(fused_y, generic_y, FWD_TOL)
    assert_close(fused_g, generic_g, GRAD_TOL)


@pytest.mark.parametrize("engine", ["graph", "xla"])
def test_fit_step_equals_generic_runner(engine, rng, monkeypatch):
    """One Adam step of model.fit (graph mode, training=True) moves the weights alike."""
    use_engine(engine, monkeypatch)
    x = rng.normal(size=(8, T, D)).astype("float32")
    y = rng.normal(size=(8, U)).astype("float32")

    def trained_weights():
        keras.utils.set_random_seed(0)
        inputs = keras.Input((T, D))
        hidden = layers.GRU(U, return_sequences=True)(inputs)
        model = keras.Model(inputs, layers.LSTM(U)(hidden))
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False)
        return model.get_weights()

    fused_weights = trained_weights()
    generic_only(monkeypatch)
    generic_weights = trained_weights()
    assert_close(fused_weights, generic_weights, 1e-5)


@pytest.mark.parametrize("engine", ["graph", "xla"])
def test_dynamic_length_in_tf_function(engine, rng, monkeypatch):
    """Unknown T and batch at trace time: dynamic chunking (and XLA compiling per shape)."""
    use_engine(engine, monkeypatch)
    ours, reference = twins("lstm", return_sequences=True)
    fn = tf.function(lambda x: ours(x, training=True),
                     input_signature=[tf.TensorSpec([None, None, D], tf.float32)])
    for steps in (T, 3):
        x = rng.normal(size=(B, steps, D)).astype("float32")
        assert_close([np.asarray(fn(x))], [np.asarray(reference(x))], FWD_TOL)


def test_engine_choice():
    xla = "xla" if fused.xla_available() else "graph"
    assert fused.engine(None, 256, 4) == "graph"  # batch unknown
    assert fused.engine(64, 256, 4) == "graph"  # large steps
    assert fused.engine(1, 256, 4) == xla
    assert fused.train_engine(256, 4) == "graph"
    assert fused.train_engine(128, 4) == xla


def test_unsupported_configurations_fall_back(rng):
    x = tf.constant(rng.normal(size=(B, T, D)).astype("float32"))
    state = tf.zeros((B, U))

    def dispatch(cell, x=x, states=(state, state)):
        cell.build((None, D))
        return _fast.fast_level(
            cell, x, list(states), recurrent_mask=None, mask=None, go_backwards=False,
            return_sequences=False, zero_output_for_mask=False, training=True,
        )

    assert dispatch(cells.LSTMCell(U)) is not None
    assert dispatch(cells.LSTMCell(U, peephole=True)) is None
    assert dispatch(cells.LSTMCell(U, coupled_gates=True)) is None
    assert dispatch(cells.LSTMCell(U, recurrent_activation="hard_sigmoid")) is None
    assert dispatch(cells.GRUCell(U, activation="relu")) is None
    assert dispatch(cells.SimpleRNNCell(U, activation="elu")) is None
    assert dispatch(cells.SimpleRNNCell(U, dtype="float64"), x=tf.cast(x, tf.float64)) is None

    class CustomLSTMCell(cells.LSTMCell):
        pass

    assert dispatch(CustomLSTMCell(U)) is None
    with export_mode():
        assert dispatch(cells.LSTMCell(U)) is None

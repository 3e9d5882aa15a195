"""The layers under XLA (`jit_compile=True`, which Keras's `compile()` picks by itself on a GPU).

Both used to fail there, where `keras.layers.LSTM` runs: the fused kernels whenever a level
returned sequences for a batch size unknown at trace time (a `predict` with a partial last
batch), and the generic runner's gradient whenever a level returned only its last output
(peephole or coupled LSTMs, non-default activations, mixed precision). Under XLA the layers
now take the generic runner, which compiles; results equal the eager ones.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq import layers

B, T, D = 3, 5, 4
LAYERS = {
    "lstm": lambda **kw: layers.LSTM(6, **kw),
    "gru": lambda **kw: layers.GRU(6, **kw),
    "simple_rnn": lambda **kw: layers.SimpleRNN(6, **kw),
    "lstm_peephole_coupled": lambda **kw: layers.LSTM(6, peephole=True, coupled_gates=True, **kw),
    "gru_relu": lambda **kw: layers.GRU(6, activation="relu", **kw),
    "bidirectional_stack": lambda **kw: layers.Bidirectional(layers.LSTM(6, num_layers=2, **kw)),
}


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_jit_compiled_forward_and_gradient_equal_eager(name, return_sequences, rng):
    x = rng.standard_normal((B, T, D)).astype("float32")
    mask = np.array([[1] * T, [1] * (T - 2) + [0] * 2, [1] + [0] * (T - 1)], bool)
    keras.utils.set_random_seed(0)
    layer = LAYERS[name](return_sequences=return_sequences)
    layer(x)

    def forward_and_gradient(x, mask):
        with tf.GradientTape() as tape:
            y = layer(x, mask=mask)
            loss = tf.reduce_sum(y * tf.cos(tf.range(tf.shape(y)[-1], dtype=y.dtype)))
        return y, tape.gradient(loss, layer.trainable_variables)

    spec = [tf.TensorSpec([None, T, D], tf.float32), tf.TensorSpec([None, T], tf.bool)]
    compiled = tf.function(forward_and_gradient, jit_compile=True, input_signature=spec)
    y_xla, g_xla = compiled(x, mask)
    y, g = forward_and_gradient(tf.constant(x), tf.constant(mask))
    np.testing.assert_allclose(y_xla, y, atol=1e-5)
    for a, b in zip(g_xla, g, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("name,units", [("lstm", 200), ("lstm_peephole_coupled", 6)])
def test_fit_and_predict_with_jit_compile_equal_without(name, units, rng):
    """`fit` (LSTM(200) takes the fused graph engine outside XLA) and a `predict` whose last
    batch is partial, compiled and not."""
    x = rng.standard_normal((6, T, D)).astype("float32")
    y = rng.standard_normal((6, 1)).astype("float32")
    results = []
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        recurrent = (layers.LSTM(units, return_sequences=True) if name == "lstm"
                     else LAYERS[name](return_sequences=True))
        model = keras.Sequential([keras.Input((T, D)), recurrent,
                                  keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        results.append((model.predict(x, batch_size=4, verbose=0), model.get_weights()))
    (p0, w0), (p1, w1) = results
    np.testing.assert_allclose(p1, p0, atol=1e-5)
    for a, b in zip(w1, w0, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)

"""`mixed_float16` (`keras-seq train --mixed-precision`): every path, not only `model.fit`.

Keras casts float32 variables to float16 only inside a layer's ``__call__``; decoding, beam
search and sampling call the cells' and attention's methods directly. Each model here is
compared with a float32 twin holding the same weights.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq import cells, layers, models

ATOL = 3e-2  # float16 keeps ~3 significant digits


@pytest.fixture
def mixed():
    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


def twins(make, inputs):
    """(float32 model, mixed_float16 model) with the same weights: `make()` creates one,
    called on `inputs` to build it."""
    previous = keras.config.dtype_policy()
    keras.utils.set_random_seed(0)
    full = make()
    full(inputs)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        half = make()
        half(inputs)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    weights = full.get_weights()
    assert weights
    half.set_weights(weights)
    return full, half


@pytest.mark.parametrize("cell_class,options", [
    (cells.SimpleRNNCell, {}), (cells.GRUCell, {}), (cells.GRUCell, {"reset_after": False}),
    (cells.LSTMCell, {}), (cells.LSTMCell, {"peephole": True, "coupled_gates": True}),
])
def test_cell_methods_outside_call_compute_in_float16(cell_class, options, rng):
    x = rng.standard_normal((3, 4, 5)).astype("float32")
    full, half = twins(lambda: keras.layers.RNN(cell_class(6, **options)), x)
    states = [tf.fill((3, 6), 0.1)] * (2 if cell_class is cells.LSTMCell else 1)
    h32, _ = full.cell.step(full.cell.project_inputs(tf.constant(x[:, 0])), states)
    h16, s16 = half.cell.step(half.cell.project_inputs(tf.constant(x[:, 0], tf.float16)),
                              [tf.cast(s, tf.float16) for s in states])
    assert h16.dtype == "float16" and all(s.dtype == "float16" for s in s16)
    np.testing.assert_allclose(np.asarray(h16, "float32"), h32, atol=ATOL)


@pytest.mark.parametrize("options", [
    {"attention": "bahdanau"}, {"attention": "luong-general", "input_feeding": True},
    {"attention": "luong-concat", "cell": "gru", "bidirectional_encoder": True},
])
def test_seq2seq_decoding_matches_float32(options, rng):
    src = rng.integers(4, 12, (3, 5))
    tgt = rng.integers(4, 13, (3, 4))
    full, half = twins(lambda: models.Seq2Seq(12, 13, units=8, embedding_dim=6, **options),
                       (src, tgt))
    np.testing.assert_allclose(half((src, tgt)), full((src, tgt)), atol=ATOL)
    assert half((src, tgt)).dtype == "float32"  # log_softmax in float32
    for method in ("greedy", "beam"):
        tokens16, weights16 = half.translate(src, max_length=6, method=method)
        tokens32, weights32 = full.translate(src, max_length=6, method=method)
        np.testing.assert_array_equal(tokens16, tokens32)
        np.testing.assert_allclose(np.asarray(weights16, "float32"), weights32, atol=ATOL)


def test_language_model_sampling_matches_float32(rng):
    prompt = rng.integers(1, 20, (2, 3))
    full, half = twins(lambda: models.LanguageModel(vocab_size=20, units=8, embedding_dim=4,
                                                    num_layers=2), prompt)
    tokens16, logits16 = half.generate(prompt, 5, temperature=0, return_logits=True)
    tokens32, logits32 = full.generate(prompt, 5, temperature=0, return_logits=True)
    assert logits16.dtype == "float32"
    np.testing.assert_array_equal(tokens16, tokens32)
    np.testing.assert_allclose(logits16, logits32, atol=ATOL)


def test_classifier_probabilities_are_float32(mixed, rng):
    model = models.SequenceClassifier(vocab_size=20, num_classes=3, units=8, embedding_dim=4,
                                      pooling="attention")
    probs = model(rng.integers(1, 20, (2, 5)))
    assert probs.dtype == "float32" and model.encoder.compute_dtype == "float16"
    np.testing.assert_allclose(np.sum(probs, -1), 1.0, rtol=1e-6)


def test_regressor_output_is_float32(mixed, rng):
    # Its head computed in float16: predictions in [1, 2) were rounded to 2**-10.
    from keras_seq.training.builders import regressor

    model = regressor("gru", units=8)
    out = model(rng.standard_normal((2, 5, 2)).astype("float32"))
    assert out.dtype == "float32" and model.layers[1].compute_dtype == "float16"


def test_recurrent_layer_under_mixed_policy(mixed, rng):
    layer = layers.LSTM(6, return_sequences=True)
    out = layer(rng.standard_normal((2, 4, 3)).astype("float32"))
    assert out.dtype == "float16" and layer.cell.kernel.dtype == "float32"


def test_attention_pooling_weights_outside_call_compute_in_float16(rng):
    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0]])
    full, half = twins(lambda: models.SequenceClassifier(20, 3, units=8, embedding_dim=4,
                                                         pooling="attention"), ids)
    mask = ids != 0
    weights = {}
    for name, model in (("full", full), ("half", half)):
        h = model.encoder(model.embedding(ids), mask=mask)
        weights[name] = model.attention_pooling.attention_weights(h, mask)
    assert weights["half"].dtype == "float16"
    np.testing.assert_allclose(np.asarray(weights["half"], "float32"), weights["full"], atol=ATOL)


SAVED_MODELS = {
    "seq2seq-luong-general": lambda: models.Seq2Seq(12, 9, units=4, embedding_dim=3,
                                                    attention="luong-general"),
    "seq2seq-bahdanau-bi": lambda: models.Seq2Seq(12, 9, units=4, embedding_dim=3,
                                                  attention="bahdanau",
                                                  bidirectional_encoder=True),
    "seq2seq-plain": lambda: models.Seq2Seq(12, 9, units=4, embedding_dim=3, attention=None),
    "language-model": lambda: models.LanguageModel(12, units=4, embedding_dim=3),
    "classifier": lambda: models.SequenceClassifier(12, 3, units=4, embedding_dim=3,
                                                    bidirectional=True, pooling="attention"),
}
SRC = np.array([[5, 6, 7, 8, 9], [4, 0, 0, 0, 0]])
TGT = np.array([[2, 5, 6], [2, 7, 0]])


@pytest.mark.parametrize("saved_under", ["mixed_float16", "float32"])
@pytest.mark.parametrize("name", sorted(SAVED_MODELS))
def test_a_saved_model_loads_in_its_own_policy_whatever_the_global_one(name, saved_under,
                                                                        tmp_path):
    """Sublayers used to take the loading process's global policy: a mixed model came back
    computing in float32 (Seq2Seq without input feeding failed: a half tensor met a float
    one), and a float32 model loaded under mixed_float16 computed in float16."""
    inputs = (SRC, TGT) if name.startswith("seq2seq") else SRC
    loaded_under = "float32" if saved_under == "mixed_float16" else "mixed_float16"
    previous = keras.config.dtype_policy()
    try:
        keras.mixed_precision.set_global_policy(saved_under)
        keras.utils.set_random_seed(0)
        model = SAVED_MODELS[name]()
        expected = np.asarray(model(inputs))
        model.save(tmp_path / "model.keras")
        keras.mixed_precision.set_global_policy(loaded_under)
        loaded = keras.saving.load_model(tmp_path / "model.keras")
        policies = {layer.dtype_policy.name for layer in loaded._flatten_layers(include_self=True)}
        assert policies <= {saved_under, "float32"}, policies  # heads keep float32 outputs
        np.testing.assert_array_equal(np.asarray(loaded(inputs)), expected)
        if name.startswith("seq2seq"):
            np.testing.assert_array_equal(np.asarray(loaded.translate(SRC, max_length=4)[0]),
                                          np.asarray(model.translate(SRC, max_length=4)[0]))
    finally:
        keras.mixed_precision.set_global_policy(previous)

"""benchmarks/attention_entropy.py, the measurement behind the README's attention findings: its
summary against hand-computed rows, and the rows it cuts from real models against the models'
own outputs."""

import numpy as np
import pytest
import tensorflow as tf

from keras_seq.models import Seq2Seq, SequenceClassifier


@pytest.fixture(scope="module")
def script(load_benchmark):
    return load_benchmark("attention_entropy")


def test_summary_of_one_hot_uniform_and_short_rows(script):
    rows = [np.array([0.0, 0.0, 1.0]), np.full(4, 0.25), np.array([1.0])]
    summary = script.summarise(rows)
    assert summary["rows"] == 2  # the one-step row carries no choice and is left out
    np.testing.assert_allclose(summary["normalised_entropy"], 0.5, atol=1e-9)
    np.testing.assert_allclose(summary["largest_weight"], (1.0 + 0.25) / 2)
    assert summary["argmax_last"] == 0.5 and summary["argmax_first"] == 0.5
    p = np.array([0.7, 0.2, 0.1])
    expected = -(p * np.log(p)).sum() / np.log(3)
    np.testing.assert_allclose(script.summarise([p])["normalised_entropy"], expected)
    with pytest.raises(ValueError, match="weights"):
        script.summarise([np.array([1.0])])


def test_pooling_rows_are_the_valid_steps_of_the_models_weights(script):
    model = SequenceClassifier(9, 2, units=4, embedding_dim=3, pooling="attention")
    x = tf.constant([[4, 5, 6, 0, 0], [7, 8, 0, 0, 0], [5, 5, 5, 5, 5]])
    dataset = tf.data.Dataset.from_tensor_slices((x, tf.zeros(3, tf.int32))).batch(2)
    rows = script.pooling_weights(model, dataset, batches=2)
    assert [len(r) for r in rows] == [3, 2, 5]
    for r in rows:
        np.testing.assert_allclose(r.sum(), 1.0, rtol=1e-6)
    h = model.encoder(model.embedding(x), mask=x != 0)
    full = model.attention_pooling.attention_weights(h, x != 0).numpy()
    np.testing.assert_allclose(rows[1], full[1, :2], rtol=1e-6)


@pytest.mark.parametrize("end_bias", [0.0, 50.0])
def test_decoder_rows_stop_at_the_end_token(script, end_bias):
    tf.keras.utils.set_random_seed(0)
    model = Seq2Seq(12, 9, units=8, embedding_dim=4, attention="bahdanau")
    src = tf.constant([[4, 5, 6, 3, 0], [7, 3, 0, 0, 0]])
    model.ensure_built()
    bias = model.output_layer.bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[3]], [end_bias]))  # 50: the end token first
    dataset = tf.data.Dataset.from_tensors(((src, tf.zeros((2, 3), tf.int32)), tf.zeros((2, 3))))
    rows = script.decoder_weights(model, dataset, batches=1, max_length=6)
    tokens, weights = model.translate(src, max_length=6)
    steps = [1, 1] if end_bias else [6, 6]  # untrained and unbiased, it never ends
    assert [int((t == 3).any()) for t in tokens.numpy()] == [int(bool(end_bias))] * 2
    assert [len(r) for r in rows] == [4] * steps[0] + [2] * steps[1]
    np.testing.assert_allclose(rows[steps[0]], weights.numpy()[1, 0, :2], rtol=1e-6)
    for r in rows:
        np.testing.assert_allclose(r.sum(), 1.0, rtol=1e-5)

"""``export_mode(padding="right")``: right-padded masks become native ONNX recurrent nodes.

Inside ``export_mode(padding="right")`` a layer turns its padding mask into sequence lengths
and traces the loop that tf2onnx rewrites into one ``LSTM`` / ``GRU`` / ``RNN`` node with
``sequence_lens``. The references are the same layers outside export mode (the training
graph), on right-padded masks of mixed lengths (full, partial, one step, empty), so every
Keras mask rule is checked: repeated or zeroed outputs at padded steps, ``go_backwards``
(padded steps first in processing order), the last output, final states, both directions
of ``Bidirectional`` and stacked levels.
"""

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tf2onnx

from keras_seq import layers
from keras_seq.ops import export_graph, export_mode, export_padding
from keras_seq.ops.inspect import onnx_op_types
from keras_seq.ops.onnx_rewriters import onnx_custom_rewriters

D, U = 3, 4
ATOL = 1e-5

LAYERS = {
    "lstm": (lambda: layers.LSTM(U, return_sequences=True, return_state=True), "LSTM"),
    "lstm_backwards_last": (lambda: layers.LSTM(U, go_backwards=True, return_state=True), "LSTM"),
    "lstm_zero_output": (
        lambda: layers.LSTM(U, return_sequences=True, zero_output_for_mask=True, return_state=True),
        "LSTM",
    ),
    "lstm_zero_output_last": (lambda: layers.LSTM(U, zero_output_for_mask=True), "LSTM"),
    "lstm_backwards_zero_output": (
        lambda: layers.LSTM(U, return_sequences=True, go_backwards=True, zero_output_for_mask=True),
        "LSTM",
    ),
    "gru": (lambda: layers.GRU(U, return_sequences=True, return_state=True), "GRU"),
    "gru_backwards": (
        lambda: layers.GRU(U, return_sequences=True, go_backwards=True, return_state=True),
        "GRU",
    ),
    "gru_cho_backwards": (
        lambda: layers.GRU(
            U, reset_after=False, return_sequences=True, go_backwards=True, return_state=True
        ),
        "GRU",
    ),
    "gru_cho_last": (lambda: layers.GRU(U, reset_after=False), "GRU"),
    "simple_rnn": (lambda: layers.SimpleRNN(U, return_sequences=True, return_state=True), "RNN"),
    "simple_rnn_relu_backwards_last": (
        lambda: layers.SimpleRNN(U, activation="relu", go_backwards=True, return_state=True),
        "RNN",
    ),
    "bidirectional_lstm": (
        lambda: layers.Bidirectional(layers.LSTM(U, return_sequences=True, return_state=True)),
        "LSTM",
    ),
    "bidirectional_gru_last": (lambda: layers.Bidirectional(layers.GRU(U)), "GRU"),
    "stacked_lstm": (
        lambda: layers.LSTM(U, num_layers=2, return_sequences=True, return_state=True),
        "LSTM",
    ),
    "stacked_gru_backwards_last": (
        lambda: layers.GRU(U, num_layers=2, go_backwards=True, return_state=True),
        "GRU",
    ),
    "stacked_bidirectional_lstm": (
        lambda: layers.Bidirectional(layers.LSTM(U, num_layers=2, return_sequences=True)),
        "LSTM",
    ),
}


def right_padded(lengths, steps, seed):
    """Inputs ``[B, T, D]`` (padded steps hold noise: they must not matter) and their mask."""
    x = np.random.default_rng(seed).normal(size=(len(lengths), steps, D)).astype("float32")
    mask = np.arange(steps)[None, :] < np.asarray(lengths)[:, None]
    return x, mask


FEEDS = [right_padded([5, 3, 1, 0], 5, seed=1), right_padded([2, 3], 3, seed=2)]


def make_layer(name):
    layer = LAYERS[name][0]()
    layer(*FEEDS[0][:1], mask=FEEDS[0][1])  # build
    rng = np.random.default_rng(0)
    layer.set_weights([rng.normal(0, 0.7, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def as_list(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]


def assert_all_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0)


def to_onnx(layer, padding="right"):
    signature = [
        tf.TensorSpec([None, None, D], tf.float32, name="x"),
        tf.TensorSpec([None, None], tf.bool, name="mask"),
    ]
    with export_mode(padding=padding):
        fn = tf.function(lambda x, m: layer(x, mask=m), input_signature=signature)
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=signature, opset=17, custom_rewriter=onnx_custom_rewriters()
        )
    return proto


@pytest.mark.parametrize("name", LAYERS)
def test_right_padding_is_native_in_onnx_and_equals_the_training_graph(name):
    layer = make_layer(name)
    proto = to_onnx(layer)
    ops = onnx_op_types(proto)
    assert LAYERS[name][1] in ops and "Loop" not in ops, sorted(set(ops))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for x, mask in FEEDS:  # dynamic batch and time
        expected = as_list(layer(x, mask=mask))  # training graph
        assert_all_close(session.run(None, {"x": x, "mask": mask}), expected)


@pytest.mark.parametrize("name", ["lstm", "gru_cho_backwards", "stacked_bidirectional_lstm"])
def test_right_padding_tensorflow_graph_equals_the_training_graph(name):
    """The traced export graph itself (what SavedModel / TFLite would run) is exact too."""
    layer = make_layer(name)
    with export_mode(padding="right"):
        fn = tf.function(lambda x, m: layer(x, mask=m))
        for x, mask in FEEDS:
            assert_all_close(as_list(fn(x, mask)), as_list(layer(x, mask=mask)))


def test_right_padding_keeps_a_nonzero_initial_state_for_empty_rows():
    """onnxruntime returns zeros as the final state of a row with ``sequence_lens == 0``; the
    export graph restores the initial state (Keras carries it through padded steps)."""
    layer = make_layer("gru")
    x, mask = FEEDS[0]
    h0 = np.random.default_rng(5).normal(size=(len(x), U)).astype("float32")
    signature = [
        tf.TensorSpec([None, None, D], tf.float32, name="x"),
        tf.TensorSpec([None, None], tf.bool, name="mask"),
        tf.TensorSpec([None, U], tf.float32, name="h0"),
    ]
    with export_mode(padding="right"):
        fn = tf.function(lambda x, m, h: layer(x, mask=m, initial_state=[h]), signature)
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=17)
    assert "GRU" in onnx_op_types(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x, "mask": mask, "h0": h0})
    expected = as_list(layer(x, mask=mask, initial_state=[h0]))
    assert_all_close(got, expected)
    np.testing.assert_allclose(got[1][-1], h0[-1], atol=ATOL)  # the empty row


def test_any_padding_keeps_the_generic_masked_loop():
    layer = make_layer("lstm")
    proto = to_onnx(layer, padding="any")
    ops = onnx_op_types(proto)
    assert "Loop" in ops and "LSTM" not in ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x, mask = FEEDS[0]
    mask = mask.copy()
    mask[0, 1] = False  # a hole: only the generic loop may be given this
    assert_all_close(session.run(None, {"x": x, "mask": mask}), as_list(layer(x, mask=mask)))


def test_export_padding_reads_the_innermost_mode():
    assert export_padding() == "any"
    with export_mode(padding="right"):
        assert export_padding() == "right"
        with export_mode(padding="none"):
            assert export_padding() == "none"
        assert export_padding() == "right"
    assert export_padding() == "any"


def test_export_mode_rejects_an_unknown_padding():
    with pytest.raises(
        ValueError,
        match=r"argument `padding`. Expected one of \{'any', 'right', 'none'\}. "
        r"Received: padding='bogus'",
    ):
        with export_mode(padding="bogus"):
            pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"mask": tf.ones([2, 5], tf.bool), "lengths": tf.constant([5, 5])},
            r"`gru`. Expected at most one of `mask` and `lengths`",
        ),
        (
            {"lengths": tf.constant([[5, 5]])},
            r"argument `lengths` of `gru`. Expected a rank-1 integer tensor.*shape=\(1, 2\)",
        ),
        (
            {"lengths": tf.constant([5.0, 5.0])},
            r"argument `lengths` of `gru`.*dtype=float32",
        ),
    ],
)
def test_lengths_argument_errors(kwargs, match):
    x, h = tf.zeros([2, 5, D]), tf.zeros([2, U])
    with pytest.raises(ValueError, match=match):
        export_graph.gru(x, h, tf.zeros([D, 3 * U]), tf.zeros([U, 3 * U]), None, **kwargs)


def test_lengths_form_matches_keras_layer_semantics():
    """``export_graph.lstm(lengths=...)`` against ``keras.layers.LSTM`` with the same weights."""
    x, mask = FEEDS[0]
    for options in ({}, {"go_backwards": True}, {"zero_output_for_mask": True}):
        ref = keras.layers.LSTM(U, return_sequences=True, return_state=True, **options)
        ref(x)
        weights = [np.random.default_rng(3).normal(0, 0.7, w.shape) for w in ref.get_weights()]
        ref.set_weights(weights)
        h0 = tf.zeros([len(x), U])
        got = export_graph.lstm(
            x,
            h0,
            h0,
            *[w.astype("float32") for w in weights],
            lengths=tf.reduce_sum(tf.cast(mask, tf.int32), 1),
            **options,
        )
        assert_all_close(as_list(got), as_list(ref(x, mask=mask)))

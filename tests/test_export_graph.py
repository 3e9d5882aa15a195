"""Exporter-shaped recurrent functions: Keras parity, builtins-only TFLite, native ONNX nodes.

Each function is wrapped the way keras_seq's layers use it (weights are variables of a layer
inside a functional model) and checked against ``keras.layers.LSTM/GRU/SimpleRNN`` with the
same weights: eagerly, as a reloaded SavedModel, as a builtins-only ``.tflite`` run by
ai-edge-litert, and as ONNX (tf2onnx, dynamic batch) run by onnxruntime.
"""

import tempfile

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tf2onnx
from ai_edge_litert.interpreter import Interpreter

from keras_seq.ops import export_graph
from keras_seq.ops.inspect import onnx_op_types, tflite_op_names
from keras_seq.ops.onnx_rewriters import onnx_custom_rewriters

B, T, D, U = 2, 5, 4, 8
ATOL = 1e-5
KERAS_LAYERS = {
    "lstm": keras.layers.LSTM,
    "gru": keras.layers.GRU,
    "simple_rnn": keras.layers.SimpleRNN,
}


def _reference(kind, *, return_sequences=True, seed=0, features=D, **options):
    """A Keras layer with random weights (large enough to make every gate matter)."""
    layer = KERAS_LAYERS[kind](U, return_sequences=return_sequences, return_state=True, **options)
    layer(np.zeros((1, T, features), "float32"))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    return layer


class WrappedRecurrent(keras.layers.Layer):
    """Holds Keras-layout weights and calls an export function, as keras_seq's layers do."""

    def __init__(self, kind, shapes, *, return_sequences, return_state, options, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.shapes, self.options = kind, shapes, options
        self.return_sequences, self.return_state = return_sequences, return_state

    def build(self, input_shape):
        self.w = [
            self.add_weight(shape=s, initializer="zeros", name=f"w{i}")
            for i, s in enumerate(self.shapes)
        ]

    def call(self, inputs):
        x, keep = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        h0 = tf.zeros([tf.shape(x)[0], U])
        kw = dict(self.options, return_sequences=self.return_sequences, mask=keep)
        if self.kind == "lstm":
            y, *states = export_graph.lstm(x, h0, h0, *self.w, **kw)
        else:
            y, *states = getattr(export_graph, self.kind)(x, h0, *self.w, **kw)
        return [y, *states] if self.return_state else y


def _case(kind, *, batch=None, use_mask=False, return_state=False, return_sequences=True, **opts):
    """(functional model, Keras reference, input signature) for one configuration."""
    ref = _reference(kind, return_sequences=return_sequences, **opts)
    x = keras.Input((T, D), batch_size=batch, name="x")
    inputs = [x, keras.Input((T,), batch_size=batch, dtype="bool", name="keep")] if use_mask else x
    layer = WrappedRecurrent(
        kind,
        [w.shape for w in ref.get_weights()],
        return_sequences=return_sequences,
        return_state=return_state,
        options=opts,
    )
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights(ref.get_weights())
    signature = [tf.TensorSpec([batch, T, D], tf.float32, name="x")]
    if use_mask:
        signature.append(tf.TensorSpec([batch, T], tf.bool, name="keep"))
    return model, ref, signature


def _feeds(batch, use_mask, seed):
    rng = np.random.default_rng(seed)
    feed = {"x": rng.standard_normal((batch, T, D)).astype("float32")}
    if use_mask:
        keep = rng.random((batch, T)) > 0.3
        keep[0, -2:] = False  # trailing padding
        keep[-1, 0] = False  # leading padding
        feed["keep"] = keep
    return feed


def _expected(ref, feed, return_state):
    out = [np.asarray(o) for o in ref(feed["x"], mask=feed.get("keep"))]
    return out if return_state else out[:1]


def _assert_close(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0)


def _export_archive(model, signature):
    """SavedModel written the way keras_seq exports: ExportArchive with an explicit signature."""
    path = tempfile.mkdtemp()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", lambda *a: model(list(a) if len(a) > 1 else a[0]), signature)
    archive.write_out(path, verbose=False)
    return path


def _to_tflite(model, signature):
    """Builtins-only conversion of the ExportArchive SavedModel."""
    converter = tf.lite.TFLiteConverter.from_saved_model(
        _export_archive(model, signature), signature_keys=["serve"]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def _tflite_runner(model_bytes):
    """One interpreter, invoked repeatedly (state must not leak from one call to the next)."""
    runner = Interpreter(model_content=model_bytes).get_signature_runner("serve")

    def run(feed):
        out = runner(**feed)
        return [out[k] for k in sorted(out)]

    return run


def _to_onnx(model, signature, custom_rewriter=True):
    fn = tf.function(lambda *a: model(list(a) if len(a) > 1 else a[0]), input_signature=signature)
    rewriters = onnx_custom_rewriters() if custom_rewriter else None
    proto, _ = tf2onnx.convert.from_function(
        fn, input_signature=signature, opset=17, custom_rewriter=rewriters
    )
    return proto


def _run_onnx(proto, feed):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


# --- eager parity with Keras -------------------------------------------------------------

PARITY = [
    ("lstm", {}),
    ("lstm", {"go_backwards": True}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("gru", {"reset_after": False, "go_backwards": True}),
    ("gru", {"reset_after": True, "go_backwards": True}),
    ("simple_rnn", {}),
    ("simple_rnn", {"activation": "relu", "go_backwards": True}),
]


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize(("kind", "opts"), PARITY)
def test_matches_keras(kind, opts, return_sequences):
    model, ref, _ = _case(kind, return_state=True, return_sequences=return_sequences, **opts)
    feed = _feeds(3, False, seed=1)
    _assert_close([np.asarray(o) for o in model(feed["x"])], _expected(ref, feed, True))


@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize(
    ("kind", "opts"),
    [
        ("lstm", {}),
        ("lstm", {"go_backwards": True}),
        ("gru", {"reset_after": False}),
        ("simple_rnn", {"go_backwards": True}),
    ],
)
def test_mask_matches_keras(kind, opts, zero_output_for_mask):
    model, ref, _ = _case(
        kind, use_mask=True, return_state=True, zero_output_for_mask=zero_output_for_mask, **opts
    )
    feed = _feeds(3, True, seed=2)
    _assert_close(
        [np.asarray(o) for o in model([feed["x"], feed["keep"]])], _expected(ref, feed, True)
    )


def test_savedmodel_reload_matches_keras():
    model, ref, _ = _case("lstm", return_state=True, go_backwards=True)
    path = _export_archive(model, [tf.TensorSpec([None, T, D], tf.float32, name="x")])
    feed = _feeds(3, False, seed=3)
    loaded = tf.saved_model.load(path)  # keep a reference: it owns the variables
    served = loaded.serve(feed["x"])
    _assert_close([np.asarray(o) for o in served], _expected(ref, feed, True))


# --- TFLite, builtins only -----------------------------------------------------------------


@pytest.mark.parametrize(
    "opts", [{}, {"go_backwards": True, "return_sequences": False}], ids=["fwd", "bwd_last"]
)
def test_lstm_tflite_static_batch_is_one_fused_op(opts):
    model, ref, signature = _case("lstm", batch=B, **opts)
    model_bytes = _to_tflite(model, signature)
    run = _tflite_runner(model_bytes)
    names = tflite_op_names(model_bytes)
    assert names.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    assert "WHILE" not in names
    for seed in (4, 5):  # a second invocation must not start from the first one's final state
        feed = _feeds(B, False, seed)
        _assert_close(run(feed), _expected(ref, feed, False))


def test_lstm_tflite_fused_layers_do_not_share_state():
    """Two fused LSTMs and a GRU all starting from zeros (a bidirectional-like stack)."""
    refs = [_reference("lstm", seed=1), _reference("lstm", seed=2, go_backwards=True)]
    refs.append(_reference("gru", seed=3, return_sequences=False, features=2 * U))
    x = keras.Input((T, D), batch_size=B, name="x")
    fw = WrappedRecurrent(
        "lstm",
        [w.shape for w in refs[0].get_weights()],
        return_sequences=True,
        return_state=False,
        options={},
    )
    bw = WrappedRecurrent(
        "lstm",
        [w.shape for w in refs[1].get_weights()],
        return_sequences=True,
        return_state=False,
        options={"go_backwards": True},
    )
    top = WrappedRecurrent(
        "gru",
        [w.shape for w in refs[2].get_weights()],
        return_sequences=False,
        return_state=False,
        options={},
    )
    model = keras.Model(x, top(keras.layers.Concatenate()([fw(x), bw(x)])))
    for layer, ref in zip((fw, bw, top), refs, strict=True):
        layer.set_weights(ref.get_weights())
    model_bytes = _to_tflite(model, [tf.TensorSpec([B, T, D], tf.float32, name="x")])
    run = _tflite_runner(model_bytes)
    assert tflite_op_names(model_bytes).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 2
    for seed in (6, 7):
        feed = _feeds(B, False, seed)
        both = np.concatenate(
            [np.asarray(refs[0](feed["x"])[0]), np.asarray(refs[1](feed["x"])[0])], -1
        )
        expected = np.asarray(refs[2](both)[0])
        _assert_close(run(feed), [expected])


def test_lstm_tflite_cell_state_keeps_the_loop():
    """The fused op cannot return c_T: consuming it keeps the (correct) WHILE loop."""
    model, ref, signature = _case("lstm", batch=B, return_state=True)
    model_bytes = _to_tflite(model, signature)
    run = _tflite_runner(model_bytes)
    names = tflite_op_names(model_bytes)
    assert "WHILE" in names and "UNIDIRECTIONAL_SEQUENCE_LSTM" not in names
    for seed in (8, 9):
        feed = _feeds(B, False, seed)
        _assert_close(run(feed), _expected(ref, feed, True))


TFLITE_LOOPS = [
    ("lstm", {"return_state": True}, None),
    ("gru", {"reset_after": True, "go_backwards": True, "return_state": True}, B),
    ("gru", {"reset_after": False, "return_sequences": False}, None),
    ("simple_rnn", {"activation": "relu", "return_state": True}, None),
    ("lstm", {"use_mask": True, "go_backwards": True, "return_state": True}, None),
    ("gru", {"use_mask": True, "zero_output_for_mask": True}, None),
    ("simple_rnn", {"use_mask": True, "return_state": True}, B),
]


@pytest.mark.parametrize(("kind", "opts", "batch"), TFLITE_LOOPS)
def test_tflite_builtins_while_loop(kind, opts, batch):
    model, ref, signature = _case(kind, batch=batch, **opts)
    model_bytes = _to_tflite(model, signature)
    run = _tflite_runner(model_bytes)
    names = tflite_op_names(model_bytes)
    assert "WHILE" in names
    assert all(n.isupper() for n in names)  # builtins only: no Flex or custom op
    use_mask, return_state = opts.get("use_mask", False), opts.get("return_state", False)
    for rows in [B] if batch else [B, 3]:
        feed = _feeds(rows, use_mask, seed=rows)
        _assert_close(run(feed), _expected(ref, feed, return_state))


# --- ONNX (tf2onnx, dynamic batch) ---------------------------------------------------------

ONNX_NATIVE = [
    ("lstm", {}, "LSTM"),
    ("lstm", {"go_backwards": True, "return_sequences": False, "return_state": True}, "LSTM"),
    ("gru", {"reset_after": True, "return_state": True}, "GRU"),
    ("gru", {"reset_after": False, "go_backwards": True, "return_state": True}, "GRU"),
    ("simple_rnn", {"return_state": True}, "RNN"),
    (
        "simple_rnn",
        {"activation": "sigmoid", "go_backwards": True, "return_sequences": False},
        "RNN",
    ),
]


@pytest.mark.parametrize(("kind", "opts", "node"), ONNX_NATIVE)
def test_onnx_native_node_at_dynamic_batch(kind, opts, node):
    model, ref, signature = _case(kind, **opts)
    proto = _to_onnx(model, signature)
    types = onnx_op_types(proto)
    assert types.count(node) == 1 and "Loop" not in types
    for rows in (B, 3):
        feed = _feeds(rows, False, seed=10 + rows)
        _assert_close(_run_onnx(proto, feed), _expected(ref, feed, opts.get("return_state", False)))


def test_onnx_native_without_custom_rewriters_for_lstm_and_keras_gru():
    for kind, opts, node in [ONNX_NATIVE[0], ONNX_NATIVE[2]]:
        model, _, signature = _case(kind, **opts)
        types = onnx_op_types(_to_onnx(model, signature, custom_rewriter=False))
        assert node in types and "Loop" not in types


@pytest.mark.parametrize(
    ("kind", "opts", "custom"),
    [
        ("simple_rnn", {"return_state": True}, False),
        ("simple_rnn", {"activation": "selu"}, True),
        ("lstm", {"use_mask": True, "return_state": True, "go_backwards": True}, True),
        ("gru", {"use_mask": True, "reset_after": False, "zero_output_for_mask": True}, True),
    ],
)
def test_onnx_loop_fallback_matches_keras(kind, opts, custom):
    model, ref, signature = _case(kind, **opts)
    proto = _to_onnx(model, signature, custom_rewriter=custom)
    types = onnx_op_types(proto)
    assert "Loop" in types and not {"LSTM", "GRU", "RNN"} & set(types)
    for rows in (B, 3):
        feed = _feeds(rows, opts.get("use_mask", False), seed=20 + rows)
        _assert_close(_run_onnx(proto, feed), _expected(ref, feed, opts.get("return_state", False)))


# --- helpers and errors --------------------------------------------------------------------


def test_tflite_op_names_lists_builtins_and_flex_ops():
    x = keras.Input((T, D), batch_size=None)
    model = keras.Model(x, keras.layers.LSTM(U)(x))  # Keras's own LSTM: TensorList ops -> Flex
    fn = tf.function(model.call, input_signature=[tf.TensorSpec([None, T, D], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], model)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    converter._experimental_lower_tensor_list_ops = False
    names = tflite_op_names(converter.convert())
    assert names.count("WHILE") == 1 and "TANH" in names  # loop body subgraph included
    assert {"FlexTensorListReserve", "FlexTensorListSetItem", "FlexTensorListStack"} <= set(names)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda x, h: export_graph.lstm(
                x[0], h, h, tf.zeros([D, 4 * U]), tf.zeros([U, 4 * U]), None
            ),
            "argument `x`",
        ),
        (
            lambda x, h: export_graph.lstm(
                x, h, h, tf.zeros([D, 3 * U]), tf.zeros([U, 4 * U]), None
            ),
            r"argument `kernel` of `lstm`. Expected shape \[4, 32\]",
        ),
        (
            lambda x, h: export_graph.gru(x, h, tf.zeros([D, 3 * U]), tf.zeros([U, 4 * U]), None),
            "argument `recurrent_kernel` of `gru`",
        ),
        (
            lambda x, h: export_graph.gru(
                x, h, tf.zeros([D, 3 * U]), tf.zeros([U, 3 * U]), tf.zeros([3 * U])
            ),
            r"argument `bias` of `gru`. Expected shape \[2, 24\]",
        ),
        (
            lambda x, h: export_graph.simple_rnn(
                x, h, tf.zeros([D, U]), tf.zeros([U, U]), None, activation="nope"
            ),
            "argument `activation`.*Received: activation='nope'",
        ),
    ],
)
def test_invalid_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call(tf.zeros([B, T, D]), tf.zeros([B, U]))


def test_lstm_tflite_fused_cell_state_is_not_clipped():
    """TensorFlow's LSTM fusion sets cell_clip = 10 on the fused op; Keras does not clip."""
    from keras_seq.export.tflite import unclip_lstm_cells

    steps = 22
    ref = keras.layers.LSTM(U, return_sequences=True)
    ref(np.zeros((1, steps, 1), "float32"))
    kernel, bias = np.zeros((1, 4 * U), "float32"), np.zeros(4 * U, "float32")
    bias[: 2 * U] = 10.0  # input and forget gates ~1: c adds the candidate at every step
    kernel[0, 2 * U : 3 * U] = 5.0  # candidate tanh(5 x) ~ x = +-1
    ref.set_weights([kernel, np.zeros((U, 4 * U), "float32"), bias])
    x = keras.Input((steps, 1), batch_size=1, name="x")
    layer = WrappedRecurrent("lstm", [w.shape for w in ref.get_weights()],
                             return_sequences=True, return_state=False, options={})
    model = keras.Model(x, layer(x))
    layer.set_weights(ref.get_weights())
    clipped = _to_tflite(model, [tf.TensorSpec([1, steps, 1], tf.float32, name="x")])
    assert tflite_op_names(clipped).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1
    # c climbs to 12 and comes back down to 2; clipped at 10, it comes down to 0.
    feed = {"x": np.concatenate([np.ones(12), -np.ones(10)]).reshape(1, steps, 1).astype("float32")}
    expected = np.asarray(ref(feed["x"]))
    assert np.abs(_tflite_runner(clipped)(feed)[0] - expected).max() > 0.4
    _assert_close(_tflite_runner(unclip_lstm_cells(clipped))(feed), [expected])
    plain = _to_tflite(*_case("gru", batch=B)[::2])
    assert unclip_lstm_cells(plain) is plain  # nothing to change

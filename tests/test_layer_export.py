"""keras_seq's layers are export-ready: fused TFLite LSTM, builtins-only GRU / SimpleRNN,
native ONNX LSTM / GRU / RNN nodes, each run in its real runtime and equal to the Keras model.
"""

import tempfile

import keras
import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf
import tf2onnx
from ai_edge_litert.interpreter import Interpreter

from keras_seq import layers
from keras_seq.ops import export_mode
from keras_seq.ops.inspect import onnx_op_types, tflite_op_names
from keras_seq.ops.onnx_rewriters import onnx_custom_rewriters

T, D, U = 5, 4, 6
ATOL = 1e-5

LAYERS = {
    "lstm": lambda: layers.LSTM(U, return_sequences=True),
    "lstm_backwards_last": lambda: layers.LSTM(U, go_backwards=True),
    "gru": lambda: layers.GRU(U, return_sequences=True),
    "gru_cho": lambda: layers.GRU(U, reset_after=False),
    "simple_rnn": lambda: layers.SimpleRNN(U, return_sequences=True),
    "bidirectional_lstm": lambda: layers.Bidirectional(layers.LSTM(U, return_sequences=True)),
    "stacked_gru": lambda: layers.GRU(U, num_layers=2),
}
RECURRENT_OPS = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}
# Cells no converter has a native op for: their own step in a TFLite WHILE / ONNX Loop.
GENERIC = {
    "peephole_last": lambda: layers.LSTM(U, peephole=True),
    "coupled_backwards": lambda: layers.LSTM(U, coupled_gates=True, go_backwards=True,
                                             return_sequences=True),
    "elu_rnn_last": lambda: layers.SimpleRNN(U, activation="elu"),
    "hard_sigmoid_gru": lambda: layers.GRU(U, recurrent_activation="hard_sigmoid",
                                           return_sequences=True),
    "bidirectional_peephole_stack": lambda: layers.Bidirectional(
        layers.LSTM(U, peephole=True, num_layers=2)),
}


def make_model(name, batch):
    layer = {**LAYERS, **GENERIC}[name]()
    inputs = keras.Input((T, D), batch_size=batch, name="x")
    model = keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model


def tflite_bytes(model, batch):
    """ExportArchive (traced in export mode) -> builtins-only TFLite."""
    path = tempfile.mkdtemp()
    with export_mode():
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve", model.call, [tf.TensorSpec([batch, T, D], tf.float32, name="x")]
        )
        archive.write_out(path, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["serve"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def onnx_proto(model):
    """tf2onnx of `model.call` traced in export mode, with a dynamic batch."""
    with export_mode():
        fn = tf.function(model.call, input_signature=[tf.TensorSpec([None, T, D], tf.float32, "x")])
        proto, _ = tf2onnx.convert.from_function(
            fn, input_signature=fn.input_signature, opset=17,
            custom_rewriter=onnx_custom_rewriters(),
        )
    return proto


def run_tflite(content, x):
    interpreter = Interpreter(model_content=content)
    runner = interpreter.get_signature_runner("serve")
    (out,) = runner(x=x).values()
    return out


@pytest.mark.parametrize("name", LAYERS)
def test_tflite_builtins_only_and_equal(name):
    model = make_model(name, batch=1)
    content = tflite_bytes(model, batch=1)
    ops = tflite_op_names(content)
    assert not any(op.startswith("Flex") for op in ops), ops
    if name.startswith(("lstm", "bidirectional_lstm")):
        expected = 2 if name.startswith("bidirectional") else 1
        assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == expected, ops
        assert "WHILE" not in ops, ops
    else:
        assert "WHILE" in ops, ops  # no fused GRU / RNN op exists in TFLite
    rng = np.random.default_rng(1)
    for _ in range(2):  # twice: the fused op must not keep state between invocations
        x = rng.normal(size=(1, T, D)).astype("float32")
        np.testing.assert_allclose(run_tflite(content, x), model(x), atol=ATOL)


def test_tflite_dynamic_batch_gru_and_rnn():
    for name in ("gru", "simple_rnn"):
        model = make_model(name, batch=None)
        content = tflite_bytes(model, batch=None)
        assert not any(op.startswith("Flex") for op in tflite_op_names(content))
        for batch in (3, 1):  # the signature runner resizes to each request's batch
            x = np.random.default_rng(batch).normal(size=(batch, T, D)).astype("float32")
            np.testing.assert_allclose(run_tflite(content, x), model(x), atol=ATOL)


@pytest.mark.parametrize("name", LAYERS)
def test_onnx_native_recurrent_nodes(name):
    model = make_model(name, batch=None)
    proto = onnx_proto(model)
    ops = onnx_op_types(proto)
    kind = next(k for k in RECURRENT_OPS if k in name)
    assert RECURRENT_OPS[kind] in ops and "Loop" not in ops, ops
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 4):  # dynamic batch
        x = np.random.default_rng(batch).normal(size=(batch, T, D)).astype("float32")
        (out,) = session.run(None, {session.get_inputs()[0].name: x})
        np.testing.assert_allclose(out, model(x), atol=ATOL)


@pytest.mark.parametrize("name", GENERIC)
def test_other_cells_export_as_loops_equal_to_keras(name):
    # Their training graph's loop converted to neither: TFLite refused its TensorListReserve,
    # and ONNX Runtime refused the Loop of a last-output layer (int32/int64 bound).
    model = make_model(name, batch=1)
    content = tflite_bytes(model, batch=1)
    ops = tflite_op_names(content)
    assert "WHILE" in ops and not any(op.startswith("Flex") for op in ops), ops
    x = np.random.default_rng(1).normal(size=(1, T, D)).astype("float32")
    np.testing.assert_allclose(run_tflite(content, x), model(x), atol=ATOL)

    model = make_model(name, batch=None)
    proto = onnx_proto(model)
    assert "Loop" in onnx_op_types(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(3, T, D)).astype("float32")
    (out,) = session.run(None, {session.get_inputs()[0].name: x})
    np.testing.assert_allclose(out, model(x), atol=ATOL)


def test_export_graph_equals_training_graph_with_masks():
    """Inside export_mode the layers trace other loops; they compute the same function."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, T, D)).astype("float32")
    mask = np.array([[1] * T, [1] * 3 + [0] * 2, [1] + [0] * 4], bool)
    for make in {**LAYERS, **GENERIC}.values():
        layer = make()
        train_graph = layer(x, mask=mask)
        with export_mode():
            export_graph = tf.function(lambda x, m, layer=layer: layer(x, mask=m))(x, mask)
        np.testing.assert_allclose(export_graph, train_graph, atol=ATOL)

"""TFLite for phones: builtin ops only, batch 1, one file with every numeric signature.

How it is built (../shared/DESIGN.md section 4): the task's numeric signatures are traced inside
:func:`keras_seq.ops.export_mode` with a STATIC batch of 1 (the fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` needs a static batch), written as a SavedModel with
``keras.export.ExportArchive`` (weights become variables the converter freezes into
constants; ``from_concrete_functions`` on the live model leaves variable handles that fail at
invoke) and converted with ``TFLiteConverter.from_saved_model`` restricted to
``TFLITE_BUILTINS``. A Flex or custom op in the result is an error.

Inputs: token ids ``[1, T]`` with ``T`` **resizable per request** (``shape_signature``
``[1, -1]``; ``SignatureRunner`` resizes on call, C++/Java call ``ResizeInputTensor``). An
example is fed at its exact length, never padded.

**Input contract: unpadded.** The signatures are traced inside
``export_mode(padding="none")``: every row is one text at its exact length, so the models'
padding masks are all true and the recurrent layers drop them. That is what lets an LSTM whose
cell state is not consumed become one ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (the fused op has no
mask or sequence-length input). The price: a padded input (id 0 steps) is NOT masked in these
files and changes the outputs. A GRU, a SimpleRNN and an LSTM whose final cell state is an
output (the seq2seq encoder hands ``c`` to the decoder) stay ``WHILE`` loops of builtins
(exact, slower). Seq2seq files hold ``encode``, ``decode_step`` and ``translate`` (a whole
greedy decode in one ``WHILE`` loop).

``quantize``: ``"none"`` writes ``model.tflite`` (float32) only; ``"dynamic"`` (int8 weights,
float activations), ``"float16"`` (float16 weights) and ``"int8"`` (int8 weights and
activations calibrated on the run's real samples, float fallback for kernels without an
int8 version; inputs and outputs stay int32/float32; the quantizer's mistakes repaired by
:func:`repair_int8_lstms` and :func:`requantize_raw_copies`) also write
``model.<quantize>.tflite``.
Graphs with ``WHILE`` loops (GRU, SimpleRNN, state-returning LSTMs, seq2seq) are calibrated
with two fixes to TensorFlow's own steps (:func:`int8_calibration_fixes`): its calibrator
crashed on them (SIGSEGV), and greedy decoding's banned ids gave a scale of 1e36. In the
loop, TensorFlow's quantizer keeps the loop variables float and quantizes them at the start
of every step, so a step also re-quantizes the whole input sequence (linear in its length).
``"dynamic"`` leaves weights under 1024 elements in float, and every weight of a fused LSTM
that has one, so tiny models do not shrink.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keras_seq.export.job import ExportJob
from keras_seq.export.registry import Exporter, register_exporter

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "QUANTIZE", "RAW_COPIES", "TFLiteExporter", "bound_select_ranges", "convert",
    "int8_calibration_fixes", "lstm_output_ranges", "lstm_outputs", "repair_int8_lstms",
    "requantize_raw_copies", "tflite_ops", "unalias_while_bodies", "unclip_lstm_cells",
]

QUANTIZE = ("none", "dynamic", "float16", "int8")


def tflite_ops(model_bytes: bytes) -> list[str]:
    """Operator names of a ``.tflite`` flatbuffer (all subgraphs, in order)."""
    from keras_seq.ops.inspect import tflite_op_names

    return tflite_op_names(model_bytes)


def unclip_lstm_cells(model_bytes: bytes) -> bytes:
    """`model_bytes` with the cell clip of every ``UNIDIRECTIONAL_SEQUENCE_LSTM`` removed.

    TensorFlow's fusion of a Keras LSTM sets ``cell_clip = 10`` on the fused op (Keras does
    not clip): a trained cell state beyond +-10 then gives other outputs than the Keras model.
    A clip of 0 is no clip. Files without the fused op come back unchanged."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    changed = False
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            options = op.builtinOptions
            if isinstance(options, schema.UnidirectionalSequenceLSTMOptionsT) and options.cellClip:
                options.cellClip = 0.0
                changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else model_bytes


def _opcodes(model: Any) -> list[str | None]:
    """The builtin name of each operator code of a flatbuffer object (None for custom ops)."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    # Codes above 127 live in `builtinCode`; old files only fill `deprecatedBuiltinCode`.
    return [
        None if code == schema.BuiltinOperator.CUSTOM else names.get(code)
        for code in (max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes or [])
    ]


def _fused_lstms(model: Any) -> dict[str, tuple[int, list[Any]]]:
    """Signature key -> (its subgraph, its fused LSTM operators in graph order)."""
    codes = _opcodes(model)
    found = {}
    for signature in model.signatureDefs or []:
        subgraph = model.subgraphs[signature.subgraphIndex]
        ops = [op for op in subgraph.operators or []
               if codes[op.opcodeIndex] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
        found[signature.signatureKey.decode()] = (signature.subgraphIndex, ops)
    return found


def _lstm_runs(
    model_bytes: bytes, signature: str, feeds: Iterable[dict[str, Any]]
) -> Iterator[tuple[Any, Any, int, list[Any], dict[str, np.ndarray]]]:
    """Run ``signature`` on each feed (one interpreter for all, every tensor kept); yields
    ``(interpreter, flatbuffer object, subgraph index, fused LSTM operators, outputs)``."""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    subgraph, ops = _fused_lstms(model)[signature]
    interpreter = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
    runner = interpreter.get_signature_runner(signature)
    for feed in feeds:
        outputs = runner(**feed)
        yield interpreter, model, subgraph, ops, outputs


def lstm_outputs(
    model_bytes: bytes, signature: str, feeds: Iterable[dict[str, Any]]
) -> Iterator[tuple[list[tuple[np.ndarray, float]], dict[str, np.ndarray]]]:
    """Run ``signature`` of a ``.tflite`` file on each feed (one interpreter for all).

    Yields, per feed, each fused LSTM's output sequence in graph order as ``(values, scale)``
    (int8 dequantized; scale 0 in float) and the signature's outputs."""
    import numpy as np

    for interpreter, model, subgraph, ops, outputs in _lstm_runs(model_bytes, signature, feeds):
        sequences = []
        for op in ops:
            quantization = _params(model.subgraphs[subgraph].tensors[op.outputs[0]])
            h = interpreter.get_tensor(op.outputs[0], subgraph).astype(np.float64)
            scale, zero = quantization or (0.0, 0)
            sequences.append(((h - zero) * scale if quantization else h, scale))
        yield sequences, outputs


def _constant(model: Any, tensor: Any) -> tuple[np.ndarray, float]:
    """A constant tensor's values (float32, or int8 dequantized per tensor or per output
    channel) and its quantization step (0 in float)."""
    import numpy as np

    data = np.asarray(model.buffers[tensor.buffer].data, np.uint8)
    q = tensor.quantization
    if q is None or q.scale is None:
        return data.view(np.float32).reshape(tensor.shape).astype(np.float64), 0.0
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zeroPoint, np.float64)
    if scale.size > 1:  # per channel, along the first (output) axis
        scale, zero = scale[:, None], zero[:, None]
    values = data.view(np.int8).reshape(tensor.shape).astype(np.float64)
    return (values - zero) * scale, float(scale.max())


def _cell_states(model: Any, subgraph: int, op: Any, x: np.ndarray) -> np.ndarray:
    """Every cell state ``c_t`` of a float fused LSTM on its input ``x``, recomputed in NumPy
    from the file's weights (the op does not output them)."""
    import numpy as np

    tensors = model.subgraphs[subgraph].tensors

    def weight(position: int) -> np.ndarray:
        return _constant(model, tensors[op.inputs[position]])[0]

    kernels = [weight(k) for k in (1, 2, 3, 4)]  # gates i, f, c, o: [units, input]
    recurrent = [weight(k) for k in (5, 6, 7, 8)]  # [units, units]
    biases = [weight(k) if op.inputs[k] >= 0 else 0.0 for k in (12, 13, 14, 15)]
    x = x.astype(np.float64)
    if not op.builtinOptions.timeMajor:
        x = np.swapaxes(x, 0, 1)  # [T, B, I]
    h = np.zeros((x.shape[1], recurrent[0].shape[1]))
    c = np.zeros((x.shape[1], kernels[0].shape[0]))
    cells = []
    for x_t in x:
        i, f, g, o = (x_t @ w.T + h @ r.T + b for w, r, b in zip(kernels, recurrent, biases, strict=True))
        c = c / (1 + np.exp(-f)) + np.tanh(g) / (1 + np.exp(-i))
        h = np.tanh(c) / (1 + np.exp(-o))
        cells.append(c)
    return np.stack(cells) if cells else np.zeros((0, *c.shape))


def lstm_output_ranges(
    float_model: bytes, feeds: Mapping[str, list[dict[str, Any]]]
) -> dict[str, list[tuple[float, float, float]]]:
    """Signature key -> ``(min, max)`` of each fused LSTM's output over ``feeds``, zero
    included, and the largest ``|c_t|`` of its cell state.

    Run on the float file with the int8 calibration feeds: every ``h_t`` and ``c_t`` the
    recurrence took, which its int8 and int16 states have to hold (see
    :func:`repair_int8_lstms`)."""
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model))
    ranges = {}
    for key, (_, ops) in _fused_lstms(model).items():
        low, high, cell = [0.0] * len(ops), [0.0] * len(ops), [0.0] * len(ops)
        for interpreter, _, subgraph, _, _ in _lstm_runs(float_model, key, feeds.get(key, [])):
            for k, op in enumerate(ops):
                h = interpreter.get_tensor(op.outputs[0], subgraph)
                x = interpreter.get_tensor(op.inputs[0], subgraph)
                low[k], high[k] = min(low[k], float(h.min())), max(high[k], float(h.max()))
                cell[k] = max(cell[k], float(np.abs(_cell_states(model, subgraph, op, x)).max(
                    initial=0.0)))
        ranges[key] = list(zip(low, high, cell, strict=True))
    return ranges


def _check_lstm_pairing(float_model: bytes, int8_model: bytes) -> None:
    """Raise unless each signature's fused LSTMs pair up, in order, between the two files.

    :func:`repair_int8_lstms` gives the k-th int8 LSTM the range of the k-th float one; the
    pairing is checked on their input-to-forget weights, which int8 holds to within a
    quantization step."""
    import numpy as np
    from tensorflow.lite.tools import flatbuffer_utils

    def forget_weights(model: Any) -> dict[str, list[tuple[np.ndarray, float]]]:
        return {
            key: [_constant(model, model.subgraphs[index].tensors[op.inputs[2]]) for op in ops]
            for key, (index, ops) in _fused_lstms(model).items()
        }

    exact = forget_weights(flatbuffer_utils.convert_bytearray_to_object(bytearray(float_model)))
    quantized = forget_weights(flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_model)))
    for key, pairs in quantized.items():
        floats = exact.get(key, [])
        if len(floats) != len(pairs) or any(
            want.shape != got.shape or np.abs(want - got).max() > step
            for (want, _), (got, step) in zip(floats, pairs, strict=True)
        ):
            raise RuntimeError(
                f"The fused LSTMs of TFLite signature {key!r} do not pair up in order between "
                "the float and int8 files (count or weights differ), so the int8 file's LSTM "
                "states cannot be repaired. Export without --quantize int8."
            )


def repair_int8_lstms(
    model_bytes: bytes, ranges: Mapping[str, list[tuple[float, float, float]]]
) -> bytes:
    """`model_bytes` with the state quantization of every int8 fused LSTM made sound.

    ``ranges``: :func:`lstm_output_ranges` of the float file on the calibration feeds (the
    k-th LSTM of a signature takes the k-th range; ``convert`` checks that pairing first).

    TensorFlow's quantizer gives the integer ``UNIDIRECTIONAL_SEQUENCE_LSTM`` kernel state
    quantizations it silently computes wrong with:

    - **h state unlike the output.** The kernel computes ``h_t`` in the quantization of its
      hidden intermediate (intermediate 4), reads ``h_{t-1}`` from its output-state operand
      (input 18) and copies the raw int8 values of ``h_t`` into its output, so the three must
      be quantized alike. The quantizer ties the first two, to the range the state operand
      held when calibrated (zero and the final ``h_T``, not every ``h_t``), and gives the
      output its own, which a same-scale consumer then changes: a Bidirectional's
      ``CONCATENATION`` gives both directions one scale (the forward LSTM's features reached
      the next layer about 1.3x too large: a `names-de-it` BiLSTM agreed with Keras on 93.8%);
      max pooling narrows it to the range of the maxima. The state, the hidden intermediate and
      the output now share one quantization: the output's when it holds every ``h_t`` of
      ``ranges``, else that range's. A ``QUANTIZE`` (int8 -> int8) of the initial state is
      inserted before the LSTM (a zero state stays exactly zero) and, where the output's
      consumers need another quantization, one of the output after it.
    - **Cell state too narrow.** The int16 cell state gets a power-of-two scale from its
      calibrated range, which is also only zero and the final ``c_T``: a cell state that
      climbed to 11.5 and came back to 1.8 saturated at 2. It is widened to the smallest power
      of two that holds every ``|c_t|`` of ``ranges``, and to no less than 2**-15:
      ``tanh(c)`` is dispatched on its integer bits (``15 + log2 scale``) and skipped when
      they are negative, leaving ``h`` as scratch values (an LSTM whose calibrated cell
      state spanned less than +-1, an untrained one in the tests, gave one saturated output
      for every step). Its initial state, zero, is zero in any scale.

    Files with neither come back unchanged."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    def holding(out: Any, low: float, high: float) -> tuple[float, int]:
        """The output's int8 quantization if it holds [low, high], else that range's."""
        scale, zero = _params(out)
        if (-128 - zero) * scale <= low + scale / 2 and (127 - zero) * scale >= high - scale / 2:
            return scale, zero
        if high <= low:
            return scale, zero
        scale = (high - low) / 255
        return scale, int(min(127, max(-128, round(-128 - low / scale))))

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    changed = False
    for key, (index, lstms) in _fused_lstms(model).items():
        subgraph = model.subgraphs[index]
        if len(ranges.get(key, [])) != len(lstms):
            raise RuntimeError(
                f"int8 TFLite signature {key!r} has {len(lstms)} fused LSTMs; the float file "
                f"had {len(ranges.get(key, []))}: their states cannot be matched for repair"
            )
        before: dict[int, Any] = {}
        after: dict[int, Any] = {}
        for op, (low, high, cell_bound) in zip(lstms, ranges[key], strict=True):
            out = subgraph.tensors[op.outputs[0]]
            if (
                out.type != schema.TensorType.INT8
                or op.inputs[18] < 0
                or op.inputs[19] < 0
                or op.intermediates is None
                or len(op.intermediates) != 5  # the integer kernel's gates and hidden
            ):
                continue
            cell = subgraph.tensors[op.inputs[19]].quantization
            # The kernel takes log2 of the scale: only powers of two hold.
            wide = 2.0 ** max(-15, math.ceil(math.log2(max(cell_bound, 1e-30) / 32767)))
            if cell.scale is not None and cell.scale[0] < wide:
                cell.scale = [wide]
                changed = True
            state = holding(out, low, high)
            old = subgraph.tensors[op.inputs[18]]
            if _params(old) != state:
                new = _twin(subgraph, op.inputs[18], b"/requantized", state)
                old.isVariable = False  # the LSTM overwrites `new` now, not `old`
                before[id(op)] = _quantize_op(model, op.inputs[18], new)
                op.inputs[18] = new
                changed = True
            hidden = subgraph.tensors[op.intermediates[4]]
            if _params(hidden) != state:
                hidden.quantization.scale, hidden.quantization.zeroPoint = [state[0]], [state[1]]
                changed = True
            if _params(out) != state:
                raw = _twin(subgraph, op.outputs[0], b"/state_quantized", state)
                after[id(op)] = _quantize_op(model, raw, op.outputs[0])
                op.outputs[0] = raw
                changed = True
        subgraph.operators = [
            new_op
            for op in subgraph.operators
            for new_op in (before.get(id(op)), op, after.get(id(op)))
            if new_op is not None
        ]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else model_bytes


# int8 kernels that move values without requantizing them: they read an input quantized unlike
# their output in the output's quantization.
RAW_COPIES = (
    "EXPAND_DIMS", "GATHER", "RESHAPE", "REVERSE_V2", "SELECT", "SELECT_V2", "SLICE",
    "SQUEEZE", "STRIDED_SLICE", "TRANSPOSE",
)


def requantize_raw_copies(model_bytes: bytes) -> bytes:
    """`model_bytes` with a ``QUANTIZE`` before every raw-copy input quantized unlike its output.

    TensorFlow's quantizer propagates one quantization through ops like ``REVERSE_V2``, whose
    int8 kernels copy values as they are, but can leave an input with another one: a stacked
    BiLSTM with max pooling reversed its second backward LSTM's output (scale 0.0072) into a
    tensor that the pooling had narrowed (scale 0.0051), so those features were read about 1.4x
    too small, 65 quantization steps off (before pooling dropped the mask of unpadded inputs;
    a one-epoch `sst2` BiLSTM's still reads 0.00030 into 0.00034). The inserted ``QUANTIZE``
    (int8 -> int8) maps the input to the output's quantization first. Files without such
    inputs come back unchanged."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    codes = _opcodes(model)
    changed = False
    for subgraph in model.subgraphs or []:
        operators = []
        for op in subgraph.operators or []:
            out = subgraph.tensors[op.outputs[0]] if len(op.outputs) else None
            if codes[op.opcodeIndex] in RAW_COPIES and out is not None and _params(out):
                for position, index in enumerate(op.inputs):
                    tensor = subgraph.tensors[index] if index >= 0 else None
                    if (
                        tensor is not None
                        and tensor.type == out.type
                        and _params(tensor)
                        and _params(tensor) != _params(out)
                    ):
                        twin = _twin(subgraph, index, b"/requantized", _params(out))
                        operators.append(_quantize_op(model, index, twin))
                        op.inputs[position] = twin
                        changed = True
            operators.append(op)
        subgraph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else model_bytes


def _params(tensor: Any) -> tuple[float, int] | None:
    """A per-tensor quantization as ``(scale, zero_point)``; None when there is none."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) != 1:
        return None
    return float(q.scale[0]), int(q.zeroPoint[0])


def _twin(
    subgraph: Any, index: int, suffix: bytes, quantization: tuple[float, int] | None
) -> int:
    """Append a copy of tensor ``index`` (its name + ``suffix``, its type and shape, no data)
    quantized as ``quantization``, or a float activation with no quantization when that is
    None; returns its index."""
    twin = copy.deepcopy(subgraph.tensors[index])
    twin.name += suffix
    twin.buffer = 0  # an activation: the empty buffer, even where the original was a constant
    if quantization is None:
        twin.quantization, twin.isVariable = None, False
    else:
        twin.quantization.scale, twin.quantization.zeroPoint = [quantization[0]], [quantization[1]]
        twin.quantization.min = twin.quantization.max = None
    subgraph.tensors.append(twin)
    return len(subgraph.tensors) - 1


def _operator(model: Any, name: str, inputs: list[int], outputs: list[int], version: int = 1) -> Any:
    """A builtin operator ``name`` (its operator code added if absent)."""
    from tensorflow.lite.python import schema_py_generated as schema

    codes = _opcodes(model)
    if name not in codes:
        code = schema.OperatorCodeT()
        code.builtinCode = getattr(schema.BuiltinOperator, name)
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        code.version = version
        model.operatorCodes.append(code)
        codes.append(name)
    op = schema.OperatorT()
    op.opcodeIndex = codes.index(name)
    op.inputs, op.outputs = list(inputs), list(outputs)
    return op


def _quantize_op(model: Any, source: int, target: int) -> Any:
    """A ``QUANTIZE`` operator from tensor ``source`` to ``target``."""
    return _operator(model, "QUANTIZE", [source], [target], version=2)


def unalias_while_bodies(model_bytes: bytes) -> bytes:
    """`model_bytes` where no ``WHILE`` body returns one of its inputs as that same tensor.

    Since TensorFlow 2.14 the ``WHILE`` kernel frees such an output (a loop invariant: the
    sequence length, the input sequence) when it prepares; TensorFlow's int8 calibrator has
    listed it for logging by then and reads its null data, a SIGSEGV (tensorflow#75140) on
    every GRU, SimpleRNN and seq2seq graph. Each pass-through gets a tensor of its own, written
    by ``x + 0`` (``x OR x`` for booleans); the quantizer folds the float ones away again.
    Files without such outputs come back unchanged."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    zeros = {schema.TensorType.FLOAT32: np.float32, schema.TensorType.INT32: np.int32,
             schema.TensorType.INT64: np.int64}
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    bodies = {op.builtinOptions.bodySubgraphIndex for subgraph in model.subgraphs
              for op in subgraph.operators or []
              if isinstance(op.builtinOptions, schema.WhileOptionsT)}
    changed = False
    for body in sorted(bodies):
        subgraph = model.subgraphs[body]
        outputs = list(subgraph.outputs)
        for position, (given, returned) in enumerate(zip(subgraph.inputs, outputs, strict=True)):
            if given != returned:
                continue
            source = subgraph.tensors[given]
            copy_ = _twin(subgraph, given, b"/unaliased", None)
            if source.type in zeros:
                zero = _twin(subgraph, given, b"/zero", None)
                subgraph.tensors[zero].shape = []
                subgraph.tensors[zero].shapeSignature = None
                buffer = schema.BufferT()
                buffer.data = np.frombuffer(np.zeros((), zeros[source.type]).tobytes(), np.uint8)
                model.buffers.append(buffer)
                subgraph.tensors[zero].buffer = len(model.buffers) - 1
                op = _operator(model, "ADD", [given, zero], [copy_])
                op.builtinOptionsType = schema.BuiltinOptions.AddOptions
                op.builtinOptions = schema.AddOptionsT()
            elif source.type == schema.TensorType.BOOL:
                op = _operator(model, "LOGICAL_OR", [given, given], [copy_])
            else:
                raise NotImplementedError(
                    f"a WHILE loop passes a tensor of TFLite type {source.type} through; "
                    "int8 calibration handles float32, int32, int64 and bool ones"
                )
            subgraph.operators.append(op)
            outputs[position] = copy_
            changed = True
        subgraph.outputs = outputs
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else model_bytes


# A calibrated bound this far out is a banned id's -inf (logged as -FLT_MAX), not a score.
_BANNED_BOUND = 1e30


def bound_select_ranges(calibrated: bytes) -> bytes:
    """A calibrated `SELECT_V2` whose range a banned id's ``-inf`` stretched gets the range of
    its other inputs.

    Greedy decoding bans padding and the start id with ``-inf`` (``decoding._ban``): the
    calibrated range of that ``SELECT_V2`` reached -FLT_MAX, its int8 scale 1.3e36, every
    score quantized alike and ``ARG_MAX`` returned the first id (a seq2seq ``translate`` gave
    ``[1, 1, 1, ...]`` for every input). With its scores' range, the ``-inf`` quantizes to the
    lowest int8 value, still below every score. Files without such a range come back
    unchanged."""
    from tensorflow.lite.tools import flatbuffer_utils

    def bounds(tensor: Any) -> tuple[float, float] | None:
        q = tensor.quantization
        if q is None or q.min is None or len(q.min) != 1:
            return None
        return float(q.min[0]), float(q.max[0])

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    codes = _opcodes(model)
    changed = False
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            if codes[op.opcodeIndex] not in ("SELECT", "SELECT_V2"):
                continue
            out = subgraph.tensors[op.outputs[0]]
            if bounds(out) is None or max(map(abs, bounds(out))) < _BANNED_BOUND:
                continue
            finite = [b for b in (bounds(subgraph.tensors[i]) for i in op.inputs[1:])
                      if b is not None and max(map(abs, b)) < _BANNED_BOUND]
            if finite:
                out.quantization.min = [min(low for low, _ in finite)]
                out.quantization.max = [max(high for _, high in finite)]
                changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)) if changed else calibrated


@contextlib.contextmanager
def int8_calibration_fixes() -> Iterator[None]:
    """Within: TensorFlow's int8 conversion unaliases ``WHILE`` bodies before it calibrates
    (:func:`unalias_while_bodies`) and bounds ``-inf``-stretched ``SELECT_V2`` ranges before
    it quantizes (:func:`bound_select_ranges`).

    Its own steps all still run (float conversion, calibration, MLIR quantizer); the two
    module functions it calls between them are wrapped for the duration, which affects every
    conversion in the process (an export converts one at a time). They are private names of
    TensorFlow 2.21, the version ``pyproject.toml`` pins; if they are gone, this says so."""
    from tensorflow.lite.python import lite

    calibrator = getattr(lite, "_calibrator", None)
    if not callable(getattr(calibrator, "add_intermediate_tensors", None)) or not callable(
        getattr(lite, "_mlir_quantize", None)
    ):
        raise RuntimeError(
            "int8 conversion: tensorflow.lite.python.lite no longer has `_calibrator."
            "add_intermediate_tensors` and `_mlir_quantize` (TensorFlow 2.21 has them); "
            "keras_seq cannot apply its WHILE-loop calibration fixes to this version"
        )
    add_intermediate_tensors, mlir_quantize = calibrator.add_intermediate_tensors, lite._mlir_quantize
    calibrator.add_intermediate_tensors = lambda model: unalias_while_bodies(
        add_intermediate_tensors(model))
    lite._mlir_quantize = lambda calibrated, *args, **kwargs: mlir_quantize(
        bound_select_ranges(calibrated), *args, **kwargs)
    try:
        yield
    finally:
        calibrator.add_intermediate_tensors = add_intermediate_tensors
        lite._mlir_quantize = mlir_quantize


def _trace(job: ExportJob, directory: Path) -> list[str]:
    """Write the batch-1 export-mode signatures as a SavedModel; returns their names.

    Traced in ``export_mode(padding="none")``: TFLite inputs are unpadded (one text at its
    exact length), so the padding masks are all true and dropped, which keeps an LSTM fusable
    into one ``UNIDIRECTIONAL_SEQUENCE_LSTM`` (a mask forces a ``WHILE`` loop).
    """
    import keras

    from keras_seq.ops import export_mode

    signatures = [s for s in job.graphs.signatures() if "tflite" in s.formats]
    with export_mode(padding="none"):
        archive = keras.export.ExportArchive()
        archive.track(job.graphs.model)
        for signature in signatures:
            archive.add_endpoint(signature.name, signature.fn, input_signature=[signature.specs(1)])
        archive.write_out(str(directory), verbose=False)
    return [s.name for s in signatures]


def _calibration(
    job: ExportJob, names: list[str], one_shape: Collection[str] = ()
) -> dict[str, list[dict[str, Any]]]:
    """The int8 calibration feeds of each signature: at most 32, spread evenly over its own.

    A signature called more than once per sample (``decode_step``: once per token), and those
    in `one_shape`, keep only the feeds of their most common input shapes. ``decode_step`` is
    so calibrated at one encoder length, on the tokens of every sample of that length: fed
    several lengths, TensorFlow's calibrator failed on Luong "dot" attention, and silently gave
    a `dates` file that agreed with Keras on 0%. (`dates`' int8 ``decode_step``, max|diff|
    from Keras: 4.3e-4 this way, 1.8e-3 on the first 32 feeds, the first 3 samples' tokens.)"""
    samples = len(range(*job.calibration)) if job.calibration else 0
    calibration = {}
    for name in names:
        feeds = [dict(feed) for feed in job.feeds.get(name, [])]
        if feeds and (name in one_shape or len(feeds) > samples):
            shapes = [_shapes(feed) for feed in feeds]
            common = max(shapes, key=shapes.count)
            feeds = [feed for feed, shape in zip(feeds, shapes, strict=True) if shape == common]
        n = min(32, len(feeds))
        calibration[name] = [feeds[i * len(feeds) // n] for i in range(n)]
    return calibration


def _shapes(feed: Mapping[str, Any]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    import numpy as np

    return tuple((key, np.shape(value)) for key, value in sorted(feed.items()))


def _representative(
    job: ExportJob, names: list[str], one_shape: Collection[str] = ()
) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, feeds in _calibration(job, names, one_shape).items():
        for feed in feeds:
            yield name, feed


def _convert_int8(converter: Any, job: ExportJob, names: list[str]) -> bytes:
    """``converter.convert()``, calibrated on samples of one shape where it must be.

    TensorFlow's calibrator can keep a kernel prepared at the first sample's shapes: the
    ``decode_step`` of Luong "dot" attention, whose encoder outputs feed ``BATCH_MATMUL``
    directly, failed at the next encoder length ("accum_dim_lhs != accum_dim_rhs") when it was
    calibrated on several. :func:`_calibration` now gives it one encoder length from the
    start; should another signature fail so, one signature after another, and last all of
    them, is calibrated on the samples of its most common shape (the resized runs after
    calibration are fine; the agreement checks judge the file)."""
    varied = [name for name, feeds in _calibration(job, names).items()
              if len({_shapes(feed) for feed in feeds}) > 1]
    attempts = [(), *[(name,) for name in varied], *([varied] if len(varied) > 1 else [])]
    error = None
    for one_shape in attempts:
        converter.representative_dataset = lambda s=one_shape: _representative(job, names, s)
        try:
            with int8_calibration_fixes():
                return converter.convert()
        except RuntimeError as err:
            error = error or err
    raise ValueError(
        "Invalid value for argument `quantize`. TensorFlow's int8 calibrator failed on this "
        f"model ({str(error).splitlines()[0][:200]}); expected 'none', 'dynamic' or 'float16' "
        "for it. Received: quantize='int8'"
    )


def convert(
    saved_model_dir: Path,
    names: list[str],
    quantize: str,
    job: ExportJob,
    float_model: bytes | None = None,
) -> bytes:
    """Convert the traced signatures with builtins only, quantized as ``quantize``.

    ``float_model``: the ``"none"`` conversion, which ``"int8"`` needs to repair its LSTMs."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=names)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize != "int8":
        model = converter.convert()
    else:
        if not any(job.feeds.get(n) for n in names):
            raise ValueError(
                "Invalid value for argument `quantize`. Expected real samples (samples.json) "
                "to calibrate int8 activations. Received: quantize='int8' with no samples"
            )
        model = _convert_int8(converter, job, names)
        if float_model is None:
            raise ValueError("quantize='int8' needs the float conversion (float_model)")
        _check_lstm_pairing(float_model, model)
        ranges = lstm_output_ranges(float_model, _calibration(job, names))
        model = requantize_raw_copies(repair_int8_lstms(model, ranges))
    # After quantizing: the int8 kernel clips at clip / cell scale, and with no clip at the
    # int16 range its (repaired) cell scale gives.
    model = unclip_lstm_cells(model)
    foreign = sorted({op for op in tflite_ops(model) if op.startswith("Flex") or not op.isupper()})
    if foreign:
        raise ValueError(
            f"TFLite conversion produced non-builtin ops {foreign}; ai-edge-litert cannot run "
            "them. Expected builtins only (trace the model inside keras_seq.ops.export_mode())."
        )
    return model


@register_exporter("tflite")
class TFLiteExporter(Exporter):
    """``model.tflite`` (+ ``model.<quantize>.tflite``)."""

    OPTIONS = {"quantize": QUANTIZE}

    def export(self, job: ExportJob, staging: Path) -> dict[str, Any]:
        quantize = self.options["quantize"]
        variants = ["none"] + ([quantize] if quantize != "none" else [])
        files: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="keras_seq_tflite_") as tmp:
            names = _trace(job, Path(tmp) / "traced")
            float_model = None
            for variant in variants:
                model = convert(Path(tmp) / "traced", names, variant, job, float_model)
                float_model = float_model or model  # "none" comes first
                filename = "model.tflite" if variant == "none" else f"model.{variant}.tflite"
                (staging / filename).write_bytes(model)
                ops = tflite_ops(model)
                files[variant] = {
                    "file": filename,
                    "size_bytes": len(model),
                    "ops": sorted(set(ops)),
                    "op_counts": {op: ops.count(op) for op in sorted(set(ops))},
                }
                if variant == "int8":  # samples.json[start:end]
                    files[variant]["calibration_samples"] = list(job.calibration)
        inputs = {
            s.name: {k: {"dtype": d, "shape": [1, *[-1 if x is None else x for x in shape[1:]]]}
                     for k, (d, shape) in s.inputs.items()}
            for s in job.graphs.signatures() if s.name in names
        }
        return {
            "signatures": names,
            "inputs": inputs,
            "batch_size": 1,
            "sequence_length": "resizable per request (shape_signature -1); feed exact-length "
                               "ids, no padding",
            "builtins_only": True,
            "variants": files,
        }

"""ONNX for ONNX Runtime: tf2onnx, opset >= 17, dynamic batch, native recurrent nodes.

Each numeric signature that targets ONNX becomes one file (classifier and language model:
``model.onnx``; seq2seq: ``model_encoder.onnx`` = ``encode`` and ``model_decoder_step.onnx`` =
``decode_step``, driven by a greedy loop in the caller). Inputs and outputs keep the
signature's names; batch and time dimensions are dynamic.

The functions are traced inside ``keras_seq.ops.export_mode(padding="right")``, whose loops
tf2onnx rewrites into native ``LSTM`` / ``GRU`` nodes (and ``RNN`` and ``reset_after=False``
GRUs with keras_seq's rewriters, :func:`keras_seq.ops.onnx_rewriters.onnx_custom_rewriters`),
and converted by ``tf2onnx.convert.from_function``. Each file is checked with
``onnx.checker`` and its op types are recorded in ``metadata.json``; a recurrent layer left as
a ``Loop`` is reported there (``recurrent_loops``).

**Input contract: right-padded.** A batch of token ids must be padded with 0 at the END of
each row only (``[[5, 7, 9], [5, 8, 0]]``), as ``Vocabulary.encode_padded`` and the pipelines
do. Each padding mask is turned into lengths ``n_b = sum_t (ids[b, t] != 0)`` that the native
nodes take as ``sequence_lens``; outputs then equal the Keras model's exactly (padded steps
included, with Keras's rules). A 0 before a real token (left padding, or an id-0 hole) is NOT
treated as a masked step and gives different results. Empty rows (all 0) are fine.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from keras_seq.export.job import ExportJob
from keras_seq.export.registry import Exporter, register_exporter

__all__ = ["ONNXExporter", "onnx_ops"]

OPSETS = (17, 18)


def onnx_ops(model: Any) -> list[str]:
    """``op_type`` of every node of an ``onnx.ModelProto`` (subgraphs included)."""
    from keras_seq.ops.inspect import onnx_op_types

    return onnx_op_types(model)


def _converter_hooks() -> dict[str, Any]:
    """keras_seq's tf2onnx rewriters / op handlers, when the ops package provides them."""
    hooks: dict[str, Any] = {}
    try:
        from keras_seq.ops import onnx_rewriters
    except ImportError:  # pragma: no cover
        return hooks
    if hasattr(onnx_rewriters, "onnx_custom_rewriters"):
        hooks["custom_rewriter"] = onnx_rewriters.onnx_custom_rewriters()
    if hasattr(onnx_rewriters, "onnx_custom_op_handlers"):
        hooks["custom_op_handlers"] = onnx_rewriters.onnx_custom_op_handlers()
    return hooks


def convert_signature(signature: Any, opset: int) -> Any:
    """One signature -> ``onnx.ModelProto`` (dynamic batch), checked."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    from keras_seq.ops import export_mode

    specs = signature.specs()
    with export_mode(padding="right"):  # the inputs' contract: right-padded rows
        function = tf.function(signature.fn, autograph=False)
        model, _ = tf2onnx.convert.from_function(
            function, input_signature=[specs], opset=opset, **_converter_hooks()
        )
    onnx.checker.check_model(model)
    return model


@register_exporter("onnx")
class ONNXExporter(Exporter):
    """``model.onnx`` (seq2seq: ``model_encoder.onnx`` + ``model_decoder_step.onnx``)."""

    OPTIONS = {"opset": OPSETS}

    def export(self, job: ExportJob, staging: Path) -> dict[str, Any]:
        opset = self.options["opset"]
        files: dict[str, Any] = {}
        for signature in job.graphs.signatures():
            if "onnx" not in signature.formats:
                continue
            model = convert_signature(signature, opset)
            data = model.SerializeToString()
            (staging / signature.onnx_file).write_bytes(data)
            ops = onnx_ops(model)
            counts = Counter(ops)
            files[signature.name] = {
                "file": signature.onnx_file,
                "size_bytes": len(data),
                "inputs": [i.name for i in model.graph.input],
                "outputs": [o.name for o in model.graph.output],
                "ops": sorted(counts),
                "op_counts": dict(sorted(counts.items())),
                "recurrent_nodes": sum(counts[k] for k in ("LSTM", "GRU", "RNN")),
                "recurrent_loops": counts["Loop"],
            }
        return {"opset": opset, "batch": "dynamic", "files": files}

"""Read which operators an exported TFLite or ONNX model contains.

Used by the export checks to assert, for example, that an LSTM became one fused
``UNIDIRECTIONAL_SEQUENCE_LSTM`` op (not a ``WHILE`` loop), that no ``FlexDelegate``/custom
op slipped into a builtins-only model, or that an ONNX graph holds a native ``LSTM`` node and
no ``Loop``.
"""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["onnx_op_types", "tflite_op_names"]


def tflite_op_names(model_bytes: bytes) -> list[str]:
    """Operator names of a ``.tflite`` flatbuffer, one per operator, all subgraphs in order.

    Builtins come back by their schema name (``"UNIDIRECTIONAL_SEQUENCE_LSTM"``, ``"WHILE"``,
    ``"FULLY_CONNECTED"``); custom and Flex ops by their custom code (``"FlexTensorListReserve"``).
    Loop bodies are subgraphs, so a ``WHILE`` is followed by the ops of its cond and body.

    Example:
        >>> names = tflite_op_names(converter.convert())  # doctest: +SKIP
        >>> "UNIDIRECTIONAL_SEQUENCE_LSTM" in names  # doctest: +SKIP
    """
    from ai_edge_litert import schema_py_generated as schema

    builtin_names = {
        value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")
    }
    model = schema.Model.GetRootAs(bytearray(model_bytes), 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        # Codes above 127 live in `builtin_code`; old files only fill `deprecated_builtin_code`.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            codes.append(code.CustomCode().decode())
        else:
            codes.append(builtin_names.get(builtin, f"BUILTIN_{builtin}"))
    names = []
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        names.extend(
            codes[subgraph.Operators(i).OpcodeIndex()] for i in range(subgraph.OperatorsLength())
        )
    return names


def onnx_op_types(model) -> list[str]:
    """``op_type`` of every node of an ``onnx.ModelProto``, including nodes of subgraphs."""
    return [node.op_type for node in _onnx_nodes(model.graph)]


def _onnx_nodes(graph) -> Iterator:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _onnx_nodes(attr.g)
            for sub in attr.graphs:
                yield from _onnx_nodes(sub)

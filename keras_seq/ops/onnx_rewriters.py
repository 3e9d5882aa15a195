"""tf2onnx graph rewriters for the loops of :mod:`keras_seq.ops.export_graph`.

tf2onnx ships rewriters that turn LSTM and GRU ``While`` loops into native ONNX nodes, but none
for an Elman RNN. :func:`rewrite_simple_rnn` fills that gap for the loop traced by
:func:`keras_seq.ops.export_graph.simple_rnn`. Pass the list to tf2onnx::

    tf2onnx.convert.from_function(fn, input_signature=sig, opset=17,
                                  custom_rewriter=onnx_custom_rewriters())

(``from_keras`` takes the same ``custom_rewriter`` argument). It runs on every graph tf2onnx
builds: on a ``While`` body it recognises the step

    ``h_t = act(BiasAdd(AddV2(MatMul(x_t, W), MatMul(h_{t-1}, R)), b))``, act in Tanh/Relu/Sigmoid,

with ``x_t`` a ``TensorListGetItem`` of a loop input, ``h_t`` written to the output list and
fed back as the state, and ``W``, ``R``, ``b`` loop inputs; on the graph that holds that
``While`` (body graphs are processed first) it replaces the loop, when ``W``, ``R``, ``b`` are
constants, by ONNX ``RNN(X[T, B, D], W[1, U, D], R[1, U, U], B[1, 2U], initial_h[1, B, U])``.
Anything else is left alone and becomes a ``Loop``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["onnx_custom_rewriters", "rewrite_simple_rnn"]

_CONTEXT = "_keras_seq_simple_rnn"


def onnx_custom_rewriters() -> list[Callable[[Any, list], list]]:
    """The rewriters to pass as tf2onnx's ``custom_rewriter`` argument."""
    return [rewrite_simple_rnn]


def _pattern():
    from tf2onnx.graph_matcher import OpTypePattern

    cell = OpTypePattern(
        "Add|AddV2",
        allow_reorder=False,
        inputs=[
            OpTypePattern(
                "MatMul",
                allow_reorder=False,
                inputs=[OpTypePattern("TensorListGetItem", name="xt"), OpTypePattern("*", name="W")],
            ),
            OpTypePattern(
                "MatMul",
                allow_reorder=False,
                inputs=[OpTypePattern("*", name="h"), OpTypePattern("*", name="R")],
            ),
        ],
    )
    biased = OpTypePattern("BiasAdd", name="bias_add", inputs=[cell, OpTypePattern("*", name="b")])
    return OpTypePattern("Tanh|Relu|Sigmoid", name="act", inputs=[biased])


def _through_identity(node):
    while node.type == "Identity":
        node = node.inputs[0]
    return node


def _match_body(g, ops) -> None:
    """Record on a ``While`` body graph where the Elman step's pieces enter it."""
    from tf2onnx.graph_matcher import GraphMatcher

    for match in GraphMatcher(_pattern(), allow_reorder=False).match_ops(ops):
        act, x_item = match.get_op("act"), match.get_op("xt")
        bias_add = match.get_op("bias_add")
        if bias_add.get_attr_str("data_format") not in (None, "NHWC"):
            continue
        pieces = {"x": x_item.inputs[0], "h": match.get_op("h")}
        for key in ("W", "R", "b"):
            pieces[key] = _through_identity(match.get_op(key))
        if not all(node.is_graph_input() for node in pieces.values()):
            continue
        idx = {key: g.input_names.index(node.output[0]) for key, node in pieces.items()}
        # h_t must be the next state (body output at h's index) and be written to the list.
        state_out = _through_identity(g.get_node_by_output(g.outputs[idx["h"]]))
        if state_out is not act:
            continue
        writes = [n for n in g.find_output_consumers(act.output[0]) if n.type == "TensorListSetItem"]
        if len(writes) != 1 or not writes[0].inputs[0].is_graph_input():
            continue
        idx["out"] = g.input_names.index(writes[0].input[0])
        setattr(g, _CONTEXT, {**idx, "activation": act.type})


def _replace_loops(g, ops) -> None:
    """Replace each ``While`` whose body was recognised by one ONNX ``RNN`` node."""
    from tf2onnx.graph_builder import GraphBuilder
    from tf2onnx.tf_loader import find_function

    for op in ops:
        if not op.is_while():
            continue
        body = find_function(op.get_attr_str("body"))
        ctx = getattr(body, _CONTEXT, None) if body is not None else None
        if ctx is None:
            continue
        w, r, b = (op.input[ctx[k]] for k in ("W", "R", "b"))
        if not all(g.is_const(t) for t in (w, r, b)):
            continue
        x_list = op.inputs[ctx["x"]]
        if x_list.type != "TensorListFromTensor":
            continue
        kernel = g.get_tensor_value(w, as_list=False)  # (D, U)
        recurrent = g.get_tensor_value(r, as_list=False)  # (U, U)
        bias = g.get_tensor_value(b, as_list=False)  # (U,)
        units = recurrent.shape[0]
        dtype = kernel.dtype
        w_node = g.make_const(_name("W"), kernel.T[None].astype(dtype))
        r_node = g.make_const(_name("R"), recurrent.T[None].astype(dtype))
        b_node = g.make_const(_name("B"), np.concatenate([bias, np.zeros_like(bias)])[None])
        builder = GraphBuilder(g)
        init_h = builder.make_unsqueeze({"data": op.input[ctx["h"]], "axes": [0]})
        x = x_list.input[0]  # (T, B, D)
        rnn = g.make_node(
            "RNN",
            [x, w_node.output[0], r_node.output[0], b_node.output[0], "", init_h],
            attr={"hidden_size": units, "activations": [ctx["activation"]], "direction": "forward"},
            output_count=2,
            dtypes=[g.get_dtype(x)] * 2,
        )
        ys = builder.make_squeeze({"data": rnn.output[0], "axes": [1]})  # (T, B, U)
        for consumer in g.find_output_consumers(op.output[ctx["out"]]):
            if consumer.type == "TensorListStack":
                g.replace_all_inputs(consumer.output[0], ys)
        h_t = builder.make_squeeze({"data": rnn.output[1], "axes": [0]})  # (B, U)
        g.replace_all_inputs(op.output[ctx["h"]], h_t)


def rewrite_simple_rnn(g, ops: list) -> list:
    """tf2onnx rewriter: Elman-RNN ``While`` loops -> ONNX ``RNN`` (see module docstring)."""
    _match_body(g, ops)
    _replace_loops(g, ops)
    return g.get_nodes()


def _name(prefix: str) -> str:
    from tf2onnx import utils

    return utils.make_name(prefix)

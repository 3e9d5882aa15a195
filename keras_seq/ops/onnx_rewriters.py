"""tf2onnx graph rewriters for the loops of :mod:`keras_seq.ops.export_graph`.

tf2onnx's own rewriters turn the LSTM loop and the ``reset_after=True`` GRU loop into native
ONNX nodes. Two loops have no built-in rewriter; these fill the gap:

- :func:`rewrite_simple_rnn`: the Elman step ``h = act(BiasAdd(AddV2(MatMul(x_t, W),
  MatMul(h, R)), b))``, act in Tanh/Relu/Sigmoid -> ONNX ``RNN``.
- :func:`rewrite_gru_reset_before`: the ``reset_after=False`` GRU step (Keras's
  ``implementation=2`` form) -> ONNX ``GRU`` with ``linear_before_reset=0``. (tf2onnx's own
  TF-``GRUCell`` pattern needs ``Identity`` ops that grappler hoists out of TF2 loops.)

Pass them to tf2onnx::

    tf2onnx.convert.from_function(fn, input_signature=sig, opset=17,
                                  custom_rewriter=onnx_custom_rewriters())

(``from_keras`` takes the same ``custom_rewriter`` argument.) tf2onnx runs each rewriter on
every graph, ``While`` bodies first: on a body the rewriter checks the step and records which
body inputs hold ``x`` (a TensorList read once per step), the state, the output list and the
weights, and that the new state is both written to the output list and returned as the next
state. The sequence-length form (``export_graph``'s ``lengths=``, TensorFlow 1's
``dynamic_rnn`` step: ``copy = GreaterEqual(t, lengths)``, next state
``Select(copy, h, new)``, written output ``Select(copy, zeros, new)``) is accepted too and
records the ``lengths`` input; a generic masked step is left alone. On the graph holding
that ``While`` it replaces the loop by one node when the weights are constants, wiring
``Y`` to the stacked outputs, ``Y_h`` to the final state and ``lengths`` to
``sequence_lens``. Anything else stays a ``Loop``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["onnx_custom_rewriters", "rewrite_gru_reset_before", "rewrite_simple_rnn"]

Rewriter = Callable[[Any, list], list]
_CONTEXT = "_keras_seq_rnn_loop"


def onnx_custom_rewriters() -> list[Rewriter]:
    """The rewriters to pass as tf2onnx's ``custom_rewriter`` argument."""
    return [rewrite_simple_rnn, rewrite_gru_reset_before]


@dataclass
class _Loop:
    """What a matched ``While`` body records: body-input indices and how to build the node."""

    op_type: str  # "RNN" | "GRU"
    x: int
    h: int
    out: int
    seq_len: int | None  # body input index of the sequence lengths, or None
    weights: dict[str, int]  # weight name -> body input index
    attrs: dict = field(default_factory=dict)
    # const weights (by name) -> ONNX (W, R, B) for one direction
    onnx_weights: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]] | None = None


def rewrite_simple_rnn(g, ops: list) -> list:
    """tf2onnx rewriter: Elman-RNN ``While`` loops -> one ONNX ``RNN`` node."""
    from tf2onnx.graph_matcher import GraphMatcher

    for m in GraphMatcher(_simple_rnn_pattern(), allow_reorder=False).match_ops(ops):
        act = m.get_op("act")
        if not _nhwc(m.get_op("bias_add")):
            continue
        io = _loop_io(g, m.get_op("xt"), [m.get_op("h")], act)
        weights = _weight_inputs(g, {k: m.get_op(k) for k in ("W", "R", "b")})
        if io is None or weights is None:
            continue

        def onnx_weights(w: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
            b = w["b"]
            return w["W"].T[None], w["R"].T[None], np.concatenate([b, np.zeros_like(b)])[None]

        setattr(
            g,
            _CONTEXT,
            _Loop("RNN", *io, weights, {"activations": [act.type]}, onnx_weights),
        )
    _replace_loops(g, ops)
    return g.get_nodes()


def rewrite_gru_reset_before(g, ops: list) -> list:
    """tf2onnx rewriter: ``reset_after=False`` GRU ``While`` loops -> ONNX ``GRU`` (lbr=0)."""
    from tf2onnx.graph_matcher import GraphMatcher

    for m in GraphMatcher(_gru_reset_before_pattern(), allow_reorder=False).match_ops(ops):
        x_split = _same(m, "xs_z1", "xs_z2", "xs_r", "xs_n")
        h_split = _same(m, "hs_z1", "hs_z2", "hs_r")
        h = _same(m, "h1", "h2", "hs_z1_h", "hs_z2_h", "hs_r_h")
        if None in (x_split, h_split, h, _same(m, "z1", "z2")):
            continue
        x_ports = [_port(m, n) for n in ("xs_z1", "xs_r", "xs_n")]
        h_ports = [_port(m, n) for n in ("hs_z1", "hs_r")]
        ports_ok = x_ports == [0, 1, 2] and h_ports == [0, 1]  # z, r, n in Keras order
        one = m.get_op("one")
        if not (ports_ok and one.is_const() and np.all(one.get_tensor_value(as_list=False) == 1)):
            continue
        if not (_splits_last_axis(x_split, 3) and _splits_last_axis(h_split, 2)):
            continue
        if not _nhwc(m.get_op("xs_z1_ba")):
            continue
        io = _loop_io(g, m.get_op("xs_z1_xt"), [h], m.get_op("cell"))
        pieces = {"W": "xs_z1_W", "b": "xs_z1_b", "R_zr": "hs_z1_R", "R_n": "R_n"}
        weights = _weight_inputs(g, {k: m.get_op(v) for k, v in pieces.items()})
        if io is None or weights is None:
            continue

        def onnx_weights(w: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
            recurrent = np.concatenate([w["R_zr"], w["R_n"]], axis=1)  # (U, 3U), z r h
            b = w["b"]
            return w["W"].T[None], recurrent.T[None], np.concatenate([b, np.zeros_like(b)])[None]

        attrs = {"activations": ["Sigmoid", "Tanh"], "linear_before_reset": 0}
        setattr(g, _CONTEXT, _Loop("GRU", *io, weights, attrs, onnx_weights))
    _replace_loops(g, ops)
    return g.get_nodes()


def _simple_rnn_pattern():
    from tf2onnx.graph_matcher import OpTypePattern as P

    x_part = P("MatMul", inputs=[P("TensorListGetItem", name="xt"), P("*", name="W")])
    h_part = P("MatMul", inputs=[P("*", name="h"), P("*", name="R")])
    cell = P("Add|AddV2", inputs=[x_part, h_part])
    return P(
        "Tanh|Relu|Sigmoid",
        name="act",
        inputs=[P("BiasAdd", name="bias_add", inputs=[cell, P("*", name="b")])],
    )


def _gru_reset_before_pattern():
    """``h = z*h + (1-z)*tanh(x_n + (r*h) R_n)``, ``z|r = sigmoid(x_z|r + h_z|r)``, where
    ``x_z, x_r, x_n = split(BiasAdd(x_t W, b), 3)`` and ``h_z, h_r = split(h R_zr, 2)``."""
    from tf2onnx.graph_matcher import OpTypePattern as P

    def x_split(name):
        x_w = P(
            "MatMul", inputs=[P("TensorListGetItem", name=f"{name}_xt"), P("*", name=f"{name}_W")]
        )
        biased = P("BiasAdd", name=f"{name}_ba", inputs=[x_w, P("*", name=f"{name}_b")])
        return P("Split", name=name, inputs=[P("Const"), biased])

    def h_split(name):
        h_r = P("MatMul", inputs=[P("*", name=f"{name}_h"), P("*", name=f"{name}_R")])
        return P("Split", name=name, inputs=[P("Const"), h_r])

    def gate(name):
        return P(
            "Sigmoid",
            name=name,
            inputs=[P("Add|AddV2", inputs=[x_split(f"xs_{name}"), h_split(f"hs_{name}")])],
        )

    reset_h = P("Mul", inputs=[gate("r"), P("*", name="h2")])
    candidate = P(
        "Tanh",
        inputs=[
            P(
                "Add|AddV2",
                inputs=[x_split("xs_n"), P("MatMul", inputs=[reset_h, P("*", name="R_n")])],
            )
        ],
    )
    keep = P("Mul", inputs=[gate("z1"), P("*", name="h1")])
    update = P("Mul", inputs=[P("Sub", inputs=[P("Const", name="one"), gate("z2")]), candidate])
    return P("Add|AddV2", name="cell", inputs=[keep, update])


def _same(m, *names: str):
    """The op all ``names`` matched, or None when they matched different ops."""
    found = {id(m.get_op(n)): m.get_op(n) for n in names}
    return next(iter(found.values())) if len(found) == 1 else None


def _port(m, name: str) -> int:
    return list(m.get_op(name).output).index(m.get_tensor(name))


def _splits_last_axis(split, parts: int) -> bool:
    axis = split.inputs[0].get_tensor_value(as_list=True)
    return len(split.output) == parts and axis in (1, -1)


def _nhwc(bias_add) -> bool:
    return bias_add.get_attr_str("data_format") in (None, "NHWC")


def _through_identity(node):
    while node.type == "Identity":
        node = node.inputs[0]
    return node


def _weight_inputs(g, nodes: dict) -> dict[str, int] | None:
    """Body-input index of each weight (through Identity ops), or None if one is computed."""
    nodes = {k: _through_identity(v) for k, v in nodes.items()}
    if not all(n.is_graph_input() for n in nodes.values()):
        return None
    return {k: g.input_names.index(n.output[0]) for k, n in nodes.items()}


def _loop_io(g, x_item, states: list, new_state) -> tuple[int, int, int, int | None] | None:
    """(x, h, output-list, sequence-lengths or None) body-input indices if the step has the
    plain loop form or the sequence-length form, else None.

    Plain: the new state is returned as the next ``h`` and written to the output list.
    Sequence-length form (:func:`keras_seq.ops.export_graph` with ``lengths``, TensorFlow 1's
    ``dynamic_rnn`` step): with ``copy = GreaterEqual(t, lengths)``, the next ``h`` is
    ``Select(copy, h, new)`` and the written output ``Select(copy, zeros, new)``.
    """
    x_list, h = x_item.inputs[0], states[0]
    if not (x_list.is_graph_input() and h.is_graph_input()):
        return None
    x_idx = g.input_names.index(x_list.output[0])
    h_idx = g.input_names.index(h.output[0])
    next_h = _through_identity(g.get_node_by_output(g.outputs[h_idx]))
    seq_len_idx = None
    written = new_state
    if next_h is not new_state:  # the sequence-length form, or no match
        copy = _copy_condition(next_h, h, new_state, state_select=True)
        if copy is None:
            return None
        selects = [
            n
            for n in g.find_output_consumers(new_state.output[0])
            if n is not next_h and _copy_condition(n, None, new_state, state_select=False) is copy
        ]
        lengths = copy.inputs[1]
        if len(selects) != 1 or not (copy.inputs[0].is_graph_input() and lengths.is_graph_input()):
            return None
        written = selects[0]
        seq_len_idx = g.input_names.index(lengths.output[0])
    # The (selected) new state must be what the loop writes to its output list.
    writes = [
        n for n in g.find_output_consumers(written.output[0]) if n.type == "TensorListSetItem"
    ]
    if len(writes) != 1 or not writes[0].inputs[0].is_graph_input():
        return None
    return x_idx, h_idx, g.input_names.index(writes[0].input[0]), seq_len_idx


def _copy_condition(select, h, new_state, *, state_select: bool):
    """The ``GreaterEqual(t, lengths)`` of ``Select(copy, h, new)`` (``state_select``) or of
    ``Select(copy, ZerosLike(new), new)``, else None. Only ``Select`` (TensorFlow 1's
    ``where``, row-wise on a ``[B]`` condition) has that meaning, not ``SelectV2``."""
    if select.type != "Select" or select.inputs[2] is not new_state:
        return None
    copy, other = select.inputs[0], _through_identity(select.inputs[1])
    if copy.type != "GreaterEqual":
        return None
    if state_select:
        return copy if other is h else None
    zeros = other.type == "ZerosLike" or (
        other.is_const() and not np.any(other.get_tensor_value(as_list=False))
    )
    return copy if zeros else None


def _replace_loops(g, ops: list) -> None:
    """Replace each ``While`` whose body recorded a :class:`_Loop` by its ONNX node."""
    from tf2onnx import utils
    from tf2onnx.graph_builder import GraphBuilder
    from tf2onnx.tf_loader import find_function

    for op in ops:
        if not op.is_while():
            continue
        body = find_function(op.get_attr_str("body"))
        loop: _Loop | None = getattr(body, _CONTEXT, None) if body is not None else None
        if loop is None:
            continue
        names = {k: op.input[i] for k, i in loop.weights.items()}
        x_list = op.inputs[loop.x]
        if x_list.type != "TensorListFromTensor" or not all(g.is_const(t) for t in names.values()):
            continue
        values = {k: g.get_tensor_value(t, as_list=False) for k, t in names.items()}
        w, r, b = loop.onnx_weights(values)
        dtype = w.dtype
        consts = [
            g.make_const(utils.make_name(k), v.astype(dtype)).output[0]
            for k, v in zip("WRB", (w, r, b), strict=True)
        ]
        builder = GraphBuilder(g)
        init_h = builder.make_unsqueeze({"data": op.input[loop.h], "axes": [0]})
        x = x_list.input[0]  # (T, B, D), time-major
        seq_len = "" if loop.seq_len is None else op.input[loop.seq_len]  # int32 [B]
        node = g.make_node(
            loop.op_type,
            [x, *consts, seq_len, init_h],
            attr={**loop.attrs, "hidden_size": r.shape[-1], "direction": "forward"},
            output_count=2,
            dtypes=[g.get_dtype(x)] * 2,
        )
        ys = builder.make_squeeze({"data": node.output[0], "axes": [1]})  # (T, B, U)
        for consumer in g.find_output_consumers(op.output[loop.out]):
            if consumer.type == "TensorListStack":
                g.replace_all_inputs(consumer.output[0], ys)
        h_t = builder.make_squeeze({"data": node.output[1], "axes": [0]})  # (B, U)
        g.replace_all_inputs(op.output[loop.h], h_t)
        setattr(body, _CONTEXT, None)  # replaced: the other rewriter must not do it again

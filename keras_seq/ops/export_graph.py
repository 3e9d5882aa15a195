"""Recurrent loops traced in the shapes that TensorFlow's exporters recognise.

The recurrent layers call these functions while tracing inside :func:`keras_seq.ops.export_mode`.
They are pure TensorFlow functions of tensors (variables are read once, before the loop) and
compute exactly what ``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN`` compute with the same
weights (Keras layout, batch-major ``x[B, T, D]``). What each exporter makes of them:

=============  ======================================  =====================================
function       TFLite, builtins only                   ONNX via tf2onnx (opset >= 17)
=============  ======================================  =====================================
``lstm``       static batch and ``c_T`` unused: one    native ``LSTM`` node, any batch
               fused ``UNIDIRECTIONAL_SEQUENCE_LSTM``
               (+ 3 tiny ops per state, see
               ``_runtime_copy``); otherwise a
               ``WHILE`` loop of builtins, any batch
``gru``        ``WHILE`` loop of builtins, any batch   native ``GRU`` node, any batch;
                                                       ``reset_after=False`` needs the
                                                       custom rewriters (below)
``simple_rnn`` ``WHILE`` loop of builtins, any batch   native ``RNN`` node with the custom
                                                       rewriters (tanh, relu, sigmoid),
                                                       else ``Loop``
any + ``mask`` ``WHILE`` loop of builtins, any batch   ``Loop`` (runs, not fused)
any +          ``WHILE`` loop of builtins, any batch   the same native node as above, with
``lengths``                                            ``sequence_lens``; ``go_backwards``
                                                       adds ``ReverseSequence`` around it
                                                       (a ``Bidirectional`` pair is merged
                                                       into one ``direction="bidirectional"``
                                                       node when both share one lengths
                                                       tensor)
=============  ======================================  =====================================

``lengths`` is the right-padding form of a mask (``mask[b, t] = t < lengths[b]``), used by the
layers inside ``export_mode(padding="right")``; the results equal Keras's for that mask
exactly, including its rules for padded steps (see :func:`_keras_outputs`).

Custom rewriters: :func:`keras_seq.ops.onnx_rewriters.onnx_custom_rewriters`, passed as
tf2onnx's ``custom_rewriter`` argument.

The loop shape that satisfies both converters: the time-major input is a TensorList read once
per step (``TensorListGetItem``); the outputs go to a ``TensorListReserve`` whose element
shape is a *runtime* tensor (``tf.shape(h0)``: a constant shape with an unknown batch does not
lower to TFLite builtins, and tf2onnx's ``Loop`` conversion needs a Reserve); the loop carries
only the step counter, the output list and the states (no ``maximum_iterations``: tf2onnx
then emits an int32/int64 mismatch in its ``Loop``); the weights are loop-invariant captures.
The step is written op for op as tf2onnx's rewriters expect, e.g.
``BiasAdd(AddV2(MatMul(x_t, W), MatMul(h, R)), b)`` (a ``+ b`` would not match).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

__all__ = ["generic", "gru", "lstm", "simple_rnn"]

TensorLike = tf.Tensor | tf.Variable
Step = Callable[[tf.Tensor, Sequence[tf.Tensor]], tuple[tf.Tensor, list[tf.Tensor]]]

_SALT = itertools.count(1)  # see _runtime_copy
_ACTIVATIONS: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
    "sigmoid": tf.sigmoid,
    "linear": tf.identity,
}


def lstm(
    x: tf.Tensor,
    h0: tf.Tensor,
    c0: tf.Tensor,
    kernel: TensorLike,
    recurrent_kernel: TensorLike,
    bias: TensorLike | None,
    *,
    go_backwards: bool = False,
    return_sequences: bool = True,
    mask: tf.Tensor | None = None,
    lengths: tf.Tensor | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Run an LSTM over ``x`` (Keras layout, gate order i, f, c, o).

    Per step, with ``z = x_t W + h_{t-1} R + b`` split into ``z_i, z_f, z_c, z_o``::

        c_t = sigmoid(z_f) * c_{t-1} + sigmoid(z_i) * tanh(z_c)
        h_t = sigmoid(z_o) * tanh(c_t)

    Without a mask the loop is wrapped in a ``tf.function`` carrying Keras's
    ``api_implements="lstm_<id>"``, ``time_major`` and ``go_backwards`` attributes and taking
    exactly ``(inputs, init_h, init_c, kernel, recurrent_kernel, bias)`` as tensors. The TFLite
    converter replaces it by one ``UNIDIRECTIONAL_SEQUENCE_LSTM`` when the batch is static and
    only result 0 (last output) or 1 (sequence) is consumed; ``h_T`` is returned as result 0,
    so consuming it keeps the fusion. The fused op cannot return the cell state (the converter
    would return zeros), so it refuses to fuse when ``c_T`` is consumed and keeps the loop:
    correct, builtins only, any batch. A dynamic batch also keeps the loop. tf2onnx turns the
    same loop into one ``LSTM`` node whatever is consumed (``Y_h``, ``Y_c`` included).

    The initial states enter the fused call through :func:`_runtime_copy`: a constant state
    would become a TFLite variable tensor that keeps the final state across invocations.

    Args:
        x: inputs ``[B, T, D]``.
        h0, c0: initial states ``[B, U]``. Give them a static batch when ``x`` has one.
        kernel: ``[D, 4U]``; recurrent_kernel: ``[U, 4U]``; bias: ``[4U]`` or ``None``.
        go_backwards: process time in reverse; outputs come in processing order (as Keras).
        return_sequences: return ``[B, T, U]`` outputs, else the last output ``[B, U]``.
        mask: optional ``[B, T]`` booleans; at a False step the states carry over and the
            output repeats the previous one (zeros with ``zero_output_for_mask``). A mask
            disables both fusions (plain loop).
        lengths: optional int ``[B]``, instead of ``mask``: the mask ``t < lengths[b]``
            (right padding), computed in tf2onnx's sequence-length form (native ONNX node with
            ``sequence_lens``; no TFLite fusion). Same results as the equivalent mask.
        zero_output_for_mask: Keras's flag of the same name.

    Returns:
        ``(outputs, h_T, c_T)``.
    """
    x, kernel, recurrent_kernel = _check(x, kernel, recurrent_kernel, gates=4, name="lstm")
    bias = _bias(bias, [kernel.shape[1]], x.dtype, "lstm")
    h0 = _tensor(h0, x.dtype)
    c0 = _tensor(c0, x.dtype)

    lengths = _lengths(mask, lengths, "lstm")
    if lengths is not None:
        step = _lstm_step(kernel, recurrent_kernel, bias)
        outputs, (h_t, c_t) = _run_lengths(step, x, [h0, c0], lengths, go_backwards)
        outputs = _keras_outputs(
            outputs, h_t, lengths, go_backwards, return_sequences, zero_output_for_mask
        )
        return outputs, h_t, c_t
    if mask is not None:
        step = _lstm_step(kernel, recurrent_kernel, bias)
        outputs, (h_t, c_t) = _run(step, x, [h0, c0], go_backwards, mask, zero_output_for_mask)
        return (outputs if return_sequences else outputs[:, -1]), h_t, c_t

    def keras_lstm(inputs, init_h, init_c, w, r, b):  # exactly the six arguments TFLite reads
        outputs, (h_t, c_t) = _run(_lstm_step(w, r, b), inputs, [init_h, init_c], go_backwards)
        runtime = tf.constant(0.0)  # Keras's fifth result; never consumed
        return outputs[:, -1], outputs, h_t, c_t, runtime

    fused = tf.function(
        keras_lstm,
        autograph=False,
        experimental_attributes={
            "api_implements": f"lstm_{uuid.uuid4().hex}",
            "time_major": False,
            "go_backwards": go_backwards,
        },
    )
    h0, c0 = _runtime_copy(h0, x), _runtime_copy(c0, x)
    last, outputs, _, c_t, _ = fused(x, h0, c0, kernel, recurrent_kernel, bias)
    # h_T is the last output (result 0): consuming it keeps the TFLite fusion.
    return (outputs if return_sequences else last), last, c_t


def _runtime_copy(state: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
    """``state + 0`` as a tensor the TFLite converter can neither fold nor share.

    The fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` overwrites its state operands with the final
    state. A constant state (zeros) becomes a TFLite *variable* tensor: it then keeps the last
    call's final state across invocations, and after constant deduplication it also corrupts
    every other op reading the same zeros. An activation is recomputed on every invocation,
    but it must be distinct for ``h``, for ``c`` and for every fused call (the converter cannot
    duplicate a shared non-constant state). ``x == NaN`` is never true, so the copy selects
    ``state`` exactly; the salt makes each copy a distinct value.

    A select, not ``state + never * salt``: full-integer int8 keeps the LSTM cell state in
    int16, and the quantizer gave that ADD int8 inputs and an int16 output, which the TFLite
    kernel retypes int8. The fused LSTM then read and wrote its int16 cell state in an
    int8-sized buffer (half of it other tensors' bytes): every name got the same answer.
    """
    never = tf.equal(x[:, 0, :1], float("nan"))  # (B, 1) False
    return tf.where(never, tf.cast(float(1 + next(_SALT) % 1024), state.dtype), state)


def _lstm_step(kernel: tf.Tensor, recurrent_kernel: tf.Tensor, bias: tf.Tensor) -> Step:
    def step(x_t: tf.Tensor, states: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        h, c = states
        # BiasAdd after AddV2, not `+ b`: tf2onnx's Keras-LSTM pattern needs this exact form.
        z = tf.nn.bias_add(tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel), bias)
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)  # 4 x (B, U)
        i = tf.sigmoid(z_i)
        f = tf.sigmoid(z_f)
        c = f * c + i * tf.tanh(z_c)
        o = tf.sigmoid(z_o)
        h = o * tf.tanh(c)
        return h, [h, c]

    return step


def gru(
    x: tf.Tensor,
    h0: tf.Tensor,
    kernel: TensorLike,
    recurrent_kernel: TensorLike,
    bias: TensorLike | None,
    *,
    reset_after: bool = True,
    go_backwards: bool = False,
    return_sequences: bool = True,
    mask: tf.Tensor | None = None,
    lengths: tf.Tensor | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Run a GRU over ``x`` (Keras layout, gate order z, r, h).

    With ``x_* = x_t W_* + b^x_*`` and ``r_* = h_{t-1} R_* + b^h_*``::

        z = sigmoid(x_z + r_z),  r = sigmoid(x_r + r_r)
        reset_after=True:   n = tanh(x_n + r * (h_{t-1} R_h + b^h_h))
        reset_after=False:  n = tanh(x_n + (r * h_{t-1}) R_h)
        h_t = z * h_{t-1} + (1 - z) * n

    tf2onnx maps the loop to one ``GRU`` node: ``reset_after=True`` through its Keras pattern
    (``linear_before_reset=1``), ``reset_after=False`` through its TF ``GRUCell`` pattern
    (``linear_before_reset=0``; the step is computed on ``concat([x_t, h])`` for that).

    Args:
        x: inputs ``[B, T, D]``; h0: initial state ``[B, U]``.
        kernel: ``[D, 3U]``; recurrent_kernel: ``[U, 3U]``; bias: ``[2, 3U]`` (input row 0,
            recurrent row 1) when ``reset_after`` else ``[3U]``, or ``None``.
        reset_after, go_backwards, return_sequences, mask, zero_output_for_mask: as in Keras;
            see :func:`lstm` for the mask semantics.
        lengths: the right-padding form of ``mask`` (see :func:`lstm`).

    Returns:
        ``(outputs, h_T)``.
    """
    x, kernel, recurrent_kernel = _check(x, kernel, recurrent_kernel, gates=3, name="gru")
    units3 = kernel.shape[1]
    bias = _bias(bias, [2, units3] if reset_after else [units3], x.dtype, "gru")
    h0 = _tensor(h0, x.dtype)

    if reset_after:
        input_bias, recurrent_bias = tf.unstack(bias)  # captured as two loop inputs

        def step(x_t: tf.Tensor, states: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
            (h,) = states
            x_z, x_r, x_n = tf.split(tf.nn.bias_add(tf.matmul(x_t, kernel), input_bias), 3, 1)
            h_z, h_r, h_n = tf.split(
                tf.nn.bias_add(tf.matmul(h, recurrent_kernel), recurrent_bias), 3, 1
            )
            z = tf.sigmoid(x_z + h_z)
            r = tf.sigmoid(x_r + h_r)
            n = tf.tanh(x_n + r * h_n)
            h = z * h + (1.0 - z) * n
            return h, [h]

    else:
        units = recurrent_kernel.shape[0]
        r_zr, r_n = tf.split(recurrent_kernel, [2 * units, units], axis=1)  # (U, 2U), (U, U)

        def step(x_t: tf.Tensor, states: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
            (h,) = states
            x_z, x_r, x_n = tf.split(tf.nn.bias_add(tf.matmul(x_t, kernel), bias), 3, 1)
            h_z, h_r = tf.split(tf.matmul(h, r_zr), 2, 1)
            z = tf.sigmoid(x_z + h_z)
            r = tf.sigmoid(x_r + h_r)
            n = tf.tanh(x_n + tf.matmul(r * h, r_n))
            h = z * h + (1.0 - z) * n
            return h, [h]

    return _run_single_state(
        step, x, h0, go_backwards, return_sequences, mask, lengths, zero_output_for_mask, "gru"
    )


def simple_rnn(
    x: tf.Tensor,
    h0: tf.Tensor,
    kernel: TensorLike,
    recurrent_kernel: TensorLike,
    bias: TensorLike | None,
    *,
    activation: str | Callable[[tf.Tensor], tf.Tensor] = "tanh",
    go_backwards: bool = False,
    return_sequences: bool = True,
    mask: tf.Tensor | None = None,
    lengths: tf.Tensor | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Run an Elman RNN over ``x``: ``h_t = activation(x_t W + h_{t-1} R + b)``.

    tf2onnx has no SimpleRNN rewriter; pass
    :func:`keras_seq.ops.onnx_rewriters.onnx_custom_rewriters` to tf2onnx to get one native
    ``RNN`` node (activations tanh, relu, sigmoid). Without it, or with another activation,
    the loop becomes an ONNX ``Loop``.

    Args:
        x: inputs ``[B, T, D]``; h0: initial state ``[B, U]``.
        kernel: ``[D, U]``; recurrent_kernel: ``[U, U]``; bias: ``[U]`` or ``None``.
        activation: a name (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"linear"`` or any
            ``keras.activations`` name) or a callable on tensors.
        go_backwards, return_sequences, mask, lengths, zero_output_for_mask: see :func:`lstm`.

    Returns:
        ``(outputs, h_T)``.
    """
    x, kernel, recurrent_kernel = _check(x, kernel, recurrent_kernel, gates=1, name="simple_rnn")
    bias = _bias(bias, [kernel.shape[1]], x.dtype, "simple_rnn")
    h0 = _tensor(h0, x.dtype)
    act = _activation(activation)

    def step(x_t: tf.Tensor, states: Sequence[tf.Tensor]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        (h,) = states
        h = act(tf.nn.bias_add(tf.matmul(x_t, kernel) + tf.matmul(h, recurrent_kernel), bias))
        return h, [h]

    return _run_single_state(
        step,
        x,
        h0,
        go_backwards,
        return_sequences,
        mask,
        lengths,
        zero_output_for_mask,
        "simple_rnn",
    )


def _run_single_state(
    step: Step,
    x: tf.Tensor,
    h0: tf.Tensor,
    go_backwards: bool,
    return_sequences: bool,
    mask: tf.Tensor | None,
    lengths: tf.Tensor | None,
    zero_output_for_mask: bool,
    name: str,
) -> tuple[tf.Tensor, tf.Tensor]:
    """GRU / SimpleRNN: dispatch to the masked, sequence-length or plain loop."""
    lengths = _lengths(mask, lengths, name)
    if lengths is not None:
        outputs, (h_t,) = _run_lengths(step, x, [h0], lengths, go_backwards)
        outputs = _keras_outputs(
            outputs, h_t, lengths, go_backwards, return_sequences, zero_output_for_mask
        )
        return outputs, h_t
    outputs, (h_t,) = _run(step, x, [h0], go_backwards, mask, zero_output_for_mask)
    return (outputs if return_sequences else outputs[:, -1]), h_t


def _lengths(mask: tf.Tensor | None, lengths: tf.Tensor | None, name: str) -> tf.Tensor | None:
    if lengths is None:
        return None
    if mask is not None:
        raise ValueError(
            f"Invalid arguments for `{name}`. Expected at most one of `mask` and `lengths`. "
            "Received: both"
        )
    lengths = tf.convert_to_tensor(lengths)
    if lengths.shape.rank != 1 or not lengths.dtype.is_integer:
        raise ValueError(
            f"Invalid value for argument `lengths` of `{name}`. Expected a rank-1 integer "
            f"tensor [batch]. Received: lengths.shape={lengths.shape}, dtype={lengths.dtype.name}"
        )
    return tf.cast(lengths, tf.int32)  # ONNX sequence_lens is int32


def _run_lengths(
    step: Step, x: tf.Tensor, states: list[tf.Tensor], lengths: tf.Tensor, go_backwards: bool
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """The loop in tf2onnx's sequence-length form; returns time-major ``ys [T, B, U]``.

    Per step (TensorFlow 1's ``dynamic_rnn(sequence_length=...)`` step, which tf2onnx's
    rewriters read as ONNX ``sequence_lens``)::

        copy = GreaterEqual(t, lengths)            # (B,)
        y_t  = Select(copy, 0, y_new)              # written to the output list
        s_t  = Select(copy, s_{t-1}, s_new)        # each state

    so ``ys[t] = 0`` for ``t >= lengths`` and the final states are those after each row's last
    valid step, exactly ONNX's ``Y`` / ``Y_h`` / ``Y_c`` with ``sequence_lens``. With
    ``go_backwards`` the valid prefix of each row is reversed first (``ReverseSequence``, as
    TensorFlow 1's ``bidirectional_dynamic_rnn``) and ``ys`` is reversed back to input order
    the same way, so ``ys[t]`` is the output at input position ``t`` (ONNX's reverse direction).
    """
    xs = tf.transpose(x, [1, 0, 2])  # (T, B, D)
    if go_backwards:
        xs = tf.reverse_sequence(xs, lengths, seq_axis=0, batch_axis=1)
    steps = tf.shape(xs)[0]
    inputs = tf.TensorArray(x.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
    outputs = tf.raw_ops.TensorListReserve(
        element_shape=tf.shape(states[0]), num_elements=steps, element_dtype=x.dtype
    )

    def body(t, out, *carried):
        y, new = step(inputs.read(t), carried)
        copy = tf.greater_equal(t, lengths)  # (B,)
        # tf.compat.v1.where is `Select` (row-wise on a vector condition): tf2onnx's pattern.
        y = tf.compat.v1.where(copy, tf.zeros_like(y), y)
        new = [tf.compat.v1.where(copy, old, s) for s, old in zip(new, carried, strict=True)]
        return (t + 1, _write(out, t, y), *new)

    final = tf.while_loop(lambda t, *_: t < steps, body, (tf.constant(0), outputs, *states))
    ys = tf.raw_ops.TensorListStack(
        input_handle=final[1],
        element_shape=[-1 if d is None else d for d in states[0].shape],
        element_dtype=x.dtype,
    )  # (T, B, U)
    if go_backwards:
        ys = tf.reverse_sequence(ys, lengths, seq_axis=0, batch_axis=1)
    # A row with no valid step keeps its initial state. The loop does; onnxruntime's native
    # nodes return zeros for `sequence_lens == 0`, so say it again outside (exact either way).
    started = tf.expand_dims(lengths > 0, -1)  # (B, 1)
    finals = [tf.where(started, s, s0) for s, s0 in zip(final[2:], states, strict=True)]
    return ys, finals


def _keras_outputs(
    ys: tf.Tensor,
    h_t: tf.Tensor,
    lengths: tf.Tensor,
    go_backwards: bool,
    return_sequences: bool,
    zero_output_for_mask: bool,
) -> tf.Tensor:
    """Keras's outputs for the right-padding mask ``t < lengths`` from :func:`_run_lengths`.

    ``ys [T, B, U]`` is in input order, zero at padded steps; ``h_T [B, U]`` is the state after
    each row's last valid step (its initial state when ``lengths == 0``). Keras
    (``keras.layers.RNN``) returns outputs in processing order and at a padded step repeats
    the previous output (zeros before the first valid step), or zeros with
    ``zero_output_for_mask``:

    * forward: ``y_t`` for ``t < len``, then ``h_T`` (or zeros) for ``t >= len``; the last
      output is ``h_T`` if ``len > 0`` (with ``zero_output_for_mask``: if ``len == T``), else 0;
    * ``go_backwards``: time runs ``T-1 .. 0``, so the ``T - len`` padded steps come first
      (zeros with either flag), then the valid steps ``len-1 .. 0``: ``reverse(ys)``; the last
      output is ``h_T`` if ``len > 0``, else 0.

    Returns ``[B, T, U]`` when ``return_sequences``, else the last output ``[B, U]``.
    """
    steps = tf.shape(ys)[0]
    started = tf.expand_dims(lengths > 0, -1)  # (B, 1)
    held = tf.where(started, h_t, tf.zeros_like(h_t))  # Keras's output at a padded step
    if not return_sequences:
        if zero_output_for_mask and not go_backwards:
            return tf.where(tf.expand_dims(lengths >= steps, -1), h_t, tf.zeros_like(h_t))
        return held
    if go_backwards:
        ys = tf.reverse(ys, [0])  # processing order: padding first, zeros either way
    elif not zero_output_for_mask:
        valid = tf.sequence_mask(lengths, steps)  # (B, T)
        ys = tf.where(tf.transpose(valid)[:, :, None], ys, held[None])
    return tf.transpose(ys, [1, 0, 2])  # (B, T, U)


def generic(
    step: Step,
    projected: tf.Tensor,
    states: Sequence[tf.Tensor],
    *,
    go_backwards: bool = False,
    mask: tf.Tensor | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Any cell's ``step(projected_t, states) -> (output_t, new_states)`` over ``projected
    [B, T, G]``, in the loop shape both converters take (TFLite ``WHILE``, ONNX ``Loop``), with
    Keras's mask rules. Returns outputs ``[B, T, U]`` in processing order and final states."""
    return _run(step, projected, list(states), go_backwards, mask, zero_output_for_mask)


def _run(
    step: Step,
    x: tf.Tensor,
    states: list[tf.Tensor],
    go_backwards: bool,
    mask: tf.Tensor | None = None,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """Loop ``step`` over time; returns batch-major outputs ``[B, T, U]`` and final states."""
    xs = tf.transpose(x, [1, 0, 2])  # (T, B, D)
    if go_backwards:
        xs = tf.reverse(xs, [0])
    steps = tf.shape(xs)[0]
    h0 = states[0]
    inputs = tf.TensorArray(x.dtype, size=steps, element_shape=xs.shape[1:]).unstack(xs)
    # Output list: TensorListReserve with a *runtime* element shape. A constant shape with an
    # unknown batch does not lower to TFLite builtins; tf2onnx's Loop conversion needs a Reserve.
    outputs = tf.raw_ops.TensorListReserve(
        element_shape=tf.shape(h0), num_elements=steps, element_dtype=x.dtype
    )

    if mask is None:

        def body(t, out, *carried):
            y, new = step(inputs.read(t), carried)
            return (t + 1, _write(out, t, y), *new)

        loop_vars = (tf.constant(0), outputs, *states)
    else:
        keep = tf.transpose(tf.cast(mask, tf.bool), [1, 0])  # (T, B)
        if go_backwards:
            keep = tf.reverse(keep, [0])
        keeps = tf.TensorArray(tf.bool, size=steps, element_shape=keep.shape[1:]).unstack(keep)

        def body(t, out, prev_y, *carried):
            y, new = step(inputs.read(t), carried)
            m = tf.expand_dims(keeps.read(t), -1)  # (B, 1)
            y = tf.where(m, y, tf.zeros_like(y) if zero_output_for_mask else prev_y)
            new = [tf.where(m, s, s_old) for s, s_old in zip(new, carried, strict=True)]
            return (t + 1, _write(out, t, y), y, *new)

        loop_vars = (tf.constant(0), outputs, tf.zeros_like(h0), *states)

    final = tf.while_loop(lambda t, *_: t < steps, body, loop_vars)
    stacked = tf.raw_ops.TensorListStack(
        input_handle=final[1],
        element_shape=[-1 if d is None else d for d in h0.shape],
        element_dtype=x.dtype,
    )  # (T, B, U)
    ys = tf.transpose(stacked, [1, 0, 2])  # (B, T, U)
    return ys, list(final[-len(states) :])


def _write(output_list: tf.Tensor, t: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    return tf.raw_ops.TensorListSetItem(input_handle=output_list, index=t, item=y)


def _check(
    x: tf.Tensor, kernel: TensorLike, recurrent_kernel: TensorLike, *, gates: int, name: str
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    x = tf.convert_to_tensor(x)
    if x.shape.rank != 3:
        raise ValueError(
            f"Invalid value for argument `x` of `{name}`. Expected a rank-3 tensor "
            f"[batch, time, features]. Received: x.shape={x.shape}"
        )
    # Read variables here, outside the loop: the fused TFLite op needs tensors, not handles.
    kernel = _tensor(kernel, x.dtype)
    recurrent_kernel = _tensor(recurrent_kernel, x.dtype)
    units = recurrent_kernel.shape[0]
    expected_k = [x.shape[-1], gates * units]
    if kernel.shape.rank != 2 or not kernel.shape.is_compatible_with(expected_k):
        raise ValueError(
            f"Invalid value for argument `kernel` of `{name}`. Expected shape {expected_k}. "
            f"Received: kernel.shape={kernel.shape}"
        )
    if not recurrent_kernel.shape.is_compatible_with([units, gates * units]):
        raise ValueError(
            f"Invalid value for argument `recurrent_kernel` of `{name}`. Expected shape "
            f"{[units, gates * units]}. Received: recurrent_kernel.shape={recurrent_kernel.shape}"
        )
    return x, kernel, recurrent_kernel


def _tensor(value: TensorLike, dtype: tf.DType) -> tf.Tensor:
    """Read a variable (outside any loop) and cast to the compute dtype (no-op when equal)."""
    return tf.cast(tf.convert_to_tensor(value), dtype)


def _bias(bias: TensorLike | None, shape: list[int], dtype: tf.DType, name: str) -> tf.Tensor:
    if bias is None:
        return tf.zeros(shape, dtype)
    bias = _tensor(bias, dtype)
    if not bias.shape.is_compatible_with(shape):
        raise ValueError(
            f"Invalid value for argument `bias` of `{name}`. Expected shape {shape}. "
            f"Received: bias.shape={bias.shape}"
        )
    return bias


def _activation(
    activation: str | Callable[[tf.Tensor], tf.Tensor] | None,
) -> Callable[[tf.Tensor], tf.Tensor]:
    if activation is None:
        return tf.identity
    if callable(activation):
        return activation
    if activation in _ACTIVATIONS:
        return _ACTIVATIONS[activation]
    try:
        return keras.activations.get(activation)
    except ValueError:
        raise ValueError(
            "Invalid value for argument `activation`. Expected a callable or a "
            f"`keras.activations` name such as 'tanh' or 'relu'. Received: activation={activation!r}"
        ) from None

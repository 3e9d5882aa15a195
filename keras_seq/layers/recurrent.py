"""Recurrent layers: ``SimpleRNN``, ``LSTM``, ``GRU``.

Each layer is a runner around one cell per stacked level: it projects the inputs of all
time steps in one GEMM, loops over time with :func:`keras_seq.ops.recurrence`, and owns
masks, ``go_backwards``, dropout, stacking, initial and returned states, statefulness.

Constructor options and weight layout match ``keras.layers.{SimpleRNN, LSTM, GRU}``:
``ours.set_weights(keras_layer.get_weights())`` works for the same options. Extras:
``num_layers`` and ``inter_layer_dropout`` (as ``torch.nn.LSTM``'s ``num_layers`` and
``dropout``), LSTM ``peephole`` / ``coupled_gates``.

Dropout: one input mask and one recurrent mask per sequence, shared by the gates, as
``keras.layers.LSTM`` / ``GRU`` draw their input mask. With ``recurrent_dropout`` Keras
switches to ``implementation=1`` and draws one mask per gate, for inputs and states: the
same expected values, other random draws.

States: ``return_state=True`` returns ``output, *states`` where ``states`` lists each
level's states in order (LSTM: ``h_0, c_0, h_1, c_1, ...``); ``initial_state`` takes the
same list. A state's batch is checked against the inputs' where both are static (eager calls,
a fixed input signature). In a graph traced with an unknown batch no runtime assert is added
(it would sit in every exported graph): a one-row state fed at run time then broadcasts over
the batch, as in ``keras.layers.GRU``, except in export mode, whose graphs (and the artifacts
made from them) take one state row per input row.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq import _validate, cells
from keras_seq.layers._export import export_level
from keras_seq.layers._fast import fast_level
from keras_seq.ops import in_export_mode, recurrence

__all__ = ["GRU", "LSTM", "SimpleRNN"]

# Runner options; everything else in a config belongs to the cell.
_RUNNER_KEYS = (
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "zero_output_for_mask",
    "num_layers",
    "inter_layer_dropout",
)


def run_cell(
    cell,
    x,
    states,
    *,
    training,
    recurrent_mask=None,
    mask=None,
    go_backwards: bool = False,
    return_sequences: bool = True,
    zero_output_for_mask: bool = False,
) -> tuple[tf.Tensor, tf.Tensor | None, list[tf.Tensor]]:
    """Run one cell over ``x [B, T, D]`` (input dropout already applied) from ``states``:
    ``(last, outputs, final_states)``.

    The one dispatch of every recurrent level: in export mode the exporter-friendly graph
    (:func:`export_level`), else a fused kernel (:func:`fast_level`), else the generic
    runner (:func:`keras_seq.ops.recurrence`) over one input-projection GEMM.
    """
    if in_export_mode():
        if recurrent_mask is not None:  # the export graphs have no recurrent dropout
            raise ValueError(
                f"Invalid call of a `{type(cell).__name__}` level in export mode. Expected "
                "training=False (export graphs are for inference). Received: training=True "
                f"with recurrent_dropout={cell.recurrent_dropout}"
            )
        result = export_level(
            cell, x, states, mask=mask, go_backwards=go_backwards,
            return_sequences=return_sequences, zero_output_for_mask=zero_output_for_mask,
        )
        if result is not None:
            return result
    result = fast_level(
        cell, x, states, recurrent_mask=recurrent_mask, mask=mask,
        go_backwards=go_backwards, return_sequences=return_sequences,
        zero_output_for_mask=zero_output_for_mask, training=training,
    )
    if result is not None:
        return result
    projected = cell.project_inputs(x)  # (B, T, G*U): one GEMM for all steps

    def step(p_t, s):
        return cell.step(p_t, s, recurrent_mask)

    return recurrence(
        step,
        projected,
        states,
        output_size=cell.units,
        mask=mask,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
        return_sequences=return_sequences,
    )


def as_float(sequences, dtype) -> tf.Tensor:
    """`sequences` as a tensor; integer ones cast to `dtype` (as keras.layers' RNNs take them)."""
    sequences = tf.convert_to_tensor(sequences)
    return sequences if sequences.dtype.is_floating else tf.cast(sequences, dtype)


def zero_padding(sequences: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """``sequences`` with the masked steps read as zeros (``mask`` bool ``[B, T]`` or None).

    Masked steps never reach the outputs, but a NaN or inf there would reach every gradient
    through the products of the backward pass (``0 * nan``). Export graphs, which are not
    differentiated, are left as they are (the fused and native forms take the raw inputs).
    """
    if mask is None or in_export_mode():
        return sequences
    return tf.where(mask[:, :, None], sequences, tf.zeros((), sequences.dtype))


def _cell_option(name: str) -> property:
    return property(lambda self: getattr(self.cell, name), doc=f"The cells' `{name}`.")


class RecurrentLayer(keras.layers.Layer):
    """Base runner. Subclasses set ``cell_class``."""

    cell_class: type[cells._Cell]

    def __init__(
        self,
        units: int,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        zero_output_for_mask: bool = False,
        num_layers: int = 1,
        inter_layer_dropout: float = 0.0,
        name: str | None = None,
        dtype: Any = None,
        trainable: bool = True,
        activity_regularizer: Any = None,
        unroll: bool = False,
        **cell_kwargs: Any,
    ) -> None:
        # Applied by Keras's `__call__` to the outputs (and returned states), as on
        # keras.layers.LSTM; the cells are never called that way, so it is the layer's.
        super().__init__(
            name=name,
            dtype=dtype,
            trainable=trainable,
            activity_regularizer=keras.regularizers.get(activity_regularizer),
        )
        # Accepted so that a keras.layers config loads; the loop runs in kernels, never
        # unrolled in Python (which would change speed, not results).
        if _validate.boolean("unroll", unroll):
            raise ValueError(
                "Invalid value for argument `unroll`. Expected False: keras_seq layers run "
                "the loop in fused kernels (an unrolled loop gives the same outputs). "
                "Received: unroll=True"
            )
        self.units = _validate.positive_int("units", units)
        self.num_layers = _validate.positive_int("num_layers", num_layers)
        self.inter_layer_dropout = _validate.rate("inter_layer_dropout", inter_layer_dropout)
        self.return_sequences = _validate.boolean("return_sequences", return_sequences)
        self.return_state = _validate.boolean("return_state", return_state)
        self.go_backwards = _validate.boolean("go_backwards", go_backwards)
        self.stateful = _validate.boolean("stateful", stateful)
        self.zero_output_for_mask = _validate.boolean("zero_output_for_mask", zero_output_for_mask)
        self.supports_masking = True
        seed = _validate.seed("seed", cell_kwargs.get("seed"))
        self._cell_kwargs = cell_kwargs
        self.cells = [
            self.cell_class(
                units,
                dtype=dtype,
                trainable=trainable,  # a frozen layer's variables are created frozen
                name=f"cell_{k}" if num_layers > 1 else "cell",
                **{**cell_kwargs, "seed": None if seed is None else seed + k},
            )
            for k in range(self.num_layers)
        ]
        # Its own stream: cells use seeds seed .. seed + num_layers - 1.
        self._inter_dropout_seed = keras.random.SeedGenerator(
            None if seed is None else seed + self.num_layers
        )
        self.states: list | None = None

    # -- properties -------------------------------------------------------------------------
    @property
    def cell(self) -> cells._Cell:
        """The first (or only) cell, as ``keras.layers.RNN.cell``."""
        return self.cells[0]

    @property
    def state_sizes(self) -> list[int]:
        return self.cell.state_sizes * self.num_layers

    # Cell options read through the layer, as on keras.layers.LSTM.
    dropout = _cell_option("dropout")
    recurrent_dropout = _cell_option("recurrent_dropout")
    activation = _cell_option("activation")
    use_bias = _cell_option("use_bias")
    kernel_initializer = _cell_option("kernel_initializer")
    recurrent_initializer = _cell_option("recurrent_initializer")
    bias_initializer = _cell_option("bias_initializer")
    kernel_regularizer = _cell_option("kernel_regularizer")
    recurrent_regularizer = _cell_option("recurrent_regularizer")
    bias_regularizer = _cell_option("bias_regularizer")
    kernel_constraint = _cell_option("kernel_constraint")
    recurrent_constraint = _cell_option("recurrent_constraint")
    bias_constraint = _cell_option("bias_constraint")

    def get_initial_state(self, batch_size) -> list[tf.Tensor]:
        """Zero states, one per state per level (``keras.layers.RNN.get_initial_state``)."""
        return [state for cell in self.cells for state in cell.get_initial_state(batch_size)]

    # -- build ------------------------------------------------------------------------------
    def build(self, sequences_shape, initial_state_shape=None) -> None:
        shape = tuple(sequences_shape)
        _validate.sequence_shape(self.name, shape)
        dim = _validate.feature_dim(shape)
        for k, cell in enumerate(self.cells):
            cell.build((shape[0], dim if k == 0 else self.units))
        if self.stateful:
            self.build_states(shape)

    def build_states(self, sequences_shape) -> None:
        """The state variables of a stateful layer, for the batch size of `sequences_shape`."""
        shape = tuple(sequences_shape)
        if shape[0] is None:
            raise ValueError(
                "When using `stateful=True` the batch size must be static. "
                f"Received: inputs.shape={shape}"
            )
        # Not tracked as weights (as keras.layers.RNN): get/set_weights stay Keras's.
        object.__setattr__(
            self,
            "states",
            [
                keras.Variable(
                    tf.zeros((shape[0], size), dtype=self.variable_dtype),
                    trainable=False,
                    name="rnn_state",
                )
                for size in self.state_sizes
            ],
        )

    def reset_state(self) -> None:
        for v in self.states or []:
            v.assign(tf.zeros_like(v))

    reset_states = reset_state

    # -- call -------------------------------------------------------------------------------
    def call(self, sequences, initial_state=None, mask=None, training=False):
        sequences = as_float(sequences, self.compute_dtype)
        self._check_inputs(sequences, mask)
        batch = tf.shape(sequences)[0]
        states = self._initial_states(initial_state, batch, sequences.dtype, sequences.shape[0])
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
        sequences = zero_padding(sequences, mask)

        x, finals, last = sequences, [], None
        per = len(self.state_sizes) // self.num_layers
        for k, cell in enumerate(self.cells):
            if k > 0 and training and self.inter_layer_dropout > 0:
                x = keras.random.dropout(x, self.inter_layer_dropout, seed=self._inter_dropout_seed)
            last_level = k == self.num_layers - 1
            # With go_backwards every level runs backwards in time. A level's outputs come in
            # processing order, which the next level reads forwards, unless there is a mask:
            # it is in input order (a right-padded row's padding comes first in processing
            # order), so the next level flips its input back and runs backwards itself. (A
            # stack of Keras layers passes the mask on unflipped and reads padding.)
            backwards = self.go_backwards and (k == 0 or mask is not None)
            if k > 0 and backwards:
                x = tf.reverse(x, [1])
            last, outputs, level_states = self.run_level(
                cell,
                x,
                states[k * per : (k + 1) * per],
                mask=mask,
                training=training,
                return_sequences=self.return_sequences or not last_level,
                go_backwards=backwards,
            )
            finals.extend(level_states)
            x = outputs
        if self.stateful:
            for var, value in zip(self.states, finals, strict=True):
                var.assign(tf.cast(value, var.dtype))
        output = x if self.return_sequences else last
        return [output, *finals] if self.return_state else output

    def run_level(
        self, cell, x, states, *, mask, training, return_sequences, go_backwards
    ) -> tuple[tf.Tensor, tf.Tensor | None, list[tf.Tensor]]:
        """One stacked level over the whole sequence: ``(last, outputs, final_states)``."""
        recurrent_mask = None
        if training and cell.dropout > 0:
            x = x * cell.dropout_mask(x[:, 0, :])[:, None, :]  # one mask per sequence
        if training and cell.recurrent_dropout > 0:
            recurrent_mask = cell.recurrent_dropout_mask(states[0])
        return run_cell(
            cell, x, states, recurrent_mask=recurrent_mask, mask=mask,
            go_backwards=go_backwards, return_sequences=return_sequences,
            zero_output_for_mask=self.zero_output_for_mask, training=training,
        )

    def _check_inputs(self, sequences, mask) -> None:
        shape = tuple(sequences.shape)
        _validate.sequence_shape(self.name, shape)
        expected = self.cell.input_dim
        if expected is not None and shape[-1] is not None and shape[-1] != expected:
            raise ValueError(
                f"Invalid input for layer `{self.name}`. Expected inputs with last "
                f"dimension {expected} (the size the weights were built for). "
                f"Received: inputs.shape={shape}"
            )
        if mask is not None:
            _validate.sequence_mask(self.name, mask, shape)

    def _initial_states(self, initial_state, batch, dtype, static_batch=None) -> list[tf.Tensor]:
        """The states to start from; `static_batch` (the inputs' static batch size, if known)
        is checked against each given state's, which would otherwise broadcast silently."""
        sizes = self.state_sizes
        if initial_state is None:
            if self.stateful and self.states:
                return [tf.convert_to_tensor(v) for v in self.states]
            return [tf.zeros(tf.stack([batch, size]), dtype=dtype) for size in sizes]
        if not isinstance(initial_state, (list, tuple)):
            initial_state = [initial_state]
        if len(initial_state) != len(sizes):
            raise ValueError(
                f"Invalid `initial_state` for layer `{self.name}`. Expected a list of "
                f"{len(sizes)} tensors (one per state per level, sizes {sizes}). "
                f"Received: {len(initial_state)} tensors"
            )
        result = []
        for k, (state, size) in enumerate(zip(initial_state, sizes, strict=True)):
            state = tf.convert_to_tensor(state, dtype=dtype)
            _validate.state_shape(f"`initial_state[{k}]` for layer `{self.name}`", state.shape,
                                  size, static_batch)
            if (static_batch is None or state.shape[0] is None) and not in_export_mode():
                # The fused kernels store every step's state at the inputs' batch.
                state = tf.broadcast_to(state, tf.stack([batch, size]))
            result.append(state)
        return result

    # -- Keras plumbing ---------------------------------------------------------------------
    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if not self.return_state:
            return out
        return [out, *[(batch, size) for size in self.state_sizes]]

    def compute_mask(self, sequences, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_sizes)
        return output_mask

    def get_config(self) -> dict[str, Any]:
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            cell_config.pop(key, None)
        cell_config["seed"] = self._cell_kwargs.get("seed")
        base = super().get_config()
        return {
            **base,  # holds the layer's own activity_regularizer
            **cell_config,
            **{key: getattr(self, key) for key in _RUNNER_KEYS},
        }


@keras.saving.register_keras_serializable(package="keras_seq")
class SimpleRNN(RecurrentLayer):
    """Elman RNN, ``h_t = tanh(x_t W + h_{t-1} R + b)``; see :class:`cells.SimpleRNNCell`.

    Example:
        >>> layer = SimpleRNN(16, return_sequences=True)
        >>> layer(tf.zeros((2, 5, 3))).shape
        TensorShape([2, 5, 16])
    """

    cell_class = cells.SimpleRNNCell


@keras.saving.register_keras_serializable(package="keras_seq")
class LSTM(RecurrentLayer):
    """LSTM layer; see :class:`cells.LSTMCell` for the equations and options.

    Example:
        >>> layer = LSTM(32, num_layers=2, return_state=True)
        >>> out, h0, c0, h1, c1 = layer(tf.zeros((4, 10, 8)))
    """

    cell_class = cells.LSTMCell
    recurrent_activation = _cell_option("recurrent_activation")
    unit_forget_bias = _cell_option("unit_forget_bias")
    peephole = _cell_option("peephole")
    coupled_gates = _cell_option("coupled_gates")


@keras.saving.register_keras_serializable(package="keras_seq")
class GRU(RecurrentLayer):
    """GRU layer (``reset_after=True`` by default, as Keras); see :class:`cells.GRUCell`."""

    cell_class = cells.GRUCell
    recurrent_activation = _cell_option("recurrent_activation")
    reset_after = _cell_option("reset_after")

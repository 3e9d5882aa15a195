"""Recurrent cells: one time step each.

A cell owns its weights and computes one step. Every cell splits its work in two:

* :meth:`project_inputs` -- the input half, ``x @ kernel (+ input bias)``. It has no time
  dependency, so runners apply it to all time steps at once as one large GEMM.
* :meth:`step` -- the recurrent half, from a projected input and the previous states.

``call(inputs, states, training)`` chains the two, which is the Keras cell contract, so
every cell also runs inside ``keras.layers.RNN``.

Weight layout is Keras's own (``kernel [D, G*U]``, ``recurrent_kernel [U, G*U]``, ``bias``),
so weights move between keras_seq, ``keras.layers`` and (via :mod:`keras_seq.interop`)
``torch.nn``.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq import _validate

__all__ = ["GRUCell", "LSTMCell", "SimpleRNNCell"]


class _Cell(keras.layers.Layer):
    """Shared plumbing: weights options, dropout, config, initial state."""

    gates: int = 1

    def __init__(
        self,
        units: int,
        *,
        activation: Any = "tanh",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.units = _validate.positive_int("units", units)
        self.activation = _validate.activation("activation", activation)
        self.use_bias = _validate.boolean("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = _validate.rate("dropout", dropout)
        self.recurrent_dropout = _validate.rate("recurrent_dropout", recurrent_dropout)
        self.seed = _validate.seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.state_size: Any = self.units
        self.output_size = self.units

    # -- weights ---------------------------------------------------------------------------
    def _kernels(self, input_dim: int) -> None:
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )

    def _bias(self, shape: tuple[int, ...], initializer: Any = None) -> None:
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                shape=shape,
                name="bias",
                initializer=initializer or self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def _w(self, weight) -> tf.Tensor:
        """A weight in the compute dtype. Keras casts weights read inside ``__call__`` of a
        mixed-precision layer; decoding and sampling call the cells' methods directly."""
        return tf.cast(weight, self.compute_dtype)

    @property
    def input_dim(self) -> int | None:
        return int(self.kernel.shape[0]) if self.built else None

    # -- the two halves of a step ----------------------------------------------------------
    def project_inputs(self, inputs: tf.Tensor) -> tf.Tensor:
        """``inputs [..., D] -> inputs @ kernel (+ input bias)  [..., G*U]``."""
        kernel = self._w(self.kernel)
        z = tf.linalg.matmul(inputs, kernel) if inputs.shape.rank == 2 else (
            tf.tensordot(inputs, kernel, axes=1)
        )
        bias = self._input_bias()
        return z if bias is None else tf.nn.bias_add(z, self._w(bias))

    def _input_bias(self) -> tf.Tensor | None:
        return self.bias

    def step(self, projected, states, recurrent_mask=None):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- Keras cell contract ---------------------------------------------------------------
    def call(self, inputs, states, training=False):
        """One step: ``(x_t [B, D], states) -> (h_t [B, U], new_states)``.

        Inside ``keras.layers.RNN`` dropout masks are drawn per step (Keras keeps its
        per-sequence mask mechanism private); keras_seq's own layers draw one mask per
        sequence (variational dropout, as ``keras.layers.LSTM``).
        """
        nested = isinstance(states, (list, tuple))
        states = list(states) if nested else [states]
        self._check_states(inputs, states)
        recurrent_mask = None
        if training:
            if self.dropout > 0:
                inputs = self.dropout_mask(inputs) * inputs
            if self.recurrent_dropout > 0:
                recurrent_mask = self.recurrent_dropout_mask(states[0])
        output, new_states = self.step(self.project_inputs(inputs), states, recurrent_mask)
        # A bare state tensor in, a bare one out (as keras.layers.SimpleRNNCell / GRUCell).
        return output, new_states if nested or len(new_states) > 1 else new_states[0]

    @property
    def state_sizes(self) -> list[int]:
        """The width of each state (LSTM: ``[units, units]``; GRU, SimpleRNN: ``[units]``)."""
        return list(self.state_size) if isinstance(self.state_size, (list, tuple)) else [
            self.state_size]

    def _check_states(self, inputs, states) -> None:
        """Refuse states of the wrong count, width or (static) batch, which would otherwise
        broadcast against the inputs silently (Keras has made both tensors by now)."""
        sizes = self.state_sizes
        if len(states) != len(sizes):
            raise ValueError(
                f"Invalid `states` for cell `{self.name}`. Expected {len(sizes)} tensors "
                f"(sizes {sizes}). Received: {len(states)} tensors"
            )
        batch = inputs.shape[0] if inputs.shape.rank else None
        for k, (state, size) in enumerate(zip(states, sizes, strict=True)):
            _validate.state_shape(f"`states[{k}]` for cell `{self.name}`", state.shape, size, batch)

    def dropout_mask(self, like: tf.Tensor) -> tf.Tensor:
        return keras.random.dropout(tf.ones_like(like), self.dropout, seed=self.seed_generator)

    def recurrent_dropout_mask(self, like: tf.Tensor) -> tf.Tensor:
        return keras.random.dropout(
            tf.ones_like(like), self.recurrent_dropout, seed=self.seed_generator
        )

    def get_initial_state(self, batch_size):
        return [tf.zeros((batch_size, size), dtype=self.compute_dtype) for size in self.state_sizes]

    def get_config(self) -> dict[str, Any]:
        ser = keras.saving.serialize_keras_object
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": ser(self.kernel_initializer),
            "recurrent_initializer": ser(self.recurrent_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "kernel_regularizer": ser(self.kernel_regularizer),
            "recurrent_regularizer": ser(self.recurrent_regularizer),
            "bias_regularizer": ser(self.bias_regularizer),
            "kernel_constraint": ser(self.kernel_constraint),
            "recurrent_constraint": ser(self.recurrent_constraint),
            "bias_constraint": ser(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }
        return {**super().get_config(), **config}


@keras.saving.register_keras_serializable(package="keras_seq")
class SimpleRNNCell(_Cell):
    """Elman cell: ``h_t = activation(x_t W + h_{t-1} R + b)``.

    Weights: ``kernel [D, U]``, ``recurrent_kernel [U, U]``, ``bias [U]``.

    Example:
        >>> cell = SimpleRNNCell(8)
        >>> layer = keras.layers.RNN(cell)  # or keras_seq.layers.SimpleRNN(8)
    """

    gates = 1

    def build(self, input_shape) -> None:
        self._kernels(_validate.feature_dim(input_shape))
        self._bias((self.units,))

    def step(self, projected, states, recurrent_mask=None):
        h_prev = states[0]
        h_rec = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        h = self.activation(projected + tf.linalg.matmul(h_rec, self._w(self.recurrent_kernel)))
        return h, [h]


@keras.saving.register_keras_serializable(package="keras_seq")
class LSTMCell(_Cell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997, with forget gate).

    With ``z = x_t W + h_{t-1} R + b`` split into gates ``i, f, g, o`` (Keras order i, f, c, o)::

        i = sigmoid(z_i [+ p_i * c_{t-1}])      input gate   (coupled: i = 1 - f)
        f = sigmoid(z_f [+ p_f * c_{t-1}])      forget gate
        g = tanh(z_g)                           candidate
        c_t = f * c_{t-1} + i * g
        o = sigmoid(z_o [+ p_o * c_t])          output gate
        h_t = o * tanh(c_t)

    Weights: ``kernel [D, 4U]``, ``recurrent_kernel [U, 4U]``, ``bias [4U]`` (identical to
    ``keras.layers.LSTMCell``). Options Keras lacks:

    * ``peephole=True`` (Gers & Schmidhuber 2000): gates also read the cell state through a
      diagonal ``peephole_kernel [P*U]`` (blocks i, f, o; without i when coupled).
    * ``coupled_gates=True`` ("CIFG", Greff et al. 2017): no input gate; ``i = 1 - f``. The
      kernels then hold three gates, order f, c, o: ``kernel [D, 3U]``.

    ``unit_forget_bias=True`` initialises the forget-gate bias to 1 (Jozefowicz et al. 2015).
    """

    def __init__(
        self,
        units: int,
        *,
        recurrent_activation: Any = "sigmoid",
        unit_forget_bias: bool = True,
        peephole: bool = False,
        coupled_gates: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, **kwargs)
        self.recurrent_activation = _validate.activation(
            "recurrent_activation", recurrent_activation
        )
        self.unit_forget_bias = _validate.boolean("unit_forget_bias", unit_forget_bias)
        self.peephole = _validate.boolean("peephole", peephole)
        self.coupled_gates = _validate.boolean("coupled_gates", coupled_gates)
        self.gates = 3 if self.coupled_gates else 4
        self.state_size = [self.units, self.units]

    @property
    def is_standard(self) -> bool:
        """True for the plain Keras-equivalent LSTM (the form exporters fuse)."""
        return not (self.peephole or self.coupled_gates)

    def build(self, input_shape) -> None:
        self._kernels(_validate.feature_dim(input_shape))
        initializer = None
        if self.unit_forget_bias:
            units, base, first = self.units, self.bias_initializer, 0 if self.coupled_gates else 1

            def initializer(shape, dtype=None):
                pieces = [base((units,), dtype=dtype) for _ in range(self.gates)]
                pieces[first] = tf.ones((units,), dtype=dtype)
                return tf.concat(pieces, axis=0)

        self._bias((self.gates * self.units,), initializer)
        self.peephole_kernel = None
        if self.peephole:
            self.peephole_kernel = self.add_weight(
                shape=((self.gates - 1) * self.units,),
                name="peephole_kernel",
                initializer="zeros",
            )

    def step(self, projected, states, recurrent_mask=None):
        h_prev, c_prev = states[0], states[1]
        h_rec = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        z = projected + tf.linalg.matmul(h_rec, self._w(self.recurrent_kernel))  # (B, G*U)
        sigma, act = self.recurrent_activation, self.activation
        if self.coupled_gates:
            z_f, z_g, z_o = tf.split(z, 3, axis=-1)
        else:
            z_i, z_f, z_g, z_o = tf.split(z, 4, axis=-1)
        if self.peephole:
            peeps = tf.split(self._w(self.peephole_kernel), self.gates - 1)
            p_o = peeps[-1]
            if not self.coupled_gates:
                z_i = z_i + peeps[0] * c_prev
            z_f = z_f + peeps[-2] * c_prev
        f = sigma(z_f)
        i = 1.0 - f if self.coupled_gates else sigma(z_i)
        c = f * c_prev + i * act(z_g)
        o = sigma(z_o + p_o * c) if self.peephole else sigma(z_o)
        h = o * act(c)
        return h, [h, c]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
            "peephole": self.peephole,
            "coupled_gates": self.coupled_gates,
        }


@keras.saving.register_keras_serializable(package="keras_seq")
class GRUCell(_Cell):
    """Gated recurrent unit (Cho et al. 2014). Gate order z, r, h (Keras's).

    ``reset_after=True`` (Keras / cuDNN / PyTorch form; ``bias [2, 3U]`` = input, recurrent)::

        z = sigmoid(x W_z + b_z + h R_z + b'_z)
        r = sigmoid(x W_r + b_r + h R_r + b'_r)
        n = tanh(x W_h + b_h + r * (h R_h + b'_h))
        h_t = z * h_{t-1} + (1 - z) * n

    ``reset_after=False`` (Cho et al.; ``bias [3U]``): ``n = tanh(x W_h + b_h + (r * h) R_h)``.
    Weights: ``kernel [D, 3U]``, ``recurrent_kernel [U, 3U]``.
    """

    gates = 3

    def __init__(
        self,
        units: int,
        *,
        recurrent_activation: Any = "sigmoid",
        reset_after: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(units, **kwargs)
        self.recurrent_activation = _validate.activation(
            "recurrent_activation", recurrent_activation
        )
        self.reset_after = _validate.boolean("reset_after", reset_after)

    def build(self, input_shape) -> None:
        self._kernels(_validate.feature_dim(input_shape))
        self._bias((2, 3 * self.units) if self.reset_after else (3 * self.units,))

    def _input_bias(self):
        if self.bias is None:
            return None
        return self.bias[0] if self.reset_after else self.bias

    def step(self, projected, states, recurrent_mask=None):
        h_prev = states[0]
        h_rec = h_prev if recurrent_mask is None else h_prev * recurrent_mask
        units, sigma = self.units, self.recurrent_activation
        recurrent_kernel = self._w(self.recurrent_kernel)
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        if self.reset_after:
            inner = tf.linalg.matmul(h_rec, recurrent_kernel)  # (B, 3U)
            if self.bias is not None:
                inner = tf.nn.bias_add(inner, self._w(self.bias[1]))
            r_z, r_r, r_h = tf.split(inner, 3, axis=-1)
            z = sigma(x_z + r_z)
            r = sigma(x_r + r_r)
            n = self.activation(x_h + r * r_h)
        else:
            inner = tf.linalg.matmul(h_rec, recurrent_kernel[:, : 2 * units])  # (B, 2U)
            r_z, r_r = tf.split(inner, 2, axis=-1)
            z = sigma(x_z + r_z)
            r = sigma(x_r + r_r)
            r_h = tf.linalg.matmul(r * h_rec, recurrent_kernel[:, 2 * units :])
            n = self.activation(x_h + r_h)
        h = z * h_prev + (1.0 - z) * n
        return h, [h]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "recurrent_activation": keras.activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
        }

"""Bidirectional wrapper for keras_seq recurrent layers."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq import _validate
from keras_seq.layers.recurrent import RecurrentLayer, as_float, zero_padding

__all__ = ["Bidirectional"]

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _merge(mode: str | None, fwd: tf.Tensor, bwd: tf.Tensor):
    if mode == "concat":
        return tf.concat([fwd, bwd], axis=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    if mode == "ave":
        return (fwd + bwd) / 2
    return [fwd, bwd]


@keras.saving.register_keras_serializable(package="keras_seq")
class Bidirectional(keras.layers.Layer):
    """Run a recurrent layer forwards and backwards in time and merge the two.

    Same contract as ``keras.layers.Bidirectional``: the backward copy has
    ``go_backwards=True``, its sequence output is flipped back to input order before the
    merge, masks apply to both directions (the backward direction starts from its initial
    state at the last *valid* step of each sequence, padding is skipped), weights are
    ``forward + backward``, states are ``forward states + backward states``.

    With ``num_layers > 1`` the stack is bidirectional at every level, as
    ``torch.nn.LSTM(bidirectional=True, num_layers=N)``: level ``k+1`` reads the
    concatenation of both directions of level ``k``; ``merge_mode`` applies to the top level.

    Example:
        >>> from keras_seq.layers import LSTM
        >>> bi = Bidirectional(LSTM(16, return_sequences=True), merge_mode="sum")
        >>> bi(tf.zeros((2, 7, 4))).shape
        TensorShape([2, 7, 16])
    """

    def __init__(
        self,
        layer: RecurrentLayer,
        merge_mode: str | None = "concat",
        backward_layer: RecurrentLayer | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(layer, RecurrentLayer):
            raise ValueError(
                "Invalid value for argument `layer`. Expected a keras_seq recurrent layer "
                f"(SimpleRNN, LSTM or GRU). Received: layer={layer!r}"
            )
        self.merge_mode = _validate.one_of("merge_mode", merge_mode, MERGE_MODES)
        if layer.go_backwards:  # keras.layers.Bidirectional refuses it too
            raise ValueError(
                "Invalid value for argument `layer`. Expected go_backwards=False (the wrapper "
                "runs a copy of it backwards itself). Received: go_backwards=True"
            )
        # The wrapper computes in the wrapped layer's dtype policy (inputs are cast by it).
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(**kwargs)
        self.forward_layer = self._copy(layer, "forward", go_backwards=False)
        if backward_layer is None:
            self.backward_layer = self._copy(layer, "backward", go_backwards=True)
        else:
            if not isinstance(backward_layer, RecurrentLayer) or not backward_layer.go_backwards:
                raise ValueError(
                    "Invalid value for argument `backward_layer`. Expected a keras_seq "
                    f"recurrent layer with go_backwards=True. Received: {backward_layer!r}"
                )
            for attr in ("units", "num_layers", "return_sequences", "return_state", "stateful"):
                if getattr(backward_layer, attr) != getattr(layer, attr):
                    raise ValueError(
                        f"Invalid value for argument `backward_layer`. Expected the same `{attr}` "
                        f"as the forward layer ({getattr(layer, attr)!r}). Received: "
                        f"{attr}={getattr(backward_layer, attr)!r}"
                    )
            if type(backward_layer) is not type(layer):
                raise ValueError(
                    "Invalid value for argument `backward_layer`. Expected the forward layer's "
                    f"type, {type(layer).__name__}. Received: {type(backward_layer).__name__}"
                )
            self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences  # as keras.layers.Bidirectional
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful
        self.num_layers = layer.num_layers
        self.supports_masking = True

    @staticmethod
    def _copy(layer: RecurrentLayer, prefix: str, go_backwards: bool) -> RecurrentLayer:
        config = layer.get_config()
        config["go_backwards"] = go_backwards
        config["name"] = f"{prefix}_{layer.name.removeprefix(prefix + '_')}"
        return type(layer).from_config(config)

    def build(self, sequences_shape, initial_state_shape=None) -> None:
        shape = tuple(sequences_shape)
        _validate.sequence_shape(self.name, shape)
        dim = _validate.feature_dim(shape)
        for sub in (self.forward_layer, self.backward_layer):
            with keras.name_scope(sub.name):  # forward_*/backward_* variable paths
                for k, cell in enumerate(sub.cells):
                    # Deeper levels read both directions of the level below.
                    cell.build((shape[0], dim if k == 0 else 2 * sub.units))
            if sub.stateful:
                sub.build_states(shape)
            sub.built = True

    def reset_state(self) -> None:
        for sub in (self.forward_layer, self.backward_layer):
            sub.reset_state()

    reset_states = reset_state

    def call(self, sequences, initial_state=None, mask=None, training=False):
        fwd_layer, bwd_layer = self.forward_layer, self.backward_layer
        sequences = as_float(sequences, self.compute_dtype)
        fwd_layer._check_inputs(sequences, mask)
        if mask is not None:
            mask = tf.cast(mask, tf.bool)
        sequences = zero_padding(sequences, mask)
        batch = tf.shape(sequences)[0]
        if initial_state is not None:
            initial_state = (
                list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
            )
            half = len(fwd_layer.state_sizes)
            if len(initial_state) != 2 * half:
                raise ValueError(
                    f"Invalid `initial_state` for layer `{self.name}`. Expected a list of "
                    f"{2 * half} tensors: the forward layer's {half}, then the backward "
                    f"layer's {half}. Received: {len(initial_state)} tensors"
                )
            fwd_init, bwd_init = initial_state[:half], initial_state[half:]
        else:
            fwd_init = bwd_init = None
        static_batch = sequences.shape[0]
        fwd_states = fwd_layer._initial_states(fwd_init, batch, sequences.dtype, static_batch)
        bwd_states = bwd_layer._initial_states(bwd_init, batch, sequences.dtype, static_batch)
        per = len(fwd_states) // self.num_layers

        x, fwd_finals, bwd_finals = sequences, [], []
        for k in range(self.num_layers):
            top = k == self.num_layers - 1
            if k > 0 and training and fwd_layer.inter_layer_dropout > 0:
                x = keras.random.dropout(
                    x, fwd_layer.inter_layer_dropout, seed=fwd_layer._inter_dropout_seed
                )
            seq = self.return_sequences or not top
            levels = []
            for sub, states, finals in (
                (fwd_layer, fwd_states, fwd_finals),
                (bwd_layer, bwd_states, bwd_finals),
            ):
                last, outputs, level_states = sub.run_level(
                    sub.cells[k],
                    x,
                    states[k * per : (k + 1) * per],
                    mask=mask,
                    training=training,
                    return_sequences=seq,
                    go_backwards=sub.go_backwards,
                )
                finals.extend(level_states)
                levels.append(outputs if seq else last)
            y, y_rev = levels
            if seq:
                y_rev = tf.reverse(y_rev, [1])  # back to input order
            x = _merge(self.merge_mode if top else "concat", y, y_rev)

        for sub, top_outputs, finals in zip(
            (fwd_layer, bwd_layer), levels, (fwd_finals, bwd_finals), strict=True
        ):
            if sub.activity_regularizer is not None:  # what the direction's __call__ adds
                for t in [top_outputs, *(finals if self.return_state else [])]:
                    loss = sub.activity_regularizer(t)
                    self.add_loss(tf.math.divide_no_nan(loss, tf.cast(tf.shape(t)[0], loss.dtype)))
            if sub.stateful:
                for var, value in zip(sub.states, finals, strict=True):
                    var.assign(tf.cast(value, var.dtype))
        if self.return_state:
            outputs = x if isinstance(x, list) else [x]
            return [*outputs, *fwd_finals, *bwd_finals]
        return x

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, steps = sequences_shape[0], sequences_shape[1]
        units = self.forward_layer.units
        width = 2 * units if self.merge_mode == "concat" else units
        out = (batch, steps, width) if self.return_sequences else (batch, width)
        outs = [out, out] if self.merge_mode is None else [out]
        if not self.return_state:
            return outs if self.merge_mode is None else out
        states = [(batch, s) for s in self.forward_layer.state_sizes] * 2
        return [*outs, *states]

    def compute_mask(self, sequences, mask=None):
        if isinstance(mask, (list, tuple)):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        outs = [output_mask, output_mask] if self.merge_mode is None else [output_mask]
        if self.return_state:
            return outs + [None] * (2 * len(self.forward_layer.state_sizes))
        return outs if self.merge_mode is None else output_mask

    def get_config(self) -> dict[str, Any]:
        config = {
            "layer": keras.saving.serialize_keras_object(self.forward_layer),
            "backward_layer": keras.saving.serialize_keras_object(self.backward_layer),
            "merge_mode": self.merge_mode,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Bidirectional:
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"])
        config["backward_layer"] = keras.saving.deserialize_keras_object(
            config["backward_layer"]
        )
        return cls(**config)

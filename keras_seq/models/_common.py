"""Plumbing shared by the task models: cell lookup, argument checks, compile defaults."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_seq import _validate, cells
from keras_seq.layers.recurrent import GRU, LSTM, RecurrentLayer, SimpleRNN

CELL_TYPES = ("lstm", "gru", "rnn")
_LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": SimpleRNN}
_CELLS = {"lstm": cells.LSTMCell, "gru": cells.GRUCell, "rnn": cells.SimpleRNNCell}

# Token id convention of the whole project.
PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3


def recurrent_layer(cell: str, units: int, **kwargs: Any) -> RecurrentLayer:
    """``keras_seq.layers.{LSTM, GRU, SimpleRNN}`` for ``cell`` in {'lstm', 'gru', 'rnn'}."""
    return _LAYERS[cell](units, **kwargs)


def recurrent_cell(cell: str, units: int, **kwargs: Any) -> cells._Cell:
    """``keras_seq.cells.{LSTMCell, GRUCell, SimpleRNNCell}`` for ``cell``."""
    return _CELLS[cell](units, **kwargs)


def states_per_level(cell: str) -> int:
    """LSTM carries ``(h, c)`` per level, GRU and SimpleRNN carry ``h``."""
    return 2 if cell == "lstm" else 1


def check_int_at_least(name: str, value: Any, minimum: int, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        reason = f" ({why})" if why else ""
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected an integer >= {minimum}{reason}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


check_cell = lambda value: _validate.one_of("cell", value, CELL_TYPES)  # noqa: E731
def check_token_ids(name: str, ids: Any, vocab_size: int) -> None:
    """Eager ids must lie in ``[0, vocab_size)``: the embedding would wrap a negative id to the
    last row and fail on a large one inside its gather. Traced ids are not checked."""
    values = getattr(ids, "numpy", None)
    if values is None or not np.size(values := np.asarray(values())):
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected token ids in [0, {vocab_size}). "
            f"Received: ids from {low} to {high}"
        )


check_bool = _validate.boolean
check_seed = _validate.seed
non_negative_float = _validate.non_negative_float
positive_int = _validate.positive_int
rate = _validate.rate
one_of = _validate.one_of


class TaskModel(keras.Model):
    """Base of the task models: ``compile()`` defaults to the model's own loss and metrics.

    ``compile(optimizer="auto", loss="auto", metrics="auto")`` picks Adam(1e-3), the loss
    that matches the model's outputs, and its default metrics (as KerasHub task models do);
    every argument can be overridden.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Traced tf.functions, kept out of Keras/TF tracking so exports never see them.
        object.__setattr__(self, "_traced", {})

    def default_loss(self) -> keras.losses.Loss:  # pragma: no cover - overridden
        raise NotImplementedError

    def default_metrics(self) -> list:
        return []

    def compile(self, optimizer: Any = "auto", loss: Any = "auto", metrics: Any = "auto", **kwargs):
        if isinstance(optimizer, str) and optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-3)
        if isinstance(loss, str) and loss == "auto":
            loss = self.default_loss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = self.default_metrics()
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Re-compile on ``load_model`` (Keras skips models whose ``compile`` is overridden)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if getattr(self, "optimizer", None) is not None and self.built:
            self.optimizer.build(self.trainable_variables)  # so its saved state can load

    def ensure_built(self) -> None:
        """Create every weight (the models build without knowing input shapes)."""
        if not self.built:
            self.build(None)

    def _cached(self, key: Any, make):
        if key not in self._traced:
            self._traced[key] = make()
        return self._traced[key]

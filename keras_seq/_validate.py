"""Argument checks that fail early with Keras-style messages (argument, expected, received)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np


def _integer(value: Any) -> bool:
    """Python and NumPy integers, not bools (as Keras's own layers take them)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value: Any) -> int:
    if not _integer(value) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive integer. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def rate(name: str, value: Any) -> float:
    real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not real or not 0 <= value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


def non_negative_float(name: str, value: Any) -> float:
    """A finite real number >= 0 (NaN and inf are refused: they would pass ``>= 0`` checks or
    silently change what a search returns)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not real or not 0 <= value < float("inf"):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a finite float >= 0. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def boolean(name: str, value: Any) -> bool:
    """A bool; ``bool("False")`` is True, so strings and numbers are refused, not coerced."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a bool. Received: {name}={value!r}"
        )
    return bool(value)


def seed(name: str, value: Any) -> int | None:
    """None or a non-negative integer, as ``keras.random.SeedGenerator`` takes."""
    if value is not None and (not _integer(value) or value < 0):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected None or a non-negative integer. "
            f"Received: {name}={value!r}"
        )
    return None if value is None else int(value)


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = list(allowed)
    if value not in allowed:
        shown = "{" + ", ".join(repr(a) for a in allowed) + "}"
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected one of {shown}. "
            f"Received: {name}={value!r}"
        )
    return value


def activation(name: str, value: Any):
    try:
        fn = keras.activations.get(value)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected the name of a Keras activation "
            f"(e.g. 'tanh', 'relu') or a callable. Received: {name}={value!r}"
        ) from err
    if fn is None:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected the name of a Keras activation "
            f"or a callable. Received: {name}={value!r}"
        )
    return fn


def feature_dim(input_shape: Any) -> int:
    """Last dimension of a step or sequence shape, which must be known to build weights."""
    dim = tuple(input_shape)[-1] if input_shape is not None and len(input_shape) else None
    if dim is None:
        raise ValueError(
            "The last dimension of the inputs must be defined to build the weights. "
            f"Received: input_shape={tuple(input_shape) if input_shape is not None else None}"
        )
    return int(dim)


def sequence_shape(layer: str, shape: tuple) -> None:
    """A recurrent layer's input must be ``(batch, timesteps, features)``."""
    if len(shape) != 3:
        raise ValueError(
            f"Invalid input for layer `{layer}`. Expected a 3D tensor "
            f"(batch, timesteps, features). Received: inputs.shape={shape}"
        )


def sequence_mask(layer: str, mask: Any, shape: tuple) -> None:
    """A mask for inputs of `shape` must be ``(batch, timesteps)`` (unknown sizes pass)."""
    mshape = tuple(mask.shape)
    if len(mshape) != 2 or any(
        a is not None and b is not None and a != b for a, b in zip(mshape, shape[:2], strict=True)
    ):
        raise ValueError(
            f"Invalid `mask` for layer `{layer}`. Expected shape "
            f"(batch, timesteps) = {shape[:2]}. Received: mask.shape={mshape}"
        )


def state_shape(what: str, shape: Any, size: int, batch: int | None) -> None:
    """A recurrent state must be ``(batch, size)``: refuse another rank, width or (where both
    are static) batch, which would otherwise broadcast silently. `what` names it, e.g.
    ``"`states[1]` for cell `lstm_cell`"``."""
    shape = tuple(shape)
    rows = shape[0] if len(shape) == 2 else None
    if (
        len(shape) != 2
        or (shape[-1] is not None and shape[-1] != size)
        or (None not in (rows, batch) and rows != batch)
    ):
        raise ValueError(
            f"Invalid {what}. Expected shape ({batch or 'batch'}, {size}). Received: shape={shape}"
        )

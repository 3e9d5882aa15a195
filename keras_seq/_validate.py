"""Argument checks that fail early with Keras-style messages (argument, expected, received)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import keras


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a positive integer. "
            f"Received: {name}={value!r}"
        )
    return value


def rate(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a float in [0, 1). "
            f"Received: {name}={value!r}"
        )
    return float(value)


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

"""Argument checks that fail early with Keras-style messages (argument, expected, received)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def invalid(name: str, expected: str, value: Any) -> ValueError:
    """The project's error text: `Invalid value for argument ... Received: name=value`."""
    return ValueError(
        f"Invalid value for argument `{name}`. Expected {expected}. Received: {name}={value!r}"
    )


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = list(allowed)
    if value not in allowed:
        shown = "{" + ", ".join(repr(a) for a in allowed) + "}"
        raise invalid(name, f"one of {shown}", value)
    return value


def _integer(value: Any) -> bool:
    """Python and NumPy integers, not bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(name: str, value: Any) -> int:
    if not _integer(value) or value <= 0:
        raise invalid(name, "a positive integer", value)
    return int(value)


def non_negative_int(name: str, value: Any) -> int:
    if not _integer(value) or value < 0:
        raise invalid(name, "a non-negative integer", value)
    return int(value)


def seed(name: str, value: Any) -> int:
    """A seed for NumPy's and tf.data's generators: a non-negative integer."""
    return non_negative_int(name, value)


def boolean(name: str, value: Any) -> bool:
    """A bool; ``bool("no")`` is True, so strings and numbers are refused, not coerced."""
    if not isinstance(value, (bool, np.bool_)):
        raise invalid(name, "a bool", value)
    return bool(value)


def texts(name: str, value: Any) -> list[str]:
    """A sequence of strings; a bare string would be taken as a sequence of its characters."""
    if isinstance(value, (str, bytes)):
        raise invalid(name, "a sequence of strings (a list of texts, not one text)", value)
    value = list(value)
    bad = next((k for k, t in enumerate(value) if not isinstance(t, str)), None)
    if bad is not None:
        raise invalid(f"{name}[{bad}]", "a str", value[bad])
    return value


def optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


def fraction(name: str, value: Any, *, allow_zero: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not ok or not (0 <= value < 1) or (value == 0 and not allow_zero):
        low = "[0, 1)" if allow_zero else "(0, 1)"
        raise invalid(name, f"a float in {low}", value)
    return float(value)


def fractions(name: str, value: Any) -> tuple[float, float, float]:
    """Three non-negative split fractions (train, validation, test) summing to 1, train > 0."""
    ok = isinstance(value, Sequence) and len(value) == 3
    ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok or min(value) < 0 or value[0] <= 0 or abs(sum(value) - 1.0) > 1e-6:
        raise invalid(
            name,
            "three non-negative fractions (train, validation, test) summing to 1 with train > 0",
            value,
        )
    return (float(value[0]), float(value[1]), float(value[2]))

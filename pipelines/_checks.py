"""Argument checks that fail early with Keras-style messages (argument, expected, received)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


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


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise invalid(name, "a positive integer", value)
    return value


def non_negative_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid(name, "a non-negative integer", value)
    return value


def optional_positive_int(name: str, value: Any) -> int | None:
    return None if value is None else positive_int(name, value)


def fraction(name: str, value: Any, *, allow_zero: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
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

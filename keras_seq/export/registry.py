"""Exporter plug-ins: one class per format, registered by name, with validated options.

A format is added by writing one class::

    @register_exporter("tflite")
    class TFLiteExporter(Exporter):
        OPTIONS = {"quantize": ("none", "dynamic", "float16", "int8")}

        def export(self, program, staging):  # write files under `staging`, return metadata
            ...

``make_exporter("tflite", quantize="dynamic")`` validates the options (each option's allowed
values; the first is the default) and returns an instance; ``export`` receives the task's
:class:`~keras_seq.export.tasks.TaskProgram` and a staging directory and returns the
``metadata.json`` entry for its artifacts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

__all__ = ["EXPORTERS", "Exporter", "exporter_names", "make_exporter", "register_exporter"]


class Exporter:
    """Base class of a format exporter.

    Attributes:
        name: registry name (set by :func:`register_exporter`).
        OPTIONS: ``{option: allowed values}``; the first allowed value is the default.
    """

    name: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, tuple[Any, ...]]] = {}

    def __init__(self, **options: Any) -> None:
        for key in options:
            if key not in self.OPTIONS:
                allowed = "{" + ", ".join(repr(k) for k in self.OPTIONS) + "}"
                raise ValueError(
                    f"Invalid option for exporter {self.name!r}. Expected one of {allowed}. "
                    f"Received: {key}={options[key]!r}"
                )
        self.options: dict[str, Any] = {}
        for key, allowed in self.OPTIONS.items():
            value = options.get(key, allowed[0])
            if value not in allowed:
                shown = "{" + ", ".join(repr(a) for a in allowed) + "}"
                raise ValueError(
                    f"Invalid value for argument `{key}`. Expected one of {shown}. "
                    f"Received: {key}={value!r}"
                )
            self.options[key] = value

    def export(self, program: Any, staging: Path) -> dict[str, Any]:  # pragma: no cover
        """Write this format's files under ``staging``; return its metadata entry."""
        raise NotImplementedError


EXPORTERS: dict[str, type[Exporter]] = {}


def register_exporter(name: str) -> Callable[[type[Exporter]], type[Exporter]]:
    """Class decorator registering an :class:`Exporter` subclass under ``name``."""

    def decorate(cls: type[Exporter]) -> type[Exporter]:
        if name in EXPORTERS and EXPORTERS[name] is not cls:
            raise ValueError(
                f"Invalid value for argument `name`. Expected a format not registered yet. "
                f"Received: name={name!r} (already {EXPORTERS[name].__name__})"
            )
        cls.name = name
        EXPORTERS[name] = cls
        return cls

    return decorate


def exporter_names() -> tuple[str, ...]:
    """Registered format names, in registration order."""
    return tuple(EXPORTERS)


def make_exporter(name: str, **options: Any) -> Exporter:
    """The exporter registered as ``name``, with validated ``options``."""
    if name not in EXPORTERS:
        allowed = "{" + ", ".join(repr(k) for k in EXPORTERS) + "}"
        raise ValueError(
            f"Invalid value for argument `formats`. Expected names from {allowed}. "
            f"Received: formats={name!r}"
        )
    return EXPORTERS[name](**options)

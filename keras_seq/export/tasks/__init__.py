"""Per-task export graphs and run-side clients (see :mod:`keras_seq.export.tasks.base`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keras_seq.export.tasks.base import FORMATS, Probe, Runner, Signature, TaskClient, TaskGraphs
from keras_seq.export.tasks.classification import ClassificationClient, ClassificationGraphs
from keras_seq.export.tasks.language_model import LanguageModelClient, LanguageModelGraphs
from keras_seq.export.tasks.seq2seq import Seq2SeqClient, Seq2SeqGraphs

__all__ = [
    "FORMATS",
    "Probe",
    "Runner",
    "Signature",
    "TaskClient",
    "TaskGraphs",
    "make_client",
    "make_graphs",
]

_GRAPHS: dict[str, type[TaskGraphs]] = {
    "classification": ClassificationGraphs,
    "language_model": LanguageModelGraphs,
    "seq2seq": Seq2SeqGraphs,
}
_CLIENTS: dict[str, type[TaskClient]] = {
    "classification": ClassificationClient,
    "language_model": LanguageModelClient,
    "seq2seq": Seq2SeqClient,
}


def _check_task(task: Any) -> str:
    if task not in _GRAPHS:
        shown = "{" + ", ".join(repr(t) for t in _GRAPHS) + "}"
        raise ValueError(
            f"Invalid value for argument `task`. Expected one of {shown}. Received: task={task!r}"
        )
    return task


def make_graphs(bundle: Any) -> TaskGraphs:
    """The export side of ``bundle.task`` (a :class:`~keras_seq.export.run_dir.RunBundle`)."""
    return _GRAPHS[_check_task(bundle.task)](bundle)


def make_client(metadata: Mapping[str, Any]) -> TaskClient:
    """The run side of an export, from its ``metadata.json`` contents."""
    return _CLIENTS[_check_task(metadata.get("task"))](metadata)

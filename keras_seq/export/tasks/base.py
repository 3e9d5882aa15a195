"""What every task contributes to an export: traced graphs (export side) and a client (run side).

Export side, :class:`TaskGraphs` (needs the Keras model): the string ``serving_default``
function for TF Serving and the numeric :class:`Signature` s on token ids that every format
exports under the same names, inputs and outputs.

Run side, :class:`TaskClient` (needs only ``metadata.json``): tokenizes text in Python, drives
the numeric signatures through any runtime (a :data:`Runner`) and turns their outputs into
readable results. ``verify`` and ``predict`` use it for Keras, SavedModel, TFLite and ONNX alike,
so the four runtimes are compared on exactly the same feeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FORMATS", "Probe", "Runner", "Signature", "TaskClient", "TaskGraphs"]

FORMATS = ("saved_model", "tflite", "onnx")

# (signature name, feeds) -> outputs, all NumPy. One per runtime.
Runner = Callable[[str, Mapping[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Signature:
    """A numeric function exported under ``name`` by every format in ``formats``.

    Attributes:
        name: signature name (SavedModel signature key, TFLite signature key, ONNX file stem).
        fn: ``fn(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]``.
        inputs: ``{name: (dtype name, shape)}``; ``shape[0]`` is the batch (``None``).
        formats: the formats that export it.
        onnx_file: file name of its ONNX model.
    """

    name: str
    fn: Callable[[dict[str, Any]], dict[str, Any]]
    inputs: dict[str, tuple[str, tuple[int | None, ...]]]
    formats: tuple[str, ...] = FORMATS
    onnx_file: str = "model.onnx"

    def specs(self, batch: int | None = None) -> dict[str, Any]:
        """``{name: tf.TensorSpec}`` with the batch dimension set to ``batch``."""
        import tensorflow as tf

        return {
            key: tf.TensorSpec((batch, *shape[1:]), tf.as_dtype(dtype), name=key)
            for key, (dtype, shape) in self.inputs.items()
        }


@dataclass
class Probe:
    """One example through one runtime.

    Attributes:
        values: the compared numbers (probabilities; for seq2seq the per-step probabilities
            of the reference path).
        top1: the discrete decision (label id, next token, or the greedy token sequence).
        output: the readable result (label, translation, continuation).
    """

    values: np.ndarray
    top1: Any
    output: dict[str, Any] = field(default_factory=dict)


class TaskGraphs:
    """Export side of a task (subclasses per task). Built from a :class:`RunBundle`."""

    task: str = ""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.vocabularies = bundle.vocabularies

    def signatures(self) -> list[Signature]:  # pragma: no cover - abstract
        raise NotImplementedError

    def serving_outputs(self) -> tuple[str, ...]:  # pragma: no cover - abstract
        """Output keys of ``serving_default``."""
        raise NotImplementedError

    def serve(self, text: Any) -> dict[str, Any]:  # pragma: no cover - abstract
        """``serving_default``: ``text`` string ``[N]`` -> readable outputs, inside the graph."""
        raise NotImplementedError

    def trackables(self) -> list[Any]:
        """Resources the serving graph reads (lookup tables) for ``ExportArchive.track``."""
        return [vocab.tokenizer for vocab in self.vocabularies.values()]

    def metadata(self) -> dict[str, Any]:
        """Task-specific ``metadata.json`` fields (decoding rules, ...)."""
        return {}


class TaskClient:
    """Run side of a task (subclasses per task). Built from ``metadata.json``."""

    task: str = ""
    primary: str = ""  # the signature timed for latency

    def __init__(self, metadata: Mapping[str, Any]) -> None:
        from pipelines.text import Vocabulary

        self.metadata = metadata
        self.vocabularies = {
            role: Vocabulary.from_config(config)
            for role, config in metadata["vocabularies"].items()
        }

    def token_ids(self, text: str, role: str = "source") -> np.ndarray:
        """``[1, T]`` int32 ids of one text, exactly as training encoded it (``T >= 1``:
        an empty text becomes one padding id)."""
        ids = self.vocabularies[role].encode([text]).to_list()[0] or [0]
        return np.asarray([ids], dtype=np.int32)

    def probe(self, run: Runner, text: str, reference: Probe | None = None) -> Probe:
        """Run one text through ``run``; ``reference`` (Keras's probe) pins the decoding path
        of generative tasks so every runtime is compared on the same steps."""
        raise NotImplementedError  # pragma: no cover

    def predict(self, run: Runner, text: str) -> dict[str, Any]:
        """The readable result of one text (``{"input", ...}``)."""
        return {"input": text, **self.probe(run, text).output}

    @staticmethod
    def from_serving(text: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Readable result from ``serving_default``'s outputs for one text."""
        raise NotImplementedError  # pragma: no cover

"""What one export run hands to every exporter."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ExportJob"]


@dataclass
class ExportJob:
    """One run being exported.

    Attributes:
        bundle: the run (:class:`~keras_seq.export.run_dir.RunBundle`).
        graphs: the task's export side (:class:`~keras_seq.export.tasks.TaskGraphs`).
        name: the model name (TF Serving model name, ``exported/<name>``).
        version: the SavedModel version being written.
        feeds: real numeric inputs per signature, recorded while the Keras model ran the
            samples (``{signature: [feeds, ...]}``): TFLite's int8 calibration data.
        calibration: ``(start, end)``, the ``samples.json`` examples `feeds` came from; the
            agreement checks judge the int8 model on the others.
    """

    bundle: Any
    graphs: Any
    name: str
    version: int
    feeds: Mapping[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    calibration: tuple[int, int] | None = None

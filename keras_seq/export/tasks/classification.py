"""Sequence classification: text -> label and class probabilities.

Exported functions (same names, inputs and outputs in every format):

=================  =========================================  ===============================
signature          inputs                                     outputs
=================  =========================================  ===============================
serving_default    ``text`` string ``[N]`` (SavedModel only)  ``label`` string ``[N]``,
                                                              ``probabilities`` ``[N, C]``
classify           ``token_ids`` int32 ``[B, T]``             ``probabilities`` ``[B, C]``
=================  =========================================  ===============================

``probabilities`` is the model's softmax output, in ``metadata.json``'s ``labels`` order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from keras_seq.export.tasks.base import Probe, Runner, Signature, TaskClient, TaskGraphs
from keras_seq.export.tasks.text_graph import padded_ids

__all__ = ["ClassificationClient", "ClassificationGraphs"]


class ClassificationGraphs(TaskGraphs):
    task = "classification"

    def signatures(self) -> list[Signature]:
        model = self.model

        def classify(inputs: dict[str, Any]) -> dict[str, Any]:
            return {"probabilities": model(inputs["token_ids"], training=False)}

        return [Signature("classify", classify, {"token_ids": ("int32", (None, None))})]

    def serving_outputs(self) -> tuple[str, ...]:
        return ("label", "probabilities")

    def serve(self, text: Any) -> dict[str, Any]:
        import tensorflow as tf

        ids = padded_ids(self.vocabularies["source"], text)
        probabilities = self.model(ids, training=False)
        labels = tf.constant(self.bundle.labels, dtype=tf.string)
        return {
            "label": tf.gather(labels, tf.argmax(probabilities, axis=-1)),
            "probabilities": probabilities,
        }


class ClassificationClient(TaskClient):
    task = "classification"
    primary = "classify"

    def probe(self, run: Runner, text: str, reference: Probe | None = None) -> Probe:
        probabilities = run("classify", {"token_ids": self.token_ids(text)})["probabilities"][0]
        top = int(np.argmax(probabilities))
        labels = self.metadata["labels"]
        return Probe(
            values=np.asarray(probabilities, np.float64),
            top1=top,
            output={"label": labels[top], "probabilities": [float(p) for p in probabilities]},
        )

    @staticmethod
    def from_serving(text: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        label = outputs["label"]
        label = label.decode("utf-8") if isinstance(label, bytes) else str(label)
        return {
            "input": text,
            "label": label,
            "probabilities": [float(p) for p in np.asarray(outputs["probabilities"]).ravel()],
        }

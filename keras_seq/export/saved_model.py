"""SavedModel for TF Serving: raw text in, readable results out, preprocessing in the graph.

Written with ``keras.export.ExportArchive`` (``tf.saved_model.save`` on a Keras 3 model
writes variables the TF1/C++ loader cannot find; ../shared/DESIGN.md section 4), so it loads in
``saved_model_cli run``, ``tf.compat.v1.saved_model.loader.load`` and TF Serving.

Signatures: ``serving_default`` (``text`` string ``[None]`` -> the task's readable outputs,
tokenization by the vocabulary's lookup table inside the graph) and the task's numeric
signatures on token ids (``classify`` / ``next_token`` / ``encode``, ``decode_step``,
``translate``), traced in the training graph form at a dynamic batch. The version directory
gets ``assets.extra/tf_serving_warmup_requests`` built from the run's real samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from keras_seq.export.job import ExportJob
from keras_seq.export.registry import Exporter, register_exporter
from keras_seq.export.warmup import read_warmup_requests, write_warmup_requests

__all__ = ["SavedModelExporter", "build_archive"]


def build_archive(job: ExportJob) -> Any:
    """An ``ExportArchive`` with ``serving_default`` and the numeric signatures."""
    import keras
    import tensorflow as tf

    graphs = job.graphs
    archive = keras.export.ExportArchive()
    # The model itself is not `track`ed: add_endpoint already tracks every variable the
    # endpoints read (as `_all_variables`), and `track(model)` would store each weight a second
    # time through its keras.Variable wrapper, doubling the file and TF Serving's memory
    # (keras-team/keras#23553, open for Keras 3.15). Only non-variable resources are tracked.
    for resource in graphs.trackables():
        archive.track(resource)

    def serving_default(text):
        return graphs.serve(text)

    archive.add_endpoint(
        "serving_default",
        serving_default,
        input_signature=[tf.TensorSpec([None], tf.string, name="text")],
    )
    for signature in graphs.signatures():
        if "saved_model" in signature.formats:
            archive.add_endpoint(
                signature.name, _at_least_one_step(signature), input_signature=[signature.specs()]
            )
    return archive


def _at_least_one_step(signature: Any) -> Any:
    """``signature.fn`` with its ``[B, T]`` int32 id inputs right-padded to ``T >= 1``.

    A request with no steps is answered as ``serving_default`` answers an empty text: one
    padding step, which the models mask. Unpadded, ``[B, 0]`` ids failed inside TensorFlow's
    ``TensorListConcatV2`` (an empty list at an unknown batch has no element shape).
    """
    from keras_seq.export.tasks.text_graph import at_least_one_step

    ids = [k for k, (dtype, shape) in signature.inputs.items() if dtype == "int32" and len(shape) == 2]
    if not ids:
        return signature.fn

    def fn(inputs: dict[str, Any]) -> dict[str, Any]:
        inputs = dict(inputs)
        for key in ids:
            inputs[key] = at_least_one_step(inputs[key])
        return signature.fn(inputs)

    return fn


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@register_exporter("saved_model")
class SavedModelExporter(Exporter):
    """``saved_model/<version>/`` with warm-up requests (no options)."""

    OPTIONS: dict[str, tuple[Any, ...]] = {}

    def export(self, job: ExportJob, staging: Path) -> dict[str, Any]:
        relative = Path("saved_model") / str(job.version)
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        build_archive(job).write_out(str(target), verbose=False)
        texts = [s["input"] for s in job.bundle.samples]
        write_warmup_requests(target, job.name, texts)
        signatures = ["serving_default"] + [
            s.name for s in job.graphs.signatures() if "saved_model" in s.formats
        ]
        return {
            "path": relative.as_posix(),
            "version": job.version,
            "signatures": signatures,
            "serving_default": {
                "inputs": {"text": {"dtype": "string", "shape": [None]}},
                "outputs": list(job.graphs.serving_outputs()),
            },
            "warmup_requests": sum(1 for _ in read_warmup_requests(target)),  # as written
            "size_bytes": _size(target),
        }

"""Every artifact behind one calling convention, ``runner(signature, feeds) -> outputs``.

A :data:`~keras_seq.export.tasks.Runner` takes a signature name and NumPy feeds keyed by
input name and returns NumPy outputs keyed by output name, whatever executes it:

* :func:`keras_runner` -- the live Keras model (the reference), each signature a
  ``tf.function`` at a dynamic batch;
* :class:`SavedModelSession` -- the SavedModel through the TF1 loader
  (``tf.compat.v1.saved_model.loader.load`` in a ``tf.compat.v1.Session``), as TF Serving
  loads it;
* :func:`tflite_runner` -- ``ai_edge_litert.interpreter.Interpreter`` signature runners;
* :func:`onnx_runner` -- one ``onnxruntime.InferenceSession`` per ONNX file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SavedModelSession", "check_padding", "keras_runner", "onnx_runner", "tflite_runner"]

Feeds = Mapping[str, np.ndarray]


def keras_runner(graphs: Any) -> Any:
    """Runner over a :class:`~keras_seq.export.tasks.TaskGraphs`' signatures (live model)."""
    import tensorflow as tf

    functions = {
        s.name: tf.function(s.fn, input_signature=[s.specs()], autograph=False)
        for s in graphs.signatures()
    }

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        outputs = functions[name]({k: tf.convert_to_tensor(v) for k, v in feeds.items()})
        return {k: np.asarray(v) for k, v in outputs.items()}

    return run


class SavedModelSession:
    """A SavedModel loaded the way TF Serving loads it (TF1 loader, ``serve`` tag).

    ``session(signature, feeds)`` runs a signature; :meth:`serve` runs ``serving_default`` on
    texts; :meth:`run_request` replays a ``PredictRequest`` (warm-up records).
    """

    def __init__(self, path: str | Path) -> None:
        import tensorflow as tf

        self.path = Path(path)
        self.graph = tf.Graph()
        self.session = tf.compat.v1.Session(graph=self.graph)
        # TF Serving's loader on purpose, so its notice that TF2 code should use
        # tf.saved_model.load is only noise in front of `keras-seq predict`'s output.
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel("ERROR")
        try:
            with self.graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(
                    self.session, ["serve"], str(self.path)
                )
        except (OSError, RuntimeError, tf.errors.OpError) as err:  # a missing or damaged file
            self.session.close()
            raise ValueError(f"Could not load the SavedModel at {self.path}: {_first_line(err)}"
                             ) from err
        finally:
            logger.setLevel(level)
        self.signatures = dict(meta.signature_def)

    def __call__(self, name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        if name not in self.signatures:
            raise KeyError(f"SavedModel {self.path} has no signature {name!r}")
        signature = self.signatures[name]
        fetches = {key: info.name for key, info in signature.outputs.items()}
        feed_dict = {signature.inputs[key].name: value for key, value in feeds.items()}
        return self.session.run(fetches, feed_dict=feed_dict)

    def serve(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``serving_default`` on ``texts`` (string ``[N]``)."""
        return self("serving_default", {"text": np.asarray([t.encode("utf-8") for t in texts],
                                                           dtype=object)})

    def run_request(self, request: Any) -> dict[str, np.ndarray]:
        """Run a ``tensorflow_serving.apis.predict_pb2.PredictRequest``."""
        import tensorflow as tf

        name = request.model_spec.signature_name or "serving_default"
        feeds = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
        return self(name, feeds)

    def close(self) -> None:
        self.session.close()


def check_padding(feeds: Feeds, padding: str, artifact: str) -> None:
    """Enforce an artifact's padding contract on its id feeds (integer ``[B, T]``, ``*_ids``).

    ``"none"`` (TFLite): exact-length ids, no padding id 0 anywhere (the fused LSTM has no
    mask). ``"right"`` (ONNX): 0 only as a suffix of each row (native nodes read it as
    ``sequence_lens``). A violation would run and return wrong numbers, so it is an error.
    """
    for name, value in feeds.items():
        value = np.asarray(value)
        if value.ndim != 2 or not name.endswith("ids") or value.dtype.kind not in "iu":
            continue
        pad = value == 0
        if padding == "none":
            bad = np.argwhere(pad)
            expected = "exact-length ids without the padding id 0 (feed one sequence per call)"
        else:
            bad = np.argwhere(pad[:, :-1] & ~pad[:, 1:])  # a 0 followed by a real token
            expected = "right-padded ids (the padding id 0 only after the last token)"
        if len(bad):
            row, step = (int(i) for i in bad[0])
            raise ValueError(
                f"Invalid feed {name!r} for the {artifact} artifact. Expected {expected}. "
                f"Received id 0 at row {row}, position {step}: {value[row].tolist()}"
            )


def tflite_runner(path: str | Path, num_threads: int | None = None) -> Any:
    """Runner over a ``.tflite`` file's signatures (inputs resized to each feed's shape).

    Feeds are checked against the TFLite contract (`check_padding`, ``"none"``)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    runners: dict[str, Any] = {}

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        check_padding(feeds, "none", "TFLite")
        if name not in runners:
            runners[name] = interpreter.get_signature_runner(name)
        outputs = runners[name](**{k: np.asarray(v) for k, v in feeds.items()})
        return {k: np.array(v) for k, v in outputs.items()}

    run.interpreter = interpreter  # type: ignore[attr-defined]
    return run


def onnx_runner(files: Mapping[str, str | Path], threads: int | None = None) -> Any:
    """Runner over ONNX files, ``{signature: path}``; feeds must be right-padded
    (`check_padding`, ``"right"``)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    sessions = {}
    for name, path in files.items():
        try:
            sessions[name] = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's NoSuchFile, InvalidProtobuf, ... (pybind)
            raise ValueError(f"Could not load the ONNX file {path}: {_first_line(err)}") from err

    def run(name: str, feeds: Feeds) -> dict[str, np.ndarray]:
        check_padding(feeds, "right", "ONNX")
        session = sessions[name]
        names = [o.name for o in session.get_outputs()]
        wanted = {i.name for i in session.get_inputs()}
        values = session.run(names, {k: np.asarray(v) for k, v in feeds.items() if k in wanted})
        return dict(zip(names, values, strict=True))

    return run


def _first_line(err: BaseException) -> str:
    """The first line of `err` that says something ("Graph execution error:" does not)."""
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and line != "Graph execution error:"]
    return lines[0] if lines else type(err).__name__

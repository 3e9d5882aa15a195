"""TF Serving warm-up records: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays this file when it loads a version, before the version takes traffic, so
the first real request does not pay for graph initialisation. The file is a TFRecord of
``tensorflow_serving.apis.prediction_log_pb2.PredictionLog`` protos, each holding a
``PredictRequest`` on ``serving_default`` with real example texts: one request per example
(batch 1) and one request with all of them (a large batch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["WARMUP_FILE", "read_warmup_requests", "write_warmup_requests"]

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def _request(model_name: str, texts: Sequence[str]):
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2

    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
    )
    request.inputs["text"].CopyFrom(
        tf.make_tensor_proto([t.encode("utf-8") for t in texts], dtype=tf.string,
                             shape=[len(texts)])
    )
    return request


def write_warmup_requests(
    saved_model_dir: str | Path, model_name: str, texts: Sequence[str], max_single: int = 16
) -> Path:
    """Write the warm-up file under ``saved_model_dir``; returns its path.

    Args:
        saved_model_dir: the version directory (``.../saved_model/<version>``).
        model_name: the TF Serving model name.
        texts: real example inputs (``samples.json``); the first ``max_single`` are sent
            alone, then all of them in one batch.
    """
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    texts = list(texts) or [""]
    path = Path(saved_model_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    batches = [[t] for t in texts[:max_single]] + [texts]
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in batches:
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=_request(model_name, batch))
            )
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(saved_model_dir: str | Path) -> Iterator:
    """The ``PredictRequest`` s of a version's warm-up file, in order."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(saved_model_dir) / WARMUP_FILE
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        yield log.predict_log.request

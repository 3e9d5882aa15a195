"""Clients for a running TF Serving: REST (stdlib only) and gRPC (tensorflow-serving-api).

REST predict contract (TF Serving ``api_rest``)::

    POST {url}/v1/models/{name}[/versions/{version}]:predict
    {"signature_name": "serving_default", "instances": [{"text": "..."}, ...]}
    -> 200 {"predictions": [...]}       one entry per instance: an object {output: value}
                                         when the signature has several outputs, the bare
                                         value when it has one
    -> 4xx/5xx {"error": "..."}

String outputs come back as JSON strings (as base64 ``{"b64": ...}`` only for output names
ending in ``_bytes``, which keras_seq signatures do not use).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

__all__ = ["ServingError", "grpc_predict", "rest_predict"]


class ServingError(ValueError):
    """TF Serving answered with an error (or something that is not a predict response)."""


def rest_predict(
    url: str,
    model_name: str,
    texts: Sequence[str],
    *,
    signature_name: str = "serving_default",
    version: int | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """``serving_default`` on ``texts`` through TF Serving's REST API; one prediction each.

    Returns the ``predictions`` list: dicts ``{output: value}`` (several outputs) or bare
    values (one output), in the order of ``texts``.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(
            "Invalid value for argument `server`. Expected an http(s) URL such as "
            "'http://localhost:8501' (or 'grpc://localhost:8500' for gRPC). "
            f"Received: server={url!r}"
        )
    path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "") + ":predict"
    body = json.dumps({"signature_name": signature_name,
                       "instances": [{"text": t} for t in texts]}).encode("utf-8")
    request = urllib.request.Request(
        url.rstrip("/") + path, data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read().decode("utf-8")).get("error", "")
        except (ValueError, AttributeError):
            message = ""
        raise ServingError(f"TF Serving at {url} answered HTTP {err.code}: {message}") from None
    except (urllib.error.URLError, OSError) as err:  # refused, unresolvable, timed out
        reason = getattr(err, "reason", err)
        raise ServingError(f"Cannot reach TF Serving at {url}: {reason}") from None
    if "error" in payload:
        raise ServingError(f"TF Serving at {url} answered: {payload['error']}")
    predictions = payload.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(texts):
        raise ServingError(
            f"TF Serving at {url} returned no 'predictions' list of {len(texts)} entries: "
            f"{str(payload)[:200]}"
        )
    return [_unbase64(p) for p in predictions]


def _unbase64(value: Any) -> Any:
    import base64

    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {k: _unbase64(v) for k, v in value.items()}
    return value


def grpc_predict(
    target: str,
    model_name: str,
    texts: Sequence[str],
    *,
    signature_name: str = "serving_default",
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """The same request over gRPC (``target`` = ``host:8500``); one dict per text."""
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    request.inputs["text"].CopyFrom(
        tf.make_tensor_proto([t.encode("utf-8") for t in texts], dtype=tf.string)
    )
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout)
        except grpc.RpcError as err:
            raise ServingError(
                f"TF Serving at {target} answered gRPC {err.code().name}: {err.details()}"
            ) from None
    outputs = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
    rows = []
    for i in range(len(texts)):
        row = {}
        for key, value in outputs.items():
            item = np.asarray(value)[i]
            row[key] = item.decode("utf-8") if isinstance(item, bytes) else item.tolist()
        rows.append(row)
    return rows

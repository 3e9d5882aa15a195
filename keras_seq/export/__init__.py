"""Export trained runs to SavedModel (TF Serving), TFLite (phones) and ONNX, and check them.

Entry points (the ``keras-seq export / verify / predict`` subcommands call these):

* :func:`export_run` (``run_dir, out, formats, quantize, version, replace``) and
  :func:`export_all_latest` (``runs_root, out, ...``) -- write ``exported/<name>/``;
* :func:`verify` (``export_dir``) -> :class:`VerifyReport` (``.table()``, ``.ok``);
* :func:`predict` (``path, texts, as_json, server, model_name``) -> one result per text.

Formats are plug-ins (:func:`register_exporter`); the built-in ones are ``"saved_model"``,
``"tflite"`` and ``"onnx"``. ``exported/README.md`` describes the layout and serving.
"""

from keras_seq.export.api import DEFAULT_FORMATS, existing_versions, export_all_latest, export_run
from keras_seq.export.predict import predict
from keras_seq.export.registry import (
    EXPORTERS,
    Exporter,
    exporter_names,
    make_exporter,
    register_exporter,
)
from keras_seq.export.verify import RuntimeRow, VerifyReport, verify

__all__ = [
    "DEFAULT_FORMATS",
    "EXPORTERS",
    "Exporter",
    "RuntimeRow",
    "VerifyReport",
    "existing_versions",
    "export_all_latest",
    "export_run",
    "exporter_names",
    "make_exporter",
    "predict",
    "register_exporter",
    "verify",
]

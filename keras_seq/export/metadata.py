"""``exported/<name>/metadata.json``: everything a client needs besides the artifact itself.

Fields::

    format, format_version      "keras_seq.export", 1
    name, task                  model name (TF Serving name), "classification" | ...
    labels                      classifiers: class names in probability order
    vocabularies                {"source": Vocabulary config (+ "target")}: tokens in id order
                                and the tokenization rules (level, lowercase, punctuation,
                                replacements, NFC normalization, special ids)
    tokenization                how ids are fed: per role, markers added, padding id, and that
                                TFLite/ONNX inputs are the exact-length ids of one text
    decoding                    generative tasks: greedy rules (max length, banned ids, ...)
    signatures                  numeric signatures: inputs {name: {dtype, shape}}, formats
    artifacts                   per format: files, sizes, op lists, versions (see exporters)
    source_run                  run dir, recipe, model class/config, model.keras sha256, metrics
    parity                      export-time comparison with the Keras model (verify's table)
    created                     UTC timestamp
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT", "METADATA_FILE", "base_metadata", "listed_files", "read_metadata", "write_metadata"
]

FORMAT = "keras_seq.export"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"


def base_metadata(bundle: Any, graphs: Any, name: str, digest: str) -> dict[str, Any]:
    """Metadata known before any artifact is written."""
    vocabularies = {role: v.get_config() for role, v in bundle.vocabularies.items()}
    tokenization = {
        role: {
            "level": v.level,
            "lowercase": v.lowercase,
            "normalization": "NFC",
            "add_start": False,
            "add_end": False,
            "pad_id": 0,
            "oov_id": 1,
            "feed": "ids of one text at its exact length, batch 1 (TFLite, ONNX); "
                    "several texts right-padded with 0 (SavedModel numeric signatures, ONNX)",
        }
        for role, v in bundle.vocabularies.items()
        if role == "source"
    }
    signatures = {
        s.name: {
            "inputs": {k: {"dtype": d, "shape": list(shape)} for k, (d, shape) in s.inputs.items()},
            "formats": list(s.formats),
        }
        for s in graphs.signatures()
    }
    model_config = bundle.config.get("model", {})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name,
        "task": bundle.task,
        "labels": list(bundle.labels),
        "vocabularies": vocabularies,
        "tokenization": tokenization,
        **graphs.metadata(),
        "signatures": signatures,
        "artifacts": {},
        "source_run": {
            "path": str(bundle.run_dir),
            "recipe": bundle.name,
            # The exported model: an ensemble run's is an Ensemble of `members` such models.
            "model_class": (type(bundle.model).__name__ if bundle.model is not None
                            else model_config.get("class")),
            "members": len(getattr(bundle.model, "members", ())) or 1,
            "model_config": model_config,
            "model_sha256": digest,
            "metrics": bundle.metrics,
        },
        "parity": {},
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_metadata(directory: str | Path, metadata: dict[str, Any]) -> Path:
    path = Path(directory) / METADATA_FILE
    path.write_text(json.dumps(metadata, indent=1, ensure_ascii=False, default=str) + "\n",
                    encoding="utf-8")
    return path


def read_metadata(export_dir: str | Path) -> dict[str, Any]:
    """Read ``<export_dir>/metadata.json``; ``FileNotFoundError`` / ``ValueError`` if it is
    missing or not keras_seq export metadata."""
    path = Path(export_dir) / METADATA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir} is not a keras_seq export (no {METADATA_FILE})")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        received = metadata.get("format") if isinstance(metadata, dict) else type(metadata)
        raise ValueError(
            f"Invalid value for argument `export_dir`. Expected a directory whose "
            f"{METADATA_FILE} has format={FORMAT!r}. Received: format={received!r}"
        )
    return metadata


def listed_files(metadata: dict[str, Any]) -> set[str]:
    """The TFLite and ONNX file names an export's metadata lists."""
    artifacts = metadata.get("artifacts", {})
    entries = [*artifacts.get("tflite", {}).get("variants", {}).values(),
               *artifacts.get("onnx", {}).get("files", {}).values()]
    return {entry["file"] for entry in entries}

"""``predict(path, texts)``: run an exported model on raw text, locally or on TF Serving.

``path`` may be an export directory (``exported/<name>``: its latest SavedModel version), a
SavedModel directory (``.../saved_model`` or ``.../saved_model/<version>``), a ``.tflite`` file
or an ``.onnx`` file. TFLite and ONNX take token ids: the texts are tokenized with the
vocabulary in ``metadata.json`` next to the file (exactly as training did) and decoded back;
the SavedModel tokenizes inside its graph. Results, one per text::

    classification         {"input", "label", "probabilities"}   (probabilities in label order)
    seq2seq, language model {"input", "output"}

With ``server`` the same ``serving_default`` request goes to TF Serving instead: its REST API
(``http://host:8501``: ``POST {server}/v1/models/{model_name}:predict``) or, with a
``grpc://host:8500`` address, its gRPC ``PredictionService.Predict``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keras_seq.export.metadata import METADATA_FILE, listed_files, read_metadata
from keras_seq.export.tasks import make_client
from keras_seq.export.tasks.classification import ClassificationClient
from keras_seq.export.tasks.language_model import LanguageModelClient
from keras_seq.export.tasks.seq2seq import Seq2SeqClient

__all__ = ["predict"]

_FROM_SERVING = {
    "classification": ClassificationClient.from_serving,
    "language_model": LanguageModelClient.from_serving,
    "seq2seq": Seq2SeqClient.from_serving,
}


def _find_metadata(path: Path) -> Path | None:
    """The export directory holding ``metadata.json`` at or above ``path`` (3 levels)."""
    for candidate in [path, *path.parents][:4]:
        if (candidate / METADATA_FILE).is_file():
            return candidate
    return None


def find_export(path: str | Path) -> Path | None:
    """The export directory of `path` (an export, a SavedModel folder or an artifact file), or
    None when `path` is not in an export."""
    path = Path(path)
    return _find_metadata(path if path.is_dir() else path.parent) if path.exists() else None


def _latest_version(base: Path) -> Path:
    versions = sorted((p for p in base.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name))
    if not versions:
        raise FileNotFoundError(f"{base} holds no SavedModel version directory")
    return versions[-1]


def _task_from_outputs(outputs: Any) -> str:
    keys = set(outputs) if isinstance(outputs, dict) else set()
    if "label" in keys:
        return "classification"
    if "translation" in keys:
        return "seq2seq"
    return "language_model"


def _readable(task: str | None, text: str, outputs: Any) -> dict[str, Any]:
    task = task or _task_from_outputs(outputs)
    return _FROM_SERVING[task](text, outputs)


def _saved_model(path: Path, texts: Sequence[str], task: str | None) -> list[dict[str, Any]]:
    from keras_seq.export.runtimes import SavedModelSession

    session = SavedModelSession(path)
    try:
        outputs = session.serve(texts)
    finally:
        session.close()
    rows = []
    for i, text in enumerate(texts):
        row = {k: np.asarray(v)[i] for k, v in outputs.items()}
        rows.append(_readable(task, text, row))
    return rows


def _refuse_tokenless(texts: Sequence[str], metadata: Mapping[str, Any] | None) -> None:
    """Refuse a text without tokens: TFLite's exact-length feed refuses it, while the
    SavedModel and ONNX would answer for padding alone. Which texts have none is the
    export's vocabulary's to say (a space is a token of a character vocabulary, not of a
    word one); without metadata (a bare server address), only the empty text."""
    vocab = None
    if metadata is not None:
        from pipelines.text import Vocabulary

        vocab = Vocabulary.from_config(metadata["vocabularies"]["source"])
    for i, text in enumerate(texts):
        if not text or (vocab is not None and not vocab.encode([text]).to_list()[0]):
            raise ValueError(
                "Invalid value for argument `texts`. Expected texts with at least one token "
                f"of the model's vocabulary. Received: texts[{i}]={text!r}"
            )


def _local(
    path: Path,
    texts: Sequence[str],
    export_dir: Path | None,
    metadata: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Predict with the artifact at `path`; `export_dir` and its `metadata` are `path`'s
    (``find_export``), or None."""
    from keras_seq.export.runtimes import onnx_runner, tflite_runner

    task = metadata["task"] if metadata else None
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return _saved_model(path, texts, task)
        base = path if path.name == "saved_model" else path / "saved_model"
        if base.is_dir():
            return _saved_model(_latest_version(base), texts, task)
        artifacts = metadata["artifacts"] if metadata and export_dir == path else {}
        if "tflite" in artifacts:  # an export without a SavedModel: its edge artifacts
            path = path / artifacts["tflite"]["variants"]["none"]["file"]
        elif "onnx" in artifacts:
            path = path / next(iter(artifacts["onnx"]["files"].values()))["file"]
        else:
            raise FileNotFoundError(f"{path} holds no SavedModel (saved_model.pb)")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    if metadata is None:
        raise FileNotFoundError(
            f"{path.name} needs {METADATA_FILE} in {path.parent} (vocabulary and labels)"
        )
    listed = listed_files(metadata)
    if path.suffix in (".tflite", ".onnx") and path.resolve() not in {
        (export_dir / name).resolve() for name in listed
    }:
        raise FileNotFoundError(
            f"{path.name} is not an artifact of {export_dir}: its {METADATA_FILE} lists "
            f"{', '.join(sorted(listed)) or 'none'} (a file left by another export?)"
        )
    if path.suffix == ".tflite":
        run = tflite_runner(path)
    elif path.suffix == ".onnx":
        files = {name: export_dir / entry["file"]
                 for name, entry in metadata["artifacts"]["onnx"]["files"].items()}
        run = onnx_runner(files)
    else:
        raise ValueError(
            "Invalid value for argument `path`. Expected an export or SavedModel directory, a "
            f".tflite or an .onnx file. Received: path={str(path)!r}"
        )
    client = make_client(metadata)
    return [client.predict(run, text) for text in texts]


def predict(
    path: str | Path | None,
    texts: Sequence[str],
    as_json: bool = False,
    server: str | None = None,
    model_name: str | None = None,
) -> list[dict[str, Any]] | list[str]:
    """Run an exported model on ``texts``.

    Args:
        path: export directory, SavedModel directory, ``.tflite`` or ``.onnx`` file. With
            ``server`` it may be None (or an export directory, to read the model name).
        texts: raw input texts.
        as_json: return one JSON line (str) per text instead of dicts.
        server: TF Serving address: REST base URL (``http://localhost:8501``) or gRPC
            (``grpc://localhost:8500``): predict remotely.
        model_name: the model's name on the server (default: ``metadata.json``'s name).

    Returns:
        One result per text (see module docstring).

    Example:
        >>> predict("exported/names", ["Nakamura"])  # doctest: +SKIP
        [{'input': 'Nakamura', 'label': 'Japanese', 'probabilities': [...]}]
    """
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("Invalid value for argument `texts`. Expected at least one text. "
                         "Received: texts=[]")
    export_dir = find_export(Path(path)) if path is not None else None
    metadata = read_metadata(export_dir) if export_dir is not None else None
    _refuse_tokenless(texts, metadata)
    if server is not None:
        from keras_seq.export.serving_client import rest_predict

        task = None
        if metadata is not None:
            task, model_name = metadata["task"], model_name or metadata["name"]
        if not model_name:
            raise ValueError(
                "Invalid value for argument `model_name`. Expected the model's name on the "
                "server (--model NAME). Received: model_name=None"
            )
        if server.startswith("grpc://"):
            from keras_seq.export.serving_client import grpc_predict

            predictions = grpc_predict(server.removeprefix("grpc://"), model_name, texts)
        else:
            predictions = rest_predict(server, model_name, texts)
        results = [_readable(task, t, p) for t, p in zip(texts, predictions, strict=True)]
    else:
        if path is None:
            raise ValueError("Invalid value for argument `path`. Expected an exported model "
                             "path when no server is given. Received: path=None")
        results = _local(Path(path), texts, export_dir, metadata)
    if as_json:
        return [json.dumps(r, ensure_ascii=False) for r in results]
    return results

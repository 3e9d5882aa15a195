"""Read a training run directory (the contract ``keras-seq train`` writes) for export.

::

    runs/<recipe>/<timestamp>/
      config.json    {"recipe" (or "name"), "task", "model": {"class", ...}, "train": {...}, ...}
      model.keras    the trained model
      vocab/source.json (+ vocab/target.json)   or   vocab_text.json / vocab_source.json /
                     vocab_target.json (what pipelines' ``SourceInfo.save`` writes)
      labels.json    classifiers: class names in label-id order
      samples.json   [{"input": str, "target": str}], real test examples
      metrics.json   {"test": {...}, ...}
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TASKS", "RunBundle", "check_model_file", "find_latest_runs", "load_run",
           "model_digest", "read_config", "read_labels", "read_metrics",
           "require_finished"]

TASKS = ("classification", "language_model", "seq2seq")

# Where each vocabulary role may live, in order of preference.
_VOCAB_FILES = {
    "source": ("vocab/source.json", "vocab_source.json", "vocab/text.json", "vocab_text.json"),
    "target": ("vocab/target.json", "vocab_target.json"),
}


@dataclass
class RunBundle:
    """Everything an exporter needs from one run.

    Attributes:
        run_dir: the run directory (absolute).
        config: the resolved config (``config.json``).
        name: the recipe name (``config["recipe"]`` or ``config["name"]``).
        task: ``"classification" | "language_model" | "seq2seq"``.
        model: the Keras model loaded from ``model.keras`` (``safe_mode=True``).
        vocabularies: ``{"source": Vocabulary}`` (+ ``"target"`` for seq2seq).
        labels: class names (classifiers), else ``[]``.
        samples: real test examples ``[{"input": ..., "target": ...}]``.
        metrics: ``metrics.json`` (``{}`` when absent: `load_run` without the model).
    """

    run_dir: Path
    config: dict[str, Any]
    name: str
    task: str
    model: Any
    vocabularies: dict[str, Any]
    labels: list[str] = field(default_factory=list)
    samples: list[dict[str, str]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def max_decode_length(self) -> int:
        """Greedy decoding budget (``train.max_decode_length``, default 40)."""
        return int(self.config.get("train", {}).get("max_decode_length", 40))


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {path} is not valid JSON: {err}") from None


def read_config(run_dir: str | Path) -> Any:
    """A run's resolved config (``config.json``); ``FileNotFoundError`` when `run_dir` has
    none, ``ValueError`` when it is not JSON."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.json)")
    return _read_json(path, "Run config")


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's ``metrics.json``; ``ValueError`` naming the file when it is not a JSON
    object (cut off, or edited)."""
    path = Path(run_dir) / "metrics.json"
    metrics = _read_json(path, "Metrics file")
    if not isinstance(metrics, dict):
        raise ValueError(f"Metrics file {path} is not a run's metrics: expected a JSON object, "
                         f"received {type(metrics).__name__}")
    return metrics


def read_labels(run_dir: str | Path) -> list[str]:
    """A classifier run's class names, in label-id order (``labels.json``)."""
    return [str(x) for x in _read_json(Path(run_dir) / "labels.json", "Labels file")]


def require_finished(run_dir: str | Path) -> None:
    """Refuse a run that ``keras-seq train`` has not finished (killed, or still training): it
    writes ``metrics.json`` last, once the model is trained and evaluated."""
    if not (Path(run_dir) / "metrics.json").is_file():
        raise ValueError(f"{run_dir} has not finished (no metrics.json): rerun `keras-seq "
                         "train` with the same arguments to finish it")


def _unreadable_model(path: Path, reason: Any) -> ValueError:
    return ValueError(
        f"Expected a Keras model file at {path}, but it is not a readable .keras archive "
        f"({reason}). Was its run killed while saving it? The training command resumes it."
    )


def check_model_file(path: str | Path) -> None:
    """Refuse, before reading anything else, a model file that is missing
    (``FileNotFoundError``) or not a whole .keras archive (``ValueError``: cut off)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected a Keras model file at {path}, but there is none.")
    if not zipfile.is_zipfile(path):
        raise _unreadable_model(path, "File is not a zip file")


def load_model(path: Path, *, float32: bool = False) -> Any:
    """``keras.saving.load_model(path, safe_mode=True)`` with keras_seq's classes registered.

    ``float32=True``: a model saved under a mixed-precision policy (``--mixed-precision``)
    loads computing in float32, with the same (float32) variables. Exports are float32: the
    TFLite and ONNX kernels, and the exporters' fused-RNN patterns, are float32 graphs.
    """
    import keras

    import keras_seq.layers  # noqa: F401  (registers the layers)

    try:
        import keras_seq.models  # noqa: F401  (registers the task models)
    except ImportError:  # pragma: no cover - only while keras_seq.models is absent
        pass
    check_model_file(path)  # Keras says "File not found" of a cut-off one
    try:
        return _load(keras, path, float32)
    except zipfile.BadZipFile as err:
        raise _unreadable_model(path, err) from None


def _load(keras: Any, path: Path, float32: bool) -> Any:
    if float32:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
            if _to_float32(config):
                with tempfile.TemporaryDirectory() as tmp:
                    copy = Path(tmp) / path.name
                    with zipfile.ZipFile(copy, "w") as out:
                        for item in archive.infolist():
                            data = (json.dumps(config).encode() if item.filename == "config.json"
                                    else archive.read(item))
                            out.writestr(item, data)
                    return keras.saving.load_model(copy, safe_mode=True, compile=False)
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def _to_float32(config: Any) -> bool:
    """Replace every mixed dtype policy in a saved model's `config` by float32, in place;
    whether there was one."""
    found = False
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(
                config.get("config", {}).get("name", "")).startswith("mixed_"):
            config["config"]["name"] = "float32"
            return True
        for value in config.values():
            found = _to_float32(value) or found
    elif isinstance(config, list):
        for value in config:
            found = _to_float32(value) or found
    return found


def load_run(run_dir: str | Path, *, load_keras_model: bool = True) -> RunBundle:
    """Read the run directory ``run_dir``; raise ``FileNotFoundError`` / ``ValueError`` naming
    the missing or malformed file, or (with the model, to export it) saying that the run has
    not finished. ``load_keras_model=False`` reads its other files, of an unfinished run too."""
    from pipelines.text import Vocabulary

    run_dir = Path(run_dir).resolve()
    config = read_config(run_dir)
    name = config.get("recipe") or config.get("name") or run_dir.parent.name
    task = config.get("task")
    if task not in TASKS:
        shown = "{" + ", ".join(repr(t) for t in TASKS) + "}"
        raise ValueError(
            f"Invalid value for argument `task` in {run_dir / 'config.json'}. Expected one of "
            f"{shown}. Received: task={task!r}"
        )
    if not (run_dir / "model.keras").is_file():
        raise FileNotFoundError(f"{run_dir} has no model.keras (did training finish?)")
    if load_keras_model:  # to export: only a finished run (a cut-off model.keras named first)
        check_model_file(run_dir / "model.keras")
        require_finished(run_dir)
    roles = ("source", "target") if task == "seq2seq" else ("source",)
    vocabularies = {}
    for role in roles:
        path = next((run_dir / p for p in _VOCAB_FILES[role] if (run_dir / p).is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"{run_dir} has no {role} vocabulary (looked for {', '.join(_VOCAB_FILES[role])})"
            )
        vocabularies[role] = Vocabulary.from_json(path)
    labels: list[str] = []
    if task == "classification":
        if not (run_dir / "labels.json").is_file():
            raise FileNotFoundError(f"{run_dir} has no labels.json (needed by classifiers)")
        labels = read_labels(run_dir)
    samples = []
    if (run_dir / "samples.json").is_file():
        samples = [
            {"input": str(s["input"]), "target": str(s.get("target", ""))}
            for s in _read_json(run_dir / "samples.json", "Samples file")
        ]
    metrics = {}
    if (run_dir / "metrics.json").is_file():
        metrics = read_metrics(run_dir)
    model = load_model(run_dir / "model.keras", float32=True) if load_keras_model else None
    return RunBundle(run_dir, config, str(name), task, model, vocabularies, labels, samples,
                     metrics)


def model_digest(run_dir: str | Path) -> str:
    """SHA-256 of the run's ``model.keras`` (identifies what an export was made from)."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / "model.keras", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_latest_runs(runs_root: str | Path) -> dict[str, Path]:
    """``{recipe: latest run dir}`` under ``runs_root`` (``runs/<recipe>/<run>/``).

    A run counts when it is finished (``config.json``, ``model.keras``, ``metrics.json``) and is
    not part of another run (an ensemble member, an experiment's sub-run); the latest is the
    one whose ``model.keras`` was written last. The recipe name is read from its config.
    """
    runs_root = Path(runs_root)
    if not runs_root.is_dir():
        raise FileNotFoundError(f"runs root {runs_root} is not a directory")
    latest: dict[str, tuple[float, Path]] = {}
    for model_path in runs_root.glob("**/model.keras"):
        run = model_path.parent
        if any(part.startswith(".") for part in run.relative_to(runs_root).parts):
            continue  # a worker's copy of a multi-worker run (.worker-<k>/), or hidden
        if not ((run / "config.json").is_file() and (run / "metrics.json").is_file()):
            continue  # not a run, or an unfinished one (killed; its command resumes it)
        config = _read_json(run / "config.json", "Run config")
        if config.get("task") not in TASKS or config.get("part_of"):
            continue  # not an exportable task, or one member of an ensemble / experiment
        name = str(config.get("recipe") or config.get("name") or run.parent.name)
        stamp = model_path.stat().st_mtime
        if name not in latest or stamp > latest[name][0]:
            latest[name] = (stamp, run)
    return {name: run for name, (_, run) in sorted(latest.items())}

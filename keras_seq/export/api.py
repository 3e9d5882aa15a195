"""``export_run`` / ``export_all_latest``: a run directory in, ``exported/<name>/`` out.

Layout written (``out = exported/<name>``)::

    exported/models.config                    TF Serving model_config_list (all models)
    exported/<name>/saved_model/<version>/    SavedModel + assets.extra/tf_serving_warmup_requests
    exported/<name>/model.tflite              (+ model.<quantize>.tflite)
    exported/<name>/model.onnx                (seq2seq: model_encoder.onnx, model_decoder_step.onnx)
    exported/<name>/metadata.json             task, labels, vocabularies, shapes, run, parity
    exported/<name>/samples.json              the run's real examples (verify, warm-up)
    exported/<name>/vocab/<role>.json         the vocabularies, for edge apps

Atomicity: everything is written under a staging directory next to ``out`` and checked
against the Keras model (``metadata.json``'s ``parity``) before anything in ``out`` changes;
a failure (a conversion error, or a float artifact that differs from Keras) removes the
staging directory and leaves ``out`` as it was. Then each piece moves in
with one ``rename``: the SavedModel version directory (TF Serving never sees a half-written
version), then the files (``os.replace``), ``metadata.json`` last. One export writes a
directory at a time: it holds the lock file ``.<name>.lock`` beside ``out``, and a second
export into it is refused, naming the holder's pid.

Versions: never overwritten silently. With ``version=None`` the first export of a name is
version 1 and a later one is refused unless ``replace=True`` (which overwrites the latest
version) or an explicit new ``version`` is given; an existing explicit ``version`` needs
``replace=True``, and one older than the latest is refused (the latest is what is served).
``version="next"`` (``--version next``) is the version after the latest, so TF Serving
switches to the new model; ``export_all_latest`` (what ``make train`` uses) exports a newer
run as the next version and skips a run already exported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from keras_seq import _lock
from keras_seq.export import onnx as _onnx  # noqa: F401  (registers the exporter)
from keras_seq.export import saved_model as _saved_model  # noqa: F401
from keras_seq.export import tflite as _tflite  # noqa: F401
from keras_seq.export.job import ExportJob
from keras_seq.export.metadata import (
    base_metadata,
    listed_files,
    read_metadata,
    write_metadata,
)
from keras_seq.export.registry import exporter_names, make_exporter
from keras_seq.export.run_dir import find_latest_runs, load_run, model_digest
from keras_seq.export.serving_config import write_models_config
from keras_seq.export.tasks import make_client, make_graphs

__all__ = ["DEFAULT_FORMATS", "export_all_latest", "export_run", "existing_versions"]

DEFAULT_FORMATS = ("saved_model", "tflite", "onnx")
QUANTIZE = ("none", "dynamic", "float16", "int8")


def existing_versions(out: str | Path) -> list[int]:
    """Sorted SavedModel versions already under ``out/saved_model``."""
    base = Path(out) / "saved_model"
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())


def _check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    formats = tuple(dict.fromkeys(formats))
    allowed = exporter_names()
    if not formats or any(f not in allowed for f in formats):
        shown = "{" + ", ".join(repr(f) for f in allowed) + "}"
        raise ValueError(
            f"Invalid value for argument `formats`. Expected a non-empty list of names from "
            f"{shown}. Received: formats={list(formats)!r}"
        )
    return formats


def _pick_version(out: Path, version: int | str | None, replace: bool) -> int:
    versions = existing_versions(out)
    if version == "next":  # a new version after the latest: TF Serving picks it up
        return versions[-1] + 1 if versions else 1
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)
                                or version < 1):
        raise ValueError(
            f"Invalid value for argument `version`. Expected a positive integer. "
            f"Received: version={version!r}"
        )
    if version is None:
        if not versions:
            return 1
        if replace:
            return versions[-1]
        raise ValueError(
            f"Invalid value for argument `version`. Expected a new version: {out} already "
            f"holds SavedModel version(s) {versions}; pass version={versions[-1] + 1} "
            f"(--version {versions[-1] + 1}) or replace=True (--replace) to overwrite version "
            f"{versions[-1]}. Received: version=None"
        )
    if versions and version < versions[-1]:
        raise ValueError(
            f"Invalid value for argument `version`. Expected a version >= {versions[-1]}, the "
            f"latest in {out / 'saved_model'}: TF Serving and `predict` serve the latest, so "
            "metadata.json, TFLite and ONNX would describe another model than the one served. "
            f"Received: version={version}"
        )
    if version in versions and not replace:
        raise ValueError(
            f"Invalid value for argument `version`. Expected a version not exported yet "
            f"({out / 'saved_model' / str(version)} exists; pass replace=True (--replace) to "
            f"overwrite it; latest is {versions[-1]}). Received: version={version}"
        )
    return version


def _record_feeds(client: Any, graphs: Any, texts: Sequence[str]) -> dict[str, list[dict]]:
    """Run the Keras model on the samples, recording each signature's real feeds."""
    from keras_seq.export.runtimes import keras_runner

    keras = keras_runner(graphs)
    feeds: dict[str, list[dict]] = {}

    def recording(name: str, values: Any) -> dict:
        feeds.setdefault(name, []).append(dict(values))
        if name == "encode":  # the whole-decode signature reads the same source ids
            feeds.setdefault("translate", []).append(dict(values))
        return keras(name, values)

    for text in texts:
        client.probe(recording, text)
    return feeds


def _commit(staging: Path, out: Path, version: int | None) -> None:
    """Move the staged export into ``out`` one rename at a time (see module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    trash = out.parent / f".trash-{out.name}-{uuid.uuid4().hex[:8]}"
    try:
        if version is not None and (staging / "saved_model" / str(version)).is_dir():
            target = out / "saved_model" / str(version)
            target.parent.mkdir(exist_ok=True)
            if target.exists():
                trash.mkdir()
                os.rename(target, trash / "old_version")
            os.rename(staging / "saved_model" / str(version), target)
        if (staging / "vocab").is_dir():
            (out / "vocab").mkdir(exist_ok=True)
            for path in (staging / "vocab").iterdir():
                os.replace(path, out / "vocab" / path.name)
        files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != "metadata.json")
        for path in files:
            os.replace(path, out / path.name)
        os.replace(staging / "metadata.json", out / "metadata.json")
        # A TFLite or ONNX file the new metadata does not list (e.g. the quantized variant of
        # an earlier export) would still be served by `predict FILE` as this model.
        listed = listed_files(json.loads((out / "metadata.json").read_text(encoding="utf-8")))
        for path in sorted((*out.glob("*.tflite"), *out.glob("*.onnx"))):
            if path.name not in listed:
                trash.mkdir(exist_ok=True)
                os.rename(path, trash / path.name)
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def export_run(
    run_dir: str | Path,
    out: str | Path,
    formats: Sequence[str] | str = DEFAULT_FORMATS,
    quantize: str = "none",
    version: int | None = None,
    replace: bool = False,
    *,
    parity_examples: int = 16,
    serving_base: str = "/models",
) -> Path:
    """Export the run ``run_dir`` into ``out`` (``exported/<name>``); returns ``out``.

    Args:
        run_dir: a training run directory (``config.json``, ``model.keras``, vocabularies,
            ``samples.json``; see :mod:`keras_seq.export.run_dir`).
        out: the export directory; its name is the TF Serving model name, and
            ``out.parent/models.config`` is regenerated.
        formats: any of ``"saved_model"``, ``"tflite"``, ``"onnx"`` (list or comma string).
        quantize: ``"none"``, ``"dynamic"``, ``"float16"`` or ``"int8"``: an extra quantized
            TFLite file beside the float one.
        version: SavedModel version; None: 1 for a new name (see module docstring).
        replace: allow overwriting an existing version.
        parity_examples: samples compared with Keras for ``metadata.json``'s ``parity``
            (0 skips; ``keras-seq verify`` runs the full comparison); with ``quantize``, all
            of them.
        serving_base: where ``out.parent`` is mounted in the serving container.

    Raises:
        ValueError: bad arguments, an existing version without ``replace``, another process
            exporting into ``out``, or a conversion producing unusable artifacts.
        FileNotFoundError: ``run_dir`` is not a complete run directory.
    """
    formats = _check_formats(formats)
    if quantize not in QUANTIZE:
        shown = "{" + ", ".join(repr(q) for q in QUANTIZE) + "}"
        raise ValueError(
            f"Invalid value for argument `quantize`. Expected one of {shown}. "
            f"Received: quantize={quantize!r}"
        )
    if quantize != "none" and "tflite" not in formats:
        raise ValueError(
            "Invalid value for argument `quantize`. Expected 'none' unless 'tflite' is in "
            f"`formats` (quantization applies to TFLite). Received: quantize={quantize!r}, "
            f"formats={list(formats)!r}"
        )
    out = Path(out).resolve()
    with _exporting(out):
        return _export(run_dir, out, formats, quantize, version, replace, parity_examples,
                       serving_base)


@contextlib.contextmanager
def _exporting(out: Path) -> Iterator[None]:
    """Hold ``out`` for one export at a time: two at once picked the same version, and the
    later one's commit replaced the earlier one's without ``replace``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = _lock.hold(out.parent / f".{out.name}.lock")
    except _lock.InUse as err:
        raise ValueError(
            f"Invalid value for argument `out`. Expected a directory no other export is "
            f"writing: {out} is being exported by another process (pid {err.holder}); wait "
            f"for it to end. Received: out={str(out)!r}"
        ) from None
    try:
        yield
    finally:
        lock.close()


def _export(run_dir: str | Path, out: Path, formats: Sequence[str], quantize: str,
            version: int | str | None, replace: bool, parity_examples: int,
            serving_base: str) -> Path:
    """`export_run` once its arguments are checked and ``out`` is held."""
    target_version = _pick_version(out, version, replace) if "saved_model" in formats else None
    exporters = [
        make_exporter(f, **({"quantize": quantize} if f == "tflite" else {})) for f in formats
    ]

    bundle = load_run(run_dir)
    graphs = make_graphs(bundle)
    name = out.name
    metadata = base_metadata(bundle, graphs, name, model_digest(bundle.run_dir))
    if (out / "metadata.json").is_file():  # keep other formats' entries from the same model
        previous = read_metadata(out)
        others = [v for v in existing_versions(out) if v != target_version]
        if others and (previous.get("task"), previous.get("signatures")) != (
                metadata["task"], metadata["signatures"]):
            # TF Serving serves every version under one name; metadata.json describes them all.
            raise ValueError(
                f"Invalid value for argument `out`. {out} holds a {previous.get('task')} export "
                f"(SavedModel version(s) {others}) whose signatures differ from this "
                f"{metadata['task']} model's; versions of one model name share them. Export it "
                f"into another directory. Received: out={str(out)!r}"
            )
        kept = {k: v for k, v in previous.get("artifacts", {}).items() if k not in formats}
        if previous["source_run"].get("model_sha256") == metadata["source_run"]["model_sha256"]:
            metadata["artifacts"] = kept
        elif kept:  # they would stay beside this model's, served and predicted as if current
            raise ValueError(
                f"Invalid value for argument `formats`. {out} holds {', '.join(kept)} of "
                f"another model ({previous['source_run'].get('path')}); export it in those "
                f"formats too, or into another directory. Received: formats={list(formats)!r}"
            )
    client = make_client(metadata)
    texts = [s["input"] for s in bundle.samples]
    if parity_examples and not texts:
        raise ValueError(
            f"Invalid value for argument `run_dir`. Expected real examples in "
            f"{bundle.run_dir / 'samples.json'} to check the artifacts against the Keras model "
            "(or parity_examples=0). Received: none"
        )
    feeds, calibration = {}, None
    if quantize == "int8":  # the second half: the checks judge it on the first (_parity, verify)
        start = len(texts) // 2
        calibration = (start, min(len(texts), start + 32))
        feeds = _record_feeds(client, graphs, texts[slice(*calibration)])
    job = ExportJob(bundle, graphs, name, target_version or 0, feeds, calibration)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".staging-{name}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        for exporter in exporters:
            metadata["artifacts"][exporter.name] = exporter.export(job, staging)
        (staging / "vocab").mkdir()
        for role, vocab in bundle.vocabularies.items():
            vocab.to_json(staging / "vocab" / f"{role}.json")
        (staging / "samples.json").write_text(
            json.dumps(bundle.samples, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        write_metadata(staging, metadata)
        if parity_examples:
            # A quantized file is judged on every sample, as `verify` judges it: an int8
            # BiLSTM agreed on the first 16 and on 93.8% of the 32 it was not calibrated on.
            examples = None if quantize != "none" else parity_examples
            metadata["parity"] = _parity(staging, out, metadata, bundle, formats, examples)
            write_metadata(staging, metadata)
        _commit(staging, out, target_version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_models_config(out.parent, serving_base)
    return out


def _percent(value: float | None) -> str:
    return "not run" if value is None else f"{value:.1%}"


def _parity(staging: Path, out: Path, metadata: dict[str, Any], bundle: Any,
            formats: Sequence[str], examples: int | None) -> dict[str, Any]:
    """verify() on the artifacts staged by this export (entries kept from an earlier export of
    the same model are not re-run).

    Raises ``ValueError`` (and nothing is committed) when an artifact fails: a float one
    differs from Keras, or a quantized one agrees on fewer top-1 answers than the bar.
    """
    from keras_seq.export.verify import verify

    staged = {**metadata, "artifacts": {k: v for k, v in metadata["artifacts"].items()
                                        if k in formats}}
    write_metadata(staging, staged)
    report = verify(staging, run_dir=bundle.run_dir, max_examples=examples)
    failed = [row for row in report.rows if not row.ok]
    if failed:
        if all(row.kind == "quantized" for row in failed):
            problem = (
                f"quantized artifacts agree with the Keras model's top-1 on fewer than "
                f"{report.min_agreement:.0%} of the examples ("
                + ", ".join(f"{row.runtime} {_percent(row.agreement)}" for row in failed)
                + "); nothing was written. Export without that --quantize, or with another"
            )
        else:
            problem = (f"artifacts differ from the Keras model "
                       f"({', '.join(row.runtime for row in failed)}); nothing was written")
        raise ValueError(f"Export of {bundle.run_dir} to {out} stopped: {problem}.\n"
                         + report.table())
    result = report.to_dict()
    result["export_dir"] = str(out)
    return result


def export_all_latest(
    runs_root: str | Path,
    out: str | Path = "exported",
    formats: Sequence[str] | str = DEFAULT_FORMATS,
    quantize: str = "none",
    replace: bool = False,
    *,
    parity_examples: int = 16,
) -> dict[str, Path | None]:
    """Export the latest run of every recipe under ``runs_root`` to ``out/<recipe>``.

    A recipe whose latest run is already exported (same ``model.keras`` digest) is skipped
    (``None`` in the result) unless ``replace``; a newer run becomes the next SavedModel
    version. Regression runs (no text input) are not exported.

    Returns:
        ``{recipe: export dir or None when skipped}``.
    """
    out = Path(out)
    results: dict[str, Path | None] = {}
    runs = find_latest_runs(runs_root)
    if not runs:
        raise FileNotFoundError(f"no exportable runs (config.json + model.keras) under {runs_root}")
    for recipe, run in runs.items():
        target = out / recipe
        versions = existing_versions(target)
        version = None
        if versions:
            try:
                same = read_metadata(target)["source_run"].get("model_sha256") == model_digest(run)
            except (FileNotFoundError, ValueError):
                same = False
            if same and not replace:
                results[recipe] = None
                continue
            # A newer run is the next version, also with `replace` (which redoes the latest
            # run's own version): TF Serving would not reload a version number it has served.
            version = versions[-1] if same else versions[-1] + 1
        results[recipe] = export_run(run, target, formats=formats, quantize=quantize,
                                     version=version, replace=replace,
                                     parity_examples=parity_examples)
    return results

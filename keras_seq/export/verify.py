"""``verify(export_dir)``: feed the run's real test examples through every runtime and compare.

Runtimes: the Keras model (``model.keras`` of the source run; the reference), the SavedModel
through the TF1 loader (numeric signatures, and ``serving_default`` on raw text), each TFLite
file (float and quantized) and ONNX Runtime. Every runtime is driven by the task's client with
the same feeds (batch 1, exact-length ids), so the numbers compare like for like:

* ``max|diff|``: the largest absolute difference from Keras over all examples, on the
  compared values (classifier probabilities; language-model logits; seq2seq step
  probabilities along Keras's greedy path);
* ``top-1``: share of examples whose decision equals Keras's (label, next token, or the
  whole greedy translation / readable output);
* ``p50 ms``: median batch-1 latency of one example (one translation for seq2seq).

A float artifact fails when ``max|diff| > tolerance`` (1e-4), a quantized one when its
top-1 agreement is below ``min_agreement`` (99%); a runtime that cannot load or run fails.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_seq.export.metadata import read_metadata
from keras_seq.export.tasks import Probe, make_client, make_graphs

__all__ = ["RuntimeRow", "VerifyReport", "verify"]


@dataclass
class RuntimeRow:
    """One runtime's comparison with Keras."""

    runtime: str
    artifact: str
    kind: str  # "reference" | "float" | "quantized"
    examples: int = 0
    max_abs_diff: float | None = None
    agreement: float | None = None
    latency_ms: float | None = None
    size_bytes: int | None = None
    ok: bool = True
    note: str = ""


@dataclass
class VerifyReport:
    """The comparison table; ``ok`` is False when any row failed."""

    export_dir: str
    name: str
    task: str
    examples: int
    tolerance: float
    min_agreement: float
    rows: list[RuntimeRow] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def table(self) -> str:
        """The report as a fixed-width text table."""
        head = (
            f"verify {self.export_dir} ({self.task}, {self.examples} examples; float "
            f"max|diff| <= {self.tolerance:g}, quantized top-1 >= {self.min_agreement:.0%})"
        )
        columns = ("runtime", "artifact", "kind", "max|diff|", "top-1", "p50 ms", "size", "status")
        body = [
            (
                row.runtime,
                row.artifact,
                row.kind,
                "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.2e}",
                "-" if row.agreement is None else f"{row.agreement:.1%}",
                "-" if row.latency_ms is None else f"{row.latency_ms:.2f}",
                _size(row.size_bytes),
                ("ok" if row.ok else "FAIL") + (f" ({row.note})" if row.note else ""),
            )
            for row in self.rows
        ]
        widths = [max(len(str(r[i])) for r in [columns, *body]) for i in range(len(columns))]
        lines = [head, "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
        lines.append("PASS" if self.ok else "FAIL")
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    if size >= 1 << 20:
        return f"{size / (1 << 20):.1f} MiB"
    return f"{size / 1024:.1f} KiB"


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _worst(current: float, new: float) -> float:
    """The larger difference, NaN winning (Python's ``max(0.0, nan)`` is 0.0: an artifact that
    answered NaN would pass)."""
    return new if np.isnan(new) or new > current else current


def _compare(probes: Sequence[Probe], reference: Sequence[Probe]) -> tuple[float, float]:
    diff, agree = 0.0, 0
    for probe, ref in zip(probes, reference, strict=True):
        if probe.values.shape != ref.values.shape:
            diff = float("inf")
        else:
            diff = _worst(diff, float(np.max(np.abs(probe.values - ref.values), initial=0.0)))
        agree += probe.top1 == ref.top1
    return diff, agree / max(len(reference), 1)


def _timed(fn: Callable[[int], Any], count: int) -> tuple[list[Any], float]:
    """``[fn(0), ..., fn(count - 1)]`` and the median call time in ms (after one warm-up)."""
    fn(0)  # warm-up: the first call allocates / traces
    results, times = [], []
    for i in range(count):
        start = time.perf_counter()
        results.append(fn(i))
        times.append(time.perf_counter() - start)
    return results, 1000.0 * statistics.median(times)


class _Verifier:
    def __init__(self, export_dir: Path, metadata: dict[str, Any], texts: list[str],
                 graphs: Any, tolerance: float, min_agreement: float) -> None:
        from keras_seq.export.runtimes import keras_runner

        self.dir, self.meta, self.texts = export_dir, metadata, texts
        self.graphs, self.client = graphs, make_client(metadata)
        self.tolerance, self.min_agreement = tolerance, min_agreement
        self.keras = keras_runner(graphs)
        self.reference, self.ref_latency = _timed(
            lambda i: self.client.probe(self.keras, texts[i]), len(texts)
        )

    def judge(self, row: RuntimeRow) -> RuntimeRow:
        if row.max_abs_diff is not None and np.isnan(row.max_abs_diff):
            row.ok, row.note = False, "NaN outputs"
        elif row.kind == "quantized":
            row.ok = row.agreement is not None and row.agreement >= self.min_agreement
        elif row.max_abs_diff is not None:
            row.ok = row.max_abs_diff <= self.tolerance
            if row.agreement is not None and row.max_abs_diff == float("inf"):
                row.note = "different output shapes"
        else:  # discrete outputs only (whole decodes, text)
            row.ok = row.agreement is not None and row.agreement >= self.min_agreement
        return row

    def numeric(self, runtime: str, artifact: str, kind: str, run: Any, size: int | None,
                calibration: Sequence[int] | None = None) -> RuntimeRow:
        """`run` against Keras on the samples, less those in ``calibration`` (``[start, end)``
        of samples.json, an int8 model's calibration data) while others are left."""
        indices = range(len(self.texts))
        if calibration:
            held_out = [i for i in indices if not calibration[0] <= i < calibration[1]]
            indices = held_out or indices
        probes, latency = _timed(
            lambda k: self.client.probe(run, self.texts[indices[k]],
                                        reference=self.reference[indices[k]]),
            len(indices),
        )
        diff, agreement = _compare(probes, [self.reference[i] for i in indices])
        return self.judge(RuntimeRow(runtime, artifact, kind, len(probes), diff, agreement,
                                     latency, size))

    def guarded(self, runtime: str, artifact: str, kind: str, make: Callable[[], list[RuntimeRow]]
                ) -> list[RuntimeRow]:
        try:
            return make()
        except Exception as err:  # noqa: BLE001 - any failure to load or run is a failed row
            message = str(err).strip().splitlines()
            note = f"{type(err).__name__}: {message[0] if message else ''}"[:160]
            return [RuntimeRow(runtime, artifact, kind, ok=False, note=note)]

    # -- runtimes ------------------------------------------------------------------------------
    def saved_model(self) -> list[RuntimeRow]:
        from keras_seq.export.runtimes import SavedModelSession

        entry = self.meta["artifacts"]["saved_model"]
        path = self.dir / entry["path"]
        session = SavedModelSession(path)
        try:
            size = _dir_size(path)
            rows = [self.numeric("saved_model (TF1 loader)", entry["path"], "float", session, size)]
            rows.append(self.serving_text(session, entry["path"]))
            if "translate" in session.signatures:
                rows.append(self.whole_decode("saved_model translate", entry["path"], "float",
                                              session))
        finally:
            session.close()
        return rows

    def serving_text(self, session: Any, artifact: str) -> RuntimeRow:
        """``serving_default`` on raw text vs the same graph code run live in Keras."""
        import tensorflow as tf

        def readable(outputs: dict[str, Any], row: int, i: int) -> dict[str, Any]:
            values = {k: np.asarray(v)[row] for k, v in outputs.items()}
            return self.client.from_serving(self.texts[i], values)

        expected = self.graphs.serve(tf.constant(self.texts))
        expected = {k: np.asarray(v) for k, v in expected.items()}
        got, latency = _timed(lambda i: session.serve([self.texts[i]]), len(self.texts))
        batch = session.serve(self.texts)
        agree, diff = 0, None
        for i in range(len(self.texts)):
            want, single = readable(expected, i, i), readable(got[i], 0, i)
            batched = readable(batch, i, i)
            same = all(single[k] == want[k] == batched[k] for k in want if k != "probabilities")
            if "probabilities" in want:
                for x in (single, batched):
                    delta = np.max(np.abs(np.subtract(x["probabilities"], want["probabilities"])))
                    diff = _worst(diff or 0.0, float(delta))
            agree += same
        row = RuntimeRow("saved_model serving_default (text)", artifact, "float", len(self.texts),
                         diff, agree / len(self.texts), latency)
        row = self.judge(row)
        if row.max_abs_diff is not None:  # text outputs must agree as well
            row.ok = row.ok and row.agreement >= self.min_agreement
        return row

    def tflite(self) -> list[RuntimeRow]:
        from keras_seq.export.runtimes import tflite_runner

        rows = []
        for variant, entry in self.meta["artifacts"]["tflite"]["variants"].items():
            kind = "float" if variant == "none" else "quantized"
            label = "tflite" if variant == "none" else f"tflite {variant}"

            def make(entry=entry, kind=kind, label=label) -> list[RuntimeRow]:
                run = tflite_runner(self.dir / entry["file"])
                result = [self.numeric(label, entry["file"], kind, run, entry["size_bytes"],
                                       entry.get("calibration_samples"))]
                if "translate" in self.meta["artifacts"]["tflite"]["signatures"]:
                    result.append(self.whole_decode(f"{label} translate", entry["file"], kind, run))
                return result

            rows += self.guarded(label, entry["file"], kind, make)
        return rows

    def whole_decode(self, runtime: str, artifact: str, kind: str, run: Any) -> RuntimeRow:
        """Seq2seq ``translate`` (greedy decode in one graph) vs Keras's greedy tokens."""

        def decode(i: int) -> tuple[int, ...]:
            ids = self.client.token_ids(self.texts[i])
            tokens = run("translate", {"source_ids": ids})["token_ids"][0]
            out = []
            for token in tokens.tolist():
                out.append(int(token))
                if token in (0, 3):
                    break
            return tuple(t for t in out if t != 0)

        got, latency = _timed(decode, len(self.texts))
        agree = sum(g == r.top1 for g, r in zip(got, self.reference, strict=True))
        row = RuntimeRow(runtime, artifact, kind, len(got), None, agree / len(got), latency)
        row = self.judge(row)
        return row

    def onnx(self) -> list[RuntimeRow]:
        from keras_seq.export.runtimes import onnx_runner

        files = self.meta["artifacts"]["onnx"]["files"]
        paths = {name: self.dir / entry["file"] for name, entry in files.items()}
        artifact = ", ".join(entry["file"] for entry in files.values())
        size = sum(entry["size_bytes"] for entry in files.values())
        return [self.numeric("onnxruntime", artifact, "float", onnx_runner(paths), size)]


def verify(
    export_dir: str | Path,
    *,
    run_dir: str | Path | None = None,
    max_examples: int | None = None,
    tolerance: float = 1e-4,
    min_agreement: float = 0.99,
) -> VerifyReport:
    """Compare every artifact of ``export_dir`` with the Keras model it came from.

    Args:
        export_dir: ``exported/<name>`` (holds ``metadata.json`` and ``samples.json``).
        run_dir: the source run (default: ``metadata.json``'s ``source_run.path``).
        max_examples: use only the first examples of ``samples.json``.
        tolerance: largest allowed ``max|diff|`` of a float artifact.
        min_agreement: smallest allowed top-1 agreement of a quantized artifact.

    Returns:
        A :class:`VerifyReport`; ``report.ok`` / ``report.exit_code`` gate, ``report.table()``
        prints it.
    """
    from keras_seq.export.run_dir import load_run, model_digest

    export_dir = Path(export_dir)
    metadata = read_metadata(export_dir)
    samples_path = export_dir / "samples.json"
    texts = []
    if samples_path.is_file():
        texts = [s["input"] for s in json.loads(samples_path.read_text(encoding="utf-8"))]
    texts = texts[:max_examples] if max_examples else texts
    if not texts:
        raise ValueError(
            f"Invalid value for argument `export_dir`. Expected real examples in "
            f"{samples_path}. Received: none"
        )
    source = Path(run_dir) if run_dir is not None else Path(metadata["source_run"]["path"])
    bundle = load_run(source)
    graphs = make_graphs(bundle)
    verifier = _Verifier(export_dir, metadata, texts, graphs, tolerance, min_agreement)
    report = VerifyReport(str(export_dir), metadata["name"], metadata["task"], len(texts),
                          tolerance, min_agreement)
    note = ""
    if model_digest(source) != metadata["source_run"].get("model_sha256"):
        note = "model.keras changed since export"
    report.rows.append(RuntimeRow("keras", str(source / "model.keras"), "reference", len(texts),
                                  0.0, 1.0, verifier.ref_latency,
                                  (source / "model.keras").stat().st_size, True, note))
    artifacts = metadata.get("artifacts", {})
    if "saved_model" in artifacts:
        entry = artifacts["saved_model"]
        report.rows += verifier.guarded("saved_model (TF1 loader)", entry["path"], "float",
                                        verifier.saved_model)
    if "tflite" in artifacts:
        report.rows += verifier.tflite()
    if "onnx" in artifacts:
        files = ", ".join(e["file"] for e in artifacts["onnx"]["files"].values())
        report.rows += verifier.guarded("onnxruntime", files, "float", verifier.onnx)
    return report

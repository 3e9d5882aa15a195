"""Full-integer (int8) TFLite LSTM classifiers with and without keras_seq's repairs.

TensorFlow's quantizer gives the fused ``UNIDIRECTIONAL_SEQUENCE_LSTM`` state quantizations
its integer kernel computes wrong with (``keras_seq.export.tflite.repair_int8_lstms``), and
can leave raw-copy ops such as ``REVERSE_V2`` with an input quantized unlike their output
(``requantize_raw_copies``). This measures what the repairs change on real models: six LSTM variants of ``names-de-it``
(pooling, layers, directions), each trained for 3 epochs without pretraining, then exported
to int8 twice in the same run: as shipped, and with both repairs turned off (the file the
converter writes). Each int8 file is compared with the run's float ``model.tflite``, which
matches Keras to ~1e-7:

- top-1 agreement and ``|dp|`` (largest probability difference per name) on the samples the
  int8 ranges were not calibrated on, as ``keras-seq verify`` measures agreement;
- each fused LSTM's output error, in quantization steps of that output, on the calibration
  samples (where no value falls outside the calibrated ranges).

::

    .venv/bin/python benchmarks/int8_lstm.py --data-dir ../shared/data

Runs go to ``--runs`` (default ``runs/int8-lstm``; existing ones are reused), figures to
``benchmarks/results/int8_lstm.json`` and ``.md``. About 3 minutes on 2 cores.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [  # pooling, layers, bidirectional
    ("last", 1, True),
    ("mean", 1, True),
    ("attention", 2, True),
    ("max", 2, True),
    ("last", 2, False),
    ("max", 1, False),
]


def train(runs: Path, data_dir: str) -> list[Path]:
    done = []
    for pooling, layers, bidirectional in VARIANTS:
        run = runs / f"{pooling}-{layers}x{'bi' if bidirectional else 'uni'}"
        if not (run / "metrics.json").is_file():
            subprocess.run(
                [sys.executable, "-m", "keras_seq", "train", "names-de-it", "--data-dir", data_dir,
                 "--epochs", "3", "--run-dir", str(run), "--set", "cell=lstm",
                 "--set", f"pooling={pooling}", "--set", f"num_layers={layers}",
                 "--set", f"bidirectional={str(bidirectional).lower()}", "--set", "pretrain=false"],
                check=True, stdout=subprocess.DEVNULL,
            )
        done.append(run)
    return done


def lstm_outputs(model: bytes, ids: np.ndarray) -> tuple[list[tuple[np.ndarray, float]], np.ndarray]:
    """Each fused LSTM's output (dequantized) with its scale (0 in float), and the probabilities."""
    from keras_seq.export.tflite import lstm_outputs as run

    [(sequences, outputs)] = run(model, "classify", [{"token_ids": ids}])
    return sequences, outputs["probabilities"][0]


def measure(run: Path) -> dict:
    import keras_seq.export.tflite as tflite
    from keras_seq.export import export_run
    from pipelines.text import Vocabulary

    repairs = tflite.repair_int8_lstms, tflite.requantize_raw_copies
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("repaired", "converter"):
            if name == "converter":
                tflite.repair_int8_lstms = lambda model, ranges: model
                tflite.requantize_raw_copies = lambda model: model
            try:  # parity_examples=0: a file below the agreement bar is written, to be measured
                out = export_run(run, Path(tmp) / name, formats=["tflite"], quantize="int8",
                                 parity_examples=0)
            finally:
                tflite.repair_int8_lstms, tflite.requantize_raw_copies = repairs
            files[name] = (out / "model.int8.tflite").read_bytes()
        files["float"] = (out / "model.tflite").read_bytes()
        meta = json.loads((out / "metadata.json").read_text())
        vocab = Vocabulary.from_json(out / "vocab" / "source.json")
        texts = [s["input"] for s in json.loads((out / "samples.json").read_text())]
    start, end = meta["artifacts"]["tflite"]["variants"]["int8"]["calibration_samples"]
    held_out = texts[:start] + texts[end:]
    row = {"run": run.name, "held_out": len(held_out), "calibration": end - start}
    reference = {t: lstm_outputs(files["float"], vocab.encode_padded([t])) for t in texts}
    for name in ("converter", "repaired"):
        got = {t: lstm_outputs(files[name], vocab.encode_padded([t])) for t in texts}
        dp = np.array([np.abs(got[t][1] - reference[t][1]).max() for t in held_out])
        agree = np.mean([got[t][1].argmax() == reference[t][1].argmax() for t in held_out])
        steps = np.array([
            [np.abs(h - want).max() / scale for (h, scale), (want, _) in
             zip(got[t][0], reference[t][0], strict=True)]
            for t in texts[start:end]
        ])
        row[name] = {
            "agreement": float(agree),
            "mean_dp": float(dp.mean()),
            "max_dp": float(dp.max()),
            "lstm_max_steps": [round(float(x), 2) for x in steps.max(axis=0)],
            "lstm_mean_steps": [round(float(x), 2) for x in steps.mean(axis=0)],
            "size_bytes": len(files[name]),
        }
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| run | file | top-1 agreement | mean abs dp | max abs dp | LSTM error, steps (max per LSTM) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        for name in ("converter", "repaired"):
            r = row[name]
            lines.append(
                f"| {row['run']} | {name} | {100 * r['agreement']:.1f}% of "
                f"{row['held_out']} | {r['mean_dp']:.4f} | {r['max_dp']:.4f} | "
                f"{', '.join(f'{x:.1f}' for x in r['lstm_max_steps'])} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--runs", default="runs/int8-lstm")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "int8_lstm"))
    args = parser.parse_args()
    rows = [measure(run) for run in train(Path(args.runs), args.data_dir)]
    Path(args.results + ".json").write_text(json.dumps(rows, indent=1) + "\n")
    table = markdown(rows)
    Path(args.results + ".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()

"""Human-readable artefacts of a run: curves, confusion matrix, attention maps, samples."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from keras_seq import plots

END = 3


def write_all(run_dir: Path, model, recipe: dict[str, Any], splits, metrics: dict) -> None:
    history = read_history(run_dir / "history.csv")
    if history:
        plots.training_curves(history, run_dir / "training_curves.png")
    task = recipe["task"]
    if task == "classification" and "_confusion" in metrics["test"]:
        plots.confusion_matrix(
            metrics["test"]["_confusion"], splits.info.labels, run_dir / "confusion_matrix.png"
        )
    elif task == "seq2seq":
        attention_maps(run_dir, model, recipe, splits)
    elif task == "language_model":
        samples(run_dir, model, recipe, splits)


def history_rows(path: Path) -> dict[int, dict[str, str]]:
    """history.csv rows by epoch; a row written twice (an epoch re-run after a kill) keeps
    the last one."""
    with path.open() as f:
        return {int(row["epoch"]): row for row in csv.DictReader(f)}


def read_history(path: Path) -> dict[str, list[float]]:
    if not path.exists():
        return {}
    rows = [row for _, row in sorted(history_rows(path).items())]
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]
    # CSVLogger writes "NA" for a value missing at an epoch.
    return {k: [float(r[k]) for r in rows if r.get(k) not in (None, "", "NA")] for k in keys}


def attention_maps(run_dir: Path, model, recipe, splits, count: int = 3) -> None:
    if model.attention is None:  # Seq2Seq without attention has no maps to draw
        return
    info = splits.info
    test = splits.test if splits.test is not None else splits.validation
    (src, _), _ = next(iter(test))
    src = src[:count]
    tokens, weights = model.translate(
        src, max_length=int(recipe["train"].get("max_decode_length", 40))
    )
    src, tokens, weights = np.asarray(src), np.asarray(tokens), np.asarray(weights)
    for k in range(len(src)):
        src_ids = [int(t) for t in src[k] if t != 0]
        out_ids = []
        for t in tokens[k]:
            out_ids.append(int(t))
            if t in (END, 0):
                break
        plots.attention_heatmap(
            weights[k, : len(out_ids), : len(src_ids)],
            [info.source_vocabulary.id_to_token(i) for i in src_ids],
            [info.target_vocabulary.id_to_token(i) for i in out_ids],
            run_dir / f"attention_{k}.png",
        )


def samples(run_dir: Path, model, recipe, splits, count: int = 3) -> None:
    vocab = splits.info.vocabulary
    hp = recipe["train"]
    prompts = hp.get("sample_prompts", ["ROMEO:\n", "First Citizen:\n", "KING"])[:count]
    lines = []
    for k, prompt in enumerate(prompts):
        ids = np.asarray(vocab.encode([prompt])[0])[None, :]
        generated = model.generate(
            ids, int(hp.get("sample_length", 300)), temperature=float(hp.get("temperature", 0.8)),
            seed=k,
        )
        # Every sampled token: an LM has no end token to stop at (specials show as names).
        text = vocab.decode(np.asarray(generated), skip_special=False, stop_at_end=False)[0]
        lines.append(f"=== prompt {prompt!r} ===\n{prompt}{text}\n")
    (run_dir / "samples.txt").write_text("\n".join(lines), encoding="utf-8")

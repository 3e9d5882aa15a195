"""Recipes that compare several trainings, e.g. `adding`: cells x sequence lengths."""

from __future__ import annotations

import copy
import itertools
import json
import time
from pathlib import Path
from typing import Any

from keras_seq.training import runner


def run(recipe: dict[str, Any], *, run_dir: Path, **options) -> dict[str, Any]:
    """Train one sub-run per (length, cell) and write a comparison table."""
    started = time.time()
    grid = recipe["experiment"]
    rows = []
    for length, cell in itertools.product(grid["lengths"], grid["cells"]):
        sub = copy.deepcopy(recipe)
        sub.pop("experiment")
        sub["data"][grid.get("length_key", "length")] = length
        sub["model"]["cell"] = cell
        sub["name"] = f"{recipe['name']}-{cell}-T{length}"
        metrics = runner.train(sub, run_dir=run_dir / f"{cell}-T{length}", **options)
        rows.append({"cell": cell, "length": length, **metrics["test"],
                     "wall_time_s": metrics["wall_time_s"]})
    table = format_table(rows, baseline=grid.get("baseline"))
    print(table)
    (run_dir / "comparison.md").write_text(table + "\n")
    metrics = {"recipe": recipe["name"], "test": {"runs": rows},
               "wall_time_s": round(time.time() - started, 1)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def format_table(rows: list[dict[str, Any]], baseline: float | None = None) -> str:
    lines = ["| cell | T | test MSE | wall time (s) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['length']} | {r['mse']:.2g} | {r['wall_time_s']:.0f} |")
    if baseline is not None:
        lines.append(f"\nBaseline (always predict the mean sum 1.0): MSE {baseline:.3f}")
    return "\n".join(lines)

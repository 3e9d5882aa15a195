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
    """Train one sub-run per (length, cell) and write a comparison table.

    A sub-run with a metrics.json is finished and is not trained again, so a killed
    experiment resumes at the sub-run it was in. With ``[experiment] time_budget_s`` the
    runs share that wall time: each gets what is left divided by the runs still to go, so
    time a run saves by stopping early (``stop_below``) goes to the runs after it.
    """
    started = time.time()
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**recipe, **{k: v for k, v in options.items() if k != "verbose"}}
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=1) + "\n")
    grid = recipe["experiment"]
    plan = list(itertools.product(grid["lengths"], grid["cells"]))
    total = grid.get("time_budget_s")
    rows: list[dict[str, Any]] = []
    for index, (length, cell) in enumerate(plan):
        sub_dir = run_dir / f"{cell}-T{length}"
        if (sub_dir / "metrics.json").is_file():
            metrics = json.loads((sub_dir / "metrics.json").read_text())
        else:
            sub = copy.deepcopy(recipe)
            sub.pop("experiment")
            sub["data"][grid.get("length_key", "length")] = length
            sub["model"]["cell"] = cell
            sub["name"] = f"{recipe['name']}-{cell}-T{length}"
            sub["part_of"] = recipe["name"]
            if total is not None:
                spent = sum(r["wall_time_s"] for r in rows)
                sub["train"]["time_budget_s"] = budget_share(total, spent, len(plan) - index)
            metrics = runner.train(sub, run_dir=sub_dir, **options)
        rows.append({"cell": cell, "length": length, **metrics["test"],
                     "wall_time_s": metrics["wall_time_s"]})
    table = format_table(rows, baseline=grid.get("baseline"))
    print(table)
    (run_dir / "comparison.md").write_text(table + "\n")
    metrics = {"recipe": recipe["name"], "test": {"runs": rows},
               "wall_time_s": round(time.time() - started, 1)}
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def budget_share(total: float, spent: float, runs_left: int) -> float:
    """Seconds for the next run: what is left of `total` split evenly over `runs_left`."""
    return max(0.0, float(total) - float(spent)) / max(1, runs_left)


def format_table(rows: list[dict[str, Any]], baseline: float | None = None) -> str:
    lines = ["| cell | T | test MSE | wall time (s) |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['cell']} | {r['length']} | {r['mse']:.3g} | {r['wall_time_s']:.0f} |")
    if baseline is not None:
        lines.append(f"\nBaseline (always predict the mean sum 1.0): MSE {baseline:.3f}")
    return "\n".join(lines)

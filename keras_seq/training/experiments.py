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

    The sub-runs resume and share ``[experiment] time_budget_s`` as `train_sub_runs` says,
    so time a run saves by stopping early (``stop_below``) goes to the runs after it.
    """
    runner.write_config(run_dir, recipe, **options)
    grid = recipe["experiment"]
    plan = list(itertools.product(grid["lengths"], grid["cells"]))
    parts = []
    for length, cell in plan:
        sub = copy.deepcopy(recipe)
        sub.pop("experiment")
        sub["data"][grid.get("length_key", "length")] = length
        sub["model"]["cell"] = cell
        sub["name"] = f"{recipe['name']}-{cell}-T{length}"
        parts.append((f"{cell}-T{length}", sub, {}))
    results = train_sub_runs(recipe, run_dir, parts, grid.get("time_budget_s"), **options)
    tabling = time.time()
    rows = [
        {"cell": cell, "length": length, **m["test"], "wall_time_s": m["wall_time_s"]}
        for (length, cell), m in zip(plan, results, strict=True)
    ]
    table = format_table(rows, baseline=grid.get("baseline"))
    print(table)
    (run_dir / "comparison.md").write_text(table + "\n")
    metrics = {"recipe": recipe["name"], "test": {"runs": rows},
               "replicas": results[0].get("replicas"),  # one strategy for every run
               # The sub-runs' own times: a resumed experiment read some of them from disk.
               "wall_time_s": round(
                   sum(m["wall_time_s"] for m in results) + time.time() - tabling, 1)}
    runner.write_metrics(run_dir, metrics)
    return metrics


def train_sub_runs(
    recipe: dict[str, Any],
    run_dir: Path,
    parts: list[tuple[str, dict[str, Any], dict[str, Any]]],
    total_s: float | None,
    **options,
) -> list[dict[str, Any]]:
    """Train each ``(directory, sub-recipe, runner.train keywords)`` of `parts` in order into
    ``run_dir/<directory>``; the metrics of each.

    A sub-run with a metrics.json is finished and is read instead of trained, so a killed
    experiment or ensemble resumes at the sub-run it was in. Sub-recipes are marked
    ``part_of`` the recipe (``export --all-latest`` skips them). With `total_s` the sub-runs
    share that wall time: each gets what is left divided by the sub-runs still to go.
    """
    results: list[dict[str, Any]] = []
    for index, (directory, sub, keywords) in enumerate(parts):
        sub_dir = run_dir / directory
        if (sub_dir / "metrics.json").is_file():
            results.append(json.loads((sub_dir / "metrics.json").read_text()))
            continue
        sub["part_of"] = recipe["name"]
        if total_s is not None:
            spent = sum(m["wall_time_s"] for m in results)
            sub["train"]["time_budget_s"] = budget_share(total_s, spent, len(parts) - index)
        results.append(runner.train(sub, run_dir=sub_dir, **options, **keywords))
    return results


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

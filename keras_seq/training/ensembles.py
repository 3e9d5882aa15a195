"""Recipes with ``[train] ensemble = N``: N classifiers, one model that averages them."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import keras

from keras_seq.training import reports, runner
from keras_seq.training.experiments import train_sub_runs
from pipelines.splits import SourceInfo


def check(recipe: dict[str, Any]) -> int:
    """The number of members, checked: a positive int, and > 1 only for classifiers."""
    members = recipe["train"].get("ensemble", 1)
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise ValueError(
            f"Invalid value for `train.ensemble` in recipe {recipe['name']!r}. Expected a "
            f"positive integer (the number of members). Received: ensemble={members!r}"
        )
    if members > 1 and recipe["task"] != "classification":
        raise ValueError(
            f"Invalid value for `train.ensemble` in recipe {recipe['name']!r}: ensembles "
            f"average class probabilities, so they need task 'classification'. Received: "
            f"ensemble={members} with task {recipe['task']!r}."
        )
    return members


def run(recipe: dict[str, Any], *, run_dir: Path, seed: int = 0, **options) -> dict[str, Any]:
    """Train the members as sub-runs ``member-<k>``, then save and evaluate their average.

    Every member sees the same data split (`seed`); its initialisation, dropout and batch
    order follow its own global seed (``init_seed = seed + k``). ``[train] time_budget_s`` is
    the budget of the whole ensemble; the members share it and resume as `train_sub_runs`
    says (a killed ensemble resumes at the member it was in).
    """
    count = check(recipe)
    runner.write_config(run_dir, recipe, seed=seed, **options)
    parts = []
    for k in range(count):
        sub = copy.deepcopy(recipe)
        sub["name"] = f"{recipe['name']}-member-{k}"
        sub["train"]["ensemble"] = 1
        # Every member on member-0's data: a member trained after a kill and an edit is refused.
        same = (run_dir / "member-0",) if k else ()
        parts.append((f"member-{k}", sub, {"seed": seed, "init_seed": seed + k,
                                           "same_data_as": same}))
    results = train_sub_runs(recipe, run_dir, parts, recipe["train"].get("time_budget_s"), **options)
    rows = [
        {"member": k, **runner._public(m["test"]), "wall_time_s": m["wall_time_s"]}
        for k, m in enumerate(results)
    ]

    import keras_seq.models  # noqa: F401  (registers the model classes)

    combining = time.time()
    # Encoded with the members' vocabulary (a resumed ensemble's members may come from an
    # earlier process).
    splits = runner.load_splits(
        recipe, data_dir=options.get("data_dir"), seed=seed, test_data=options.get("test_data"),
        vocabularies=SourceInfo.load_vocabularies(run_dir / "member-0"),
    )
    runner.require_same_data(run_dir, splits, (run_dir / "member-0",))
    runner.write_run_files(run_dir, splits.info)
    model = keras_seq.models.Ensemble(
        [
            keras.saving.load_model(run_dir / f"member-{k}" / "model.keras", compile=False)
            for k in range(count)
        ],
        name=f"{recipe['name'].replace('-', '_')}_ensemble",
    )
    runner.save_model(model, run_dir / "model.keras")
    metrics = {
        "recipe": recipe["name"],
        "test": runner.evaluate(model, recipe, splits),
        "members": rows,
        "replicas": results[0].get("replicas"),  # every member trains under the same strategy
        # The members' own wall times (kept across a resume) plus the combination.
        "wall_time_s": round(sum(r["wall_time_s"] for r in rows) + time.time() - combining, 1),
    }
    reports.write_all(run_dir, model, recipe, splits, metrics)
    runner.write_metrics(run_dir, metrics)
    return metrics

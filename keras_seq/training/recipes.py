"""Recipes: small declarative TOML files shipped inside the package.

A recipe has top-level ``description``, ``task``, ``source`` and three tables: ``[data]``
(options of the pipelines source), ``[model]`` (``class`` + constructor arguments) and
``[train]`` (epochs, optimiser, callbacks). ``--set key=value`` overrides one field; a bare
key is looked up in the three tables, ``table.key`` names it exactly.
"""

from __future__ import annotations

import ast
import copy
import inspect
import math
import tomllib
from importlib import resources
from typing import Any

SECTIONS = ("data", "model", "train")

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "learning_rate": 1e-3,
    "clipnorm": 1.0,  # gradient clipping by global norm
    "early_stopping_patience": 4,
    "reduce_lr_patience": 2,
    "reduce_lr_factor": 0.5,
    "steps_per_epoch": None,  # None: one pass over the training split
    "validation_steps": None,
    "time_budget_s": None,  # stop when another epoch would end past this wall time
    "monitor": "val_loss",
    "stop_below": None,  # stop once the monitored value is at or below this (task solved)
    "ema_momentum": None,  # e.g. 0.99: validate, checkpoint and keep an EMA of the weights
    "ensemble": 1,  # N > 1: train N classifiers (seeds seed..seed+N-1) and average them
    "pretrain_epochs": 10,  # epochs on the source's pretraining task, when it has one
}


class RecipeError(ValueError):
    """A recipe name or override that cannot be applied (reported as one line by the CLI)."""


def available() -> dict[str, str]:
    """``{name: description}`` of the packaged recipes, sorted by name."""
    files = resources.files("keras_seq.recipes")
    found = {}
    for entry in files.iterdir():
        if entry.name.endswith(".toml"):
            found[entry.name[: -len(".toml")]] = tomllib.loads(entry.read_text("utf-8"))[
                "description"
            ]
    return dict(sorted(found.items()))


def load(name: str) -> dict[str, Any]:
    """The recipe ``name`` with train defaults filled in."""
    names = available()
    if name not in names:
        raise RecipeError(
            f"Unknown recipe {name!r}. Expected one of: {', '.join(names)}. "
            "(`keras-seq recipes` lists them.)"
        )
    text = resources.files("keras_seq.recipes").joinpath(f"{name}.toml").read_text("utf-8")
    recipe = tomllib.loads(text)
    recipe["name"] = name
    for section in SECTIONS:
        recipe.setdefault(section, {})
    recipe["train"] = {**TRAIN_DEFAULTS, **recipe["train"]}
    return recipe


def parse_value(text: str) -> Any:
    """``"256" -> 256``, ``"0.1" -> 0.1``, ``"true" -> True``, ``"none" -> None``, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _sections(recipe: dict[str, Any]) -> tuple[str, ...]:
    return SECTIONS + (("experiment",) if "experiment" in recipe else ())


def _constructor(recipe: dict[str, Any], section: str):
    """What a section's values are passed to: the pipelines source's ``load`` (``data``), the
    model class (``model``); None for the other sections."""
    if section == "data":
        import pipelines

        return pipelines.get_source(recipe["source"]).load
    if section == "model":
        from keras_seq.training.builders import model_class

        return model_class(recipe["model"]["class"])
    return None


# The source arguments the trainer passes itself (the model's are `builders.FROM_DATA`: the
# vocabulary sizes and number of classes, which come from the data).
_DATA_FROM_TRAINER = frozenset({"data_dir", "seed", "test_path", "vocabularies"})


def _settable(recipe: dict[str, Any], section: str) -> set[str]:
    """Keys a section accepts: those in the recipe, plus every keyword parameter of its
    constructor, less those the trainer fills in itself."""
    from keras_seq.training.builders import FROM_DATA

    keys = set(recipe[section])
    if section == "train":  # what the task's training reads, listed by the recipe or not
        keys |= _TASK_TRAIN_KEYS.get(recipe["task"], set())
    constructor = _constructor(recipe, section)
    if constructor is not None:
        keys |= _parameters(constructor)
        keys -= _DATA_FROM_TRAINER if section == "data" else FROM_DATA
    return keys


def _parameters(fn) -> set[str]:
    return {
        name for name, p in inspect.signature(fn).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    }


def _flags(recipe: dict[str, Any], section: str) -> dict[str, bool]:
    """``{name: accepts None}`` of the constructor's parameters annotated as bool: the sources'
    and classes' own checks cover their other arguments, but a truthy 7 passes ``if flag``."""
    constructor = _constructor(recipe, section)
    if constructor is None:
        return {}
    annotations = {
        name: p.annotation if isinstance(p.annotation, str) else getattr(
            p.annotation, "__name__", str(p.annotation))
        for name, p in inspect.signature(constructor).parameters.items()
    }
    return {
        name: "None" in text
        for name, text in annotations.items()
        if text.replace(" | None", "") == "bool"
    }


def _check_flag(recipe: dict[str, Any], section: str, key: str, value: Any) -> None:
    flags = _flags(recipe, section)
    if key in flags and not (isinstance(value, bool) or (value is None and flags[key])):
        expected = "true or false" + (" or none" if flags[key] else "")
        raise RecipeError(
            f"Invalid --set value for {section}.{key} in recipe {recipe['name']!r}. Expected "
            f"{expected}. Received: {key}={value!r}"
        )


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key=value`` overrides; unknown keys are an error naming the known ones."""
    # The fields an experiment sets for its runs, as its own overrides leave it (whatever the
    # order: experiment.time_budget_s=none frees train.time_budget_s before it or after).
    experiment = [item for item in overrides if item.strip().startswith("experiment.")]
    grid = _grid_keys(_apply(recipe, experiment, {}))
    return _apply(recipe, overrides, grid)


def _apply(recipe: dict[str, Any], overrides: list[str], grid: dict[str, str]) -> dict[str, Any]:
    recipe = copy.deepcopy(recipe)
    sections = _sections(recipe)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"Invalid --set {item!r}. Expected KEY=VALUE, e.g. units=256.")
        key, raw = item.split("=", 1)
        key = key.strip()
        value = parse_value(raw)
        prefix, _, field = key.rpartition(".")
        if field in grid and (prefix == "" or prefix in SECTIONS):
            raise RecipeError(
                f"Invalid --set {key!r} for recipe {recipe['name']!r}: the experiment sets "
                f"{field} for each of its runs. Set experiment.{grid[field]} instead."
            )
        if "." in key:
            section, field = key.split(".", 1)
            if section not in sections or field not in _settable(recipe, section):
                raise RecipeError(_unknown(key, recipe))
        else:
            field = key
            owners = [s for s in sections if key in recipe[s]] or [
                s for s in sections if key in _settable(recipe, s)
            ]
            if not owners:
                raise RecipeError(_unknown(key, recipe))
            if len(owners) > 1:
                raise RecipeError(
                    f"Ambiguous --set key {key!r}: it is in {owners}. "
                    f"Use e.g. {owners[0]}.{key}=..."
                )
            section = owners[0]
        _check_flag(recipe, section, field, value)
        recipe[section][field] = value
    return recipe


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_NONE_OR_POSITIVE = ("none or a number > 0", lambda v: v is None or (_number(v) and v > 0))
_TRAIN_CHECKS: dict[str, tuple[str, Any]] = {
    "epochs": ("a positive integer", _positive_int),
    "learning_rate": ("a finite number > 0", lambda v: _number(v) and 0 < v < math.inf),
    "clipnorm": _NONE_OR_POSITIVE,
    "early_stopping_patience": ("an integer >= 0", lambda v: v == 0 or _positive_int(v)),
    "reduce_lr_patience": ("an integer >= 0", lambda v: v == 0 or _positive_int(v)),
    "reduce_lr_factor": ("a number in (0, 1)", lambda v: _number(v) and 0 < v < 1),
    "steps_per_epoch": ("none or a positive integer", lambda v: v is None or _positive_int(v)),
    "validation_steps": ("none or a positive integer", lambda v: v is None or _positive_int(v)),
    "time_budget_s": _NONE_OR_POSITIVE,
    "ema_momentum": ("none or a number in (0, 1)", lambda v: v is None or (
        _number(v) and 0 < v < 1)),
    "pretrain_epochs": ("a positive integer", _positive_int),
    "stop_below": ("none or a number", lambda v: v is None or _number(v)),
    "monitor": ("the name of a logged value, e.g. 'val_loss'", lambda v: isinstance(v, str)
                and v != ""),
    "max_decode_length": ("a positive integer", _positive_int),  # seq2seq recipes
    "bleu": ("true or false", lambda v: isinstance(v, bool)),
    "class_weight": ("true or false", lambda v: isinstance(v, bool)),  # classifiers
    "sample_length": ("a positive integer", _positive_int),  # language models
    "generate_length": ("a positive integer", _positive_int),  # exported `generate` signature
    "temperature": ("a finite number >= 0", lambda v: _number(v) and 0 <= v < math.inf),
    "sample_prompts": ("a non-empty list of non-empty strings", lambda v: isinstance(v, list)
                       and v != [] and all(isinstance(p, str) and p for p in v)),
}  # train.ensemble: ensembles.check

# The [train] keys of one task beyond TRAIN_DEFAULTS (settable with --set in its every recipe).
_TASK_TRAIN_KEYS: dict[str, set[str]] = {
    "seq2seq": {"max_decode_length", "bleu"},
    "classification": {"class_weight"},
    "language_model": {"sample_length", "generate_length", "temperature", "sample_prompts"},
}

_EXPERIMENT_CHECKS: dict[str, tuple[str, Any]] = {
    "cells": ("a non-empty list of cells: 'lstm', 'gru', 'rnn'", lambda v: isinstance(
        v, list) and v != [] and all(c in _cell_types() for c in v)),
    "lengths": ("a non-empty list of positive integers", lambda v: isinstance(v, list)
                and v != [] and all(_positive_int(n) for n in v)),
    "time_budget_s": _NONE_OR_POSITIVE,
    "baseline": ("none or a finite number", lambda v: v is None or (
        _number(v) and math.isfinite(v))),
}

# The model class each task's data, loss and evaluation are written for.
TASK_CLASSES = {"classification": "SequenceClassifier", "seq2seq": "Seq2Seq",
                "language_model": "LanguageModel", "regression": "Regressor"}


def check_train(recipe: dict[str, Any]) -> None:
    """Reject a ``[train]`` value the training loop would misread (``epochs=0`` would skip
    training and still write a run), or a ``[model] class`` other than the task's, naming the
    field, what it takes and what it got."""
    task_class = TASK_CLASSES.get(recipe["task"])
    if task_class is not None and recipe["model"].get("class") != task_class:
        raise RecipeError(
            f"Invalid value for model.class in recipe {recipe['name']!r}. Expected "
            f"{task_class!r} (the {recipe['task']} task's model). "
            f"Received: class={recipe['model'].get('class')!r}"
        )
    sections = [("train", _TRAIN_CHECKS, TRAIN_DEFAULTS)]
    if "experiment" in recipe:
        sections.append(("experiment", _EXPERIMENT_CHECKS, {}))
    for section, checks, defaults in sections:
        for key, (expected, ok) in checks.items():
            if key not in recipe[section] and key not in defaults:
                continue  # an optional key the recipe does not use
            value = recipe[section].get(key, defaults.get(key))
            if not ok(value):
                raise RecipeError(
                    f"Invalid value for {section}.{key} in recipe {recipe['name']!r}. "
                    f"Expected {expected}. Received: {key}={value!r}"
                )


def _cell_types() -> tuple[str, ...]:
    from keras_seq.models._common import CELL_TYPES

    return CELL_TYPES


def _grid_keys(recipe: dict[str, Any]) -> dict[str, str]:
    """``{field: experiment key}`` of the fields an experiment sets for each of its runs: the
    grid's data and model fields, and each run's share of a shared time budget."""
    if "experiment" not in recipe:
        return {}
    keys = {recipe["experiment"].get("length_key", "length"): "lengths", "cell": "cells"}
    if recipe["experiment"].get("time_budget_s") is not None:
        keys["time_budget_s"] = "time_budget_s"
    return keys


def _unknown(key: str, recipe: dict[str, Any]) -> str:
    known = sorted(f"{s}.{k}" for s in _sections(recipe) for k in _settable(recipe, s))
    return f"Unknown --set key {key!r} for recipe {recipe['name']!r}. Known keys: {', '.join(known)}"

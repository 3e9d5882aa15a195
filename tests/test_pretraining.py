"""Pretraining on a source's related task (`Splits.pretrain`): the phase, its weights and its
resume after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq.models import SequenceClassifier
from keras_seq.training import recipes, runner
from keras_seq.training.builders import build_model, compile_model

ROOT = Path(__file__).resolve().parents[1]
ENDINGS = {"German": "berg", "Italian": "ini", "Polish": "ski"}


def names_dir(root, per_language=40):
    """Three languages of made-up names, told apart by their endings."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    letters = list("abdeklmnorstuvz")
    for language, ending in ENDINGS.items():
        stems = {"".join(rng.choice(letters, size=5)).capitalize() for _ in range(per_language)}
        (root / f"{language}.txt").write_text("\n".join(s + ending for s in sorted(stems)) + "\n")
    return root.parent


def tiny(*overrides):
    """``KEY=VALUE`` overrides of a tiny names-de-it."""
    return ["units=4", "embedding_dim=4", "batch_size=16", "time_budget_s=none", *overrides]


def as_flags(overrides):
    return [part for item in overrides for part in ("--set", item)]


def test_transfer_weights_copies_every_layer_but_the_head():
    keras.utils.set_random_seed(0)
    kwargs = dict(cell="gru", units=4, embedding_dim=3, bidirectional=True, pooling="attention")
    source, target = SequenceClassifier(20, 3, **kwargs), SequenceClassifier(20, 2, **kwargs)
    ids = np.array([[4, 5, 6, 0]])
    source(ids), target(ids)
    head = [np.asarray(w) for w in target.head.weights]
    runner.transfer_weights(source, target)
    for layer in target.layers:
        for a, b in zip(layer.weights, source.get_layer(layer.name).weights, strict=True):
            if layer.name == "head":
                assert a.shape != b.shape
            else:
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(target.head.weights, head, strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_pretraining_fits_the_related_task_and_is_reused_once_finished(tmp_path):
    data_dir = names_dir(tmp_path / "data" / "names")
    recipe = recipes.apply_overrides(recipes.load("names-de-it"), tiny("pretrain_epochs=2"))
    splits = runner.load_splits(recipe, data_dir=str(data_dir), seed=0)
    assert splits.pretrain.info.labels == sorted(ENDINGS)
    strategy = tf.distribute.get_strategy()

    def fresh_model():
        model = build_model(recipe, splits.info)
        compile_model(model, recipe)
        model(next(iter(splits.train))[0])
        return model

    model = fresh_model()
    phase = tmp_path / "run" / runner.PRETRAIN
    runner.pretrain(recipe, splits.pretrain, model, phase, strategy, time.time(), verbose=0)
    history = (phase / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2 and (phase / "checkpoints" / "best.weights.h5").is_file()

    # The model now holds the pretrained (3-language) model's weights, except its head.
    pretrained = build_model(recipe, splits.pretrain.info)
    pretrained(next(iter(splits.pretrain.train))[0])
    pretrained.load_weights(phase / "model.weights.h5")
    assert pretrained.head.kernel.shape[-1] == 3 and model.head.kernel.shape[-1] == 2
    for name in ("embedding", "bidirectional", "attention_pooling"):
        for a, b in zip(model.get_layer(name).weights, pretrained.get_layer(name).weights,
                        strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # A second call (a resumed run) loads the finished phase instead of training again.
    stamp = (phase / "history.csv").stat().st_mtime_ns
    again = fresh_model()
    runner.pretrain(recipe, splits.pretrain, again, phase, strategy, time.time(), verbose=0)
    assert (phase / "history.csv").stat().st_mtime_ns == stamp
    for a, b in zip(again.embedding.weights, model.embedding.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _train_command(data_dir, run_dir, *overrides):
    return [sys.executable, "-m", "keras_seq", "train", "names-de-it", "--data-dir",
            str(data_dir), "--run-dir", str(run_dir), "--epochs", "3", "--quiet",
            *as_flags(tiny("pretrain_epochs=3", "units=8", *overrides))]


def _model_weights(run_dir):
    import keras_seq.models  # noqa: F401

    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    return [np.asarray(w) for w in model.weights]


@pytest.mark.parametrize("phase", ["pretrain", "fine-tune", "no-pretraining"])
def test_kill_minus_nine_in_either_phase_then_resume_ends_like_uninterrupted_run(
    tmp_path, cli, phase
):
    data_dir = names_dir(tmp_path / "data" / "names", per_language=400)
    reference = tmp_path / "reference"
    extra = ["pretrain=false"] if phase == "no-pretraining" else []
    cli(*_train_command(data_dir, reference, *extra)[3:])
    pretrain_history = reference / runner.PRETRAIN / "history.csv"
    assert (len(pretrain_history.read_text().splitlines()) == 1 + 3) if not extra else (
        not pretrain_history.exists())

    run_dir = tmp_path / "killed"
    cmd = _train_command(data_dir, run_dir, *extra)
    backup = run_dir / (runner.PRETRAIN if phase == "pretrain" else "") / runner.BACKUP
    meta = backup / "training_metadata.json"
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    pretrained = run_dir / runner.PRETRAIN / "model.weights.h5"
    assert pretrained.exists() == (phase == "fine-tune")

    cli(*cmd[3:])
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == json.loads(
        (reference / "metrics.json").read_text())["test"]
    for a, b in zip(_model_weights(run_dir), _model_weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)

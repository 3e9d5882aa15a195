"""Pretraining on a source's related task (`Splits.pretrain`), and exact resume after kill -9:
the dropout random states and the learning-rate reduction state, in either phase."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import kill_after_an_epoch

from keras_seq.models import SequenceClassifier
from keras_seq.training import recipes, runner
from keras_seq.training.builders import build_model, compile_model

ENDINGS = {"German": "berg", "Italian": "ini", "Polish": "ski"}


def names_data(root, per_language=40):
    """Write `root` (``<data dir>/names``): three languages of made-up names, told apart by
    their endings. Returns the data dir."""
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
    data_dir = names_data(tmp_path / "data" / "names")
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
    started = time.time()
    runner.pretrain(recipe, splits.pretrain, model, phase, strategy, started, verbose=0)
    # Killed now, before a fine-tuning epoch is backed up, the run resumes with the
    # pretraining's time on its clock (it started from 0: the phase's backup is removed).
    now = time.time()
    assert 0 < now - runner.clock_start(tmp_path / "run", now=now) <= now - started
    history = (phase / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2 and (phase / "checkpoints" / "best.weights.h5").is_file()
    info = json.loads((phase / "info.json").read_text())
    assert info["labels"] == sorted(ENDINGS) and info["counts"]["train"] > 0

    # The model now holds the pretrained (3-language) model's weights, except its head.
    pretrained = build_model(recipe, splits.pretrain.info)
    pretrained(next(iter(splits.pretrain.train))[0])
    pretrained.load_weights(phase / runner.PRETRAINED)
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


def _train_args(data_dir, run_dir, *overrides):
    return ["train", "names-de-it", "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--epochs", "3", "--quiet", *as_flags(tiny("pretrain_epochs=3", "units=8", *overrides))]


def _model_weights(run_dir):
    import keras_seq.models  # noqa: F401

    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    return [np.asarray(w) for w in model.weights]


@pytest.mark.parametrize("phase", ["pretrain", "fine-tune", "no-pretraining"])
def test_kill_minus_nine_in_either_phase_then_resume_ends_like_uninterrupted_run(
    tmp_path, cli, phase
):
    data_dir = names_data(tmp_path / "data" / "names", per_language=400)
    reference = tmp_path / "reference"
    extra = ["pretrain=false"] if phase == "no-pretraining" else []
    cli(*_train_args(data_dir, reference, *extra))
    pretrain_history = reference / runner.PRETRAIN / "history.csv"
    assert (len(pretrain_history.read_text().splitlines()) == 1 + 3) if not extra else (
        not pretrain_history.exists())

    run_dir = tmp_path / "killed"
    args = _train_args(data_dir, run_dir, *extra)
    phase_dir = run_dir / (runner.PRETRAIN if phase == "pretrain" else "")
    assert kill_after_an_epoch(args, phase_dir / runner.BACKUP) >= 1
    assert not (run_dir / "metrics.json").exists()
    pretrained = run_dir / runner.PRETRAIN / runner.PRETRAINED
    assert pretrained.exists() == (phase == "fine-tune")

    cli(*args)
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == json.loads(
        (reference / "metrics.json").read_text())["test"]
    for a, b in zip(_model_weights(run_dir), _model_weights(reference), strict=True):
        np.testing.assert_array_equal(a, b)


def _compiled_model(learning_rate=0.1, dropout=0.0):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2),
                              keras.layers.Dropout(dropout)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mse")
    return model


def test_reduce_lr_on_plateau_resumes_with_the_killed_runs_wait_best_and_cooldown():
    # Reductions after epochs 3 and 5 (0.89995 is within min_delta of 0.9: no improvement).
    values = [1.0, 0.9, 0.95, 0.96, 0.97, 0.89995, 0.99]
    plain = keras.callbacks.ReduceLROnPlateau(patience=2, factor=0.5, cooldown=1)
    plain.set_model(_compiled_model())
    plain.on_train_begin()
    for epoch, value in enumerate(values):
        plain.on_epoch_end(epoch, {"val_loss": value})
    assert float(plain.model.optimizer.learning_rate) == pytest.approx(0.025)

    resumed = runner.ResumableReduceLROnPlateau(patience=2, factor=0.5, cooldown=1,
                                                finished=values)
    resumed.set_model(_compiled_model(learning_rate=0.025))  # as BackupAndRestore restores it
    resumed.on_train_begin()
    assert (resumed.best, resumed.wait, resumed.cooldown_counter) == (
        plain.best, plain.wait, plain.cooldown_counter)
    assert float(resumed.model.optimizer.learning_rate) == pytest.approx(0.025)  # untouched
    for callback in (plain, resumed):  # the plateau goes on: both reduce at the same epoch
        callback.on_epoch_end(len(values), {"val_loss": 0.995})
    assert float(resumed.model.optimizer.learning_rate) == pytest.approx(0.0125)
    assert float(plain.model.optimizer.learning_rate) == pytest.approx(0.0125)


def test_early_stopping_resumes_with_the_killed_runs_best_and_patience():
    values = [1.0, 0.8, 0.9, 0.8, 0.85]  # best 0.8 at epoch 1; 0.8 again is no improvement
    plain = keras.callbacks.EarlyStopping(patience=4)
    plain.set_model(_compiled_model())
    plain.on_train_begin()
    for epoch, value in enumerate(values):
        plain.on_epoch_end(epoch, {"val_loss": value})
    resumed = runner.ResumableEarlyStopping(patience=4, finished=values)
    resumed.set_model(_compiled_model())
    resumed.on_train_begin()
    assert (resumed.best, resumed.wait) == (plain.best, plain.wait) == (0.8, 3)
    assert not resumed.model.stop_training
    for callback in (plain, resumed):  # both stop after the same next epoch
        callback.on_epoch_end(len(values), {"val_loss": 0.9})
        assert callback.model.stop_training


def test_seed_states_are_restored_for_the_epoch_a_run_resumes_after(tmp_path):
    x, y = np.ones((8, 3), "float32"), np.zeros((8, 2), "float32")
    path = tmp_path / "backup" / runner.SEED_STATES
    trained = _compiled_model(dropout=0.5)
    trained.fit(x, y, epochs=2, batch_size=4, verbose=0,
                callbacks=[runner.SeedStateBackup(path)])
    saved = json.loads(path.read_text())
    assert sorted(saved) == ["1", "2", "stopped"] and saved["1"] != saved["2"]  # dropout drew masks
    assert saved["stopped"] is None and not runner.SeedStateBackup.stopped(path, 2)

    def states(model):
        return [np.asarray(v) for v in model.variables if "seed_generator" in v.path]

    fresh = _compiled_model(dropout=0.5)
    restore = runner.SeedStateBackup(path, resumed_epoch=2)
    restore.set_model(fresh)
    restore.on_train_begin()
    np.testing.assert_array_equal(states(fresh), states(trained))
    restore.resumed_epoch = 3
    with pytest.raises(RuntimeError, match="has none for epoch 3"):
        restore.on_train_begin()


def test_a_killed_run_refuses_to_resume_on_edited_data(tmp_path, cli):
    """Data edited between the kill and the resume: the restored weights would go on training
    on other examples (or, with a rebuilt vocabulary, read other ids). Here one German name's
    letters are swapped, which keeps the vocabulary, the counts and the class weights."""
    data_dir = names_data(tmp_path / "data" / "names", per_language=400)
    run_dir = tmp_path / "killed"
    args = _train_args(data_dir, run_dir)
    assert kill_after_an_epoch(args, run_dir / runner.PRETRAIN / runner.BACKUP) >= 1
    german = data_dir / "names" / "German.txt"
    original = german.read_text()
    german.write_text(_swap_letters(original))

    refused = cli(*args, check=False)
    assert_refused(refused, run_dir, "fingerprint")

    # A run started before fingerprints (no "fingerprint" in info.json) is compared by its
    # counts and vocabularies: a name with a new letter changes the vocabulary.
    for info in (run_dir / "info.json", run_dir / runner.PRETRAIN / "info.json"):
        summary = json.loads(info.read_text())
        del summary["fingerprint"]
        info.write_text(json.dumps(summary))
    german.write_text(original + "Quxberg\n")
    assert_refused(cli(*args, check=False), run_dir, "example counts or vocabularies")

    german.write_text(original)  # the data it started on: the run resumes and finishes
    cli(*args)
    assert json.loads((run_dir / "metrics.json").read_text())["test"]["examples"] > 0


def test_an_ensemble_member_refuses_data_other_than_the_finished_members(tmp_path, cli):
    """Killed between members, then the data edited: the next member has no backup of its
    own, so only the finished member's fingerprint can tell."""
    import signal
    import subprocess
    import sys

    from conftest import ROOT

    data_dir = names_data(tmp_path / "data" / "names", per_language=60)
    run_dir = tmp_path / "ensemble"
    args = _train_args(data_dir, run_dir, "pretrain=false", "ensemble=2")
    proc = subprocess.Popen([sys.executable, "-m", "keras_seq", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "member-0" / "metrics.json").exists():
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / "member-0" / "metrics.json").exists()
    assert not (run_dir / "metrics.json").exists()
    german = data_dir / "names" / "German.txt"
    german.write_text(_swap_letters(german.read_text()))
    assert_refused(cli(*args, check=False), run_dir / "member-0", "fingerprint")


def _swap_letters(text):
    """`text` with the first two letters of one name swapped (the same letters, counts)."""
    lines = text.splitlines()
    i = next(i for i, name in enumerate(lines) if name[0] != name[1].upper())
    lines[i] = lines[i][1].upper() + lines[i][0].lower() + lines[i][2:]
    assert lines[i] not in text.splitlines()
    return "\n".join(lines) + "\n"


def assert_refused(result, directory, found):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = next(x for x in result.stderr.splitlines() if x.startswith("keras-seq"))
    assert f"Expected the data that {directory} was trained on" in line and found in line, line

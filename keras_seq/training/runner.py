"""`keras-seq train`: one recipe -> one run directory.

The run directory holds the resolved config, vocabularies, the model (``model.keras``), the
metrics, logs and plots; see the README's "Run directory" section. Training is ``model.fit``
with gradient clipping, checkpoints (best and last), BackupAndRestore (a killed run resumes
from its last finished epoch with the same data order and dropout random states, so it ends
where an uninterrupted run ends), early stopping, LR reduction, NaN termination, TensorBoard
and a CSV log. A source that offers a related task (``Splits.pretrain``) has the model
trained on it first, the same way, in ``pretrain/``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_seq import _lock
from keras_seq.training import distribute, evaluation, reports
from keras_seq.training.builders import build_model, compile_model

BACKUP = "backup"
SEED_STATES = "seed_states.json"  # in the backup: the layers' random states by epoch
PRETRAIN = "pretrain"  # the sub-directory of a pretraining phase (`Splits.pretrain`)
PRETRAINED = "model.weights.h5"  # in it: the weights of a finished pretraining


# The run settings besides the recipe that change what a run computes (config.json has them).
RUN_SETTINGS = ("seed", "data_dir", "test_data", "strategy", "mixed_precision")
# The recipe's [data] keys that name a file or folder (``--set path=...``): kept absolute in
# config.json, as --data-dir is, and compared as absolute paths.
DATA_PATH_KEYS = ("path",)


def absolute_path(value: Any) -> Any:
    """A path (str) as an absolute one, ``~`` expanded; anything else (None) as it is."""
    return os.path.abspath(os.path.expanduser(value)) if isinstance(value, str) else value


def absolute_data_paths(recipe: dict[str, Any]) -> dict[str, Any]:
    """`recipe` with its `DATA_PATH_KEYS` absolute (in place, and returned)."""
    data = recipe.get("data")
    if isinstance(data, dict):
        for key in DATA_PATH_KEYS:
            if key in data:
                data[key] = absolute_path(data[key])
    return recipe


def resolve_run_dir(
    recipe: dict[str, Any], run_dir: str | None, root: str = "runs", **settings
) -> Path:
    """``run_dir``; by default ``runs/<recipe>/<timestamp>/``, except that an unfinished run
    of the same recipe and `settings` (killed before writing metrics.json, and not being
    trained by a live process) is resumed. A new default directory is made here, with a
    suffix if another command took its name in the same second."""
    if run_dir:
        return Path(run_dir)
    base = Path(root) / recipe["name"]
    for candidate in sorted(base.glob("*/"), reverse=True):
        if has_started(candidate) and not (candidate / "metrics.json").exists():
            if differences(candidate, recipe, **settings) == [] and not in_use(candidate):
                print(f"Resuming the unfinished run {candidate}", file=sys.stderr)
                return candidate
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *(f"-{k}" for k in range(2, 1000))):
        try:
            (base / (stamp + suffix)).mkdir()
            return base / (stamp + suffix)
        except FileExistsError:
            continue
    raise FileExistsError(f"{base / stamp}: 999 runs started in the same second")


LOCK = ".lock"  # in a run directory: held (flock) by the process training it, with its pid


class RunInUse(RuntimeError):
    """Another live process is training the run directory."""


def lock_run_dir(run_dir: Path):
    """Hold `run_dir` for this process's training, so that a second command cannot train into
    it at the same time; the lock goes with the process, ``kill -9`` included. Returns the
    lock file, to keep open (None for a directory it cannot write in); raises `RunInUse`
    naming the holder's pid."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return _lock.hold(run_dir / LOCK)
    except _lock.InUse as err:
        raise RunInUse(
            f"{run_dir} is being trained by another process (pid {err.holder})"
        ) from None
    except OSError:
        return None  # not writable (e.g. a finished run on a read-only disk): nothing to hold


def in_use(run_dir: Path) -> bool:
    """Whether a live process holds `run_dir` (`lock_run_dir`)."""
    if not (run_dir / LOCK).exists():
        return False
    try:
        lock = lock_run_dir(run_dir)
    except RunInUse:
        return True
    if lock is not None:
        lock.close()  # releases it
    return False


def has_started(run_dir: Path) -> bool:
    """Whether `run_dir` holds training to keep: a backup, or a finished sub-run (ensemble
    member, experiment run, pretraining phase, or one of a member's), at any depth."""
    return (run_dir / BACKUP).is_dir() or any(
        any(run_dir.rglob(f"*/{name}")) for name in (BACKUP, "metrics.json", PRETRAINED)
    )


def differences(run_dir: Path, recipe: dict[str, Any], **settings) -> list[str] | None:
    """The recipe sections and `RUN_SETTINGS` in which the run in `run_dir` (its config.json)
    differs from this one: ``[]`` for the same run, None when there is no readable config."""
    try:
        previous = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict):
        return None
    for key in ("data_dir", "test_data"):  # a run of an older version kept them as typed
        previous[key] = absolute_path(previous.get(key))
    current = json.loads(json.dumps({**recipe, **{k: settings.get(k) for k in RUN_SETTINGS}}))
    for config in (previous, current):  # --set path=... too, typed relative or absolute
        absolute_data_paths(config)
    return sorted(k for k in current if previous.get(k) != current[k])


def load_splits(
    recipe: dict[str, Any], *, data_dir, seed: int, test_data=None, vocabularies=None
):
    """The recipe's splits; `vocabularies` (a trained run's) replace the ones built on train."""
    import pipelines

    source = pipelines.get_source(recipe["source"])
    extra = {"vocabularies": vocabularies} if vocabularies else {}
    return source.load(
        data_dir=data_dir, seed=seed, test_path=test_data, **recipe["data"], **extra
    )


def train(
    recipe: dict[str, Any],
    *,
    run_dir: Path,
    data_dir: str | None = None,
    test_data: str | None = None,
    seed: int = 0,
    init_seed: int | None = None,
    strategy: str = "default",
    mixed_precision: bool = False,
    verbose: int | str = "auto",
    same_data_as: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """Train ``recipe`` into ``run_dir`` and return the metrics written to metrics.json.

    `seed` fixes the data split; `init_seed` (default `seed`) is the global seed, which fixes
    the initialisation, dropout and the batch order (TensorFlow's seeded shuffles combine it
    with their own seed). Ensemble members share `seed` and differ in `init_seed`; a member
    refuses data other than its finished siblings' (`same_data_as`, see `require_same_data`).
    """
    started = clock_start(run_dir)
    keras.utils.set_random_seed(seed if init_seed is None else init_seed)
    tf.config.experimental.enable_op_determinism()
    if mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    write_config(run_dir, recipe, seed=seed, init_seed=init_seed, data_dir=data_dir,
                 test_data=test_data, strategy=strategy, mixed_precision=mixed_precision)

    splits = load_splits(recipe, data_dir=data_dir, seed=seed, test_data=test_data)
    require_examples(recipe, splits, test_data)
    require_same_data(run_dir, splits, same_data_as)
    info = splits.info
    write_run_files(run_dir, info)

    scope = distribute.make_strategy(strategy)
    with scope.scope():
        model = build_model(recipe, info)
        compile_model(model, recipe)
        first = next(iter(splits.train))
        model(first[0], training=False)  # build before BackupAndRestore restores weights
    distribute.patch_fit(model, scope, first)
    if not distribute.is_chief(scope):
        verbose = 0

    hp = recipe["train"]
    if splits.pretrain is not None:
        pretrain(recipe, splits.pretrain, model, run_dir / PRETRAIN, scope, started, verbose)
    class_weight = hp.get("class_weight") and recipe["task"] == "classification"
    fit(model, splits, hp, run_dir, started, verbose,
        class_weight=info.class_weight if class_weight else None)
    save_model(model, run_dir / "model.keras")

    metrics = {"recipe": recipe["name"], "test": evaluate(model, recipe, splits)}
    metrics["replicas"] = scope.num_replicas_in_sync
    metrics["wall_time_s"] = round(time.time() - started, 1)
    reports.write_all(run_dir, model, recipe, splits, metrics)
    write_metrics(run_dir, metrics)
    shutil.rmtree(run_dir / BACKUP, ignore_errors=True)  # the run is finished
    return metrics


def save_model(model, path: Path) -> None:
    """``model.save(path)`` in one step: written beside it, then renamed over it, so a kill
    while saving leaves no cut-off model.keras for export to find."""
    _save_whole(model.save, path)


def save_weights(model, path: Path) -> None:
    """``model.save_weights(path)`` in one step, as `save_model` (`path` ends .weights.h5)."""
    _save_whole(model.save_weights, path)


def _save_whole(save, path: Path) -> None:
    partial = path.with_name("partial." + path.name)  # the suffix Keras checks is kept
    save(partial)
    os.replace(partial, path)


def write_json(path: Path, data: Any) -> None:
    """Write `data` as JSON to `path` in one step (`write_text`)."""
    write_text(path, json.dumps(data))


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` in one step: a partial file, flushed to disk, renamed over it,
    so a kill leaves the old file or the new one, never part of one."""
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def require_same_data(run_dir: Path, splits, same_data_as: tuple[Path, ...] = ()) -> None:
    """Refuse to resume `run_dir` on data other than it started on (a data file edited between
    the kill and the resume), and to train on data other than the finished runs of
    `same_data_as` (an ensemble's earlier members): the restored weights would go on training
    on other examples, or read other ids, and the members would not average one task.

    Compared: the fingerprint of the encoded splits (`SourceInfo.fingerprint`) in each
    directory's info.json, for the run and its pretraining phase; for a run whose info.json
    predates fingerprints, its example counts and saved vocabularies.
    """
    phases = [(run_dir, splits.info)] if has_started(run_dir) else []
    if phases and splits.pretrain is not None:
        phases.append((run_dir / PRETRAIN, splits.pretrain.info))
    phases += [(Path(d), splits.info) for d in same_data_as]
    for directory, info in phases:
        found = data_difference(directory, info)
        if found:
            raise ValueError(
                f"Expected the data that {directory} was trained on, but its examples, "
                f"splits or vocabulary differ now ({found}). Training {run_dir} on would mix "
                "two datasets: restore the data, or start a new run (another --run-dir)."
            )


def data_difference(directory: Path, info) -> str | None:
    """What differs between the data that `directory` (a run, or a phase of one) was trained
    on, as its info.json records it, and the loaded data's `info` (a `SourceInfo`): None when
    nothing does, or when there is no readable info.json to compare with.

    Compared: the fingerprint of the encoded splits (`SourceInfo.fingerprint`); for an
    info.json that predates fingerprints, the example counts and saved vocabularies.
    """
    from pipelines.splits import SourceInfo

    path = Path(directory) / "info.json"
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet (killed before), or unreadable: nothing to compare
    if not isinstance(stored, dict):
        return None
    before = stored.get("fingerprint")
    if before:
        if before == info.fingerprint:
            return None
        return f"fingerprint {before[:12]} in {path}, now {info.fingerprint[:12]}"
    vocabularies = SourceInfo.load_vocabularies(directory)
    if stored.get("counts") != info.counts or (
            bool(vocabularies) and vocabularies != info.vocabularies):
        return f"example counts or vocabularies in {path.parent}"
    return None


def require_examples(recipe: dict[str, Any], splits, test_data=None) -> None:
    """Refuse, before training, a split that would only fail after it: an empty training or
    validation split, or an empty test split (a language model without one evaluates on
    validation)."""
    for split in ("train", "validation", "test"):
        if split == "test" and splits.test is None:
            continue
        if splits.info.counts.get(split, 0) > 0:
            continue
        if split == "test" and test_data is not None:
            raise ValueError(f"Expected test examples in --test-data {test_data}, but it has none.")
        fields = [k for k in recipe["data"] if "fraction" in k or k == f"num_{split}"]
        raise ValueError(
            f"Expected {split} examples, but the {split} split of recipe {recipe['name']!r} "
            f"is empty. Check the [data] settings: "
            + (", ".join(f"{k}={recipe['data'][k]!r}" for k in fields) or "(none set)")
        )


def fit(
    model, splits, hp: dict[str, Any], run_dir: Path, started: float, verbose: int | str,
    class_weight: dict[int, float] | None = None,
) -> None:
    """``model.fit`` on `splits` with `callbacks` in `run_dir`, resumed from its backup, and
    then the best checkpoint's weights loaded."""
    steps = hp["steps_per_epoch"] or _count_batches(splits.train)
    resumed_epoch = _backup_epoch(run_dir / BACKUP)
    if resumed_epoch and (resumed_epoch >= hp["epochs"] or SeedStateBackup.stopped(
            run_dir / BACKUP / SEED_STATES, resumed_epoch)):
        # Killed after its last epoch (in evaluation or reports): the training is done. The
        # optimizer is built first (fit would), so the file's optimizer state is loaded too.
        with model.distribute_strategy.scope():
            model.optimizer.build(model.trainable_variables)
        model.load_weights(run_dir / "checkpoints" / "last.weights.h5")
    else:
        forget_unfinished_epochs(run_dir, resumed_epoch)
        # One endless stream whose order is fixed by the seed: a resumed run skips the batches
        # of the epochs it already finished, so it sees exactly the batches the killed run saw.
        train_stream = splits.train.repeat().skip(resumed_epoch * steps)
        model.fit(
            train_stream,
            epochs=hp["epochs"],
            steps_per_epoch=steps,
            validation_data=splits.validation,
            validation_steps=hp["validation_steps"],
            class_weight=class_weight,
            callbacks=callbacks(run_dir, hp, started, resumed_epoch),
            shuffle=False,  # the pipelines shuffle, seeded
            verbose=verbose,
        )
    best = run_dir / "checkpoints" / "best.weights.h5"
    if best.exists():
        model.load_weights(best)
    if not all(np.isfinite(np.asarray(w)).all() for w in model.weights):
        # TerminateOnNaN stopped a diverged first epoch, and ModelCheckpoint keeps a first
        # epoch whatever its value: no weights are worth evaluating or exporting.
        raise ValueError(
            f"Expected finite weights after training, but the run in {run_dir} diverged (a loss "
            "of NaN or inf; TerminateOnNaN stopped it, see history.csv). Lower "
            f"train.learning_rate (was {hp['learning_rate']!r}) or train.clipnorm, and start a "
            "new run (another --run-dir)."
        )


def pretrain(
    recipe: dict[str, Any], related, model, run_dir: Path, scope, started: float,
    verbose: int | str,
) -> None:
    """Train a copy of `model` with its own head on the `related` task (``Splits.pretrain``)
    for ``train.pretrain_epochs``, in `run_dir` (checkpoints, backup, history, TensorBoard),
    and then copy every layer but the head into `model`.

    A finished pretraining (its weights in ``run_dir/PRETRAINED``) is loaded, not
    repeated, when a killed run resumes; a killed pretraining resumes from its backup."""
    with scope.scope():
        pretrained = build_model(recipe, related.info)
        first = next(iter(related.train))
        pretrained(first[0], training=False)
    done = run_dir / PRETRAINED
    if done.exists():
        pretrained.load_weights(done)
    else:
        with scope.scope():
            compile_model(pretrained, recipe)
        distribute.patch_fit(pretrained, scope, first)
        related.info.save(run_dir)  # its labels, counts and vocabulary
        if verbose:
            counts = ", ".join(f"{k} {v}" for k, v in related.info.counts.items() if v)
            print(f"Pretraining on {len(related.info.labels)} classes ({counts}) in {run_dir}")
        # One pass over the related task per epoch, whatever the task's own steps.
        hp = {**recipe["train"], "epochs": recipe["train"]["pretrain_epochs"],
              "steps_per_epoch": None, "validation_steps": None, "stop_below": None}
        fit(pretrained, related, hp, run_dir, started, verbose)
        save_weights(pretrained, done)  # its existence marks the phase done
        # The phase's clock outlives its backup: a run killed before its first fine-tuning
        # epoch is backed up resumes with the pretraining's time counted (`clock_start`).
        clock = run_dir / BACKUP / EpochClock.FILE
        if clock.exists():
            os.replace(clock, run_dir / EpochClock.FILE)
        shutil.rmtree(run_dir / BACKUP, ignore_errors=True)
    transfer_weights(pretrained, model)


def transfer_weights(source: keras.Model, target: keras.Model, skip=("head",)) -> None:
    """Copy the weights of each of `target`'s layers, by name, from `source`, except `skip`."""
    layers = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.name not in skip and layer.weights:
            layer.set_weights(layers[layer.name].get_weights())


def evaluate(model, recipe: dict[str, Any], splits) -> dict[str, Any]:
    task, info = recipe["task"], splits.info
    test = splits.test if splits.test is not None else splits.validation
    if task == "classification":
        return evaluation.classification(model, test, len(info.labels))
    if task == "seq2seq":
        return evaluation.seq2seq(
            model, test, info.target_vocabulary,
            max_length=int(recipe["train"].get("max_decode_length", 40)),
            references=info.test_targets if recipe["train"].get("bleu", False) else None,
        )
    if task == "language_model":
        metrics = evaluation.language_model(model, test)
        if splits.test is None:  # the recipe's figure is its validation loss
            metrics["split"] = "validation"
        return metrics
    return evaluation.regression(model, test)


def callbacks(
    run_dir: Path, hp: dict[str, Any], started: float, resumed_epoch: int = 0
) -> list[keras.callbacks.Callback]:
    """The training callbacks. On resume, the finished epochs' values in history.csv give the
    best checkpoint's threshold and are replayed into early stopping and LR reduction, and
    the dropout random states come back with the backup, so a resumed run ends like an
    uninterrupted one (BackupAndRestore restores weights, optimizer state and the epoch;
    Keras does not restore other callbacks' state)."""
    ckpt = run_dir / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    monitor = hp["monitor"]
    finished = _finished_values(run_dir / "history.csv", monitor, resumed_epoch)
    mode = _mode(monitor)
    best_ckpt = keras.callbacks.ModelCheckpoint(
        str(ckpt / "best.weights.h5"), monitor=monitor, mode=mode, save_best_only=True,
        save_weights_only=True,
        initial_value_threshold=(max if mode == "max" else min)(finished, default=None),
    )
    result = [
        RequireMonitor(monitor),
        # An epoch's row and TensorBoard events are written before its backup: a kill in
        # between re-runs that epoch, and forget_unfinished_epochs drops what it logged first.
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        # With an EMA of the weights (`ema_momentum`), validation and both checkpoints see
        # the averaged weights; the backup holds the swapped state and a resumed run swaps
        # back at its first epoch, as an uninterrupted one does (the same arithmetic).
        *([ResumableSwapEMAWeights(resumed_epoch)] if hp.get("ema_momentum") else []),
        keras.callbacks.ModelCheckpoint(str(ckpt / "last.weights.h5"), save_weights_only=True),
        best_ckpt,
        ResumableEarlyStopping(
            monitor=monitor, mode=mode, patience=hp["early_stopping_patience"],
            finished=finished,
        ),
        ResumableReduceLROnPlateau(
            monitor=monitor, mode=mode, patience=hp["reduce_lr_patience"],
            factor=hp["reduce_lr_factor"], finished=finished,
        ),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
    ]
    if hp.get("stop_below") is not None:
        result.append(StopBelow(monitor, float(hp["stop_below"])))
    budget = hp.get("time_budget_s")
    result.append(EpochClock(run_dir / BACKUP / EpochClock.FILE, started, resumed_epoch,
                             budget_s=None if budget is None else float(budget)))
    # The backup is the epoch's commit point, after every other callback's work for it (the
    # checkpoints, the reduced learning rate, a decision to stop): a kill before it re-runs
    # the epoch, a kill after it finds all of that done. It is kept after training, until
    # the run's metrics are written, so a kill in evaluation does not train again.
    result += [
        SeedStateBackup(run_dir / BACKUP / SEED_STATES, resumed_epoch),
        AtomicBackupAndRestore(str(run_dir / BACKUP), save_freq="epoch",
                               delete_checkpoint=False),
    ]
    return result


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose epoch backup commits in one step.

    Keras overwrites ``latest.weights.h5`` and then ``training_metadata.json``: a kill between
    the two left epoch k+1's weights under a backup of epoch k, and the resumed run trained
    epoch k+1 twice. Here each epoch's weights go to a file of their own, and the metadata that
    names that file is replaced atomically (`os.replace`) afterwards, so a backup is either the
    previous epoch's or the new one, whole. Older weight files are removed after the commit.
    """

    def _save_model(self):
        backup = Path(self.backup_dir)
        backup.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{self._current_epoch}.weights.h5"
        self.model.save_weights(filepath=str(backup / name), overwrite=True)
        metadata = {"epoch": self._current_epoch, "batch": self._last_batch_seen, "weights": name}
        write_json(Path(self._training_metadata_path), metadata)  # the commit
        for old in backup.glob("*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def _load_model(self):
        try:
            metadata = json.loads(Path(self._training_metadata_path).read_text())
        except (OSError, ValueError):
            metadata = {}
        if "weights" in metadata:  # else a backup written by Keras's own callback
            self._weights_path = str(Path(self.backup_dir) / metadata["weights"])
        super()._load_model()


class _ReplaysFinishedEpochs:
    """Mixin for the Keras callbacks whose state follows the monitored values (wait, best,
    cooldown): a resumed run feeds the values of its `finished` epochs through
    ``on_epoch_end`` at the start of training, so it goes on with the killed run's state
    (Keras does not restore other callbacks' state; BackupAndRestore restores weights,
    optimizer and epoch)."""

    def __init__(self, *, finished: list[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self._finished = finished
        self._replaying = False

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._replaying = True
        try:
            for epoch, value in enumerate(self._finished):
                self.on_epoch_end(epoch, {self.monitor: value})
        finally:
            self._replaying = False


class ResumableEarlyStopping(_ReplaysFinishedEpochs, keras.callbacks.EarlyStopping):
    """EarlyStopping that resumes with the killed run's best value and patience."""


class ResumableReduceLROnPlateau(_ReplaysFinishedEpochs, keras.callbacks.ReduceLROnPlateau):
    """ReduceLROnPlateau that resumes with the killed run's wait, best and cooldown. The
    reduced learning rate itself is in the optimizer state that BackupAndRestore restores
    (the backup is written after this callback's epoch end)."""

    def _reduce_optimizer_lr(self, optimizer, epoch, name=""):
        if self._replaying:
            return True  # min_lr is 0: the killed run reduced the rate here
        return super()._reduce_optimizer_lr(optimizer, epoch, name)


class ResumableSwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """SwapEMAWeights (``swap_on_epoch``) that knows a resumed run's model holds the averaged
    weights, as the backup of an epoch's end has them, and swaps back at the first epoch."""

    def __init__(self, resumed_epoch: int) -> None:
        super().__init__(swap_on_epoch=True)
        self.resumed_epoch = resumed_epoch

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._ema_weights_in_model = self.resumed_epoch > 0


class SeedStateBackup(keras.callbacks.Callback):
    """Keeps the layers' random states (the ``SeedGenerator`` of each dropout) with the backup,
    and whether training stopped after an epoch (early stopping, a time budget, `stop_below`).

    Weight files, and so BackupAndRestore, leave the random states out, so a resumed run
    would draw the dropout masks of its first epoch again. Their values after each finished
    epoch are written to `path` (JSON, by epoch); a run resumed after epoch k takes those of
    epoch k, and a run that had stopped after epoch k does not train again."""

    @staticmethod
    def stopped(path: Path, epoch: int) -> bool:
        """Whether training stopped after `epoch` (1-based), by the record at `path`."""
        return path.exists() and json.loads(path.read_text()).get("stopped") == epoch

    def __init__(self, path: Path, resumed_epoch: int = 0) -> None:
        super().__init__()
        self.path, self.resumed_epoch = Path(path), resumed_epoch

    def _states(self) -> list:
        return [v for v in self.model.variables if v.path.endswith("seed_generator_state")]

    def _saved(self) -> dict[str, list]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def on_train_begin(self, logs=None):
        if self.resumed_epoch:
            saved = self._saved().get(str(self.resumed_epoch))
            if saved is None:
                raise RuntimeError(
                    f"Cannot resume with the same random states: {self.path} has none for "
                    f"epoch {self.resumed_epoch}."
                )
            for variable, value in zip(self._states(), saved, strict=True):
                variable.assign(np.asarray(value, dtype=variable.dtype))

    def on_epoch_end(self, epoch, logs=None):
        saved = self._saved()
        saved[str(epoch + 1)] = [np.asarray(v).tolist() for v in self._states()]
        saved["stopped"] = epoch + 1 if self.model.stop_training else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, saved)


def _mode(monitor: str) -> str:
    return "max" if any(k in monitor for k in ("acc", "f1", "bleu", "match")) else "min"


class RequireMonitor(keras.callbacks.Callback):
    """Refuse a ``train.monitor`` the model does not log, after the first epoch (the logged
    names are known then), instead of training on without checkpoints or early stopping.
    A run whose validation split is empty (tiny data) logs no ``val_`` value at all; Keras's
    callbacks warn about that, as before."""

    def __init__(self, monitor: str) -> None:
        super().__init__()
        self.monitor = monitor

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        validated = any(k.startswith("val_") for k in logs)
        if self.monitor not in logs and (validated or not self.monitor.startswith("val_")):
            raise ValueError(
                f"Invalid value for train.monitor. Expected a value the model logs, one of "
                f"{', '.join(sorted(logs))}. Received: monitor={self.monitor!r}"
            )


def forget_unfinished_epochs(run_dir: Path, epochs_done: int) -> None:
    """Drop what a killed process logged for the epochs after its last backup (`epochs_done`
    finished epochs): their history.csv rows and TensorBoard events, which the resumed run
    logs again. An epoch's events are the ``epoch_*`` scalars at its step and the events
    written before them (Keras's ``evaluation_*_vs_iterations``, stepped by iterations)."""
    history = run_dir / "history.csv"
    lines = []
    if history.exists():
        with open(history, newline="") as f:
            lines = f.readlines()  # CSVLogger's lines, kept byte for byte
    header = next(csv.reader(lines[:1]), [])
    if "epoch" in header:
        at = header.index("epoch")

        def finished(line: str) -> bool:  # a line cut off or not CSVLogger's is not
            try:
                return line.endswith("\n") and int(next(csv.reader([line]))[at]) < epochs_done
            except (ValueError, IndexError, StopIteration):
                return False

        kept = lines[:1] + [line for line in lines[1:] if finished(line)]
        if len(kept) == 1:  # no finished epoch: CSVLogger writes the header again
            history.unlink()
        elif len(kept) < len(lines):
            write_text(history, "".join(kept))
    # In name order a file comes before its ".partial" (its rewrite, which renames it over
    # the file); one still there after its file is a rewrite cut off by a kill.
    for path in sorted((run_dir / "tensorboard").glob("*/events.out.tfevents.*")):
        if path.name.endswith(".partial"):
            path.unlink(missing_ok=True)
        else:
            _forget_events(path, epochs_done)


def _forget_events(path: Path, epochs_done: int) -> None:
    events, cut = [], False
    try:
        for record in tf.data.TFRecordDataset(str(path)):
            events.append((record.numpy(), tf.compat.v1.Event.FromString(record.numpy())))
    except tf.errors.DataLossError:
        cut = True  # the last record, cut off by the kill
    keep, epoch = [], None  # epoch: that of the next epoch_* event (None: no epoch ended)
    for record, event in reversed(events):
        tags = [v.tag for v in event.summary.value]
        if any(tag.startswith("epoch_") for tag in tags):
            epoch = event.step
        if not tags or (epoch is not None and epoch < epochs_done):
            keep.append(record)
    if cut or len(keep) < len(events):
        partial = path.with_name(path.name + ".partial")
        with tf.io.TFRecordWriter(str(partial)) as writer:
            for record in reversed(keep):
                writer.write(record)
        os.replace(partial, path)


def _finished_values(history: Path, monitor: str, epochs_done: int) -> list[float]:
    """The monitored value of each epoch a resumed run has finished, from history.csv."""
    if epochs_done == 0 or not history.exists():
        return []
    return [
        float(row[monitor])
        for epoch, row in sorted(reports.history_rows(history).items())
        if epoch < epochs_done and row.get(monitor) not in (None, "")
    ]


class StopBelow(keras.callbacks.Callback):
    """Stop after the epoch whose `monitor` is at or below `value` (e.g. a solved task)."""

    def __init__(self, monitor: str, value: float) -> None:
        super().__init__()
        self.monitor, self.value = monitor, value

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is not None and current <= self.value:
            self.model.stop_training = True


def clock_start(run_dir: Path, now: float | None = None) -> float:
    """When the run in `run_dir` started, for its time budget and ``wall_time_s``: now, or for
    a resumed run now minus the killed run's time up to its last finished epoch (pretraining
    included), so both cover the whole run rather than the last process."""
    now = time.time() if now is None else now
    return now - max(
        *(EpochClock.saved(d / BACKUP / EpochClock.FILE, _backup_epoch(d / BACKUP))[0]
          for d in (run_dir, run_dir / PRETRAIN)),
        EpochClock.saved(run_dir / PRETRAIN / EpochClock.FILE)[0],  # a finished pretraining
    )


class EpochClock(keras.callbacks.Callback):
    """Records at each epoch end the run's time so far (since `started`) and its longest epoch,
    in ``FILE`` beside the backup (written before the backup commits the epoch), so that a
    resumed run's clock goes on from the killed run's last finished epoch.

    With a `budget_s`, it also stops the run when another epoch, as long as the longest so
    far, would end past the budget."""

    FILE = "times.json"

    def __init__(self, path: Path, started: float, resumed_epoch: int = 0,
                 budget_s: float | None = None, clock=time.time) -> None:
        super().__init__()
        self.path, self.started, self.clock = Path(path), started, clock
        self.budget_s = budget_s
        self.longest = self.saved(self.path, resumed_epoch)[1]

    @staticmethod
    def saved(path: Path, epoch: int | None = None) -> tuple[float, float]:
        """``(elapsed_s, longest_epoch_s)`` at the end of `epoch` finished epochs, or of all
        those recorded (`epoch` None); (0, 0) if none are recorded."""
        try:
            saved = json.loads(Path(path).read_text())
            elapsed, longest = saved[str(max(map(int, saved)) if epoch is None else epoch)]
        except (OSError, ValueError, KeyError):
            return 0.0, 0.0
        return float(elapsed), float(longest)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        self.longest = max(self.longest, now - self.epoch_started)
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        saved[str(epoch + 1)] = [now - self.started, self.longest]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, saved)
        if self.budget_s is not None and now - self.started + self.longest > self.budget_s:
            self.model.stop_training = True


def write_config(run_dir: Path, recipe: dict[str, Any], **settings) -> None:
    """``config.json``: the recipe and the run's settings (seed, data dir, ...), not verbosity."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {**recipe, **{k: v for k, v in settings.items() if k != "verbose"}}
    write_text(run_dir / "config.json", json.dumps(resolved, indent=1) + "\n")


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """``metrics.json``: `metrics` without its private entries (a run, ensemble or experiment)."""
    write_text(run_dir / "metrics.json", json.dumps(_public(metrics), indent=1) + "\n")


def write_run_files(run_dir: Path, info) -> None:
    """What export and evaluation read besides the model: info, vocabularies, labels, samples."""
    info.save(run_dir)
    write_samples(run_dir, info)
    if info.labels:
        write_text(run_dir / "labels.json", json.dumps(info.labels, ensure_ascii=False) + "\n")


def write_samples(run_dir: Path, info, limit: int = 64) -> None:
    """Real raw test examples (text in, expected out) for export warm-up and `verify`."""
    samples = []
    for text, target in info.test_examples[:limit]:
        if isinstance(text, str):
            if info.labels and isinstance(target, (int, np.integer)):
                target = info.labels[int(target)]
            samples.append({"input": text, "target": str(target)})
    write_text(run_dir / "samples.json", json.dumps(samples, indent=1, ensure_ascii=False) + "\n")


def _count_batches(dataset: tf.data.Dataset) -> int:
    n = int(dataset.cardinality())
    if n < 0:
        n = sum(1 for _ in dataset)
    return n


def _backup_epoch(backup_dir: Path) -> int:
    meta = backup_dir / "training_metadata.json"
    if not meta.exists():
        return 0
    return int(json.loads(meta.read_text())["epoch"])


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    """Drop private entries (arrays kept for reports) before writing JSON."""
    if isinstance(metrics, dict):
        return {k: _public(v) for k, v in metrics.items() if not k.startswith("_")}
    return metrics

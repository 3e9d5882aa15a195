"""The training application: run directory, determinism, resume after kill -9, multi-worker."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import kill_after_an_epoch

ROOT = Path(__file__).resolve().parents[1]
# A tiny dates seq2seq: ~1 s per epoch on 2 cores.
TINY = [
    "--set", "num_train=640", "--set", "num_validation=128", "--set", "num_test=128",
    "--set", "units=16", "--set", "embedding_dim=8", "--set", "time_budget_s=none",
]


def run_model(run_dir):
    """The run's saved model (with its optimizer)."""
    import keras_seq.models  # noqa: F401  (registers the model classes)

    return keras.saving.load_model(run_dir / "model.keras", safe_mode=True)


def weights_of(run_dir):
    return [np.asarray(w) for w in run_model(run_dir).weights]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cli):
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    cli("train", "dates", "--epochs", "3", "--run-dir", str(run_dir), "--quiet", *TINY)
    return run_dir


def test_run_directory_contents(reference_run):
    for name in [
        "config.json", "model.keras", "metrics.json", "history.csv", "training_curves.png",
        "attention_0.png", "vocab_source.json", "vocab_target.json", "samples.json",
        "checkpoints/best.weights.h5", "checkpoints/last.weights.h5",
    ]:
        assert (reference_run / name).is_file(), name
    metrics = json.loads((reference_run / "metrics.json").read_text())
    assert metrics["recipe"] == "dates"
    assert set(metrics["test"]) >= {"exact_match", "loss"}
    assert 0.0 <= metrics["test"]["exact_match"] <= 1.0 and metrics["wall_time_s"] > 0
    events = list((reference_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)  # real TensorBoard logs
    config = json.loads((reference_run / "config.json").read_text())
    assert config["model"]["units"] == 16 and config["train"]["epochs"] == 3
    optimizer = run_model(reference_run).optimizer  # the recipe's clipping reached Adam
    assert config["train"]["clipnorm"] and optimizer.clipnorm == config["train"]["clipnorm"]
    assert not (reference_run / "backup").exists()  # removed after a finished run
    history = (reference_run / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3


def test_same_seed_same_metrics(reference_run, tmp_path, cli):
    again = tmp_path / "again"
    cli("train", "dates", "--epochs", "3", "--run-dir", str(again), "--quiet", *TINY)
    assert json.loads((again / "metrics.json").read_text())["test"] == json.loads(
        (reference_run / "metrics.json").read_text()
    )["test"]
    for a, b in zip(weights_of(again), weights_of(reference_run), strict=True):
        np.testing.assert_array_equal(a, b)


def test_kill_minus_nine_then_resume_ends_like_uninterrupted_run(reference_run, tmp_path, cli):
    run_dir = tmp_path / "killed"
    args = ["train", "dates", "--epochs", "3", "--run-dir", str(run_dir), "--quiet", *TINY]
    finished = kill_after_an_epoch(args, run_dir / "backup")
    assert not (run_dir / "metrics.json").exists()
    assert finished >= 1

    result = cli(*args)
    assert result.returncode == 0
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == json.loads(
        (reference_run / "metrics.json").read_text()
    )["test"]
    for a, b in zip(weights_of(run_dir), weights_of(reference_run), strict=True):
        np.testing.assert_array_equal(a, b)


# Runs keras-seq with a SIGKILL right after its Nth backup weight file is written, before the
# backup's metadata: the window in which Keras's own BackupAndRestore paired new weights with
# the previous epoch's metadata.
KILL_AFTER_BACKUP_WEIGHTS = """
import os, signal, sys, runpy, keras
save, written = keras.Model.save_weights, [0]
def save_weights(self, filepath, *args, **kwargs):
    save(self, filepath, *args, **kwargs)
    if "/backup/" in str(filepath):
        written[0] += 1
        if written[0] == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
keras.Model.save_weights = save_weights
sys.argv = ["keras-seq", *sys.argv[1:]]
runpy.run_module("keras_seq", run_name="__main__")
"""


def scalars(run_dir):
    """``{(writer, tag): [(step, value), ...]}`` of a run's TensorBoard events, as TensorBoard
    reads them (every event file of a writer's directory, in name order)."""
    import tensorflow as tf

    found = {}
    for path in sorted((run_dir / "tensorboard").glob("*/events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.setdefault((path.parent.name, value.tag), []).append(
                    (event.step, float(tf.make_ndarray(value.tensor))))
    return found


def test_a_kill_between_the_backups_weights_and_metadata_resumes_exactly(reference_run,
                                                                         tmp_path, cli):
    run_dir = tmp_path / "killed-while-saving"
    args = ["train", "dates", "--epochs", "3", "--run-dir", str(run_dir), "--quiet", *TINY]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_BACKUP_WEIGHTS, *args], cwd=ROOT,
                            env={**os.environ, "KILL_AFTER": "2", "TF_CPP_MIN_LOG_LEVEL": "3"},
                            capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1

    logged = (run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in logged[1:]] == ["0", "1"]
    assert [step for step, _ in scalars(run_dir)[("validation", "epoch_loss")]] == [0, 1]

    cli(*args)
    # Epoch 1 was logged, then killed before its backup committed: it runs again, from epoch
    # 0's backup (it used to run from its own weights, a second time), logs the same values,
    # and its first log is dropped (history.csv had its row twice, TensorBoard two points).
    assert (run_dir / "history.csv").read_bytes() == (reference_run / "history.csv").read_bytes()
    assert scalars(run_dir) == scalars(reference_run)
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == json.loads(
        (reference_run / "metrics.json").read_text())["test"]
    for a, b in zip(weights_of(run_dir), weights_of(reference_run), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_diverged_run_ends_in_one_line_every_time(tmp_path, cli):
    """A NaN in the first epoch: the best checkpoint held NaN weights, the reports failed on
    them, and every rerun of the command failed the same way in the plots."""
    run_dir = tmp_path / "diverged"
    args = ["train", "dates", "--epochs", "3", "--run-dir", str(run_dir), "--quiet", *TINY,
            "--set", "learning_rate=1e30", "--set", "clipnorm=1e30"]
    for _ in range(2):  # the first run, then the same command again
        result = cli(*args, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        line = next(x for x in result.stderr.splitlines() if x.startswith("keras-seq"))
        assert f"the run in {run_dir} diverged" in line and "learning_rate (was 1e+30)" in line
        assert not (run_dir / "metrics.json").exists()


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _names_data(root):
    from test_pretraining import names_data

    return str(names_data(root / "data" / "names"))


MULTIWORKER = {
    "adding": (lambda tmp: [
        "adding", "--set", "num_train=256", "--set", "num_validation=64", "--set", "num_test=64",
        "--set", "units=8", "--set", "lengths=[20]", "--set", "cells=['gru']",
        "--set", "experiment.time_budget_s=none"], "gru-T20"),
    # Both phases of a pretrained run (each model's fit needs the multi-worker patch).
    "names-de-it": (lambda tmp: [
        "names-de-it", "--data-dir", _names_data(tmp), "--set", "pretrain_epochs=2",
        "--set", "units=4", "--set", "embedding_dim=4", "--set", "time_budget_s=none"], ""),
}


@pytest.mark.parametrize("recipe", sorted(MULTIWORKER))
def test_multiworker_two_processes_end_with_identical_weights(tmp_path, recipe):
    """Both workers get the same --run-dir, as on a shared file system: the chief writes the
    run there, worker 1 into its .worker-1 folder (both wrote history.csv and the checkpoints
    of the same run, which then failed to parse or to lock)."""
    args, sub_run = MULTIWORKER[recipe]
    args = args(tmp_path)
    workers = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": json.dumps(tf_config)}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "keras_seq", "train", *args, "--strategy", "multiworker",
             "--run-dir", str(tmp_path / "run"), "--quiet", "--epochs", "2"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    a = weights_of(tmp_path / "run" / sub_run)
    b = weights_of(tmp_path / "run" / ".worker-1" / sub_run)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["strategy"] == "multiworker"
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


def test_multiworker_with_one_worker_trains(tmp_path, cli):
    # It stopped at the first batch: Keras takes one worker's local mean, so the [1]-shaped
    # logs of the multi-worker patch reached TensorBoard ("Expected scalar shape").
    (worker,) = [f"127.0.0.1:{p}" for p in _free_ports(1)]
    tf_config = {"cluster": {"worker": [worker]}, "task": {"type": "worker", "index": 0}}
    result = cli("train", "dates", "--strategy", "multiworker", "--run-dir", str(tmp_path / "r"),
                 "--quiet", "--epochs", "1", *TINY, env={"TF_CONFIG": json.dumps(tf_config)})
    assert json.loads(result.stdout)["replicas"] == 1


def _with_cpus(n: int, *args):
    """`keras-seq ARGS` in a process whose CPU is split into `n` logical devices."""
    code = ("import sys, tensorflow as tf; cpu = tf.config.list_physical_devices('CPU')[0]; "
            f"tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * {n}); "
            "from keras_seq import cli; sys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]


def test_mirrored_two_replicas_train_like_one(tmp_path):
    """MirroredStrategy splits each batch over 2 devices and all-reduces the gradients: the
    run ends where the same strategy on one device ends (same data order)."""
    runs = {}
    for n in (1, 2):
        runs[n] = tmp_path / f"replicas_{n}"
        _with_cpus(n, "train", "dates", "--epochs", "2", "--run-dir", str(runs[n]), "--quiet",
                   "--strategy", "mirrored", *TINY)
    one, two = (json.loads((runs[n] / "metrics.json").read_text()) for n in (1, 2))
    assert (one["replicas"], two["replicas"]) == (1, 2)
    assert two["test"]["loss"] == pytest.approx(one["test"]["loss"], rel=1e-5)
    for a, b in zip(weights_of(runs[1]), weights_of(runs[2]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_mixed_precision_run(tmp_path, cli):
    run_dir = tmp_path / "mixed"
    cli("train", "dates", "--epochs", "2", "--run-dir", str(run_dir), "--quiet",
              "--mixed-precision", *TINY)
    assert json.loads((run_dir / "config.json").read_text())["mixed_precision"] is True
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["loss"]) and metrics["test"]["loss"] < np.log(16)
    assert (run_dir / "attention_0.png").is_file()  # greedy decoding ran in float16


def test_language_model_run_directory(tmp_path, cli):
    play = tmp_path / "data" / "tinyshakespeare" / "input.txt"
    play.parent.mkdir(parents=True)
    play.write_text("".join(f"ROMEO:\nMy lord, line {i}.\n\nKING:\nGo, {i}.\n\n"
                            for i in range(300)))
    run_dir = tmp_path / "lm"
    cli("train", "shakespeare", "--data-dir", str(tmp_path / "data"), "--epochs", "2",
              "--run-dir", str(run_dir), "--quiet", "--set", "units=16", "--set", "num_layers=1",
              "--set", "embedding_dim=8", "--set", "seq_length=20", "--set", "sample_length=30",
              "--set", "time_budget_s=none")
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert test["perplexity"] == pytest.approx(np.exp(test["loss"]))
    assert test["split"] == "validation"  # the recipe has no test split
    # The export checks' samples are held-out validation windows (there were none).
    samples = json.loads((run_dir / "samples.json").read_text())
    assert samples and all(s["input"][1:] == s["target"][:-1] for s in samples)
    assert test["loss"] < np.log(len(set(play.read_text())))  # better than uniform
    text = (run_dir / "samples.txt").read_text()
    sections = text.split("=== prompt ")[1:]
    assert [s.split(" ===")[0] for s in sections] == ["'ROMEO:\\n'", "'First Citizen:\\n'",
                                                      "'KING'"]
    for section in sections:
        prompt = eval(section.split(" ===")[0])  # noqa: S307 (the repr written above)
        body = section.split(" ===\n", 1)[1]
        assert body.startswith(prompt) and len(body) >= len(prompt) + 30  # 30 tokens


def test_default_run_dir_resumes_an_unfinished_run_with_the_same_settings(tmp_path, capsys):
    from keras_seq.training import recipes, runner

    recipe = recipes.load("dates")
    fresh = runner.resolve_run_dir(recipe, None, root=tmp_path)
    assert fresh.parent == tmp_path / "dates"
    killed = tmp_path / "dates" / "20260101-000000"
    (killed / runner.BACKUP).mkdir(parents=True)
    (killed / "config.json").write_text(json.dumps({**recipe, "seed": 0}))
    capsys.readouterr()
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) == killed
    said = capsys.readouterr()  # on stderr: stdout stays the run's JSON metrics
    assert said.out == "" and said.err == f"Resuming the unfinished run {killed}\n"
    changed = recipes.apply_overrides(recipe, ["units=7"])
    assert runner.resolve_run_dir(changed, None, root=tmp_path, seed=0) != killed
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=1) != killed
    (killed / runner.BACKUP).rmdir()  # killed after its pretraining phase finished
    (killed / runner.PRETRAIN).mkdir()
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) != killed
    (killed / runner.PRETRAIN / runner.PRETRAINED).write_bytes(b"")
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) == killed
    held = runner.lock_run_dir(killed)  # being trained by a live process: not resumed
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) != killed
    held.close()
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) == killed
    (killed / "metrics.json").write_text("{}")  # finished: never resumed
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) != killed


def test_a_run_dir_that_cannot_hold_a_lock_file_is_not_locked(tmp_path):
    """A finished run on a read-only disk was reprinted before the lock, and then failed with
    an OSError traceback; `.lock` a directory stands for a file that cannot be opened."""
    from keras_seq.training import runner

    (tmp_path / "run" / runner.LOCK).mkdir(parents=True)
    assert runner.lock_run_dir(tmp_path / "run") is None
    assert not runner.in_use(tmp_path / "run")


def test_a_run_of_an_older_version_with_a_relative_data_dir_resumes(tmp_path, monkeypatch):
    """config.json kept `--data-dir ../data` as typed before it was made absolute: the same
    command from the same directory must still count as the same run."""
    from keras_seq.training import recipes, runner

    recipe = recipes.load("dates")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(
        {**recipe, "seed": 0, "data_dir": "../data", "test_data": None}))
    same = {"seed": 0, "data_dir": str(tmp_path.parent / "data"), "test_data": None}
    assert runner.differences(tmp_path / "run", recipe, **same) == []
    assert runner.differences(tmp_path / "run", recipe, **{**same, "data_dir": "/x"}) == [
        "data_dir"]


def test_commands_started_in_the_same_second_get_their_own_run_dirs(tmp_path, monkeypatch):
    """Two commands started in the same second shared runs/<recipe>/<timestamp>/ (both
    failed on one history.csv)."""
    from keras_seq.training import recipes, runner

    monkeypatch.setattr(runner.time, "strftime", lambda _: "20260101-000000")
    recipe = recipes.load("dates")
    first, second, third = (runner.resolve_run_dir(recipe, None, root=tmp_path) for _ in "abc")
    assert [first.name, second.name, third.name] == [
        "20260101-000000", "20260101-000000-2", "20260101-000000-3"]
    assert all(d.is_dir() for d in (first, second, third))


def test_an_explicit_run_dir_is_finished_or_resumed_only_with_the_same_settings(
    reference_run, tmp_path, cli
):
    history = (reference_run / "history.csv").read_text()
    again = cli("train", "dates", "--epochs", "3", "--run-dir", str(reference_run),
                      "--quiet", *TINY)
    assert "is a finished run of these settings" in again.stderr
    assert json.loads(again.stdout)["test"] == json.loads(
        (reference_run / "metrics.json").read_text())["test"]
    assert (reference_run / "history.csv").read_text() == history  # not trained again
    other = cli("train", "dates", "--epochs", "3", "--run-dir", str(reference_run),
                      "--seed", "1", "--quiet", *TINY, check=False)
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "holds a run with other settings (differing in: seed)" in other.stderr


def test_evaluate_reads_the_runs_vocabulary_also_with_other_test_data(
    reference_run, tmp_path, cli
):
    import keras

    from keras_seq import models  # noqa: F401  (registers the model classes)
    from pipelines import names
    from pipelines.text import Vocabulary

    printed = json.loads(cli("evaluate", str(reference_run)).stdout)
    assert printed["test"] == json.loads((reference_run / "metrics.json").read_text())["test"]

    data, test_dir = tmp_path / "data" / "names", tmp_path / "test"
    data.mkdir(parents=True)
    test_dir.mkdir()
    german = ["Zahn", "Zander", "Zeller", "Zimmer", "Zorn", "Zuber", "Zwick", "Zeidler",
              "Schmidt", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Bauer", "Richter"]
    italian = ["Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino",
               "Greco", "Bruno", "Gallo", "Conti", "Costa", "Giordano", "Mancini", "Rizzo"]
    (data / "German.txt").write_text("\n".join(german) + "\n")
    (data / "Italian.txt").write_text("\n".join(italian) + "\n")
    # The test directory has the source's whole layout: a third language the recipe ignores.
    (test_dir / "German.txt").write_text("\n".join(german[:8]) + "\n")
    (test_dir / "Italian.txt").write_text("Rossi\nRusso\n")
    (test_dir / "Polish.txt").write_text("Nowak\n")
    run_dir = tmp_path / "run"
    cli("train", "names-de-it", "--data-dir", str(tmp_path / "data"), "--epochs", "2",
              "--run-dir", str(run_dir), "--quiet", "--set", "units=8",
              "--set", "embedding_dim=4", "--set", "pretrain_epochs=2",
              "--set", "time_budget_s=none")
    vocab = Vocabulary.from_json(run_dir / "vocab_text.json")
    # The 'z' names leave training with --test-data: a vocabulary rebuilt there ranks the
    # characters differently, so an evaluation that rebuilt it would feed the model wrong ids.
    rebuilt = names.load(data_dir=str(tmp_path / "data"), test_path=str(test_dir),
                         languages=["German", "Italian"], lowercase=True).info.vocabulary
    assert rebuilt.tokens != vocab.tokens

    printed = json.loads(cli("evaluate", str(run_dir), "--data-dir", str(tmp_path / "data"),
                                   "--test-data", str(test_dir)).stdout)["test"]
    test_names = german[:8] + ["Rossi", "Russo"]
    labels = np.array([0] * 8 + [1, 1])
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    probs = np.asarray(model(vocab.encode(test_names).to_tensor(), training=False))
    assert printed["examples"] == 10
    assert printed["accuracy"] == np.mean(probs.argmax(-1) == labels)
    assert printed["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(10), labels])),
                                            rel=1e-5)

    # A run trained with --test-data is evaluated on that test data by default.
    with_test = tmp_path / "run-with-test-data"
    cli("train", "names-de-it", "--data-dir", str(tmp_path / "data"), "--epochs", "2",
        "--run-dir", str(with_test), "--test-data", str(test_dir), "--quiet",
        "--set", "units=8", "--set", "embedding_dim=4", "--set", "pretrain_epochs=2",
        "--set", "time_budget_s=none")
    printed = json.loads(cli("evaluate", str(with_test)).stdout)["test"]
    assert printed == json.loads((with_test / "metrics.json").read_text())["test"]
    assert printed["examples"] == 10


def test_a_monitor_the_model_does_not_log_is_refused_after_the_first_epoch():
    # It trained on with warnings: no best checkpoint, no early stopping, no LR reduction.
    from keras_seq.training import runner

    logs = {"loss": 1.0, "val_loss": 1.0}
    with pytest.raises(ValueError, match=r"train.monitor. Expected a value the model logs, one "
                       r"of loss, val_loss. Received: monitor='val_accuracy'"):
        runner.RequireMonitor("val_accuracy").on_epoch_end(0, logs)
    runner.RequireMonitor("val_loss").on_epoch_end(0, logs)
    runner.RequireMonitor("val_loss").on_epoch_end(0, {"loss": 1.0})  # no validation data
    assert runner._mode("val_exact_match") == "max" and runner._mode("val_loss") == "min"


# -- a kill at any point of an epoch's end, or after training: in-process, deterministic --------


class Killed(Exception):
    """Stands for kill -9 at a chosen point (no callback's on_train_end runs, as with a kill)."""


class KillAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise Killed


def _tiny_dates(*overrides):
    from keras_seq.training import recipes

    sets = [a for a in TINY if a != "--set"] + ["num_train=320", "steps_per_epoch=10",
                                                 "early_stopping_patience=20", *overrides]
    return recipes.apply_overrides(recipes.load("dates"), sets)


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """``tiny_reference(*overrides)``: the uninterrupted run of ``_tiny_dates(*overrides)``,
    trained once per module (cases of a kill share it)."""
    from keras_seq.training import runner

    runs = {}

    def reference(*overrides):
        if overrides not in runs:
            runs[overrides] = tmp_path_factory.mktemp("reference")
            runner.train(_tiny_dates(*overrides), run_dir=runs[overrides], verbose=0)
        return runs[overrides]

    return reference


def _train_killed(recipe, run_dir, monkeypatch, epoch, where, **settings):
    """Train until epoch `epoch`'s end is killed `where` ("end": after every callback,
    "after_backup" or "before_backup"), then train again with the same settings (the resume)."""
    from keras_seq.training import runner

    real = runner.callbacks

    def with_kill(*args, **kwargs):
        result = real(*args, **kwargs)
        kinds = {"before_backup": runner.SeedStateBackup,
                 "after_backup": runner.keras.callbacks.BackupAndRestore}
        at = len(result) if where == "end" else next(
            i for i, c in enumerate(result) if isinstance(c, kinds[where]))
        at += where == "after_backup"
        return result[:at] + [KillAt(epoch)] + result[at:]

    monkeypatch.setattr(runner, "callbacks", with_kill)
    with pytest.raises(Killed):
        runner.train(recipe, run_dir=run_dir, verbose=0, **settings)
    monkeypatch.setattr(runner, "callbacks", real)
    return runner.train(recipe, run_dir=run_dir, verbose=0, **settings)


def _same_run(run_dir, reference):

    assert json.loads((run_dir / "metrics.json").read_text())["test"] == json.loads(
        (reference / "metrics.json").read_text())["test"]
    a, b = run_model(run_dir), run_model(reference)
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert float(a.optimizer.learning_rate) == float(b.optimizer.learning_rate)
    # The optimizer's state too: a kill after training lost it (iterations 0, no moments).
    assert len(a.optimizer.variables) == len(b.optimizer.variables) > 2
    for x, y in zip(a.optimizer.variables, b.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # An epoch re-run after a kill before its backup is logged once; the learning rates too.
    assert (run_dir / "history.csv").read_bytes() == (reference / "history.csv").read_bytes()
    assert scalars(run_dir) == scalars(reference)
    assert not (run_dir / "backup").exists()


@pytest.mark.parametrize("overrides,epoch,where", [
    # The learning rate reduced at epoch 1's end was lost: the backup came before the
    # reduction, and the replay took the backup's rate as already reduced. (A rate too small
    # to move the weights keeps the validation loss equal, so the rate is reduced at every
    # epoch's end on any machine; a large one made the epochs' losses machine-dependent.)
    (["learning_rate=1e-30", "reduce_lr_patience=1", "epochs=4"], 1, "end"),
    # Killed right after the backup of the last epoch, the best one: the resumed run trained
    # nothing more and kept the best checkpoint of an earlier epoch.
    (["learning_rate=0.3", "epochs=3"], 2, "after_backup"),
    # Killed after the checkpoints and the rate's reduction but before the backup: the
    # resumed run re-runs that epoch from the backup before it.
    (["learning_rate=1e-30", "reduce_lr_patience=1", "epochs=4"], 1, "before_backup"),
    # stop_below stopped after epoch 0; a kill after its backup trained on (epochs 1, 2).
    (["stop_below=100", "epochs=3"], 0, "end"),
    # With an EMA, the backup holds the averaged weights in the model (as the checkpoints
    # do) and the raw ones in the optimizer; the resumed run swaps them back.
    (["ema_momentum=0.9", "epochs=3"], 1, "end"),
    (["ema_momentum=0.9", "epochs=3"], 1, "before_backup"),
], ids=["reduced-learning-rate", "best-checkpoint", "before-the-backup", "stopped", "ema",
        "ema-before-the-backup"])
def test_a_kill_at_an_epochs_end_resumes_like_an_uninterrupted_run(
        tmp_path, monkeypatch, tiny_reference, overrides, epoch, where):
    reference = tiny_reference(*overrides)
    _train_killed(_tiny_dates(*overrides), tmp_path / "killed", monkeypatch, epoch, where)
    _same_run(tmp_path / "killed", reference)
    if "reduce_lr_patience=1" in overrides:  # the case is real: reduced at epoch 1's end
        rates = scalars(reference)[("train", "epoch_learning_rate")]
        assert [step for step, _ in rates] == [0, 1, 2, 3] and rates[1][1] == rates[0][1] / 2


def test_mirrored_runs_and_resumes_like_the_default_strategy(tmp_path, monkeypatch):
    # Keras's fit pulled a batch of its own under any other strategy, which moved the seeded
    # shuffle: a mirrored run differed from default (largest weight difference 0.16), and a
    # killed mirrored run resumed on other batches than an uninterrupted one.
    from keras_seq.training import runner

    recipe = _tiny_dates("epochs=3")
    runner.train(recipe, run_dir=tmp_path / "default", verbose=0)
    runner.train(recipe, run_dir=tmp_path / "mirrored", verbose=0, strategy="mirrored")
    _train_killed(recipe, tmp_path / "killed", monkeypatch, 1, "end", strategy="mirrored")
    for run in ("mirrored", "killed"):
        _same_run(tmp_path / run, tmp_path / "default")


def test_a_kill_after_training_does_not_train_again(tmp_path, monkeypatch):
    # Killed while writing the reports: the backup was gone and the rerun trained from
    # epoch 0 (history.csv with every epoch twice; without --run-dir, a new directory).
    from keras_seq.training import reports, runner

    recipe = _tiny_dates("epochs=2")
    runner.train(recipe, run_dir=tmp_path / "reference", verbose=0)
    real = reports.write_all

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(reports, "write_all", killed)
    with pytest.raises(Killed):
        runner.train(recipe, run_dir=tmp_path / "killed", verbose=0)
    assert runner.has_started(tmp_path / "killed")  # the default run dir resumes it
    monkeypatch.setattr(reports, "write_all", real)
    fits = []
    monkeypatch.setattr(runner.keras.Model, "fit", lambda *a, **k: fits.append(1))
    runner.train(recipe, run_dir=tmp_path / "killed", verbose=0)
    assert fits == []
    monkeypatch.undo()
    _same_run(tmp_path / "killed", tmp_path / "reference")
    assert (tmp_path / "killed" / "history.csv").read_text() == (
        tmp_path / "reference" / "history.csv").read_text()  # no epoch twice


def test_forget_unfinished_epochs_keeps_the_finished_ones_byte_for_byte(tmp_path):
    """What a killed process logged after its last backup goes; the rest stays as written."""
    import tensorflow as tf

    from keras_seq.training import runner

    history = tmp_path / "history.csv"
    rows = ["epoch,loss\r\n", "0,0.9\r\n", "1,0.8\r\n", "2,0.7\r\n", "3,0."]  # 3: cut off
    history.write_bytes("".join(rows).encode())
    writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard" / "validation"))
    with writer.as_default():
        for epoch, iterations in enumerate([10, 20, 30]):
            tf.summary.scalar("evaluation_loss_vs_iterations", 1.0 / (epoch + 1), iterations)
            tf.summary.scalar("epoch_loss", 1.0 / (epoch + 1), epoch)
        tf.summary.scalar("evaluation_loss_vs_iterations", 0.2, 40)  # killed in epoch 3
    writer.close()

    runner.forget_unfinished_epochs(tmp_path, 2)
    assert history.read_bytes() == "".join(rows[:3]).encode()
    assert scalars(tmp_path) == {
        ("validation", "evaluation_loss_vs_iterations"): [(10, 1.0), (20, 0.5)],
        ("validation", "epoch_loss"): [(0, 1.0), (1, 0.5)],
    }
    runner.forget_unfinished_epochs(tmp_path, 2)  # nothing more to drop
    assert history.read_bytes() == "".join(rows[:3]).encode()
    # Lines CSVLogger does not write (a disk full, an edit) are dropped, not a traceback; so
    # is a copy of an event file that a kill cut off while it was being rewritten.
    history.write_bytes("".join([*rows[:3], "\r\n", ",1\r\n", "0.0,1\r\n"]).encode())
    (event,) = (tmp_path / "tensorboard" / "validation").iterdir()
    partial = event.with_name(event.name + ".partial")
    partial.write_bytes(event.read_bytes())
    runner.forget_unfinished_epochs(tmp_path, 2)
    assert history.read_bytes() == "".join(rows[:3]).encode() and not partial.exists()
    runner.forget_unfinished_epochs(tmp_path, 0)  # no finished epoch: a fresh CSV header
    assert not history.exists()
    assert scalars(tmp_path) == {}


def test_run_files_are_utf8_and_whole_or_absent(tmp_path, monkeypatch):
    """samples.json and labels.json hold raw names ("Müller"): they were written in the
    locale's encoding (a UnicodeEncodeError under LC_ALL=C), and export reads UTF-8. And a
    kill while metrics.json (which marks a run finished) or a finished pretraining's weights
    are written leaves no cut-off file: both were written in place."""
    from keras_seq.training import runner

    code = ("import sys, types; from pathlib import Path; from keras_seq.training import runner;"
            "runner.write_run_files(Path(sys.argv[1]), types.SimpleNamespace(labels=['German'],"
            " test_examples=[('M\\u00fcller', 0)], save=lambda d: None))")
    env = {**os.environ, "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, check=True,
                   timeout=120)
    assert json.loads((tmp_path / "samples.json").read_text(encoding="utf-8")) == [
        {"input": "Müller", "target": "German"}]
    assert json.loads((tmp_path / "labels.json").read_text(encoding="utf-8")) == ["German"]

    def killed(*args):
        raise KeyboardInterrupt  # the process ends after the bytes, before the rename

    monkeypatch.setattr(runner.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.write_metrics(tmp_path, {"recipe": "dates", "test": {}})
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    with pytest.raises(KeyboardInterrupt):
        runner.save_weights(model, tmp_path / runner.PRETRAINED)
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / runner.PRETRAINED).exists()

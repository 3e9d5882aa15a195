"""Experiment recipes (`adding`): sub-runs, resuming at the sub-run, a shared time budget."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from keras_seq.training import experiments, recipes


def tiny_adding(**train):
    recipe = recipes.apply_overrides(
        recipes.load("adding"),
        [
            "num_train=64", "num_validation=32", "num_test=32", "batch_size=32", "units=4",
            "epochs=3", "experiment.lengths=[6]", "experiment.cells=['rnn', 'gru']",
        ],
    )
    recipe["experiment"].pop("time_budget_s", None)
    recipe["train"].update(time_budget_s=None, **train)
    return recipe


def epochs_run(sub_dir):
    with open(sub_dir / "history.csv") as f:
        return len(list(csv.DictReader(f)))


def test_a_rerun_keeps_finished_sub_runs_and_trains_the_missing_one(tmp_path):
    first = experiments.run(tiny_adding(), run_dir=tmp_path, verbose=0)
    assert [(r["cell"], r["length"]) for r in first["test"]["runs"]] == [("rnn", 6), ("gru", 6)]
    assert "| rnn | 6 |" in (tmp_path / "comparison.md").read_text()
    assert first["replicas"] == 1  # README: metrics.json records the number of replicas

    kept = (tmp_path / "rnn-T6" / "model.keras").stat().st_mtime_ns
    (tmp_path / "gru-T6" / "metrics.json").unlink()  # as if killed during the GRU sub-run
    second = experiments.run(tiny_adding(), run_dir=tmp_path, verbose=0)

    assert (tmp_path / "rnn-T6" / "model.keras").stat().st_mtime_ns == kept
    assert second["test"]["runs"][0] == first["test"]["runs"][0]
    # The whole experiment's time, the finished sub-run's included (not only this process's).
    sub_runs = sum(run["wall_time_s"] for run in second["test"]["runs"])
    assert sub_runs - 0.1 <= second["wall_time_s"] <= sub_runs + 5
    assert json.loads((tmp_path / "gru-T6" / "metrics.json").read_text())["test"]["mse"] == (
        pytest.approx(second["test"]["runs"][1]["mse"])
    )


def test_stop_below_ends_a_run_once_the_monitor_reaches_it(tmp_path):
    experiments.run(tiny_adding(stop_below=1e9), run_dir=tmp_path / "stop", verbose=0)
    experiments.run(tiny_adding(), run_dir=tmp_path / "full", verbose=0)
    assert epochs_run(tmp_path / "stop" / "gru-T6") == 1
    assert epochs_run(tmp_path / "full" / "gru-T6") == 3


def test_time_budget_stops_before_an_epoch_that_would_overrun(tmp_path):
    """Each epoch of this run takes 10 s of a fake clock, the budget is 25 s: a third epoch
    would end at 30 s, so the run stops after two."""
    from keras_seq.training import runner

    clock = iter([0, 10, 10, 20, 20, 30, 30, 40])  # epoch begin, epoch end, ...
    callback = runner.EpochClock(tmp_path / "times.json", started=0.0, budget_s=25.0,
                                 clock=lambda: float(next(clock)))

    class Model:
        stop_training = False

    callback.set_model(Model())
    for epoch in range(5):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            break
    assert epoch == 1


def test_a_resumed_run_keeps_the_killed_runs_clock(tmp_path):
    """Epochs of 10, 15, 12, 12 s of a fake clock and a budget of 50 s: uninterrupted, the run
    stops after its third epoch (37 s, and a fourth as long as the longest would end at 52 s).
    Killed after two epochs and resumed, it used to get the whole budget again (and a
    wall_time_s of the last process only); it stops after the same epoch now."""
    from keras_seq.training import runner

    class Model:
        stop_training = False

    def train(start, epochs, times, resumed_epoch, t0):
        """Run `epochs` epochs from clock `t0`; the epoch the budget stopped at, or None."""
        t = [t0]
        clock = lambda: t[0]  # noqa: E731
        path = tmp_path / runner.BACKUP / runner.EpochClock.FILE
        record = runner.EpochClock(path, start, resumed_epoch, budget_s=50.0, clock=clock)
        record.set_model(Model())
        for epoch in range(resumed_epoch, resumed_epoch + epochs):
            record.on_epoch_begin(epoch)
            t[0] += times[epoch]
            record.on_epoch_end(epoch)
            if record.model.stop_training:
                return epoch
        return None

    times = [10.0, 15.0, 12.0, 12.0, 12.0]
    assert train(100.0, 5, times, 0, t0=100.0) == 2
    (tmp_path / runner.BACKUP / runner.EpochClock.FILE).unlink()
    assert train(100.0, 2, times, 0, t0=100.0) is None  # killed after two epochs (25 s)
    backup = tmp_path / runner.BACKUP
    (backup / "training_metadata.json").write_text('{"epoch": 2}')
    start = runner.clock_start(tmp_path, now=500.0)  # the resumed process starts at 500
    assert start == 500.0 - 25.0
    assert train(start, 3, times, 2, t0=500.0) == 2  # the same epoch as uninterrupted


def test_budget_share_splits_what_is_left_over_the_runs_to_go():
    assert experiments.budget_share(1800, 0, 6) == 300
    assert experiments.budget_share(1800, 300 + 40 + 60, 3) == pytest.approx(1400 / 3)
    assert experiments.budget_share(100, 150, 2) == 0.0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_initialisation_sets_gate_biases_from_log_uniform_timescales(cell):
    from keras_seq.training.builders import regressor

    units, horizon = 64, 400
    model = regressor(cell, units=units, chrono=horizon, seed=1)
    bias = model.layers[1].cells[0].bias.numpy()
    expected = np.log(np.random.default_rng(1).uniform(1.0, horizon - 1.0, size=units))
    if cell == "lstm":
        np.testing.assert_allclose(bias[units : 2 * units], expected, rtol=1e-6)  # forget
        np.testing.assert_allclose(bias[:units], -expected, rtol=1e-6)  # input
        np.testing.assert_array_equal(bias[2 * units :], 0.0)
    else:
        np.testing.assert_allclose(bias[0, :units], expected, rtol=1e-6)  # update gate
        np.testing.assert_array_equal(bias[0, units:], 0.0)
        np.testing.assert_array_equal(bias[1], 0.0)
    assert 0.0 <= expected.min() and expected.max() <= np.log(horizon - 1.0)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"cell": "x"}, "argument `cell`. Expected one of"),  # was KeyError: 'x'
    ({"chrono": "x"}, "argument `chrono`. Expected an integer >= 2"),  # was a TypeError
    ({"seed": 0.5}, "argument `seed`. Expected an integer >= 0"),
])
def test_regressor_argument_errors(kwargs, fragment):
    from keras_seq.training.builders import regressor

    with pytest.raises(ValueError, match=re.escape(fragment)):
        regressor(**{"units": 4, **kwargs})


def test_evaluate_names_the_sub_runs_of_an_experiment_and_reproduces_one(tmp_path, cli):
    experiments.run(tiny_adding(), run_dir=tmp_path, verbose=0)
    top = cli("evaluate", str(tmp_path), check=False)
    assert top.returncode == 2 and "Traceback" not in top.stderr
    assert f"is an experiment of several runs; evaluate one of them: {tmp_path / 'gru-T6'}, " \
           f"{tmp_path / 'rnn-T6'}" in top.stderr
    sub = cli("evaluate", str(tmp_path / "gru-T6"))
    assert json.loads(sub.stdout)["test"]["mse"] == pytest.approx(
        json.loads((tmp_path / "gru-T6" / "metrics.json").read_text())["test"]["mse"], rel=1e-6)


@pytest.mark.parametrize("chrono,forget_bias", [(False, 1.0), (None, 1.0), (True, None)])
def test_chrono_of_a_recipe_is_true_false_or_none(chrono, forget_bias):
    """``--set chrono=false`` was refused (an integer >= 2 was expected): false, like none, is
    Keras's own initialisation (a forget bias of 1); true takes the horizon from the data."""
    from keras_seq.training.builders import build_model

    recipe = recipes.load("adding")
    recipe["model"].update(cell="lstm", units=4, chrono=chrono)
    bias = build_model(recipe, info=None).layers[1].cells[0].bias.numpy()
    if forget_bias is None:
        assert bias[4:8].max() > 1.0  # log-uniform timescales up to the data's length
    else:
        np.testing.assert_array_equal(bias[4:8], forget_bias)

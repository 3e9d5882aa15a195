"""Deep ensembles: the `Ensemble` model, `[train] ensemble = N` runs, and their export."""

from __future__ import annotations

import json
import re

import keras
import numpy as np
import pytest

from keras_seq.export.run_dir import find_latest_runs
from keras_seq.models import Ensemble, SequenceClassifier
from keras_seq.training import ensembles, recipes, runner

IDS = np.array([[5, 6, 7, 0], [9, 8, 0, 0], [4, 4, 4, 4]])


def members(count=2, vocab_size=12, classes=3):
    keras.utils.set_random_seed(0)
    return [
        SequenceClassifier(vocab_size, classes, cell=cell, units=4, embedding_dim=4,
                           bidirectional=k % 2 == 1, pooling="attention" if k else "last")
        for k, cell in zip(range(count), ["lstm", "gru", "rnn"] * count, strict=False)
    ]


def test_ensemble_is_the_mean_of_its_members_probabilities(tmp_path):
    parts = members(3)
    expected = np.mean([np.asarray(m(IDS)) for m in parts], axis=0)  # NumPy reference
    model = Ensemble(parts)
    got = np.asarray(model(IDS))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-6)
    assert len(model.weights) == sum(len(m.weights) for m in parts)

    model.save(tmp_path / "ensemble.keras")
    loaded = keras.saving.load_model(tmp_path / "ensemble.keras", safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded(IDS)), got)


@pytest.mark.parametrize("bad", [[], "model", [1, 2]])
def test_ensemble_names_a_bad_members_argument(bad):
    with pytest.raises(ValueError, match=r"argument `members`.*non-empty sequence of keras.Model"):
        Ensemble(bad)


@pytest.mark.parametrize("other,name", [((50, 3), "vocab_size=[10, 50]"),
                                        ((10, 4), "num_classes=[3, 4]")])
def test_ensemble_refuses_members_that_disagree(other, name):
    # Accepted before: ids >= 10 then failed in the small member, and 3 vs 4 classes at the
    # first call with a shape error.
    members = [SequenceClassifier(10, 3, units=4), SequenceClassifier(*other, units=4)]
    with pytest.raises(ValueError, match=rf"Expected members with one `\w+`. Received: "
                                         rf"{re.escape(name)}"):
        Ensemble(members)


def names_dir(root):
    """A tiny two-language names directory (40 names each, separable by their endings)."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    letters = list("abdeklmnorstuv")
    stems = ["".join(rng.choice(letters, size=4)).capitalize() for _ in range(80)]
    (root / "German.txt").write_text("\n".join(s + "berg" for s in stems[:40]) + "\n")
    (root / "Italian.txt").write_text("\n".join(s + "ini" for s in stems[40:]) + "\n")
    return root


def tiny_recipe(count=2, **train):
    recipe = recipes.apply_overrides(
        recipes.load("names-de-it"),
        ["units=4", "embedding_dim=4", "batch_size=16", "epochs=2", "pretrain_epochs=2",
         "time_budget_s=none", f"ensemble={count}"],
    )
    recipe["train"].update(train)
    return recipe


def test_members_share_the_split_differ_in_init_and_average_into_the_model(tmp_path):
    names_dir(tmp_path / "data" / "names")
    data_dir = str(tmp_path / "data")
    run_dir = tmp_path / "runs" / "names-de-it" / "run"
    metrics = ensembles.run(tiny_recipe(), run_dir=run_dir, seed=3, verbose=0, data_dir=data_dir)

    configs = [json.loads((run_dir / f"member-{k}" / "config.json").read_text()) for k in (0, 1)]
    assert [(c["seed"], c["init_seed"], c["part_of"]) for c in configs] == [
        (3, 3, "names-de-it"), (3, 4, "names-de-it")]
    infos = [json.loads((run_dir / f"member-{k}" / "info.json").read_text()) for k in (0, 1)]
    assert infos[0]["counts"] == infos[1]["counts"] == json.loads(
        (run_dir / "info.json").read_text())["counts"]

    parts = [keras.saving.load_model(run_dir / f"member-{k}" / "model.keras") for k in (0, 1)]
    assert not np.allclose(np.asarray(parts[0].weights[0]), np.asarray(parts[1].weights[0]))
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert isinstance(model, Ensemble)

    # The test metrics are those of the averaged probabilities, recomputed here.
    splits = runner.load_splits(tiny_recipe(), data_dir=data_dir, seed=3)
    probs, labels = [], []
    for x, y in splits.test:
        probs.append(np.mean([np.asarray(p(x)) for p in parts], axis=0))
        labels.append(np.asarray(y))
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    assert metrics["test"]["accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == labels))
    loss = -np.mean(np.log(probs[np.arange(len(labels)), labels]))
    assert metrics["test"]["loss"] == pytest.approx(loss, rel=1e-5)
    assert [m["member"] for m in metrics["members"]] == [0, 1]
    assert metrics["replicas"] == 1  # README: metrics.json records the number of replicas
    model.compile()  # the classifier's own loss and accuracy
    evaluated = model.evaluate(splits.test, verbose=0, return_dict=True)
    assert evaluated["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert evaluated["loss"] == pytest.approx(loss, rel=1e-5)
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["test"]["accuracy"] == metrics["test"]["accuracy"]
    assert (run_dir / "confusion_matrix.png").is_file()
    # `export --all-latest` sees the ensemble, not its members.
    assert find_latest_runs(tmp_path / "runs") == {"names-de-it": run_dir}

    # A re-run keeps the finished member and trains the missing one (killed ensemble).
    kept = (run_dir / "member-0" / "model.keras").stat().st_mtime_ns
    (run_dir / "member-1" / "metrics.json").unlink()
    again = ensembles.run(tiny_recipe(), run_dir=run_dir, seed=3, verbose=0, data_dir=data_dir)
    assert (run_dir / "member-0" / "model.keras").stat().st_mtime_ns == kept
    first, second = runner._public(metrics["test"]), runner._public(again["test"])
    assert second.pop("accuracy_ci95") == pytest.approx(first.pop("accuracy_ci95"))
    assert second == pytest.approx(first)


def test_the_time_budget_is_shared_by_the_members(tmp_path, monkeypatch):
    budgets = []

    def fake_train(recipe, *, run_dir, **options):
        budgets.append(recipe["train"]["time_budget_s"])
        raise StopIteration  # only the budget handed to the first member is of interest

    monkeypatch.setattr(runner, "train", fake_train)
    with pytest.raises(StopIteration):
        ensembles.run(tiny_recipe(3, time_budget_s=90), run_dir=tmp_path, verbose=0)
    assert budgets == [30.0]


@pytest.mark.parametrize(
    "recipe, override, match",
    [("names", "ensemble=0", "Expected a positive integer"),
     ("names", "ensemble=2.5", "Expected a positive integer"),
     ("dates", "ensemble=3", "need task 'classification'.*task 'seq2seq'")],
)
def test_a_bad_ensemble_setting_is_named(recipe, override, match):
    bad = recipes.apply_overrides(recipes.load(recipe), [override])
    with pytest.raises(ValueError, match=r"`train.ensemble`.*" + match):
        ensembles.check(bad)


def test_an_exported_ensemble_runs_every_member_in_every_runtime(tmp_path):
    """SavedModel, TFLite (one fused LSTM per LSTM member) and ONNX match the Keras ensemble."""
    from test_export_artifacts import make_run

    from keras_seq.export import export_run, verify
    from keras_seq.export.runtimes import onnx_runner, tflite_runner
    from keras_seq.export.tflite import tflite_ops

    run = make_run(tmp_path / "runs" / "tiny" / "run1", "classification")
    first = keras.saving.load_model(run / "model.keras", safe_mode=True)
    keras.utils.set_random_seed(1)
    second = SequenceClassifier(first.vocab_size, first.num_classes, cell="lstm", units=8,
                                embedding_dim=8, bidirectional=True, pooling="attention")
    second(IDS)
    model = Ensemble([first, second])
    model.save(run / "model.keras")

    out = export_run(run, tmp_path / "exported")
    report = verify(out)
    assert report.ok, report.table()
    source = json.loads((out / "metadata.json").read_text())["source_run"]
    assert (source["model_class"], source["members"]) == ("Ensemble", 2)  # was the member's
    ids = (IDS[2:] % first.vocab_size + 4).astype(np.int32)  # one row, no padding
    expected = np.asarray(model(ids))
    tflite = tflite_runner(out / "model.tflite")
    np.testing.assert_allclose(tflite("classify", {"token_ids": ids})["probabilities"],
                               expected, atol=1e-5)
    assert tflite_ops((out / "model.tflite").read_bytes()).count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3
    onnx = onnx_runner({"classify": out / "model.onnx"})
    np.testing.assert_allclose(onnx("classify", {"token_ids": ids})["probabilities"],
                               expected, atol=1e-5)


def test_the_default_run_dir_resumes_an_ensemble_killed_between_members(tmp_path):
    recipe = tiny_recipe(3)
    killed = tmp_path / "names-de-it" / "20260101-000000"
    (killed / "member-0").mkdir(parents=True)
    (killed / "config.json").write_text(json.dumps({**recipe, "seed": 0}))
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) != killed  # not started
    # Killed in member-0's pretraining phase, after its first epoch.
    (killed / "member-0" / runner.PRETRAIN / runner.BACKUP).mkdir(parents=True)
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) == killed
    (killed / "member-0" / runner.PRETRAIN / runner.BACKUP).rmdir()
    (killed / "member-0" / "metrics.json").write_text("{}")  # one member finished
    assert runner.resolve_run_dir(recipe, None, root=tmp_path, seed=0) == killed

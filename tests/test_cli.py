"""`keras-seq`'s user errors: one line naming the problem, non-zero exit, no traceback."""

import os
from pathlib import Path

import pytest
from conftest import ROOT

from keras_seq.training import recipes


@pytest.fixture
def run(cli):
    """``run(*args)``: keras-seq with no data directory to fall back on, never failing."""
    return lambda *args: cli(*args, env={"KERAS_SEQ_DATA": "/nonexistent"}, check=False,
                             timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("keras-seq")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_recipes_lists_every_recipe_with_one_line(run):
    result = run("recipes")
    assert result.returncode == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == sorted(recipes.available())
    assert {"dates", "names", "names-de-it", "sst2", "shakespeare", "spa-eng", "adding"} <= set(names)


def test_unknown_recipe(run):
    assert_one_line_error(run("train", "nope"), "Unknown recipe 'nope'", "dates")


def test_unknown_set_key(run):
    assert_one_line_error(run("train", "dates", "--set", "unitz=3"), "Unknown --set key 'unitz'",
                          "model.units")


@pytest.mark.parametrize("recipe,key", [
    ("names-de-it", "vocab_size"), ("names-de-it", "num_classes"), ("dates", "tgt_vocab_size"),
    ("names-de-it", "vocabularies"), ("dates", "data.seed"),
])
def test_set_keys_the_trainer_fills_in_are_unknown(recipe, key):
    # The data gives these; a --set of one reached the model or the source as a second value
    # (a TypeError traceback). They are also left out of the known keys that the error lists.
    with pytest.raises(recipes.RecipeError, match=f"Unknown --set key '{key}'") as error:
        recipes.apply_overrides(recipes.load(recipe), [f"{key}=3"])
    known = str(error.value).split("Known keys: ")[1].split(", ")
    assert "model.units" in known
    assert not {"model.vocab_size", "model.num_classes", "data.vocabularies"} & set(known)


@pytest.mark.parametrize("recipe,override,expected", [
    ("names", "lowercase=7", "data.lowercase in recipe 'names'. Expected true or false. "
                             "Received: lowercase=7"),
    ("names", "drop_ambiguous=x", "Expected true or false or none. Received: drop_ambiguous='x'"),
    ("dates", "model.input_feeding=1", "Expected true or false. Received: input_feeding=1"),
])
def test_set_of_a_flag_takes_only_a_bool(recipe, override, expected):
    # A truthy non-bool passed `if flag:` unnoticed (lowercase=7 trained a lowercased model).
    with pytest.raises(recipes.RecipeError) as error:
        recipes.apply_overrides(recipes.load(recipe), [override])
    assert expected in str(error.value)
    flag = override.split("=")[0]
    for value, parsed in (("true", True), ("false", False)):
        assert recipes.apply_overrides(recipes.load(recipe), [f"{flag}={value}"])[
            "model" if "input_feeding" in flag else "data"][flag.split(".")[-1]] is parsed


def test_ensemble_of_a_model_that_is_not_a_classifier(run):
    assert_one_line_error(run("train", "dates", "--set", "ensemble=2"), "train.ensemble",
                          "task 'seq2seq'")


@pytest.mark.parametrize("args,fragment", [
    (["--epochs", "0"], "train.epochs in recipe 'dates'. Expected a positive integer. "
                        "Received: epochs=0"),
    (["--set", "learning_rate=-0.1"], "Expected a finite number > 0. Received: "
                                      "learning_rate=-0.1"),
    (["--set", "reduce_lr_factor=2"], "Expected a number in (0, 1). Received: reduce_lr_factor=2"),
    (["--set", "steps_per_epoch=1.5"], "Received: steps_per_epoch=1.5"),
    # These failed only after training: at evaluation, or after the first epoch.
    (["--set", "max_decode_length=0"], "train.max_decode_length in recipe 'dates'. Expected a "
                                       "positive integer. Received: max_decode_length=0"),
    (["--set", "stop_below=abc"], "Expected none or a number. Received: stop_below='abc'"),
    (["--set", "monitor=7"], "Expected the name of a logged value, e.g. 'val_loss'. "
                             "Received: monitor=7"),
])
def test_invalid_train_values(args, fragment, tmp_path, run):
    result = run("train", "dates", "--run-dir", str(tmp_path / "run"), *args)
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "run").exists()  # rejected before a run directory is made


@pytest.mark.parametrize("recipe,override,expected", [
    # Truth-tested by the runner: class_weight=no turned class weights on.
    ("names", "class_weight=no", "train.class_weight in recipe 'names'. Expected true or false. "
                                 "Received: class_weight='no'"),
    ("spa-eng", "bleu=7", "Expected true or false. Received: bleu=7"),
    # These failed only after training, in the sample generation.
    ("shakespeare", "temperature=hot", "Expected a finite number >= 0. Received: temperature='hot'"),
    ("shakespeare", "temperature=1e999", "Received: temperature=inf"),
    ("shakespeare", "sample_length=-3", "Expected a positive integer. Received: sample_length=-3"),
    # These trained, then failed in the reports (inf), or at once with a traceback (class).
    ("dates", "learning_rate=1e999", "Received: learning_rate=inf"),
    ("dates", "class=SequenceClassifier", "model.class in recipe 'dates'. Expected 'Seq2Seq' "
                                          "(the seq2seq task's model). Received: "
                                          "class='SequenceClassifier'"),
    ("names-de-it", "class=Seq2Seq", "Expected 'SequenceClassifier'"),
    ("adding", "class=LanguageModel", "Expected 'Regressor'"),
])
def test_train_values_checked_before_training(recipe, override, expected):
    with pytest.raises(recipes.RecipeError) as error:
        recipes.check_train(recipes.apply_overrides(recipes.load(recipe), [override]))
    assert expected in str(error.value)
    recipes.check_train(recipes.load(recipe))  # the recipe's own values pass


@pytest.mark.parametrize("override,expected", [
    ("experiment.cells=['gru', 'lsmt']", "experiment.cells in recipe 'adding'. Expected a "
                                         "non-empty list of cells: 'lstm', 'gru', 'rnn'"),
    ("experiment.lengths=[100, 0]", "Expected a non-empty list of positive integers. "
                                    "Received: lengths=[100, 0]"),
    ("experiment.time_budget_s=-1", "Expected none or a number > 0"),
    # Failed after all six runs, in the comparison table.
    ("experiment.baseline=abc", "Expected none or a finite number. Received: baseline='abc'"),
])
def test_experiment_grid_is_checked_before_any_run(override, expected):
    # A misspelt cell failed only when its run came, after the runs before it had trained.
    recipe = recipes.apply_overrides(recipes.load("adding"), [override])
    with pytest.raises(recipes.RecipeError) as error:
        recipes.check_train(recipe)
    assert expected in str(error.value)


@pytest.mark.parametrize("key", ["length", "data.length", "cell", "model.cell"])
def test_set_of_a_key_the_experiment_grid_sets_is_refused(key):
    # The grid sets these for each run, so a --set of one was silently ignored.
    with pytest.raises(recipes.RecipeError) as error:
        recipes.apply_overrides(recipes.load("adding"), [f"{key}=7"])
    field = key.split(".")[-1]
    assert (f"the experiment sets {field} for each of its runs. Set "
            f"experiment.{field}s instead.") in str(error.value)
    assert recipes.apply_overrides(recipes.load("dates"), ["units=7"])  # not an experiment


@pytest.mark.parametrize("key", ["time_budget_s", "train.time_budget_s"])
def test_a_run_time_budget_under_a_shared_one_is_refused(key):
    # Each run's budget is its share of experiment.time_budget_s, so train.time_budget_s (which
    # the message for the ambiguous `time_budget_s` once suggested) was silently overwritten.
    with pytest.raises(recipes.RecipeError) as error:
        recipes.apply_overrides(recipes.load("adding"), [f"{key}=600"])
    assert ("the experiment sets time_budget_s for each of its runs. Set "
            "experiment.time_budget_s instead.") in str(error.value)
    # Freed by experiment.time_budget_s=none, whichever of the two --set pairs comes first.
    for pairs in (["experiment.time_budget_s=none", "train.time_budget_s=600"],
                  ["train.time_budget_s=600", "experiment.time_budget_s=none"]):
        free = recipes.apply_overrides(recipes.load("adding"), pairs)
        assert free["train"]["time_budget_s"] == 600
        assert free["experiment"]["time_budget_s"] is None


def test_a_run_directory_it_cannot_write_is_one_line(tmp_path, capsys):
    # lock_run_dir lets an unwritable directory pass (a finished run on a read-only disk),
    # and writing config.json then ended in a PermissionError traceback.
    from keras_seq import cli

    if os.geteuid() == 0:  # root writes anywhere else; sysfs refuses new directories
        parent = Path("/sys")
    else:
        parent = tmp_path / "read-only"
        parent.mkdir()
        parent.chmod(0o555)
    assert cli.main(["train", "dates", "--run-dir", str(parent / "run"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("keras-seq train: error: ")
    assert str(parent) in lines[-1] and "Traceback" not in "".join(lines)


def test_a_run_refused_before_training_does_not_hold_its_directory(tmp_path, run):
    # The first attempt writes config.json and is refused at the model; the corrected
    # command was then refused as "a run with other settings".
    for units in ("-3", "-4"):
        result = run("train", "dates", "--run-dir", str(tmp_path / "run"), "--set",
                     f"units={units}")
        assert_one_line_error(result, f"Received: units={units}")
    assert (tmp_path / "run" / "config.json").is_file()


def test_a_run_directory_in_use_by_a_live_process_is_refused(tmp_path, run):
    """Two commands trained into one directory at once (the same command again, resuming the
    live run as if killed): their history.csv rows interleaved and one overwrote the other's
    model and metrics. The lock goes with the process that holds it, kill -9 included."""
    import os

    from keras_seq.training import runner

    held = runner.lock_run_dir(tmp_path / "run")
    assert runner.in_use(tmp_path / "run")
    result = run("train", "dates", "--run-dir", str(tmp_path / "run"))
    assert_one_line_error(result, f"--run-dir {tmp_path / 'run'} is being trained by another "
                                  f"process (pid {os.getpid()}); wait for it to end")
    held.close()
    assert not runner.in_use(tmp_path / "run")


def test_a_backup_without_a_readable_config_is_not_resumed(tmp_path, run):
    """The restored optimizer kept the killed run's learning rate while config.json recorded
    the new one (or restoring failed with a Keras error when the model changed)."""
    (tmp_path / "run" / "backup").mkdir(parents=True)
    assert_one_line_error(run("train", "dates", "--run-dir", str(tmp_path / "run")),
                          "holds training but no readable config.json")


def test_multiworker_needs_a_run_dir(run, monkeypatch):
    # Each worker took its own timestamped default, and a resumed worker yet another one.
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, '
                                    '"task": {"type": "worker", "index": 0}}')
    assert_one_line_error(run("train", "dates", "--strategy", "multiworker"),
                          "--strategy multiworker needs --run-dir, the same on every worker")


def test_a_lost_worker_is_one_line_saying_how_to_resume(tmp_path, monkeypatch, capsys):
    """TensorFlow raised UnavailableError from a collective, after 40 lines of traceback."""
    import tensorflow as tf

    from keras_seq import cli
    from keras_seq.training import distribute, runner

    def lost(*args, **kwargs):
        raise tf.errors.UnavailableError(None, None, "The following tasks are unhealthy "
                                         "(stopped sending heartbeats):\n/job:worker/task:1")

    monkeypatch.setattr(distribute, "make_strategy", lambda name: tf.distribute.get_strategy())
    monkeypatch.setattr(runner, "train", lost)
    argv = ["train", "dates", "--run-dir", str(tmp_path / "run"), "--strategy"]
    assert cli.main([*argv, "multiworker"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("keras-seq train: error: the cluster lost a worker (The following tasks "
                     "are unhealthy (stopped sending heartbeats):); rerun this command on "
                     "every worker to resume the run from its last backup")
    with pytest.raises(tf.errors.UnavailableError):  # not a cluster's: the error as it is
        cli.main([*argv, "default"])


@pytest.mark.parametrize("tf_config,fragment", [
    ("{bad", "not JSON"),
    ("[]", '"cluster" must map each job to a list of "host:port" strings'),
    ('{"cluster": {"worker": "h:1"}, "task": {"type": "worker", "index": 0}}', '"cluster" must'),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "ps"}}', '"task" must have a "type" of '
                                                                 "the cluster (worker)"),
    ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": -1}}',
     '"task.index" must be an integer in [0, 1)'),
    # TensorFlow's traceback (no port), or a worker that waited forever (a "ps" job):
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker"}}', '"cluster" must map each job'),
    ('{"cluster": {"worker": ["h:x"]}, "task": {"type": "worker"}}', '"cluster" must map each job'),
    ('{"cluster": {"ps": ["h:1"], "worker": ["h:2"]}, "task": {"type": "worker"}}',
     '"cluster" may have only "chief" and "worker" jobs, not \'ps\''),
    ('{"cluster": {"chief": ["h:1", "h:2"]}, "task": {"type": "chief"}}',
     '"cluster" may have at most one "chief"'),
])
def test_invalid_tf_config_is_one_line_naming_it(tf_config, fragment, monkeypatch):
    # These were tracebacks from TensorFlow or from is_chief, some after the data had loaded.
    from keras_seq.training import distribute

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError) as error:
        distribute.tf_config()
    assert f"Invalid TF_CONFIG for --strategy multiworker: {fragment}" in str(error.value)
    assert f"Received: TF_CONFIG={tf_config!r}" in str(error.value)


def test_the_chief_task_reports():
    from keras_seq.training import distribute

    def config(cluster, kind, index):
        return {"cluster": cluster, "task": {"type": kind, "index": index}}

    workers = {"worker": ["a:1", "b:1"]}
    assert distribute.is_chief_task(config(workers, "worker", 0))
    assert not distribute.is_chief_task(config(workers, "worker", 1))
    with_chief = {"chief": ["c:1"], **workers}  # worker 0 is not the chief then
    assert distribute.is_chief_task(config(with_chief, "chief", 0))
    assert not distribute.is_chief_task(config(with_chief, "worker", 0))


def test_data_dir_without_files(tmp_path, run):
    result = run("train", "names", "--data-dir", str(tmp_path))
    assert_one_line_error(result, "names")


def test_data_check_reads_the_recipes_own_file(tmp_path, monkeypatch):
    # --set path=FILE was left out of the check, which then looked for (and tried to download)
    # the default file.
    from keras_seq import cli

    monkeypatch.setenv("KERAS_SEQ_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("KERAS_SEQ_CACHE", str(tmp_path / "cache"))
    play = tmp_path / "play.txt"
    play.write_text("ROMEO:\nBut soft.\n")
    recipe = recipes.apply_overrides(recipes.load("shakespeare"), [f"path='{play}'"])
    cli._check_data(recipe, None, None)
    recipe = recipes.apply_overrides(recipes.load("shakespeare"), ["download=false"])
    with pytest.raises(cli.UsageError, match="Could not find the Tiny Shakespeare text"):
        cli._check_data(recipe, None, None)


@pytest.mark.parametrize("recipe,make", [
    ("names", lambda path: path.write_text("not a directory of <Language>.txt files\n")),
    ("sst2", lambda path: path.mkdir()),
])
def test_test_data_in_wrong_layout_is_refused_before_a_run_directory_is_made(
    tmp_path, shared_data, run, recipe, make
):
    # The check came after the default run directory was made: each mistyped --test-data
    # left a runs/<recipe>/<timestamp>/ holding only config.json.
    bogus = tmp_path / "test-data"
    make(bogus)
    runs = ROOT / "runs" / recipe
    before = set(runs.iterdir()) if runs.is_dir() else set()
    result = run("train", recipe, "--data-dir", str(shared_data), "--test-data", str(bogus))
    assert_one_line_error(result, str(bogus), "but it is a")
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == before


@pytest.mark.parametrize("text,value", [("256", 256), ("0.5", 0.5), ("true", True),
                                        ("none", None), ("['a', 'b']", ["a", "b"]),
                                        ("lstm", "lstm"), ("'ROMEO:'", "ROMEO:"),
                                        ("['First Citizen:']", ["First Citizen:"]),
                                        ("/Data/Names", "/Data/Names")])
def test_set_values_are_parsed(text, value):
    recipe = recipes.apply_overrides(recipes.load("dates"), [f"units={text}"])
    assert recipe["model"]["units"] == value


@pytest.mark.parametrize("recipe,override", [
    ("names-de-it", "class_weight=true"), ("sst2", "train.class_weight=true"),
    ("shakespeare", "sample_prompts=['ROMEO:']"), ("dates", "bleu=true"),
    # The exported language model's continuation length was read from config.json but could
    # not be set: every export wrote 40 tokens.
    ("shakespeare", "generate_length=100"),
])
def test_set_of_a_train_key_of_the_task_that_the_recipe_does_not_list(recipe, override):
    """Every recipe of a task reads these keys, but --set took only those the recipe listed."""
    key, text = override.removeprefix("train.").split("=")
    assert key not in recipes.load(recipe)["train"]
    changed = recipes.apply_overrides(recipes.load(recipe), [override])
    assert changed["train"][key] == recipes.parse_value(text)
    recipes.check_train(changed)


def test_set_with_section_prefix_and_ambiguity():
    recipe = recipes.apply_overrides(recipes.load("dates"), ["train.epochs=2"])
    assert recipe["train"]["epochs"] == 2
    with pytest.raises(recipes.RecipeError, match="Expected KEY=VALUE"):
        recipes.apply_overrides(recipes.load("dates"), ["units"])
    # adding has time_budget_s in [train] and [experiment]: a bare key must not pick one (once
    # the experiment's shared budget is off, which otherwise refuses the run's own).
    with pytest.raises(recipes.RecipeError, match=r"Ambiguous --set key 'time_budget_s': it is "
                                                  r"in \['train', 'experiment'\]"):
        recipes.apply_overrides(recipes.load("adding"),
                                ["experiment.time_budget_s=none", "time_budget_s=60"])
    recipe = recipes.apply_overrides(recipes.load("adding"), ["experiment.time_budget_s=60"])
    assert recipe["experiment"]["time_budget_s"] == 60
    assert recipe["train"]["time_budget_s"] == recipes.load("adding")["train"]["time_budget_s"]


def test_paths_and_seeds_are_checked_before_any_work(tmp_path, run):
    # Each was a traceback: NumPy's seed error without --seed, FileExistsError from mkdir (for
    # --out after the whole conversion), a JSONDecodeError message naming no file.
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert_one_line_error(run("train", "dates", "--seed", "-1"),
                          "argument --seed: expected an integer from 0 to 2**32 - 1, received '-1'")
    assert_one_line_error(run("train", "dates", "--seed", str(2**32)), "received '4294967296'")
    # sst2's members 1..9 use seed + k: the 6th failed after five had trained.
    assert_one_line_error(run("train", "sst2", "--seed", str(2**32 - 5)),
                          "argument --seed: expected at most 2**32 - 10 for an ensemble of 10")
    assert_one_line_error(run("train", "dates", "--run-dir", str(a_file)),
                          f"--run-dir {a_file}: expected a directory, but {a_file} is a file")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text('{"name": "dates"}')
    assert_one_line_error(run("export", str(run_dir), "--out", str(a_file / "x")),
                          f"--out {a_file / 'x'}: expected a directory, but {a_file} is a file")
    (run_dir / "config.json").write_text("{x")
    for command in ("evaluate", "export"):
        assert_one_line_error(run(command, str(run_dir)),
                              f"{run_dir / 'config.json'} is not valid JSON")


def test_an_empty_split_is_refused_before_training(tmp_path, run, cli, shared_data):
    # The run trained, then failed at evaluation naming neither setting, or in the reports
    # on history.csv's "NA" validation values.
    result = run("train", "dates", "--run-dir", str(tmp_path / "a"), "--set", "num_train=64",
                 "--set", "num_test=0")
    assert_one_line_error(result, "Expected test examples, but the test split of recipe 'dates' "
                                  "is empty. Check the [data] settings: num_test=0")
    result = cli("train", "names-de-it", "--data-dir", str(shared_data), "--run-dir",
                 str(tmp_path / "b"), "--set", "fractions=[0.9, 0, 0.1]", check=False, timeout=300)
    assert_one_line_error(result, "the validation split of recipe 'names-de-it' is empty. "
                                  "Check the [data] settings: fractions=[0.9, 0, 0.1]")
    assert not list(tmp_path.glob("*/backup")) and not list(tmp_path.glob("*/pretrain"))


@pytest.mark.parametrize("extra", [["runs/dates/r1"], ["--version", "7"]])
def test_export_all_latest_refuses_what_it_would_ignore(run, tmp_path, extra):
    result = run("export", "--all-latest", str(tmp_path), "--out", str(tmp_path / "x"), *extra)
    assert_one_line_error(result, "--all-latest exports the latest run of every recipe",
                          "without RUN_DIR and --version")


@pytest.mark.parametrize("command", ["train dates", "evaluate runs/x"])
def test_data_paths_are_kept_absolute(command, tmp_path, monkeypatch):
    """config.json keeps the data paths as given: a relative one (every README command uses
    ``--data-dir ../shared/data``) made `evaluate` from another directory read other data."""
    import os

    from keras_seq import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = cli.build_parser().parse_args(
        [*command.split(), "--data-dir", "../data", "--test-data", "~/test.tsv"])
    assert args.data_dir == os.path.join(os.path.dirname(tmp_path), "data")
    assert args.test_data == str(tmp_path / "home" / "test.tsv")


def test_the_data_folder_of_keras_seq_data_is_recorded_like_data_dir(tmp_path, monkeypatch,
                                                                     capsys):
    """A run trained under $KERAS_SEQ_DATA recorded no data folder: a resume under another
    $KERAS_SEQ_DATA read other data, and --data-dir to the same folder was another run."""
    from keras_seq import cli
    from keras_seq.training import runner

    seen = []

    def train(recipe, run_dir, **options):
        seen.append(options["data_dir"])
        (run_dir / runner.BACKUP).mkdir(exist_ok=True)  # training that a resume must match
        runner.write_config(run_dir, recipe, **{k: options[k] for k in runner.RUN_SETTINGS})
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", train)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_SEQ_DATA", "data")
    argv = ["train", "dates", "--run-dir", str(tmp_path / "run")]
    assert cli.main(argv) == 130  # interrupted
    assert seen == [str(tmp_path / "data")]
    # The same folder through --data-dir resumes.
    assert cli.main([*argv, "--data-dir", str(tmp_path / "data")]) == 130
    assert seen[-1] == str(tmp_path / "data")
    monkeypatch.setenv("KERAS_SEQ_DATA", str(tmp_path / "other"))
    assert cli.main(argv) == 2  # another folder: refused, naming the difference
    assert "holds a run with other settings (differing in: data_dir)" in capsys.readouterr().err
    assert len(seen) == 2


# -- a tiny trained `names` run, for `evaluate`, `export` and a finished `train` ---------------

TINY_NAMES = ["--epochs", "1", "--set", "units=8", "--set", "embedding_dim=4", "--set",
              "num_layers=1", "--set", "bidirectional=false", "--set", "time_budget_s=none"]
SURNAMES = {
    "German": ["Schmidt", "Weber", "Wagner", "Becker", "Hoffmann", "Koch", "Bauer", "Richter",
               "Zahn", "Zander", "Zeller", "Zimmer", "Zorn", "Zuber", "Zwick", "Zeidler"],
    "Italian": ["Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci",
                "Marino", "Greco", "Bruno", "Gallo", "Conti", "Costa", "Giordano", "Mancini",
                "Rizzo"],
    "Polish": ["Nowak", "Kowalski", "Wisniewski", "Wojcik", "Kowalczyk", "Kaminski", "Lewandowski",
               "Zielinski", "Szymanski", "Wozniak", "Dabrowski", "Kozlowski", "Jankowski",
               "Mazur", "Kwiatkowski", "Krawczyk"],
}


def write_names(data_dir: Path, languages=tuple(SURNAMES)) -> Path:
    """`data_dir` with names/<Language>.txt files (the `names` recipe's layout)."""
    (data_dir / "names").mkdir(parents=True)
    for language in languages:
        (data_dir / "names" / f"{language}.txt").write_text("\n".join(SURNAMES[language]) + "\n")
    return data_dir


@pytest.fixture(scope="module")
def names_run(tmp_path_factory, cli):
    """``(run_dir, data_dir)``: a finished `names` run on three languages (a few seconds)."""
    root = tmp_path_factory.mktemp("names_run")
    data = write_names(root / "data")
    run_dir = root / "run"
    cli("train", "names", "--data-dir", str(data), "--run-dir", str(run_dir), "--quiet",
        *TINY_NAMES, timeout=300)
    return run_dir, data


@pytest.fixture
def run_copy(names_run, tmp_path):
    """A copy of `names_run`'s run directory, to damage."""
    import shutil

    return Path(shutil.copytree(names_run[0], tmp_path / "run"))


def one_line(capsys, status, expected_status=2):
    """The one `keras-seq ...` line that a `main()` call printed (no traceback)."""
    err = capsys.readouterr().err
    assert status == expected_status, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("keras-seq "), err
    return lines[0]


def test_evaluate_refuses_data_with_other_labels_or_examples(names_run, tmp_path, capsys):
    """`evaluate RUN --data-dir OTHER` scored the model on data without any check: names'
    labels are the sorted language files of the directory given, so one missing shifted
    every label id, and it printed an accuracy near 0 with exit status 0."""
    import json
    import shutil

    from keras_seq import cli

    run_dir, data = names_run
    fewer = write_names(tmp_path / "fewer", ["German", "Polish"])
    line = one_line(capsys, cli.main(["evaluate", str(run_dir), "--data-dir", str(fewer)]))
    assert line == (f"keras-seq evaluate: error: --data-dir {fewer}: expected the 3 labels that "
                    f"{run_dir} was trained on ({run_dir / 'labels.json'}), received 2: missing "
                    "Italian; the label ids would not be the model's")
    # The same data at another place is the run's data: its metrics are the run's.
    moved = Path(shutil.copytree(data, tmp_path / "moved"))
    assert cli.main(["evaluate", str(run_dir), "--data-dir", str(moved)]) == 0
    printed = json.loads(capsys.readouterr().out)["test"]
    assert printed == json.loads((run_dir / "metrics.json").read_text())["test"]
    # Other examples under the same labels: refused too (--test-data is for other test data).
    with open(moved / "names" / "German.txt", "a") as f:
        f.write("Neumann\n")
    line = one_line(capsys, cli.main(["evaluate", str(run_dir), "--data-dir", str(moved)]))
    assert line.startswith(f"keras-seq evaluate: error: --data-dir {moved}: expected the data "
                           f"{run_dir} was trained on, but its examples or splits differ "
                           f"(fingerprint "), line
    assert line.endswith("to score the model on other test data, give --test-data")


def test_evaluate_checks_the_model_before_reading_the_data(run_copy, capsys):
    """A cut-off model.keras gave Keras's "File not found: ... Please ensure the file is an
    accessible .keras zip file", and a run killed before saving one the same, each after the
    data had loaded (--data-dir /nonexistent would fail first if it were read first)."""
    from keras_seq import cli

    model = run_copy / "model.keras"
    model.write_bytes(model.read_bytes()[:3000])
    argv = ["evaluate", str(run_copy), "--data-dir", "/nonexistent"]
    line = one_line(capsys, cli.main(argv))
    assert line == (f"keras-seq evaluate: error: Expected a Keras model file at {model}, but "
                    "it is not a readable .keras archive (File is not a zip file). Was its run "
                    "killed while saving it? The training command resumes it.")
    model.unlink()
    (run_copy / "backup").mkdir()
    (run_copy / "metrics.json").unlink()
    line = one_line(capsys, cli.main(argv))
    assert line == (f"keras-seq evaluate: error: {run_copy} has not finished (no model.keras): "
                    "rerun `keras-seq train` with the same arguments to resume it")


def test_train_on_a_finished_run_with_unreadable_metrics_names_the_file(names_run, run_copy,
                                                                          capsys):
    """It failed with a bare "Expecting value: line 1 column 10 (char 9)"."""
    from keras_seq import cli

    (run_copy / "metrics.json").write_text('{"test": ')
    status = cli.main(["train", "names", "--data-dir", str(names_run[1]), "--run-dir",
                       str(run_copy), "--quiet", *TINY_NAMES])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(
        f"keras-seq train: error: Metrics file {run_copy / 'metrics.json'} is not valid JSON: ")


def test_export_refuses_an_unfinished_run(run_copy, tmp_path, capsys):
    """A run killed while evaluating (model.keras, no metrics.json) was exported, with
    "metrics": {} in its metadata; `export --all-latest` already skipped it."""
    from keras_seq import cli

    (run_copy / "metrics.json").unlink()
    out = tmp_path / "exported"
    line = one_line(capsys, cli.main(["export", str(run_copy), "--out", str(out)]))
    assert line == (f"keras-seq export: error: {run_copy} has not finished (no metrics.json): "
                    "rerun `keras-seq train` with the same arguments to finish it")
    assert not out.exists()


def test_a_relative_set_path_is_kept_absolute(tmp_path, monkeypatch, capsys):
    """config.json kept `--set path=...` as typed: `evaluate` or a resume from another working
    directory read another folder, and the absolute spelling of the same folder was refused
    as "other settings (differing in: data)"."""
    import json

    from keras_seq import cli
    from keras_seq.training import runner

    seen = []

    def train(recipe, run_dir, **options):
        seen.append(recipe["data"]["path"])
        (run_dir / runner.BACKUP).mkdir(exist_ok=True)  # training that a resume must match
        runner.write_config(run_dir, recipe, **{k: options[k] for k in runner.RUN_SETTINGS})
        return {"recipe": recipe["name"], "test": {}}

    monkeypatch.setattr(runner, "train", train)
    monkeypatch.delenv("KERAS_SEQ_DATA", raising=False)
    names = write_names(tmp_path / "data") / "names"
    run_dir = tmp_path / "run"
    argv = ["train", "names", "--run-dir", str(run_dir), "--quiet"]
    monkeypatch.chdir(tmp_path)
    assert cli.main([*argv, "--set", "path=data/names"]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["data"]["path"] == seen[0] == str(names)
    monkeypatch.chdir(names)  # the same folder, spelt absolute from elsewhere: the same run
    assert cli.main([*argv, "--set", f"path={names}"]) == 0
    assert seen == [str(names)] * 2
    # A run of an older version kept it as typed: compared as absolute too.
    monkeypatch.chdir(tmp_path)
    recipe = {**config, "data": {**config["data"], "path": "data/names"}}
    (run_dir / "config.json").write_text(json.dumps(recipe))
    settings = {k: config[k] for k in runner.RUN_SETTINGS}
    recipe = {k: v for k, v in config.items() if k not in runner.RUN_SETTINGS}
    assert runner.differences(run_dir, recipe, **settings) == []
    assert runner.differences(run_dir, runner.absolute_data_paths(
        {**recipe, "data": {**recipe["data"], "path": "names"}}), **settings) == ["data"]


def test_ctrl_c_is_one_line_saying_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C during `train` printed TensorFlow's 53-line traceback."""
    from keras_seq import cli
    from keras_seq.training import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def main(argv):
        try:
            return cli.main(argv)
        except KeyboardInterrupt:  # not left to end the test session
            pytest.fail("KeyboardInterrupt escaped main()")

    monkeypatch.setattr(runner, "train", interrupted)
    run_dir = tmp_path / "run"
    line = one_line(capsys, main(["train", "dates", "--run-dir", str(run_dir), "--quiet"]), 130)
    assert line == (f"keras-seq train: interrupted; finished epochs are kept in {run_dir}: "
                    "rerun the same command to resume")
    monkeypatch.setattr(cli, "cmd_recipes", interrupted)
    assert one_line(capsys, main(["recipes"]), 130) == "keras-seq recipes: interrupted"

"""`keras-seq` command line (also `python -m keras_seq`).

    keras-seq recipes
    keras-seq train RECIPE [--data-dir D] [--test-data PATH] [--epochs N] [--run-dir PATH]
                           [--seed S] [--strategy default|mirrored|multiworker]
                           [--mixed-precision] [--set KEY=VALUE ...]
    keras-seq evaluate RUN_DIR [--data-dir D] [--test-data PATH]
    keras-seq export RUN_DIR [--out DIR] [--formats saved_model,tflite,onnx]
                             [--quantize none|dynamic|float16|int8] [--version N] [--replace]
    keras-seq verify EXPORT_DIR
    keras-seq predict PATH TEXT... [--json] [--server URL --model NAME]
    keras-seq bench

Errors a user can fix (unknown recipe, bad --set, missing data) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class UsageError(Exception):
    """A problem in the user's command or data, reported without a traceback."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "command", None) == "predict":  # `predict PATH --json TEXT...`:
        args.texts += [e for e in extra if not e.startswith("-")]  # argparse ends TEXT... at
        extra = [e for e in extra if e.startswith("-")]  # the first option
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if os.environ.get("KERAS_SEQ_DEBUG"):  # full tracebacks, Keras frames included
        import keras

        keras.config.disable_traceback_filtering()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: TensorFlow's traceback (50 lines) said nothing more
        if os.environ.get("KERAS_SEQ_DEBUG"):
            raise
        run_dir = getattr(args, "training_dir", None)  # set by cmd_train once it knows it
        message = "interrupted"
        if args.command == "train" and run_dir is not None:
            message += (f"; finished epochs are kept in {run_dir}: rerun the same command to "
                        "resume")
        if args.command == "train" and not args.quiet:
            print(file=sys.stderr)  # off the progress bar's line
        print(f"keras-seq {args.command}: {message}", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it
    except UsageError as err:
        print(f"keras-seq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as err:
        if os.environ.get("KERAS_SEQ_DEBUG"):
            raise
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"keras-seq {args.command}: error: {message}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="keras-seq", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("recipes", help="list the recipes")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("train", help="train a recipe into a run directory")
    p.add_argument("recipe")
    p.add_argument("--data-dir", type=_absolute, default=None,
                   help="datasets folder (default: $KERAS_SEQ_DATA; the run records it)")
    p.add_argument("--test-data", type=_absolute, default=None,
                   help="test split in the source's own layout")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--run-dir", default=None, help="default: runs/<recipe>/<timestamp>/")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"])
    p.add_argument("--mixed-precision", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="print a run's test metrics as JSON")
    p.add_argument("run_dir")
    p.add_argument("--data-dir", type=_absolute, default=None)
    p.add_argument("--test-data", type=_absolute, default=None)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a run to SavedModel, TFLite and ONNX")
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--out", default=None)
    p.add_argument("--formats", default="saved_model,tflite,onnx")
    p.add_argument("--quantize", default="none", choices=["none", "dynamic", "float16", "int8"])
    p.add_argument("--version", type=_version, default=None,
                   help="SavedModel version: N, or 'next' (after the latest)")
    p.add_argument("--replace", action="store_true", help="overwrite an existing version")
    p.add_argument("--all-latest", metavar="RUNS_ROOT", default=None,
                   help="export the latest run of every recipe under RUNS_ROOT")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("verify", help="compare exported artifacts with the Keras model")
    p.add_argument("export_dir")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("predict", help="run an exported model on text")
    p.add_argument("path", help="an export directory or artifact; may be left out with "
                   "--server and --model")
    p.add_argument("texts", nargs="*")
    p.add_argument("--json", action="store_true")
    p.add_argument("--server", default=None,
                   help="TF Serving address: http://HOST:8501 (REST) or grpc://HOST:8500")
    p.add_argument("--model", default=None, help="model name on the server")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bench", help="speed benchmark (benchmarks/speed.py)")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_bench)
    return parser


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed < 2**32:  # NumPy's and TensorFlow's seed range
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1, received {text!r}")
    return seed


def _directory_to_write(flag: str, path: str | Path) -> None:
    """Fail before any work when `path`, or a folder above it, is an existing file."""
    for p in (Path(path), *Path(path).parents):
        if p.exists():
            if not p.is_dir():
                raise UsageError(f"{flag} {path}: expected a directory, but {p} is a file")
            return


def _read_config(run_dir: str | Path) -> dict[str, Any]:
    """The run's config (missing or invalid: one-line errors naming the file), with its
    recipe's name, which `evaluate` and `export` need."""
    from keras_seq.export.run_dir import read_config

    config = read_config(run_dir)
    if not isinstance(config, dict) or "name" not in config:
        raise UsageError(f"{Path(run_dir) / 'config.json'} is not a run's config (no recipe name)")
    return config


def _absolute(text: str) -> str:
    """A path as an absolute one: the run's config keeps it, and `evaluate` or a resume may
    run from another working directory."""
    return os.path.abspath(os.path.expanduser(text))


def _version(text: str) -> int | str:
    if text == "next":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'next', received {text!r}") from None


def cmd_recipes(args) -> int:
    from keras_seq.training import recipes

    found = recipes.available()
    width = max(map(len, found))
    for name, description in found.items():
        print(f"{name:<{width}}  {description}")
    return 0


def cmd_train(args) -> int:
    from keras_seq.training import recipes

    try:
        recipe = recipes.apply_overrides(recipes.load(args.recipe), args.overrides)
        if args.epochs is not None:
            recipe["train"]["epochs"] = args.epochs
        recipes.check_train(recipe)
    except recipes.RecipeError as err:
        raise UsageError(str(err)) from None
    from keras_seq.training import distribute, ensembles, experiments, runner

    # --set path=... as --data-dir: config.json keeps it absolute, for `evaluate` or a resume
    # from another working directory.
    runner.absolute_data_paths(recipe)
    try:
        members = ensembles.check(recipe)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.seed + members > 2**32:  # member k's global seed is seed + k
        raise UsageError(
            f"argument --seed: expected at most 2**32 - {members} for an ensemble of {members} "
            f"(member k uses seed + k), received {args.seed}"
        )

    strategy = distribute.make_strategy(args.strategy)  # before any TensorFlow op runs
    # $KERAS_SEQ_DATA is recorded as the data directory it names, as --data-dir is: a resume
    # under another $KERAS_SEQ_DATA is then refused, and a resume or `evaluate` given the
    # same folder by the other route is the same run.
    from pipelines import DATA_ENV

    if args.data_dir is None and os.environ.get(DATA_ENV):
        args.data_dir = _absolute(os.environ[DATA_ENV])
    _check_data(recipe, args.data_dir, args.test_data)

    settings: dict[str, Any] = dict(
        data_dir=args.data_dir, test_data=args.test_data, seed=args.seed,
        strategy=args.strategy, mixed_precision=args.mixed_precision,
    )
    if args.run_dir:
        _directory_to_write("--run-dir", args.run_dir)
    if args.strategy == "multiworker" and not args.run_dir:
        raise UsageError("--strategy multiworker needs --run-dir, the same on every worker (the "
                         "default, runs/<recipe>/<timestamp>/, would differ between them)")
    run_dir = distribute.worker_dir(runner.resolve_run_dir(recipe, args.run_dir, **settings),
                                    strategy)
    args.training_dir = run_dir  # for main's message on Ctrl-C
    try:
        lock = runner.lock_run_dir(run_dir)  # noqa: F841 (held while this process runs)
    except runner.RunInUse as err:
        raise UsageError(f"--run-dir {err}; wait for it to end, or choose another "
                         "directory") from None
    differs = runner.differences(run_dir, recipe, **settings)
    finished = (run_dir / "metrics.json").is_file()
    if differs is None and runner.has_started(run_dir):
        raise UsageError(
            f"--run-dir {run_dir} holds training but no readable config.json, so it cannot be "
            "resumed under known settings; choose another directory, or delete it to start over"
        )
    # A run that stopped before any training worth keeping (e.g. refused data or model
    # settings) leaves only its config: a corrected command takes the directory over.
    if differs and (finished or runner.has_started(run_dir)):
        raise UsageError(
            f"--run-dir {run_dir} holds a run with other settings (differing in: "
            f"{', '.join(differs)}); choose another directory, or delete it to start over"
        )
    if differs == [] and finished:
        print(f"{run_dir} is a finished run of these settings: its metrics follow (delete the "
              "directory to train again).", file=sys.stderr)
        from keras_seq.export.run_dir import read_metrics

        metrics = read_metrics(run_dir)  # unreadable: a ValueError naming the file
        print(json.dumps({"run_dir": str(run_dir), **metrics}, indent=1))
        return 0
    options: dict[str, Any] = dict(settings, verbose=0 if args.quiet else "auto")
    import tensorflow as tf

    try:
        if "experiment" in recipe:
            metrics = experiments.run(recipe, run_dir=run_dir, **options)
        elif members > 1:
            metrics = ensembles.run(recipe, run_dir=run_dir, **options)
        else:
            metrics = runner.train(recipe, run_dir=run_dir, **options)
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as err:
        if args.strategy != "multiworker":
            raise
        raise UsageError(  # a worker killed or lost: TensorFlow's traceback named it deep down
            f"the cluster lost a worker ({err.message.splitlines()[0][:200]}); rerun this "
            "command on every worker to resume the run from its last backup") from None
    print(json.dumps({"run_dir": str(run_dir), **runner._public(metrics)}, indent=1))
    return 0


def _check_data(recipe: dict[str, Any], data_dir: str | None, test_data: str | None) -> None:
    """Fail before any training when the source's files are missing."""
    import pipelines

    try:
        # The recipe's own file or TFDS choice (--set path=..., use_tfds=true) counts too.
        where = {k: v for k, v in recipe["data"].items() if k in ("path", "use_tfds", "download")}
        pipelines.get_source(recipe["source"]).check(data_dir=data_dir, test_path=test_data,
                                                     **where)
    except AttributeError:
        pass  # sources without files (synthetic) have nothing to check
    except pipelines.DataUnavailableError as err:
        raise UsageError(str(err).splitlines()[0]) from None


def cmd_evaluate(args) -> int:
    from keras_seq.export.run_dir import load_model
    from keras_seq.training import runner
    from pipelines.splits import SourceInfo

    run_dir = Path(args.run_dir)
    recipe = _read_config(run_dir)
    if "experiment" in recipe:
        subs = sorted(p.parent.name for p in run_dir.glob("*/model.keras"))
        raise UsageError(
            f"{run_dir} is an experiment of several runs; evaluate one of them: "
            f"{', '.join(str(run_dir / s) for s in subs) or '(none finished)'}"
        )
    # The model first: a run without one (killed) is refused before the data is read.
    if not (run_dir / "model.keras").is_file() and (
            (run_dir / runner.BACKUP).is_dir() or not (run_dir / "metrics.json").is_file()):
        raise UsageError(f"{run_dir} has not finished (no model.keras): rerun `keras-seq train` "
                         "with the same arguments to resume it")
    model = load_model(run_dir / "model.keras")  # missing or cut off: one line naming it
    # The run's own vocabularies: rebuilt ones would differ once --test-data changes the
    # training split (ids are ranked by frequency), and the model would read wrong ids.
    splits = runner.load_splits(
        recipe, data_dir=args.data_dir or recipe.get("data_dir"), seed=recipe.get("seed", 0),
        test_data=args.test_data or recipe.get("test_data"),
        vocabularies=SourceInfo.load_vocabularies(run_dir),
    )
    _require_run_data(args, run_dir, recipe, splits)
    metrics = runner.evaluate(model, recipe, splits)
    print(json.dumps(runner._public({"recipe": recipe["name"], "test": metrics}), indent=1))
    return 0


def _require_run_data(args, run_dir: Path, recipe: dict[str, Any], splits) -> None:
    """Refuse to score `run_dir`'s model on data whose labels are not the run's (label ids
    are read from the data, e.g. names' sorted language files: one missing shifts them all),
    and, for --data-dir without --test-data (the run's data at another place), on examples
    other than the run's own."""
    from keras_seq.export.run_dir import read_labels
    from keras_seq.training import runner

    where = (f"--data-dir {args.data_dir}" if args.data_dir else
             f"the run's data ({recipe.get('data_dir') or 'the default data folder'})")
    path = run_dir / "labels.json"
    if splits.info.labels and path.is_file():
        trained = read_labels(run_dir)
        labels = [str(x) for x in splits.info.labels]
        if labels != trained:
            missing = [x for x in trained if x not in labels]
            extra = [x for x in labels if x not in trained]
            found = "; ".join([f"missing {', '.join(missing)}"] * bool(missing)
                              + [f"extra {', '.join(extra)}"] * bool(extra)) or "in another order"
            raise UsageError(
                f"{where}: expected the {len(trained)} labels that {run_dir} was trained on "
                f"({path}), received {len(labels)}: {found}; the label ids would not be the "
                "model's")
    if args.data_dir and not args.test_data:
        found = runner.data_difference(run_dir, splits.info)
        if found:
            raise UsageError(
                f"{where}: expected the data {run_dir} was trained on, but its examples or "
                f"splits differ ({found}); to score the model on other test data, give "
                "--test-data")


def cmd_export(args) -> int:
    from keras_seq import export

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if args.all_latest:
        if args.run_dir or args.version is not None:  # both were ignored
            raise UsageError("--all-latest exports the latest run of every recipe, each as its "
                             "next version: give it without RUN_DIR and --version")
        _directory_to_write("--out", args.out or "exported")
        results = export.export_all_latest(args.all_latest, args.out or "exported",
                                           formats=formats, quantize=args.quantize,
                                           replace=args.replace)
        for recipe, path in results.items():  # one line each, also when nothing was to do
            print(f"{recipe}: exported to {path}" if path else
                  f"{recipe}: the latest run is already exported (--replace to redo it)")
        return 0
    if not args.run_dir:
        raise UsageError("give RUN_DIR or --all-latest RUNS_ROOT")
    out = args.out or str(Path("exported") / _read_config(args.run_dir)["name"])
    _directory_to_write("--out", out)
    export.export_run(args.run_dir, out, formats=formats, quantize=args.quantize,
                      version=args.version, replace=args.replace)
    return 0


def cmd_verify(args) -> int:
    from keras_seq import export

    report = export.verify(args.export_dir)
    print(report.table() if hasattr(report, "table") else report)
    return 0 if getattr(report, "ok", True) else 1


def cmd_predict(args) -> int:
    from keras_seq import export
    from keras_seq.export.predict import find_export

    path, texts = args.path, args.texts
    if args.server and path is not None and find_export(path) is None:
        # `predict --server URL --model NAME TEXT...` (without --model, predict names it);
        # a text that names a file or folder is a text too unless it is in an export.
        path, texts = None, [path, *texts]
    if not texts:
        raise UsageError("expected at least one TEXT after PATH")
    results = export.predict(path, texts, server=args.server, model_name=args.model)
    for item in results:
        print(json.dumps(item, ensure_ascii=False) if args.json else _plain(item))
    return 0


def _plain(item: dict[str, Any]) -> str:
    if "label" in item:
        return f"{item['input']}\t{item['label']}"
    return f"{item['input']}\t{item['output']}"


def cmd_bench(args) -> int:
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"
    if not script.exists():
        raise UsageError(f"benchmarks not found at {script} (run from a source checkout)")
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Input-pipeline throughput per source vs. the rate a representative training step consumes.

For every source: examples/s delivered by the training dataset (first pass, which fills the
cache and traces the functions, and steady state after one epoch), and examples/s consumed by
`train_on_batch` of a small Keras model (one `keras.layers.LSTM` level; the recipes' models
are larger, so the ratio understates the pipeline's lead). The ratio pipeline / training
should be >= 10.

    .venv/bin/python benchmarks/pipelines.py --data-dir ../shared/data
    .venv/bin/python benchmarks/pipelines.py --sources names,dates --batches 100

Writes ``benchmarks/results/pipelines.json``. Figures are noisy on a shared machine: compare
ratios measured in one run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import pipelines  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "pipelines.json"
SHARED = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- models
def classifier(vocab: int, classes: int, embed: int, units: int) -> keras.Model:
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(vocab, embed, mask_zero=True)(ids)
    h = keras.layers.LSTM(units)(h)
    return keras.Model(ids, keras.layers.Dense(classes)(h))


def language_model(vocab: int, embed: int, units: int) -> keras.Model:
    ids = keras.Input((None,), dtype="int32")
    h = keras.layers.Embedding(vocab, embed)(ids)
    h = keras.layers.LSTM(units, return_sequences=True)(h)
    return keras.Model(ids, keras.layers.Dense(vocab)(h))


def encoder_decoder(src_vocab: int, tgt_vocab: int, embed: int, units: int) -> keras.Model:
    src = keras.Input((None,), dtype="int32")
    tgt = keras.Input((None,), dtype="int32")
    enc = keras.layers.Embedding(src_vocab, embed, mask_zero=True)(src)
    _, h, c = keras.layers.LSTM(units, return_state=True)(enc)
    dec = keras.layers.Embedding(tgt_vocab, embed, mask_zero=True)(tgt)
    dec = keras.layers.LSTM(units, return_sequences=True)(dec, initial_state=[h, c])
    return keras.Model([src, tgt], keras.layers.Dense(tgt_vocab)(dec))


def regressor(units: int) -> keras.Model:
    x = keras.Input((None, 2))
    return keras.Model(x, keras.layers.Dense(1)(keras.layers.LSTM(units)(x)))


def recipe(name: str, info: pipelines.SourceInfo) -> tuple[str, keras.Model, str]:
    """(description, model, loss) of a representative default training recipe."""
    if name == "names":
        return (
            "Embedding 64 + LSTM 128",
            classifier(info.vocabulary.size, len(info.labels), 64, 128),
            "ce",
        )
    if name in ("sst2", "imdb"):
        return "Embedding 128 + LSTM 128", classifier(info.vocabulary.size, 2, 128, 128), "ce"
    if name == "shakespeare":
        return (
            "Embedding 256 + LSTM 512, 100-char windows",
            language_model(info.vocabulary.size, 256, 512),
            "ce",
        )
    if name == "copy_memory":
        return "Embedding 16 + LSTM 128", language_model(info.vocabulary.size, 16, 128), "ce"
    if name == "translation":
        return (
            "encoder/decoder Embedding 256 + LSTM 256",
            encoder_decoder(info.source_vocabulary.size, info.target_vocabulary.size, 256, 256),
            "ce",
        )
    if name == "dates":
        return (
            "encoder/decoder Embedding 32 + LSTM 128",
            encoder_decoder(info.source_vocabulary.size, info.target_vocabulary.size, 32, 128),
            "ce",
        )
    if name == "adding":
        return "LSTM 128 + Dense 1", regressor(128), "mse"
    raise ValueError(f"no recipe for {name!r}")


# ------------------------------------------------------------------------------ timing
def batch_size_of(batch) -> int:
    return int(tf.nest.flatten(batch)[0].shape[0])


def pipeline_rates(ds: tf.data.Dataset, batches: int) -> dict[str, float]:
    """Examples/s of the first `batches` batches of a fresh iterator, and after one epoch."""
    start = time.perf_counter()
    it, n = iter(ds), 0
    for _ in range(batches):
        try:
            n += batch_size_of(next(it))
        except StopIteration:
            break
    first = n / (time.perf_counter() - start)
    for _ in it:  # finish the epoch: the cache is full afterwards
        pass
    it, n = iter(ds.repeat()), 0
    start = time.perf_counter()
    for _ in range(batches):
        n += batch_size_of(next(it))
    return {"first_pass": first, "steady": n / (time.perf_counter() - start)}


def training_rate(model: keras.Model, loss: str, ds: tf.data.Dataset, steps: int) -> float:
    """Examples/s consumed by `train_on_batch` on `steps` real batches.

    The batches are run once untimed first, so every batch shape has been traced: the figure
    is the steady compute rate (the fastest consumption, hence the strictest ratio).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if loss == "ce"
        else "mse",
    )
    batches = list(ds.repeat().take(steps).as_numpy_iterator())
    for x, y in batches:
        model.train_on_batch(x, y)
    start, n = time.perf_counter(), 0
    for x, y in batches:
        model.train_on_batch(x, y)
        n += len(y)
    return n / (time.perf_counter() - start)


def bucketing_rates(info: pipelines.SourceInfo, data_dir: str, batches: int) -> dict:
    """sst2 train.tsv through both bucketing strategies of `pipelines.batching.batched`."""
    from pipelines import batching, sst2

    texts, labels, _ = sst2.read_labeled_tsv(Path(data_dir) / "sentiment/sst2/train.tsv")
    ids = info.vocabulary.encode(texts)
    lengths = ids.row_lengths().numpy()
    out = {}
    for bucketing in ("sorted", "boundaries", None):
        ds = batching.batched(
            (ids, tf.constant(labels, tf.int32)),
            training=True,
            batch_size=64,
            seed=0,
            bucketing=bucketing,
            lengths=lengths,
        )
        pad = []
        for x, _ in ds.take(batches):
            pad.append(float((x.numpy() == 0).mean()))
        out[str(bucketing)] = {
            **{k: round(v, 1) for k, v in pipeline_rates(ds, batches).items()},
            "padding_fraction": round(sum(pad) / len(pad), 3),
        }
    return out


def run(name: str, data_dir: str | None, batches: int, steps: int) -> dict:
    load = pipelines.get_source(name).load
    options = {"download": False} if "download" in inspect.signature(load).parameters else {}
    t0 = time.perf_counter()
    try:
        splits = load(data_dir=data_dir, seed=0, batch_size=64, **options)
    except (pipelines.DataUnavailableError, FileNotFoundError) as err:
        return {"status": "unavailable", "reason": str(err)[:300]}
    load_s = time.perf_counter() - t0
    rates = pipeline_rates(splits.train, batches)
    description, model, loss = recipe(name, splits.info)
    consume = training_rate(model, loss, splits.train, steps)
    extra = {}
    if name == "sst2" and data_dir:
        extra["bucketing_examples_per_s"] = bucketing_rates(splits.info, data_dir, batches)
    return {
        "status": "ok",
        "counts": splits.info.counts,
        "load_s": round(load_s, 2),
        "pipeline_examples_per_s_first_pass": round(rates["first_pass"], 1),
        "pipeline_examples_per_s_steady": round(rates["steady"], 1),
        "model": description,
        "train_examples_per_s": round(consume, 1),
        "ratio_first_pass": round(rates["first_pass"] / consume, 1),
        "ratio_steady": round(rates["steady"] / consume, 1),
        "meets_10x": rates["first_pass"] / consume >= 10 and rates["steady"] / consume >= 10,
        **extra,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(SHARED) if SHARED.is_dir() else None)
    parser.add_argument("--sources", default=",".join(pipelines.SOURCES))
    parser.add_argument("--batches", type=int, default=300, help="batches timed per source")
    parser.add_argument("--steps", type=int, default=8, help="train steps timed per source")
    parser.add_argument(
        "--out",
        help="default: results/pipelines.json for the full run, pipelines_partial.json for "
        "fewer sources, batches or steps (a partial run never overwrites the full figures)",
    )
    args = parser.parse_args(argv)
    full = set(args.sources.split(",")) == set(pipelines.SOURCES) and all(
        getattr(args, key) == parser.get_default(key) for key in ("batches", "steps")
    )
    args.out = args.out or str(RESULTS if full else RESULTS.with_name("pipelines_partial.json"))
    results = {}
    header = (
        f"{'source':12} {'pipeline ex/s (1st / steady)':>30} {'train ex/s':>11} "
        f"{'ratio (1st / steady)':>21}  model"
    )
    print(header)
    for name in args.sources.split(","):
        r = run(name, args.data_dir, args.batches, args.steps)
        results[name] = r
        if r["status"] != "ok":
            print(f"{name:12} unavailable: {r['reason'][:90]}")
            continue
        print(
            f"{name:12} {r['pipeline_examples_per_s_first_pass']:>14,.0f} / "
            f"{r['pipeline_examples_per_s_steady']:>13,.0f} {r['train_examples_per_s']:>11,.0f} "
            f"{r['ratio_first_pass']:>10,.1f} / {r['ratio_steady']:>8,.1f}  {r['model']}",
            flush=True,
        )
        if "bucketing_examples_per_s" in r:
            for k, v in r["bucketing_examples_per_s"].items():
                print(
                    f"{'':12} bucketing={k}: {v['first_pass']:,.0f} / {v['steady']:,.0f} ex/s,"
                    f" padding {v['padding_fraction']:.1%}"
                )
    out = {
        "benchmark": "pipelines",
        "command": "python benchmarks/pipelines.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "gpus": len(tf.config.list_physical_devices("GPU")),
        },
        "batch_size": 64,
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does a trained run's attention attend? Normalised entropy and argmax position of its weights.

Evidence for the README's attention findings, not a recipe. For a classifier with
``pooling = "attention"`` the weights are the pooling's, one row per example; for a seq2seq run
with attention they are the decoder's over the source at each greedy output step (up to and
including the end token). Per row: the entropy of the weights over the valid source steps,
divided by ``log(length)`` (0 = one-hot, 1 = uniform; rows of one step are left out), the
largest weight, and whether it falls on the first or the last valid step::

    .venv/bin/python benchmarks/attention_entropy.py runs/spa-eng/RUN --data-dir ../shared/data
    .venv/bin/python benchmarks/attention_entropy.py runs/names-de-it/RUN --data-dir ../shared/data

Reads the test split (the validation split where a recipe has none), ``--batches`` batches.
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def summarise(weights: list[np.ndarray]) -> dict[str, float]:
    """`weights`: one 1-D array per row, over that row's valid steps."""
    rows = [w for w in weights if len(w) > 1]
    if not rows:
        raise ValueError("weights: expected at least one row of two or more steps, received none")
    entropy = [-(w * np.log(np.clip(w, 1e-12, 1.0))).sum() / np.log(len(w)) for w in rows]
    return {
        "rows": len(rows),
        "normalised_entropy": float(np.mean(entropy)),
        "largest_weight": float(np.mean([w.max() for w in rows])),
        "argmax_first": float(np.mean([w.argmax() == 0 for w in rows])),
        "argmax_last": float(np.mean([w.argmax() == len(w) - 1 for w in rows])),
    }


def pooling_weights(model, dataset, batches: int) -> list[np.ndarray]:
    import tensorflow as tf

    if model.attention_pooling is None:
        raise SystemExit(f"the run's classifier pools with {model.pooling!r}, not attention")
    model.ensure_built()
    rows = []
    for x, _ in dataset.take(batches):
        ids = tf.cast(x, tf.int32)
        mask = tf.not_equal(ids, 0)
        h = model.encoder(model.embedding(ids), mask=mask)
        a = model.attention_pooling.attention_weights(h, mask).numpy()
        rows += [w[m] for w, m in zip(a, mask.numpy(), strict=True)]
    return rows


def decoder_weights(model, dataset, batches: int, max_length: int) -> list[np.ndarray]:
    from keras_seq.models._common import END_ID as END

    if model.attention is None:
        raise SystemExit("the run's seq2seq model has no attention")
    rows = []
    for (src, _), _ in dataset.take(batches):
        tokens, weights = model.translate(src, max_length=max_length)
        for s, out, w in zip(*(np.asarray(t) for t in (src, tokens, weights)), strict=True):
            length = int((s != 0).sum())
            ends = np.flatnonzero((out == END) | (out == 0))
            steps = int(ends[0]) + 1 if len(ends) else len(out)
            rows += [w[t, :length] for t in range(steps)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()

    import keras

    import keras_seq.models  # noqa: F401  (registers the model classes)
    from keras_seq.training import runner
    from pipelines.splits import SourceInfo

    recipe = json.loads((args.run_dir / "config.json").read_text())
    splits = runner.load_splits(
        recipe, data_dir=args.data_dir or recipe.get("data_dir"), seed=recipe.get("seed", 0),
        vocabularies=SourceInfo.load_vocabularies(args.run_dir),
    )
    model = keras.saving.load_model(args.run_dir / "model.keras", safe_mode=True)
    split = "test" if splits.test is not None else "validation"
    dataset = getattr(splits, split)
    if recipe["task"] == "classification":
        rows = pooling_weights(model, dataset, args.batches)
    elif recipe["task"] == "seq2seq":
        max_length = int(recipe["train"].get("max_decode_length", 40))
        rows = decoder_weights(model, dataset, args.batches, max_length)
    else:
        raise SystemExit(f"a {recipe['task']} run has no attention weights to measure")
    print(json.dumps({"run": str(args.run_dir), "split": split, "batches": args.batches,
                      **summarise(rows)}, indent=1))


if __name__ == "__main__":
    main()

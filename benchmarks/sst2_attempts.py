"""Three `sst2` attempts that the recipe did not keep, reproducible (README's sst2 notes).

The first two were decided on the validation split (whole held-out training sentences)
before the dev set was read, the third after (see the README):

* **BiLM pretraining** (Dai & Le 2015; both directions as in ELMo): the classifier's
  embedding and BiLSTM are first trained as language models on the distinct training rows
  (forward half -> next word, backward half -> previous word, output tied to the embedding),
  then the recipe's ten members start from those weights.
* **Mixed ensembles**: members of runs with another model (e.g. BiGRU + max pooling, from
  ``keras-seq train sst2 --set cell=gru --set pooling=max --set ensemble=5``) averaged with
  the recipe's members. Runs must share the split (seed) and vocabulary.
* **Prior shift** (``score --prior-shift``): training sees every phrase (55.8% positive) but
  the model is for whole sentences (52.7% of the training sentences are positive). Each
  member's probabilities are multiplied by ``sentence prior / training prior`` and
  renormalised (Saerens et al. 2002), which equals adding the log ratio to the head's bias.

  .venv/bin/python benchmarks/sst2_attempts.py pretrain runs/sst2/bilm.weights.h5   # ~5 min
  .venv/bin/python benchmarks/sst2_attempts.py train runs/sst2/bilm.weights.h5 runs/sst2/bilm
  .venv/bin/python benchmarks/sst2_attempts.py score runs/sst2/final runs/sst2/bilm [--dev]
  .venv/bin/python benchmarks/sst2_attempts.py score runs/sst2/final runs/sst2/gru-max --mix \
      [--members 5]
  .venv/bin/python benchmarks/sst2_attempts.py score runs/sst2/final --prior-shift [--dev]

``score`` prints each run's ensemble (and with ``--mix`` the ensemble of all their members)
on validation; ``--dev`` adds the GLUE dev set, ``--members N`` keeps each run's first N.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# The project's `pipelines` package, not benchmarks/pipelines.py beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import keras_seq.models  # noqa: E402, F401  (registers the model classes)
from keras_seq.training import builders, recipes, runner  # noqa: E402
from pipelines import sst2  # noqa: E402
from pipelines.splits import SourceInfo  # noqa: E402
from pipelines.text import normalize  # noqa: E402

DATA = "../shared/data"


class BiLM(keras.Model):
    """The classifier's encoder as two language models: ``ids -> (forward, backward) logits``.

    The forward half at step t has seen steps <= t and predicts token t + 1; the backward
    half at step t + 1 has seen steps >= t + 1 and predicts token t.
    """

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier
        self.output_bias = self.add_weight(
            shape=(classifier.vocab_size,), initializer="zeros", name="output_bias"
        )

    def call(self, ids, training=False):
        c = self.classifier
        x = c.dropout_layer(c.embedding(ids), training=training)
        h = c.encoder(x, mask=tf.not_equal(ids, 0), training=training)
        forward, backward = tf.split(c.dropout_layer(h, training=training), 2, axis=-1)
        table = c.embedding.embeddings  # tied output weights (units == embedding_dim)
        return (tf.einsum("btd,vd->btv", forward[:, :-1], table) + self.output_bias,
                tf.einsum("btd,vd->btv", backward[:, 1:], table) + self.output_bias)


def _rows(dataset) -> list[tuple[int, ...]]:
    """Distinct unpadded rows of >= 2 tokens, shortest first."""
    rows = {tuple(int(t) for t in r[r > 0]) for x, _ in dataset for r in x.numpy()}
    return sorted((r for r in rows if len(r) >= 2), key=lambda r: (len(r), r))


def _targets(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) targets of a padded batch. A row's last token has no backward
    context inside the row (the backward half at the next step has read only padding), so
    it is set to 0, the ignored class."""
    return batch[:, 1:], batch[:, :-1] * (batch[:, 1:] != 0)


def _batches(rows, size: int, rng) -> list[np.ndarray]:
    out = []
    for i in range(0, len(rows), size):
        chunk = rows[i : i + size]
        batch = np.zeros((len(chunk), len(chunk[-1])), np.int32)
        for j, r in enumerate(chunk):
            batch[j, : len(r)] = r
        out.append(batch)
    rng.shuffle(out)
    return out


def pretrain(path: str, epochs: int) -> None:
    recipe = recipes.load("sst2")
    keras.utils.set_random_seed(0)
    splits = runner.load_splits(recipe, data_dir=DATA, seed=0)
    classifier = builders.build_model(recipe, splits.info)
    classifier.build()
    lm = BiLM(classifier)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    lm.compile(optimizer=keras.optimizers.Adam(2e-3, clipnorm=1.0), loss=[loss, loss])
    train, validation = _rows(splits.train), _rows(splits.validation)
    rng = np.random.default_rng(0)
    held_out = _batches(validation, 128, rng)
    print(f"{len(train)} training rows, {sum(map(len, train))} tokens")
    for epoch in range(epochs):
        started = time.time()
        seen = [lm.train_on_batch(b, _targets(b))[0] for b in _batches(train, 128, rng)]
        val = np.mean([lm.test_on_batch(b, _targets(b))[0] for b in held_out])
        print(f"epoch {epoch + 1}: train {np.mean(seen) / 2:.3f}, validation {val / 2:.3f} "
              f"nats/word ({time.time() - started:.0f} s)")
    classifier.save_weights(path)


def train(path: str, run_dir: str) -> int:
    """The sst2 recipe, each member's embedding and encoder loaded from `path`."""

    def build(recipe, info):
        model, pretrained = (builders.build_model(recipe, info) for _ in range(2))
        model.build()
        pretrained.build()
        pretrained.load_weights(path)
        model.embedding.set_weights(pretrained.embedding.get_weights())
        model.encoder.set_weights(pretrained.encoder.get_weights())
        return model

    runner.build_model = build
    from keras_seq import cli

    return cli.main(["train", "sst2", "--data-dir", DATA, "--run-dir", run_dir])


def _normalised(p: np.ndarray) -> np.ndarray:
    return p / p.sum(axis=1, keepdims=True)


def _scores(probabilities: list[np.ndarray], labels: np.ndarray) -> dict[str, float]:
    p = np.mean(probabilities, axis=0)
    picked = np.clip(p[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {"loss": round(float(-np.mean(np.log(picked))), 4),
            "accuracy": round(float(np.mean(p.argmax(1) == labels)), 4)}


def prior_ratio(recipe: dict, info: SourceInfo) -> np.ndarray:
    """``sentence prior / training prior``: the label shares of the training split's whole
    sentences over those of all its rows, the split rebuilt as `pipelines.sst2.load` does."""
    texts, labels, _ = sst2.read_labeled_tsv(Path(info.extra["directory"]) / "train.tsv")
    lowercase = info.options["lowercase"]
    test = {normalize(t, lowercase) for t, _ in zip(*sst2.read_labeled_tsv(
        info.extra["test_file"])[:2], strict=True)}
    rows = [(k, y) for k, y in zip((normalize(t, lowercase) for t in texts), labels,
                                   strict=True) if k not in test]
    keys = [k for k, _ in rows]
    roots = sst2.sentence_roots(keys)
    split = sst2.sentence_split(keys, info.options["validation_fraction"], recipe["seed"])
    sentences = [y for (k, y), s in zip(rows, split, strict=True) if s == 0 and roots[k] == k]
    target = np.bincount(sentences, minlength=2) / len(sentences)
    train = 1.0 / (2 * np.array([info.class_weight[c] for c in range(2)]))
    print(f"sentence prior {target.round(4)}, training prior {train.round(4)}, "
          f"log ratio {np.log(target / train).round(4)}")
    return target / train


def score(runs: list[str], dev: bool, mix: bool, first: int | None, shift: bool) -> None:
    vocab = SourceInfo.load_vocabularies(runs[0])
    recipe = json.loads(Path(runs[0], "config.json").read_text())
    splits = runner.load_splits(recipe, data_dir=DATA, seed=recipe["seed"], vocabularies=vocab)
    ratio = prior_ratio(recipe, splits.info) if shift else np.ones(2)
    parts = {"validation": splits.validation, **({"dev": splits.test} if dev else {})}
    labels = {k: np.concatenate([y.numpy().ravel() for _, y in d]) for k, d in parts.items()}
    members = {}
    for run in runs:
        if Path(run, "vocab_text.json").read_text() != Path(runs[0], "vocab_text.json").read_text():
            raise SystemExit(f"{run} has another vocabulary than {runs[0]}")
        found = sorted(Path(run).glob("member-*"), key=lambda p: int(p.name[7:]))
        for member in found[:first]:
            model = keras.saving.load_model(member / "model.keras", compile=False)
            members[f"{run}/{member.name}"] = {
                k: _normalised(np.concatenate([model.predict_on_batch(x) for x, _ in d]) * ratio)
                for k, d in parts.items()
            }
    groups = {run: [m for m in members if m.startswith(f"{run}/")] for run in runs}
    if mix:
        groups[" + ".join(runs)] = list(members)
    for name, keys in groups.items():
        line = {k: _scores([members[m][k] for m in keys], labels[k]) for k in parts}
        print(f"{name} ({len(keys)} members): {json.dumps(line)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain")
    p.add_argument("weights")
    p.add_argument("--epochs", type=int, default=4)
    p = sub.add_parser("train")
    p.add_argument("weights")
    p.add_argument("run_dir")
    p = sub.add_parser("score")
    p.add_argument("runs", nargs="+")
    p.add_argument("--dev", action="store_true")
    p.add_argument("--mix", action="store_true")
    p.add_argument("--members", type=int, help="only each run's first N members")
    p.add_argument("--prior-shift", action="store_true",
                   help="shift each member to the prior of whole training sentences")
    args = parser.parse_args()
    if args.command == "pretrain":
        pretrain(args.weights, args.epochs)
    elif args.command == "train":
        raise SystemExit(train(args.weights, args.run_dir))
    else:
        score(args.runs, args.dev, args.mix, args.members, args.prior_shift)


if __name__ == "__main__":
    main()

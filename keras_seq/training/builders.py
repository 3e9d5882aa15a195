"""Recipe -> model, and its loss, metrics and optimiser."""

from __future__ import annotations

from typing import Any

import keras

from keras_seq import layers

RECURRENT = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def build_model(recipe: dict[str, Any], info) -> keras.Model:
    from keras_seq import models

    spec = dict(recipe["model"])
    kind = spec.pop("class")
    if kind == "SequenceClassifier":
        return models.SequenceClassifier(
            vocab_size=info.vocabulary.size, num_classes=len(info.labels), **spec
        )
    if kind == "LanguageModel":
        return models.LanguageModel(vocab_size=info.vocabulary.size, **spec)
    if kind == "Seq2Seq":
        return models.Seq2Seq(
            src_vocab_size=info.source_vocabulary.size,
            tgt_vocab_size=info.target_vocabulary.size,
            **spec,
        )
    if kind == "Regressor":
        return regressor(**spec)
    raise ValueError(f"Unknown model class {kind!r} in recipe {recipe['name']!r}")


def regressor(cell: str = "lstm", units: int = 64, features: int = 2, **kwargs) -> keras.Model:
    """A recurrent layer read at its last step, then one linear unit (adding problem)."""
    inputs = keras.Input((None, features))
    hidden = RECURRENT[cell](units, **kwargs)(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden), name=f"{cell}_regressor")


def compile_model(model: keras.Model, recipe: dict[str, Any]) -> None:
    hp = recipe["train"]
    optimizer = keras.optimizers.Adam(hp["learning_rate"], clipnorm=hp["clipnorm"])
    task = recipe["task"]
    if task == "regression":
        model.compile(optimizer=optimizer, loss="mse")
        return
    if task == "classification":
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:  # per-token targets padded with 0
        loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=0)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="token_accuracy")]
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)

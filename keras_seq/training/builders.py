"""Recipe -> model, and its loss, metrics and optimiser."""

from __future__ import annotations

from typing import Any

import keras

from keras_seq import layers

RECURRENT = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}


def model_class(name: str):
    """The callable a recipe's ``[model] class`` names."""
    from keras_seq import models

    classes = {
        "SequenceClassifier": models.SequenceClassifier,
        "LanguageModel": models.LanguageModel,
        "Seq2Seq": models.Seq2Seq,
        "Regressor": regressor,
    }
    if name not in classes:
        raise ValueError(f"Unknown model class {name!r}. Expected one of {', '.join(classes)}")
    return classes[name]


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


def regressor(
    cell: str = "lstm", units: int = 64, features: int = 2, num_layers: int = 1
) -> keras.Model:
    """A recurrent layer read at its last step, then one linear unit (adding problem)."""
    inputs = keras.Input((None, features))
    hidden = RECURRENT[cell](units, num_layers=num_layers)(inputs)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden), name=f"{cell}_regressor")


def compile_model(model: keras.Model, recipe: dict[str, Any]) -> None:
    """Adam with gradient clipping, and an EMA of the weights when `ema_momentum` is set.

    The task models bring their own loss and metrics.
    """
    hp = recipe["train"]
    ema = hp.get("ema_momentum")
    optimizer = keras.optimizers.Adam(
        hp["learning_rate"],
        clipnorm=hp["clipnorm"],
        use_ema=bool(ema),
        ema_momentum=float(ema) if ema else 0.99,
    )
    if recipe["task"] == "regression":
        model.compile(optimizer=optimizer, loss="mse")
    else:
        model.compile(optimizer=optimizer)  # loss="auto", metrics="auto"

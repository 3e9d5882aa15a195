"""Recipe -> model, and its loss, metrics and optimiser."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_seq import layers

RECURRENT = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
# Model arguments that `build_model` takes from the data, never from the recipe.
FROM_DATA = frozenset({"vocab_size", "num_classes", "src_vocab_size", "tgt_vocab_size"})


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
        if isinstance(spec.get("chrono"), bool):  # true: the horizon is the sequence length
            spec["chrono"] = int(recipe["data"]["length"]) if spec["chrono"] else None
        return regressor(**spec)
    raise ValueError(f"Unknown model class {kind!r} in recipe {recipe['name']!r}")


def regressor(
    cell: str = "lstm",
    units: int = 64,
    features: int = 2,
    num_layers: int = 1,
    chrono: int | None = None,
    seed: int | None = None,
) -> keras.Model:
    """A recurrent layer read at its last step, then one linear unit (adding problem).

    ``chrono=T``: chrono initialisation (Tallec & Ollivier 2018) for dependencies up to T
    steps, drawn with `seed` (None: NumPy's global generator, which
    `keras.utils.set_random_seed` seeds). LSTM: forget bias ``log(u)`` and input bias ``-log(u)``,
    ``u ~ U(1, T - 1)`` per unit; GRU: update-gate bias ``log(u)`` (``z`` weighs the old
    state in Keras's GRU). SimpleRNN has no gate and is left as is.
    """
    from keras_seq.models import _common

    _common.check_cell(cell)
    if chrono is not None:
        _common.check_int_at_least("chrono", chrono, 2, "the longest dependency, in steps")
    if seed is not None:
        _common.check_int_at_least("seed", seed, 0)
    inputs = keras.Input((None, features))
    layer = RECURRENT[cell](units, num_layers=num_layers)
    # The output in float32 under mixed precision (Keras's guide), as the other task models.
    head = keras.layers.Dense(1, dtype="float32")
    model = keras.Model(inputs, head(layer(inputs)), name=f"{cell}_regressor")
    if chrono is not None and cell != "rnn":
        rng = np.random if seed is None else np.random.default_rng(seed)
        for level in layer.cells:
            timescales = np.log(rng.uniform(1.0, max(2.0, chrono - 1.0), size=units))
            bias = level.bias.numpy()
            if cell == "lstm":  # gates i, f, c, o
                bias[:units], bias[units : 2 * units] = -timescales, timescales
            else:  # gates z, r, h; the input half of reset_after's [2, 3U] bias
                (bias[0] if bias.ndim == 2 else bias)[:units] = timescales
            level.bias.assign(bias)
    return model


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

"""A deep ensemble: the mean class probabilities of independently trained classifiers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

from keras_seq.models import _common

__all__ = ["Ensemble"]


@keras.saving.register_keras_serializable(package="keras_seq")
class Ensemble(_common.TaskModel):
    """``model(x) = mean_k members[k](x)``: averaged class probabilities.

    Members are classifiers trained separately (different initialisations, same data), as in
    deep ensembles (Lakshminarayanan et al. 2017): averaging their probabilities lowers the
    variance of the prediction, and usually the test error and loss. The ensemble is one
    Keras model, so it saves, loads and exports like its members (the exported graph runs every
    member). Each member must map the same input to probabilities of the same classes.
    ``compile()`` defaults to ``SparseCategoricalCrossentropy()`` and ``"accuracy"``, like
    `SequenceClassifier`: ``model.compile(); model.evaluate(ds)`` scores a loaded ensemble.

    Args:
        members: at least one model, each ``x -> probabilities [B, C]``.

    Example:
        >>> from keras_seq.models import SequenceClassifier
        >>> members = [SequenceClassifier(100, 3, units=8) for _ in range(2)]
        >>> Ensemble(members)(np.array([[5, 6, 0]])).shape
        TensorShape([1, 3])
    """

    def __init__(self, members: Sequence[keras.Model], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(members, keras.Model) or not isinstance(members, Sequence) or not all(
            isinstance(m, keras.Model) for m in members
        ) or not members:
            raise ValueError(
                "Invalid value for argument `members`. Expected a non-empty sequence of "
                f"keras.Model. Received: members={members!r}"
            )
        self.members = list(members)
        for name in ("vocab_size", "num_classes"):  # the same ids in, the same classes out
            values = [getattr(m, name, None) for m in self.members]
            if len(set(values)) > 1:
                raise ValueError(
                    f"Invalid value for argument `members`. Expected members with one "
                    f"`{name}`. Received: {name}={values}"
                )
        self.built = all(m.built for m in self.members)  # trained members come built

    def build(self, input_shape: Any = None) -> None:
        for member in self.members:
            if not member.built:
                member.build(input_shape)
        self.built = True

    def call(self, inputs: Any, training: bool = False) -> Any:
        outputs = [member(inputs, training=training) for member in self.members]
        if len(outputs) == 1:
            return outputs[0]
        return keras.ops.mean(keras.ops.stack(outputs, axis=0), axis=0)

    def default_loss(self) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy()

    def default_metrics(self) -> list:
        return ["accuracy"]

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.members[0].compute_output_shape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Ensemble:
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members, **config)

"""Sequence classification: embedding -> recurrent encoder -> masked pooling -> softmax."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq.layers.bidirectional import Bidirectional
from keras_seq.models import _common
from keras_seq.models.pooling import AttentionPooling, masked_max, masked_mean

__all__ = ["SequenceClassifier"]

POOLINGS = ("last", "mean", "max", "attention")


@keras.saving.register_keras_serializable(package="keras_seq")
class SequenceClassifier(_common.TaskModel):
    """Classify a padded sequence of token ids; returns class **probabilities**.

    ``model(token_ids [B, T] int) -> probabilities [B, num_classes]`` (softmax; rows sum
    to 1), so an exported model returns probabilities. Train with
    ``SparseCategoricalCrossentropy()`` (``from_logits=False``), which ``compile()`` picks
    by default with ``"accuracy"``.

    Token id 0 is padding: the embedding has ``mask_zero=True`` and every step with id 0 is
    skipped by the encoder and by the pooling, so extra padding never changes a prediction.
    Pooling over the encoder outputs ``h_t`` (``[B, T, H]``, ``H = units`` or ``2 * units``
    when bidirectional) with mask ``m_t``:

    * ``"last"``: the encoder's last output under the mask, i.e. the state after the last
      valid step (bidirectional: forward at the last valid step, backward at step 0);
    * ``"mean"``: ``sum_t m_t h_t / sum_t m_t``;
    * ``"max"``: ``max_t`` of ``h_t`` over the valid steps, per feature (InferSent's BiLSTM-max,
      Conneau et al. 2017);
    * ``"attention"``: :class:`AttentionPooling` (``a = softmax_t(tanh(h_t W + b) . w)``
      over valid steps, ``sum_t a_t h_t``).

    Dropout (rate ``dropout``) is applied to the embeddings, between stacked recurrent
    levels and to the pooled vector. Token dropout (rate ``token_dropout``, training only)
    replaces tokens by the out-of-vocabulary id 1 (word dropout, Iyyer et al. 2015), so the
    OOV embedding is trained for the unseen words of new text.

    Args:
        vocab_size: number of token ids (including 0-3, the reserved ids).
        num_classes: number of classes (>= 2).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (Elman).
        units: recurrent units per direction.
        num_layers: stacked recurrent levels.
        bidirectional: run the encoder in both directions (outputs concatenated).
        pooling: ``"last"``, ``"mean"``, ``"max"`` or ``"attention"``.
        dropout: dropout rate in [0, 1).
        embedding_dim: size of the token embeddings.
        token_dropout: rate in [0, 1) at which training replaces tokens by id 1.

    Example:
        >>> model = SequenceClassifier(1000, 2, units=32, pooling="attention")
        >>> model.compile()
        >>> model(np.array([[5, 6, 7, 0, 0]])).shape
        TensorShape([1, 2])
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        cell: str = "lstm",
        units: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
        embedding_dim: int = 128,
        token_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocab_size = _common.positive_int("vocab_size", vocab_size)
        self.num_classes = _common.check_int_at_least("num_classes", num_classes, 2)
        self.cell_type = _common.check_cell(cell)
        self.units = _common.positive_int("units", units)
        self.num_layers = _common.positive_int("num_layers", num_layers)
        self.bidirectional = _common.check_bool("bidirectional", bidirectional)
        self.pooling = _common.one_of("pooling", pooling, POOLINGS)
        self.dropout = _common.rate("dropout", dropout)
        self.embedding_dim = _common.positive_int("embedding_dim", embedding_dim)
        self.token_dropout = _common.rate("token_dropout", token_dropout)
        self.seed_generator = keras.random.SeedGenerator() if self.token_dropout else None

        # Sublayers take the model's policy, not the global one: a model saved under mixed
        # precision loads as it was saved, whatever the loading process's global policy.
        policy = self.dtype_policy
        self.embedding = keras.layers.Embedding(
            self.vocab_size, self.embedding_dim, mask_zero=True, dtype=policy, name="embedding"
        )
        encoder = _common.recurrent_layer(
            self.cell_type,
            self.units,
            num_layers=self.num_layers,
            inter_layer_dropout=self.dropout,
            return_sequences=self.pooling != "last",
            dtype=policy,
            name="encoder",
        )
        if self.bidirectional:
            encoder = Bidirectional(encoder, dtype=policy, name="bidirectional")
        self.encoder = encoder
        self.attention_pooling = (
            AttentionPooling(self.units, dtype=policy, name="attention_pooling")
            if self.pooling == "attention"
            else None
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
        # In the variables' dtype: float32 probabilities under mixed precision, as Keras's
        # mixed-precision guide advises for the softmax.
        self.head = keras.layers.Dense(
            self.num_classes, activation="softmax", dtype=policy.variable_dtype,
            name="head",
        )

    @property
    def feature_dim(self) -> int:
        """Width ``H`` of the encoder outputs (and of the pooled vector)."""
        return self.units * (2 if self.bidirectional else 1)

    def build(self, input_shape: Any = None) -> None:
        self.embedding.build((None, None))
        self.encoder.build((None, None, self.embedding_dim))
        if self.attention_pooling is not None:
            self.attention_pooling.build((None, None, self.feature_dim))
        self.head.build((None, self.feature_dim))

    def encode(self, token_ids: Any, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """``token_ids [B, T] -> (pooled [B, H], mask [B, T] bool)``."""
        self.ensure_built()
        token_ids = tf.cast(token_ids, tf.int32)
        mask = tf.not_equal(token_ids, _common.PAD_ID)  # (B, T)
        if training and self.token_dropout > 0:
            drop = keras.random.uniform(tf.shape(token_ids), seed=self.seed_generator)
            token_ids = tf.where(mask & (drop < self.token_dropout), _common.OOV_ID, token_ids)
        x = self.dropout_layer(self.embedding(token_ids), training=training)
        h = self.encoder(x, mask=mask, training=training)  # (B, H) or (B, T, H)
        if self.pooling == "mean":
            h = masked_mean(h, mask)
        elif self.pooling == "max":
            h = masked_max(h, mask)
        elif self.pooling == "attention":
            h = self.attention_pooling(h, mask=mask)
        return h, mask

    def call(self, token_ids: Any, training: bool = False) -> tf.Tensor:
        pooled, _ = self.encode(token_ids, training=training)
        return self.head(self.dropout_layer(pooled, training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def default_loss(self) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy()

    def default_metrics(self) -> list:
        return ["accuracy"]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "num_classes": self.num_classes,
            "cell": self.cell_type,
            "units": self.units,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "embedding_dim": self.embedding_dim,
            "token_dropout": self.token_dropout,
        }

"""Recurrent language model with stateful, seeded generation."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_seq.models import _common

__all__ = ["LanguageModel"]

_PAD_SCORE = float("-inf")  # below any logit, even one divided by a tiny temperature


@keras.saving.register_keras_serializable(package="keras_seq")
class LanguageModel(_common.TaskModel):
    """Next-token model: ``logits_t = W h_t + b`` with ``h_t = RNN(embed(x_1..x_t))``.

    ``model(token_ids [B, T] int) -> logits [B, T, vocab_size]`` (unnormalised; position t
    scores token t+1). Train on ``(ids[:, :-1], ids[:, 1:])`` with
    ``SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)`` (the
    ``compile()`` default). Id 0 is padding: the embedding has ``mask_zero=True``, padded
    steps carry the state unchanged, and padded targets are ignored by the loss.

    States (as ``keras_seq.layers``): a list with each level's states in order, LSTM
    ``[h_0, c_0, h_1, c_1, ...]``, GRU / SimpleRNN ``[h_0, h_1, ...]``, each ``[B, units]``.

    Generation (:meth:`generate`) reads the prompt once (one pass of the recurrent layer,
    which returns its final states) and then runs single steps in a ``tf.while_loop``
    inside a ``tf.function``, carrying the states: cost is linear in ``length``.

    Args:
        vocab_size: number of token ids.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        units: recurrent units per level.
        num_layers: stacked levels.
        dropout: rate in [0, 1) on embeddings, between levels and before the output layer.
        embedding_dim: size of the token embeddings.

    Example:
        >>> lm = LanguageModel(50, units=32)
        >>> lm.generate(np.array([[2, 7, 9]]), length=5, seed=0).shape
        TensorShape([1, 5])
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        units: int = 256,
        num_layers: int = 1,
        dropout: float = 0.0,
        embedding_dim: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.vocab_size = _common.check_int_at_least("vocab_size", vocab_size, 2)
        self.cell_type = _common.check_cell(cell)
        self.units = _common.positive_int("units", units)
        self.num_layers = _common.positive_int("num_layers", num_layers)
        self.dropout = _common.rate("dropout", dropout)
        self.embedding_dim = _common.positive_int("embedding_dim", embedding_dim)

        policy = self.dtype_policy  # not the global one: see SequenceClassifier
        self.embedding = keras.layers.Embedding(
            self.vocab_size, self.embedding_dim, mask_zero=True, dtype=policy, name="embedding"
        )
        self.rnn = _common.recurrent_layer(
            self.cell_type,
            self.units,
            num_layers=self.num_layers,
            inter_layer_dropout=self.dropout,
            return_sequences=True,
            return_state=True,
            dtype=policy,
            name="rnn",
        )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
        # float32 logits under mixed precision (the loss and sampling's softmax need them).
        self.head = keras.layers.Dense(
            self.vocab_size, dtype=policy.variable_dtype, name="head"
        )

    def build(self, input_shape: Any = None) -> None:
        self.embedding.build((None, None))
        self.rnn.build((None, None, self.embedding_dim))
        self.head.build((None, None, self.units))

    # -- forward -----------------------------------------------------------------------------
    def forward(
        self, token_ids: Any, initial_state: list | None = None, training: bool = False
    ) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """``token_ids [B, T] -> (logits [B, T, V], final states)``, from ``initial_state``."""
        self.ensure_built()
        token_ids = tf.cast(token_ids, tf.int32)
        mask = tf.not_equal(token_ids, _common.PAD_ID)
        x = self.dropout_layer(self.embedding(token_ids), training=training)
        outputs, *states = self.rnn(x, initial_state=initial_state, mask=mask, training=training)
        logits = self.head(self.dropout_layer(outputs, training=training))
        return logits, states

    def call(self, token_ids: Any, training: bool = False) -> tf.Tensor:
        return self.forward(token_ids, training=training)[0]

    def step(self, token_ids: Any, states: list) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """One step at inference: ``(token_ids [B], states) -> (logits [B, V], new states)``.

        The same cells as :meth:`forward`'s recurrent layer, one step each
        (``h = cell.step(cell.project_inputs(x), states)``), so step-by-step equals a full pass.
        """
        self.ensure_built()
        x = self.embedding(tf.cast(token_ids, tf.int32))  # (B, E)
        per = _common.states_per_level(self.cell_type)
        new_states = []
        for k, cell in enumerate(self.rnn.cells):
            x, level = cell.step(cell.project_inputs(x), list(states[k * per : (k + 1) * per]))
            new_states.extend(level)
        return self.head(x), new_states

    def prompt_states(self, prompt_ids: Any) -> tuple[tf.Tensor, list[tf.Tensor]]:
        """Read a prompt once: ``prompt_ids [B, Tp] -> (next-token logits [B, V], states)``.

        The logits come from the top level's final ``h``, the state after each row's last
        non-padding token (so prompts may be padded with 0 on either side).
        """
        _, states = self.forward(prompt_ids)
        top_h = states[(self.num_layers - 1) * _common.states_per_level(self.cell_type)]
        return self.head(top_h), states

    # -- generation --------------------------------------------------------------------------
    def generate(
        self,
        prompt_ids: Any,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        return_logits: bool = False,
    ):
        """Sample ``length`` tokens after each prompt.

        Each step draws ``x ~ softmax(logits / temperature)`` restricted to the ``top_k``
        best tokens (all when None), never the padding id 0, with
        ``tf.random.stateless_categorical`` seeded by ``fold_in(seed, step)``: the same
        seed gives the same tokens. ``temperature=0`` takes the argmax (greedy).

        Args:
            prompt_ids: ``[B, Tp]`` int token ids (``Tp >= 1``; pad with 0 to equal length).
            length: number of tokens to generate (>= 1).
            temperature: >= 0.
            top_k: sample among the ``top_k`` most likely tokens (1 <= top_k <= vocab_size).
            seed: int; None draws one from NumPy's global generator.
            return_logits: also return the logits each token was drawn from.

        Returns:
            ``tokens [B, length]`` int32 (the continuation only), and with
            ``return_logits=True`` also ``logits [B, length, V]`` (before temperature).
        """
        _common.positive_int("length", length)
        temperature = _common.non_negative_float("temperature", temperature)
        seed = _common.check_seed("seed", seed)
        return_logits = _common.check_bool("return_logits", return_logits)
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or not (
                1 <= top_k <= self.vocab_size
            ):
                raise ValueError(
                    "Invalid value for argument `top_k`. Expected None or an integer in "
                    f"[1, vocab_size={self.vocab_size}]. Received: top_k={top_k!r}"
                )
            top_k = int(top_k)
        prompt = tf.convert_to_tensor(prompt_ids)
        if prompt.shape.rank != 2 or prompt.shape[1] == 0:
            raise ValueError(
                "Invalid value for argument `prompt_ids`. Expected a [batch, steps] tensor of "
                f"token ids with steps >= 1. Received: shape={tuple(prompt.shape)}"
            )
        _common.check_token_ids("prompt_ids", prompt, self.vocab_size)
        if seed is None:
            seed = int(np.random.randint(0, 2**31 - 1))
        seed_pair = tf.constant([seed % 2**63, 0], tf.int64)
        self.ensure_built()
        greedy = temperature == 0
        fn = self._cached(("generate", greedy, top_k), lambda: self._generate_fn(greedy, top_k))
        tokens, logits = fn(
            tf.cast(prompt, tf.int32),
            tf.constant(length, tf.int32),
            tf.constant(max(float(temperature), 1e-6), tf.float32),
            seed_pair,
        )
        return (tokens, logits) if return_logits else tokens

    def _generate_fn(self, greedy: bool, top_k: int | None):
        spec = tf.TensorSpec

        @tf.function(
            input_signature=[
                spec([None, None], tf.int32),
                spec([], tf.int32),
                spec([], tf.float32),
                spec([2], tf.int64),
            ]
        )
        def generate(prompt, length, temperature, seed):
            logits, states = self.prompt_states(prompt)
            tokens_ta = tf.TensorArray(tf.int32, size=length)
            logits_ta = tf.TensorArray(logits.dtype, size=length)

            def body(t, logits, states, tokens_ta, logits_ta):
                token = self._sample(logits, temperature, top_k, greedy, seed, t)
                tokens_ta = tokens_ta.write(t, token)
                logits_ta = logits_ta.write(t, logits)
                logits, states = self.step(token, states)
                return t + 1, logits, states, tokens_ta, logits_ta

            _, _, _, tokens_ta, logits_ta = tf.while_loop(
                lambda t, *_: t < length,
                body,
                (tf.constant(0), logits, states, tokens_ta, logits_ta),
                maximum_iterations=length,
            )
            tokens = tf.transpose(tokens_ta.stack(), [1, 0])  # (B, L)
            logits = tf.transpose(logits_ta.stack(), [1, 0, 2])  # (B, L, V)
            return tokens, logits

        return generate

    @staticmethod
    def _sample(logits, temperature, top_k, greedy, seed, t):
        """Draw one token per row from ``logits [B, V]``; never the padding id."""
        logits = tf.cast(logits, tf.float32)
        not_pad = tf.not_equal(tf.range(tf.shape(logits)[-1]), _common.PAD_ID)[None, :]
        if greedy:
            return tf.argmax(tf.where(not_pad, logits, _PAD_SCORE), axis=-1, output_type=tf.int32)
        # Masked after the temperature, which would scale the mask too (a huge one to ~0).
        scaled = tf.where(not_pad, logits / temperature, _PAD_SCORE)
        if top_k is not None:
            kth = tf.math.top_k(scaled, k=top_k).values[:, -1:]  # (B, 1)
            scaled = tf.where(scaled < kth, _PAD_SCORE, scaled)
        step_seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(t, tf.int64))
        return tf.random.stateless_categorical(scaled, 1, seed=step_seed, dtype=tf.int32)[:, 0]

    # -- Keras plumbing -------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        return (*tuple(input_shape)[:2], self.vocab_size)

    def default_loss(self) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "cell": self.cell_type,
            "units": self.units,
            "num_layers": self.num_layers,
            "dropout": self.dropout,
            "embedding_dim": self.embedding_dim,
        }

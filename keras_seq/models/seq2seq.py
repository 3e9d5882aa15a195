"""Encoder-decoder with attention (Bahdanau et al. 2015; Luong et al. 2015)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras_seq.layers.attention import BahdanauAttention, LuongAttention
from keras_seq.layers.bidirectional import Bidirectional
from keras_seq.layers.recurrent import run_cell
from keras_seq.models import _common, decoding

__all__ = ["Seq2Seq"]

ATTENTIONS = ("bahdanau", "luong-dot", "luong-general", "luong-concat", None)
METHODS = ("greedy", "beam")


@keras.saving.register_keras_serializable(package="keras_seq")
class Seq2Seq(_common.TaskModel):
    """Recurrent encoder-decoder; the decoder attends over every encoder output at every step.

    Training is teacher forced: ``model((src_ids [B, Ts], tgt_in_ids [B, Tt]))`` returns
    **log-probabilities** ``[B, Tt, tgt_vocab_size]`` (``log_softmax`` of the output layer;
    they are valid logits, so the ``compile()`` default loss is
    ``SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)``). Data:
    ``((src_ids, tgt_in_ids), tgt_out_ids)``, ``tgt_in = [2, y_1 .. y_n]``,
    ``tgt_out = [y_1 .. y_n, 3]``, 0 padding everywhere.

    Encoder: embedding, recurrent layer (``num_layers`` levels; with
    ``bidirectional_encoder`` both directions, outputs concatenated then projected to
    ``units`` by ``encoder_projection``, and each decoder initial state
    ``tanh([s_fwd; s_bwd] W + b)``), mask = ``src_ids != 0``. The decoder starts from the
    encoder's final states (one per level; LSTM ``[h_0, c_0, h_1, c_1, ...]``).

    One decoder step (:meth:`decode_step`), with ``y`` the embedded previous token,
    ``h`` the top decoder level, ``H`` the encoder outputs ``[B, Ts, units]``::

        bahdanau:   c_t, a_t = attend(h_{t-1}, H);  h_t = cells([y; c_t]);  o_t = [h_t; c_t]
        luong-*:    h_t = cells([y; h~_{t-1}] if input_feeding else y)
                    c_t, a_t = attend(h_t, H);  h~_t = tanh(W_c [c_t; h_t]);  o_t = h~_t
        None:       h_t = cells(y);  o_t = h_t  (a_t = 0)
        log p(y_t | ...) = log_softmax(o_t W_o + b_o)

    Teacher forcing runs that very step in a ``tf.while_loop`` over the target, so training
    and inference compute the same function. Where no step reads the previous step's
    attention (Luong without ``input_feeding``, or no attention), it runs the same equations
    over the whole target at once instead: each decoder level as one sequence (the fused
    kernels of :mod:`keras_seq.layers`), then the attention of every step in one batch
    (tested equal to step-by-step decoding). With ``input_feeding`` the decoder states
    end with ``h~_{t-1}`` (zeros at the start). Dropout (``dropout``) is applied to the
    embeddings, between stacked encoder levels and to ``o_t``.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes (ids 0-3 reserved; >= 4).
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"`` (encoder and decoder).
        units: recurrent units (per direction in the encoder) and attention size.
        num_layers: levels in the encoder and in the decoder.
        attention: ``"bahdanau"``, ``"luong-dot"``, ``"luong-general"``, ``"luong-concat"``
            or None (fixed-vector seq2seq, Sutskever et al. 2014).
        bidirectional_encoder: bidirectional encoder.
        input_feeding: feed ``h~_{t-1}`` into step t (Luong attention only).
        embedding_dim: size of both embeddings.
        dropout: rate in [0, 1).

    Example:
        >>> model = Seq2Seq(20, 20, units=32, attention="luong-general", input_feeding=True)
        >>> tokens, weights = model.translate(np.array([[5, 6, 7, 0]]), max_length=6)
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        cell: str = "lstm",
        units: int = 128,
        num_layers: int = 1,
        attention: str | None = "bahdanau",
        bidirectional_encoder: bool = False,
        input_feeding: bool = False,
        embedding_dim: int = 128,
        dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        reserved = "ids 0-3 are reserved for padding, unknown, start and end"
        at_least = _common.check_int_at_least
        self.src_vocab_size = at_least("src_vocab_size", src_vocab_size, 4, reserved)
        self.tgt_vocab_size = at_least("tgt_vocab_size", tgt_vocab_size, 4, reserved)
        self.cell_type = _common.check_cell(cell)
        self.units = _common.positive_int("units", units)
        self.num_layers = _common.positive_int("num_layers", num_layers)
        self.attention = _common.one_of("attention", attention, ATTENTIONS)
        self.bidirectional_encoder = _common.check_bool(
            "bidirectional_encoder", bidirectional_encoder
        )
        self.input_feeding = _common.check_bool("input_feeding", input_feeding)
        if self.input_feeding and not self.is_luong:
            raise ValueError(
                "Argument `input_feeding=True` requires Luong attention. Expected attention in "
                "{'luong-dot', 'luong-general', 'luong-concat'}. "
                f"Received: attention={attention!r}"
            )
        self.embedding_dim = _common.positive_int("embedding_dim", embedding_dim)
        self.dropout = _common.rate("dropout", dropout)
        self._per_level = _common.states_per_level(self.cell_type)

        units, n_states = self.units, self._per_level * self.num_layers
        policy = self.dtype_policy  # not the global one: see SequenceClassifier
        self.src_embedding = keras.layers.Embedding(
            self.src_vocab_size, self.embedding_dim, mask_zero=True, dtype=policy,
            name="src_embedding",
        )
        encoder = _common.recurrent_layer(
            self.cell_type,
            units,
            num_layers=self.num_layers,
            inter_layer_dropout=self.dropout,
            return_sequences=True,
            return_state=True,
            dtype=policy,
            name="encoder",
        )
        self.encoder = Bidirectional(encoder, dtype=policy, name="bidirectional_encoder") if (
            self.bidirectional_encoder
        ) else encoder
        self.encoder_projection = self.bridges = None
        if self.bidirectional_encoder:
            if self.attention is not None:  # attention reads [B, Ts, units]
                self.encoder_projection = keras.layers.Dense(
                    units, use_bias=False, dtype=policy, name="encoder_projection"
                )
            self.bridges = [
                keras.layers.Dense(units, activation="tanh", dtype=policy, name=f"bridge_{i}")
                for i in range(n_states)
            ]
        self.tgt_embedding = keras.layers.Embedding(
            self.tgt_vocab_size, self.embedding_dim, dtype=policy, name="tgt_embedding"
        )
        self.decoder_cells = [
            _common.recurrent_cell(self.cell_type, units, dtype=policy, name=f"decoder_cell_{k}")
            for k in range(self.num_layers)
        ]
        self.attention_layer = None
        self.attentional = None
        if self.attention == "bahdanau":
            self.attention_layer = BahdanauAttention(units, dtype=policy, name="attention")
        elif self.is_luong:
            score = self.attention.removeprefix("luong-")
            self.attention_layer = LuongAttention(
                score, units=units if score == "concat" else None, dtype=policy, name="attention"
            )
            self.attentional = keras.layers.Dense(
                units, activation="tanh", use_bias=False, dtype=policy, name="attentional"
            )
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=policy, name="dropout")
        self.output_layer = keras.layers.Dense(self.tgt_vocab_size, dtype=policy, name="output")

    @property
    def is_luong(self) -> bool:
        return self.attention is not None and self.attention.startswith("luong")

    @property
    def output_features(self) -> int:
        """Width of ``o_t``, the input of the output layer."""
        return 2 * self.units if self.attention == "bahdanau" else self.units

    def build(self, input_shape: Any = None) -> None:
        units, emb = self.units, self.embedding_dim
        self.src_embedding.build((None, None))
        self.encoder.build((None, None, emb))
        if self.bidirectional_encoder:
            if self.encoder_projection is not None:
                self.encoder_projection.build((None, None, 2 * units))
            for bridge in self.bridges:
                bridge.build((None, 2 * units))
        self.tgt_embedding.build((None, None))
        extra = units if (self.attention == "bahdanau" or self.input_feeding) else 0
        for k, cell in enumerate(self.decoder_cells):
            cell.build((None, emb + extra if k == 0 else units))
        if self.attention_layer is not None:
            self.attention_layer.build((None, units), (None, None, units))
        if self.attentional is not None:
            self.attentional.build((None, 2 * units))
        self.output_layer.build((None, self.output_features))

    # -- encoder ----------------------------------------------------------------------------
    def encode(
        self, src_ids: Any, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor]]:
        """``src_ids [B, Ts] -> (encoder_outputs [B, Ts, D], encoder_mask [B, Ts] bool,
        decoder_initial_states)``; the states list is what :meth:`decode_step` carries.

        The outputs are ``[B, Ts, units]`` in every configuration: a bidirectional
        encoder's are projected to ``units`` for the attention (without attention, where the
        decoder never reads them, the two directions are summed instead).
        """
        self.ensure_built()
        src_ids = tf.cast(src_ids, tf.int32)
        mask = tf.not_equal(src_ids, _common.PAD_ID)
        x = self.dropout_layer(self.src_embedding(src_ids), training=training)
        outputs, *states = self.encoder(x, mask=mask, training=training)
        if self.encoder_projection is not None:
            outputs = self.encoder_projection(outputs)  # (B, Ts, 2U) -> (B, Ts, U)
        elif self.bidirectional_encoder:  # nothing reads them: keep the [B, Ts, U] contract
            outputs = outputs[..., : self.units] + outputs[..., self.units :]
        if self.bidirectional_encoder:
            half = len(states) // 2
            states = [
                bridge(tf.concat([fwd, bwd], axis=-1))
                for bridge, fwd, bwd in zip(self.bridges, states[:half], states[half:], strict=True)
            ]
        if self.input_feeding:
            states.append(tf.zeros_like(states[0]))  # h~_0 = 0
        return outputs, mask, list(states)

    def precompute_keys(self, encoder_outputs: tf.Tensor) -> tf.Tensor | None:
        """The attention keys of the encoder outputs (computed once per source)."""
        if self.attention_layer is None:
            return None
        return self.attention_layer.precompute(encoder_outputs)

    # -- decoder ----------------------------------------------------------------------------
    def _attend(self, query, encoder_outputs, encoder_mask, keys):
        return self.attention_layer(query, encoder_outputs, mask=encoder_mask, keys=keys)

    def _step(self, y, states, encoder_outputs, encoder_mask, keys):
        """The decoder step shared by teacher forcing and inference.

        ``(y [B, E], states) -> (o_t [B, F], new_states, weights [B, Ts])``.
        """
        per, levels = self._per_level, self.num_layers
        cell_states = list(states[: per * levels])
        x = y
        if self.attention == "bahdanau":
            query = cell_states[(levels - 1) * per]  # h_{t-1} of the top level
            context, weights = self._attend(query, encoder_outputs, encoder_mask, keys)
            x = tf.concat([y, context], axis=-1)
        elif self.input_feeding:
            x = tf.concat([y, states[-1]], axis=-1)  # [y; h~_{t-1}]
        new_states = []
        for k, cell in enumerate(self.decoder_cells):
            x, level = cell.step(cell.project_inputs(x), cell_states[k * per : (k + 1) * per])
            new_states.extend(level)
        h = x
        if self.attention == "bahdanau":
            features = tf.concat([h, context], axis=-1)
        elif self.is_luong:
            context, weights = self._attend(h, encoder_outputs, encoder_mask, keys)
            features = self.attentional(tf.concat([context, h], axis=-1))  # h~_t
            if self.input_feeding:
                new_states.append(features)
        else:
            features = h
            weights = tf.zeros(tf.shape(encoder_mask), dtype=h.dtype)
        return features, new_states, weights

    def _log_probs(self, features, training=False):
        logits = self.output_layer(self.dropout_layer(features, training=training))
        # float32 under mixed precision (a float16 log-softmax loses the tail), float64 in a
        # float64 model.
        return tf.nn.log_softmax(tf.cast(logits, self.dtype_policy.variable_dtype), axis=-1)

    def decode_step(
        self,
        token_ids: Any,
        states: list,
        encoder_outputs: tf.Tensor,
        encoder_mask: tf.Tensor,
        keys: tf.Tensor | None = None,
    ) -> tuple[tf.Tensor, list[tf.Tensor], tf.Tensor]:
        """One inference step.

        Args:
            token_ids: ``[B]`` previous tokens (2 at the first step).
            states: decoder states (from :meth:`encode`, then from the previous step).
            encoder_outputs, encoder_mask: from :meth:`encode`.
            keys: optional :meth:`precompute_keys` (recomputed when None).

        Returns:
            ``(log_probs [B, V], new_states, attention_weights [B, Ts])``.
        """
        self.ensure_built()
        if keys is None:
            keys = self.precompute_keys(encoder_outputs)
        y = self.tgt_embedding(tf.cast(token_ids, tf.int32))  # (B, E)
        features, states, weights = self._step(y, states, encoder_outputs, encoder_mask, keys)
        return self._log_probs(features), states, weights

    def teacher_force(
        self, src_ids: Any, tgt_in_ids: Any, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``(src [B, Ts], tgt_in [B, Tt]) -> (log_probs [B, Tt, V], weights [B, Tt, Ts])``."""
        encoder_outputs, encoder_mask, states = self.encode(src_ids, training=training)
        keys = self.precompute_keys(encoder_outputs)
        y = self.tgt_embedding(tf.cast(tgt_in_ids, tf.int32))
        y = self.dropout_layer(y, training=training)
        if not self.input_feeding and self.attention != "bahdanau":
            features, weights = self._teacher_force_parallel(
                y, states, encoder_outputs, encoder_mask, keys, training
            )
            return self._log_probs(features, training=training), weights
        steps = tf.shape(y)[1]
        y_ta = tf.TensorArray(y.dtype, size=steps).unstack(tf.transpose(y, [1, 0, 2]))
        features_ta = tf.TensorArray(y.dtype, size=steps)
        weights_ta = tf.TensorArray(y.dtype, size=steps, infer_shape=False)

        def body(t, states, features_ta, weights_ta):
            features, states, weights = self._step(
                y_ta.read(t), states, encoder_outputs, encoder_mask, keys
            )
            return t + 1, states, features_ta.write(t, features), weights_ta.write(t, weights)

        _, _, features_ta, weights_ta = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), states, features_ta, weights_ta),
            maximum_iterations=steps,
        )
        features = tf.transpose(features_ta.stack(), [1, 0, 2])  # (B, Tt, F)
        weights = tf.transpose(weights_ta.stack(), [1, 0, 2])  # (B, Tt, Ts)
        return self._log_probs(features, training=training), weights

    def _teacher_force_parallel(self, y, states, encoder_outputs, encoder_mask, keys, training):
        """Teacher forcing when step t reads nothing of step t-1 but the cell states: every
        level over the whole target (fused kernel where it applies), then attention for all
        steps at once. The same function as the step loop."""
        per, h = self._per_level, y
        for k, cell in enumerate(self.decoder_cells):
            _, h, _ = run_cell(cell, h, list(states[k * per : (k + 1) * per]), training=training)
        if self.attention_layer is None:
            weights = tf.zeros([tf.shape(h)[0], tf.shape(h)[1], tf.shape(encoder_mask)[1]], h.dtype)
            return h, weights
        context, weights = self._attend(h, encoder_outputs, encoder_mask, keys)
        return self.attentional(tf.concat([context, h], axis=-1)), weights

    def call(self, inputs: Any, training: bool = False) -> tf.Tensor:
        src_ids, tgt_in_ids = inputs
        return self.teacher_force(src_ids, tgt_in_ids, training=training)[0]

    # -- inference ----------------------------------------------------------------------------
    def translate(
        self,
        src_ids: Any,
        max_length: int = 50,
        method: str = "greedy",
        beam_width: int = 4,
        length_penalty: float = 0.0,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Decode a batch of sources inside one ``tf.function`` (a ``tf.while_loop``).

        Each sequence stops at the end token 3 (the token is included; 0 follows it); the
        loop exits when all have ended or after ``max_length`` tokens.

        Args:
            src_ids: ``[B, Ts]`` int token ids, 0-padded.
            max_length: most tokens to produce per sequence (>= 1).
            method: ``"greedy"`` or ``"beam"``.
            beam_width: beams per sequence for ``method="beam"``.
            length_penalty: GNMT ``alpha`` for beam search (0 = none).

        Returns:
            ``(tokens [B, L] int32, attention_weights [B, L, Ts])`` with ``L <= max_length``
            the number of steps run (zeros weights when ``attention=None``).
        """
        _common.positive_int("max_length", max_length)
        _common.one_of("method", method, METHODS)
        beam_width = _common.positive_int("beam_width", beam_width)
        length_penalty = _common.non_negative_float("length_penalty", length_penalty)
        src = tf.convert_to_tensor(src_ids)
        if src.shape.rank != 2:
            raise ValueError(
                "Invalid value for argument `src_ids`. Expected a [batch, steps] tensor of "
                f"token ids. Received: shape={tuple(src.shape)}"
            )
        _common.check_token_ids("src_ids", src, self.src_vocab_size)
        self.ensure_built()
        width = beam_width if method == "beam" else 1
        fn = self._cached(("translate", method, width), lambda: self._translate_fn(method, width))
        tokens, weights, _ = fn(
            tf.cast(src, tf.int32),
            tf.constant(max_length, tf.int32),
            tf.constant(float(length_penalty), tf.float32),
        )
        return tokens, weights

    def _translate_fn(self, method: str, beam_width: int):
        spec = tf.TensorSpec

        @tf.function(
            input_signature=[spec([None, None], tf.int32), spec([], tf.int32), spec([], tf.float32)]
        )
        def translate(src, max_length, alpha):
            encoder_outputs, encoder_mask, states = self.encode(src)
            keys = self.precompute_keys(encoder_outputs)
            batch = tf.shape(src)[0]
            if method == "beam":
                encoder_outputs, encoder_mask, keys = decoding.tile_beams(
                    (encoder_outputs, encoder_mask, keys), beam_width
                )

            def step_fn(tokens, states):
                return self.decode_step(tokens, states, encoder_outputs, encoder_mask, keys)

            if method == "beam":
                return decoding.beam_search(step_fn, states, batch, beam_width, max_length, alpha)
            return decoding.greedy_search(step_fn, states, batch, max_length)

        return translate

    # -- Keras plumbing -----------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        src_shape, tgt_shape = input_shape
        return (tgt_shape[0], tgt_shape[1], self.tgt_vocab_size)

    def default_loss(self) -> keras.losses.Loss:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "src_vocab_size": self.src_vocab_size,
            "tgt_vocab_size": self.tgt_vocab_size,
            "cell": self.cell_type,
            "units": self.units,
            "num_layers": self.num_layers,
            "attention": self.attention,
            "bidirectional_encoder": self.bidirectional_encoder,
            "input_feeding": self.input_feeding,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
        }

"""Additive (Bahdanau) and multiplicative (Luong) attention over an encoder's outputs.

Both layers share one calling convention::

    context, weights = attention(query, values, mask=values_mask)

    query   [B, Dq] (one decoder step) or [B, Tq, Dq] (a whole target sequence)
    values  [B, Tv, Dv] encoder outputs
    mask    [B, Tv] bool, True where a value may be attended to
    context [B, Dv] or [B, Tq, Dv]   = sum_j weights[..., j] * values[:, j]
    weights [B, Tv] or [B, Tq, Tv]   = softmax_j(score(query, key_j)) over unmasked j

Every score is a function of the query and a *key* that depends on the values only, so a
decoder that attends once per step precomputes the keys once::

    keys = attention.precompute(values)                   # outside the decode loop
    context, weights = attention(q_t, values, mask=m, keys=keys)   # every step

Masking: masked positions get exactly 0.0 weight and each row sums to 1. A row whose mask is
all False has nothing to attend to:

- eagerly, the call raises ``ValueError`` naming the batch rows;
- in a graph (``tf.function``, ``model.fit`` / ``predict``, exported artifacts) no assertion
  is traced (graphs stay exportable); that row's weights are all 0.0 and its context is the
  zero vector, never NaN.

``mask`` may also be a Keras-style list ``[query_mask, values_mask]`` (as for
``keras.layers.Attention``); then context rows at masked query positions are zero. Without
``mask``, the Keras masks that ``query`` and ``values`` carry (from an
``Embedding(mask_zero=True)`` upstream) are used the same way, as ``keras.layers.Attention``
uses them; an all-padding row then gets zero weights eagerly too (``keras.layers.Attention``
gives it uniform weights). The layers' outputs never carry a Keras mask (``compute_mask``
returns None).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from keras_seq import _validate

_LUONG_SCORES = ("dot", "general", "concat")


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(np.shape(x))


def _project(query: Any, kernel: Any) -> Any:
    """``[B, Tq, D] @ [D, U]`` as one 2-D matmul. ``ops.matmul`` makes it a tensordot, whose
    gradient builds a transpose permutation at run time: XLA refuses that inside a decoder's
    while loop. (An einsum compiles too, but trained the dates model 8-14% slower.)"""
    out = tf.matmul(tf.reshape(query, [-1, query.shape[-1]]), kernel)
    out = tf.reshape(out, tf.concat([tf.shape(query)[:-1], tf.shape(kernel)[-1:]], 0))
    out.set_shape(query.shape[:-1] + kernel.shape[-1:])
    return out


def _agree(*dims: Any) -> bool:
    """Whether the known (static) sizes among `dims` are equal; None is unknown."""
    return len({d for d in dims if d is not None}) <= 1


class _Attention(keras.layers.Layer):
    """Shared call logic: subclasses define ``build``, ``precompute`` and ``score``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True

    # -- subclass hooks -----------------------------------------------------------------
    def _w(self, weight: Any) -> Any:
        """A weight in the compute dtype (Keras casts only inside ``__call__``; decoders call
        `precompute` and `score` directly)."""
        return ops.cast(weight, self.compute_dtype)

    def precompute(self, values: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def score(self, query: Any, keys: Any) -> Any:  # pragma: no cover - overridden
        """Unnormalised scores [B, Tq, Tv] from a 3-D query [B, Tq, Dq] and keys [B, Tv, K]."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------
    def _check_build_shapes(self, query_shape: Any, values_shape: Any) -> tuple[int, int]:
        name = type(self).__name__
        query_shape = tuple(query_shape)
        values_shape = tuple(values_shape)
        if len(query_shape) not in (2, 3):
            raise ValueError(
                f"Invalid `query` rank for {name}. Expected a 2-D tensor [batch, query_dim] "
                "or a 3-D tensor [batch, query_steps, query_dim]. "
                f"Received: query.shape={query_shape}"
            )
        if len(values_shape) != 3:
            raise ValueError(
                f"Invalid `values` rank for {name}. Expected a 3-D tensor "
                f"[batch, value_steps, value_dim]. Received: values.shape={values_shape}"
            )
        if query_shape[-1] is None or values_shape[-1] is None:
            raise ValueError(
                f"{name} needs the last dimension of `query` and `values` to be known. "
                f"Received: query.shape={query_shape}, values.shape={values_shape}"
            )
        self._query_dim = int(query_shape[-1])
        self._values_dim = int(values_shape[-1])
        return self._query_dim, self._values_dim

    def _require_built(self, what: str) -> None:
        if not self.built:
            raise ValueError(
                f"{type(self).__name__} must be built before `{what}()`. Call the layer once "
                "or `build(query_shape, values_shape)` first. Received: an unbuilt layer "
                f"'{self.name}'"
            )

    def _check_values(self, values: Any) -> None:
        shape = _shape(values)
        if len(shape) != 3:
            raise ValueError(
                f"Invalid `values` rank for {type(self).__name__}. Expected a 3-D tensor "
                f"[batch, value_steps, value_dim]. Received: values.shape={shape}"
            )
        if shape[-1] is not None and shape[-1] != self._values_dim:
            raise ValueError(
                f"{type(self).__name__} was built for values with last dimension "
                f"{self._values_dim}. Received: values.shape={shape}"
            )

    def _split_mask(self, mask: Any) -> tuple[Any, Any]:
        if isinstance(mask, (list, tuple)):
            if len(mask) != 2:
                raise ValueError(
                    f"{type(self).__name__} accepts `mask` as a [batch, value_steps] tensor or "
                    "a list [query_mask, values_mask]. "
                    f"Received: a list of length {len(mask)}"
                )
            return mask[0], mask[1]
        return None, mask

    def _values_mask(self, mask: Any, values: Any, refuse_empty: bool = True) -> Any:
        """Validate the [B, Tv] mask as bool; with `refuse_empty`, raise eagerly on an
        all-False row."""
        mask = ops.convert_to_tensor(mask)
        if mask.dtype != "bool":
            mask = ops.cast(mask, "bool")
        shape, v_shape = _shape(mask), _shape(values)
        if len(shape) != 2 or not (_agree(shape[0], v_shape[0]) and _agree(shape[1], v_shape[1])):
            raise ValueError(
                f"Invalid `mask` for {type(self).__name__}. Expected a bool tensor "
                f"[batch, value_steps] matching values.shape={v_shape}. "
                f"Received: mask.shape={shape}"
            )
        if refuse_empty and tf.executing_eagerly() and hasattr(mask, "numpy"):
            empty = np.flatnonzero(~np.any(mask.numpy(), axis=-1))
            if empty.size:
                raise ValueError(
                    f"Invalid `mask` for {type(self).__name__}: every row needs at least one "
                    "True position (something to attend to). Received: all-False rows at "
                    f"batch indices {empty.tolist()}"
                )
        return mask

    def call(
        self,
        query: Any,
        values: Any,
        mask: Any = None,
        keys: Any = None,
        query_mask: Any = None,
        values_mask: Any = None,
    ) -> tuple[Any, Any]:
        """Attend from ``query`` over ``values``.

        Args:
            query: ``[B, Dq]`` (one step) or ``[B, Tq, Dq]``.
            values: ``[B, Tv, Dv]``.
            mask: ``[B, Tv]`` bool (True = attend), or ``[query_mask, values_mask]``.
            keys: optional ``precompute(values)``, to skip recomputing it every step. Without
                ``keys`` masked values are read as zeros; with them, ``values`` and ``keys``
                are used as given (a decoder's encoder outputs are finite at padding).
            query_mask, values_mask: the Keras masks of ``query`` and ``values``, which Keras
                passes in; used when ``mask`` is None.

        Returns:
            ``(context, weights)``: ``[B, (Tq,) Dv]`` and ``[B, (Tq,) Tv]``.
        """
        # A padded batch may hold an empty row: Keras's masks get a graph's zero weights.
        explicit = mask is not None
        if explicit:
            query_mask, values_mask = self._split_mask(mask)
        self._check_values(values)
        if values_mask is not None:
            values_mask = self._values_mask(values_mask, values, refuse_empty=explicit)
            if keys is None:
                # Masked values reach neither the outputs nor, even as NaN, the gradients.
                values = ops.where(ops.expand_dims(values_mask, -1), values, 0.0)
        q_rank = len(_shape(query))
        if q_rank not in (2, 3):
            raise ValueError(
                f"Invalid `query` rank for {type(self).__name__}. Expected a 2-D tensor "
                "[batch, query_dim] or a 3-D tensor [batch, query_steps, query_dim]. "
                f"Received: query.shape={_shape(query)}"
            )
        q_shape, v_shape = _shape(query), _shape(values)
        if not _agree(q_shape[0], v_shape[0]) or not _agree(q_shape[-1], self._query_dim):
            raise ValueError(
                f"Invalid `query` for {type(self).__name__}. Expected the batch size of "
                f"`values` ({v_shape[0]}) and last dimension {self._query_dim} (the size the "
                f"weights were built for). Received: query.shape={q_shape}, "
                f"values.shape={v_shape}"
            )
        single_step = q_rank == 2
        if single_step:
            query = ops.expand_dims(query, 1)  # (B, 1, Dq)
        if keys is None:
            keys = self.precompute(values)
        else:
            self._check_keys(keys, values)
        scores = self.score(query, keys)  # (B, Tq, Tv)
        if values_mask is not None:
            valid = ops.expand_dims(values_mask, 1)  # (B, 1, Tv)
            floor = -65504.0 if scores.dtype == "float16" else -1.0e9
            scores = ops.where(valid, scores, ops.cast(floor, scores.dtype))
            weights = ops.softmax(scores, axis=-1)
            weights = ops.where(valid, weights, ops.zeros_like(weights))  # exact zeros
        else:
            weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(weights, ops.cast(values, weights.dtype))  # (B, Tq, Dv)
        if query_mask is not None:
            query_mask = ops.cast(ops.convert_to_tensor(query_mask), "bool")
            if len(_shape(query_mask)) == 1:
                query_mask = ops.expand_dims(query_mask, 1)
            context = ops.where(ops.expand_dims(query_mask, -1), context, 0.0)
        if single_step:
            return ops.squeeze(context, 1), ops.squeeze(weights, 1)
        return context, weights

    def _check_keys(self, keys: Any, values: Any) -> None:
        shape, want, (batch, steps, _) = _shape(keys), self._keys_dim(), _shape(values)
        if len(shape) != 3 or not (
            _agree(shape[0], batch) and _agree(shape[1], steps) and _agree(shape[2], want)
        ):
            raise ValueError(
                f"Invalid `keys` for {type(self).__name__}. Expected `precompute(values)`, "
                f"a tensor [{batch}, {steps}, {want}]. Received: keys.shape={shape}"
            )

    def _keys_dim(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def compute_output_spec(self, *args: Any, **kwargs: Any):
        # Symbolic calls trace `call`, with its checks, as before `compute_output_shape` was
        # defined (Keras's Layer would otherwise use that instead).
        return keras.Operation.compute_output_spec(self, *args, **kwargs)

    def compute_output_shape(self, query_shape: Any, values_shape: Any, *args: Any, **kwargs: Any):
        """``(context, weights)`` shapes: ``[B, (Tq,) Dv]`` and ``[B, (Tq,) Tv]``."""
        query_shape, values_shape = tuple(query_shape), tuple(values_shape)
        return query_shape[:-1] + values_shape[-1:], query_shape[:-1] + values_shape[1:2]

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        """Attention outputs carry no Keras mask."""
        return None


@keras.saving.register_keras_serializable(package="keras_seq")
class BahdanauAttention(_Attention):
    """Additive attention (Bahdanau et al., 2015).

    ``keys = values @ W1`` ([B, Tv, U]) and, for query q ([B, Tq, Dq])::

        score[b, i, j] = v . tanh(keys[b, j] + q[b, i] @ W2)                 normalize=False
        score[b, i, j] = (g v / ||v||) . tanh(keys[b, j] + q[b, i] @ W2 + b)   normalize=True

    Weights: ``values_kernel`` W1 [Dv, U], ``query_kernel`` W2 [Dq, U], ``v`` [U]; with
    ``normalize=True`` also ``g`` (scalar, initialised to sqrt(1/U)) and ``b`` [U] (zeros):
    the weight-normalised form of tfa.seq2seq.BahdanauAttention / TF NMT, same layout.

    Args:
        units: U, the size of the hidden layer of the score.
        normalize: use the weight-normalised score.

    Example:
        >>> att = BahdanauAttention(8)
        >>> ctx, w = att(np.ones((2, 5), "float32"), np.ones((2, 7, 6), "float32"))
        >>> tuple(ctx.shape), tuple(w.shape)
        ((2, 6), (2, 7))
    """

    def __init__(self, units: int, normalize: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _validate.positive_int("units", units)
        _validate.boolean("normalize", normalize)
        self.units = int(units)
        self.normalize = bool(normalize)

    def build(self, query_shape: Any, values_shape: Any) -> None:
        dq, dv = self._check_build_shapes(query_shape, values_shape)
        self.values_kernel = self.add_weight(
            name="values_kernel", shape=(dv, self.units), initializer="glorot_uniform"
        )
        self.query_kernel = self.add_weight(
            name="query_kernel", shape=(dq, self.units), initializer="glorot_uniform"
        )
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")
        if self.normalize:
            self.g = self.add_weight(
                name="g",
                shape=(),
                initializer=keras.initializers.Constant(float(np.sqrt(1.0 / self.units))),
            )
            self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")

    def _keys_dim(self) -> int:
        return self.units

    def precompute(self, values: Any) -> Any:
        """``keys = values @ W1``: [B, Tv, Dv] -> [B, Tv, U]."""
        self._require_built("precompute")
        return ops.matmul(values, self._w(self.values_kernel))

    def score(self, query: Any, keys: Any) -> Any:
        """[B, Tq, Dq], [B, Tv, U] -> [B, Tq, Tv]."""
        processed = _project(query, self._w(self.query_kernel))  # (B, Tq, U)
        hidden = ops.expand_dims(keys, 1) + ops.expand_dims(processed, 2)  # (B, Tq, Tv, U)
        v = self._w(self.v)
        if self.normalize:
            hidden = hidden + self._w(self.b)
            v = self._w(self.g) * v / ops.sqrt(ops.sum(ops.square(v)))
        return ops.sum(ops.tanh(hidden) * v, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "units": self.units, "normalize": self.normalize}


@keras.saving.register_keras_serializable(package="keras_seq")
class LuongAttention(_Attention):
    """Multiplicative attention (Luong et al., 2015).

    For query q ([B, Tq, Dq]) and values k ([B, Tv, Dv])::

        dot:     score[b, i, j] = q[b, i] . k[b, j]                (Dq == Dv; keys = values)
        general: score[b, i, j] = q[b, i] . (k[b, j] @ W)          (keys = values @ W)
        concat:  score[b, i, j] = v . tanh([q[b, i]; k[b, j]] @ Wc)
                               = v . tanh(q[b, i] @ Wc[:Dq] + keys[b, j])  (keys = values @ Wc[Dq:])

    and with ``scale=True`` every score is multiplied by a learned scalar ``scale`` (init 1),
    as ``keras.layers.Attention(use_scale=True)``. ``score="dot"`` equals
    ``keras.layers.Attention()`` on the same inputs and mask.

    Weights: ``kernel`` W [Dv, Dq] (general; the layout of tfa's LuongAttention memory layer),
    ``kernel`` Wc [Dq + Dv, units] (concat, rows ordered query then values) and ``v`` [units];
    ``scale`` [] if ``scale=True``.

    Args:
        score: one of ``"dot"``, ``"general"``, ``"concat"``.
        units: hidden size of the concat score (required for, and only used by, concat).
        scale: learn a scalar multiplier on the score.

    Example:
        >>> att = LuongAttention("general")
        >>> ctx, w = att(np.ones((2, 3, 5), "float32"), np.ones((2, 7, 6), "float32"))
        >>> tuple(ctx.shape), tuple(w.shape)
        ((2, 3, 6), (2, 3, 7))
    """

    def __init__(
        self, score: str = "dot", units: int | None = None, scale: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if score not in _LUONG_SCORES:
            raise ValueError(
                "Invalid value for argument `score`. Expected one of "
                f"{{'dot', 'general', 'concat'}}. Received: score={score!r}"
            )
        if score == "concat":
            if units is None:
                raise ValueError(
                    "Argument `units` is required when score='concat'. Expected a positive "
                    "integer. Received: units=None"
                )
            _validate.positive_int("units", units)
        elif units is not None:
            raise ValueError(
                "Argument `units` is only used when score='concat'. Expected units=None. "
                f"Received: units={units!r} with score={score!r}"
            )
        _validate.boolean("scale", scale)
        self.score_mode = score
        self.units = None if units is None else int(units)
        self.scale = bool(scale)

    def build(self, query_shape: Any, values_shape: Any) -> None:
        dq, dv = self._check_build_shapes(query_shape, values_shape)
        if self.score_mode == "dot" and dq != dv:
            raise ValueError(
                "LuongAttention(score='dot') needs `query` and `values` with the same last "
                "dimension; use score='general' otherwise. "
                f"Received: query.shape[-1]={dq}, values.shape[-1]={dv}"
            )
        if self.score_mode == "general":
            self.kernel = self.add_weight(
                name="kernel", shape=(dv, dq), initializer="glorot_uniform"
            )
        elif self.score_mode == "concat":
            self.kernel = self.add_weight(
                name="kernel", shape=(dq + dv, self.units), initializer="glorot_uniform"
            )
            self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")
        if self.scale:
            self.scale_weight = self.add_weight(name="scale", shape=(), initializer="ones")

    def _keys_dim(self) -> int:
        return {"dot": self._values_dim, "general": self._query_dim}.get(
            self.score_mode, self.units
        )

    def precompute(self, values: Any) -> Any:
        """dot: values; general: values @ W [B, Tv, Dq]; concat: values @ Wc[Dq:] [B, Tv, U]."""
        self._require_built("precompute")
        if self.score_mode == "dot":
            return values
        if self.score_mode == "general":
            return ops.matmul(values, self._w(self.kernel))
        return ops.matmul(values, self._w(self.kernel)[self._query_dim :])

    def score(self, query: Any, keys: Any) -> Any:
        """[B, Tq, Dq], [B, Tv, K] -> [B, Tq, Tv]."""
        if self.score_mode == "concat":
            processed = _project(query, self._w(self.kernel)[: self._query_dim])  # (B, Tq, U)
            hidden = ops.expand_dims(keys, 1) + ops.expand_dims(processed, 2)  # (B, Tq, Tv, U)
            scores = ops.sum(ops.tanh(hidden) * self._w(self.v), axis=-1)
        else:
            scores = ops.matmul(query, ops.swapaxes(keys, -2, -1))  # (B, Tq, Tv)
        if self.scale:
            scores = scores * self._w(self.scale_weight)
        return scores

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "score": self.score_mode,
            "units": self.units,
            "scale": self.scale,
        }

"""Greedy and beam search over any decoder step function.

Both searches drive a step function::

    step_fn(tokens [N], states) -> (log_probs [N, V], new_states, weights [N, S])

where ``states`` is any nest of tensors with leading dimension ``N`` and ``weights`` are
per-step values recorded along the chosen hypothesis (attention weights over ``S`` source
steps; return a ``[N, 0]`` tensor when there are none). Both run as one ``tf.while_loop``
that stops when every sequence has produced ``end_id`` (or after ``max_length`` steps), and
both return::

    tokens  [B, L] int32     L = number of steps run (<= max_length); 0 after end_id
    weights [B, L, S]        the step weights of the returned hypothesis; 0 after end_id
    scores  [B] float32      greedy: sum of log-probs; beam: sum of log-probs / penalty

Beam search keeps the batch and beam dimensions flattened, batch-major (row ``b * K + k``):
memory that ``step_fn`` reads (encoder outputs, masks) must be tiled the same way with
:func:`tile_beams`; ``beam_search`` tiles and reorders ``states`` itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

from keras_seq import _validate

__all__ = ["beam_search", "greedy_search", "length_penalty", "tile_beams"]

StepFn = Callable[[tf.Tensor, Any], tuple[tf.Tensor, Any, tf.Tensor]]
PAD_ID, START_ID, END_ID = 0, 2, 3
BANNED_IDS = (PAD_ID, START_ID)  # never produced: padding only follows the end token
# The score of an impossible token or hypothesis: below every score a model can give. A
# finite floor (such as -1e9) is beaten by a diverged model's scores, which then tie with or
# fall below it: a banned token won, and a hypothesis that had ended stayed alive.
_IMPOSSIBLE = float("-inf")


def tile_beams(structure: Any, beam_width: int) -> Any:
    """Repeat every tensor of a nest ``beam_width`` times along axis 0 (``[B, ...] -> [B*K, ...]``,
    batch-major: rows ``b*K .. b*K + K-1`` are copies of row ``b``). ``None`` stays ``None``."""
    return tf.nest.map_structure(
        lambda x: None if x is None else tf.repeat(x, beam_width, axis=0), structure
    )


def length_penalty(length: tf.Tensor, alpha: tf.Tensor) -> tf.Tensor:
    """GNMT length penalty ``((5 + length) / 6) ** alpha`` (Wu et al. 2016); 1 when alpha=0."""
    length = tf.cast(length, tf.float32)
    return tf.pow((5.0 + length) / 6.0, tf.cast(alpha, tf.float32))


def _ban(log_probs: tf.Tensor, banned_ids: tuple[int, ...]) -> tf.Tensor:
    """Give ``banned_ids`` the score of an impossible token."""
    log_probs = tf.cast(log_probs, tf.float32)
    if not banned_ids:
        return log_probs
    ids = tf.range(tf.shape(log_probs)[-1])[None, :]
    banned = tf.reduce_any(tf.equal(ids[..., None], tf.constant(banned_ids)), axis=-1)
    return tf.where(banned, _IMPOSSIBLE, log_probs)


def _max_length(value: Any) -> tf.Tensor:
    """`max_length` as an int32 tensor; a Python or NumPy number must be a positive integer
    (a tensor, as inside a traced function, is taken as it is)."""
    if not tf.is_tensor(value):
        _validate.positive_int("max_length", value)
    return tf.convert_to_tensor(value, tf.int32)


def greedy_search(
    step_fn: StepFn,
    initial_states: Any,
    batch_size: Any,
    max_length: Any,
    *,
    start_id: int = START_ID,
    end_id: int = END_ID,
    banned_ids: tuple[int, ...] = BANNED_IDS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Pick ``argmax`` at every step (never a ``banned_ids`` token), feeding it back; see the
    module docstring."""
    max_length = _max_length(max_length)
    tokens = tf.fill(tf.reshape(batch_size, [1]), tf.constant(start_id, tf.int32))
    done = tf.zeros_like(tokens, dtype=tf.bool)
    scores = tf.zeros_like(tokens, dtype=tf.float32)
    tokens_ta = tf.TensorArray(tf.int32, size=0, dynamic_size=True)
    weights_ta = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)

    def body(t, tokens, states, done, scores, tokens_ta, weights_ta):
        log_probs, states, weights = step_fn(tokens, states)
        log_probs = _ban(log_probs, banned_ids)
        best = tf.argmax(log_probs, axis=-1, output_type=tf.int32)  # (B,)
        best_lp = tf.gather(log_probs, best, batch_dims=1)
        best = tf.where(done, 0, best)
        scores = scores + tf.where(done, 0.0, best_lp)
        weights = tf.where(done[:, None], 0.0, tf.cast(weights, tf.float32))
        tokens_ta = tokens_ta.write(t, best)
        weights_ta = weights_ta.write(t, weights)
        done = done | tf.equal(best, end_id)
        return t + 1, best, states, done, scores, tokens_ta, weights_ta

    loop = tf.while_loop(
        lambda t, _tok, _st, done, *_: (t < max_length) & ~tf.reduce_all(done),
        body,
        (tf.constant(0), tokens, initial_states, done, scores, tokens_ta, weights_ta),
    )
    _, _, _, _, scores, tokens_ta, weights_ta = loop
    tokens = tf.transpose(tokens_ta.stack(), [1, 0])  # (B, L)
    weights = tf.transpose(weights_ta.stack(), [1, 0, 2])  # (B, L, S)
    return tokens, weights, scores


def beam_search(
    step_fn: StepFn,
    initial_states: Any,
    batch_size: Any,
    beam_width: int,
    max_length: Any,
    length_penalty_alpha: Any = 0.0,
    *,
    start_id: int = START_ID,
    end_id: int = END_ID,
    banned_ids: tuple[int, ...] = BANNED_IDS,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Beam search with accumulated log-probs and GNMT length penalty.

    ``initial_states`` has batch ``B``; it is tiled to ``B*K`` here. At step ``t`` each of
    the ``K`` alive hypotheses of a batch entry is extended by every token; the ``2K`` best
    extensions by accumulated log-prob are ranked. Those among the first ``K`` that end with
    ``end_id`` become finished hypotheses scored ``log_prob / ((5 + len) / 6) ** alpha``
    (``len`` counts the end token; the best finished one per entry is kept); the ``K`` best
    that do not end stay alive. An entry is done when its best extension ends (as OpenNMT)
    or when its best finished score beats every alive one's best reachable score
    ``alive_log_prob / penalty(max_length)``. With ``beam_width=1`` this is exactly greedy
    search. An entry with no finished hypothesis after ``max_length`` steps returns its
    best alive one. Tokens in ``banned_ids`` (padding and start by default) are never chosen.
    """
    K = _validate.positive_int("beam_width", beam_width)
    B = tf.convert_to_tensor(batch_size, tf.int32)
    max_length = _max_length(max_length)
    alpha = tf.convert_to_tensor(length_penalty_alpha, tf.float32)
    offsets = tf.range(B)[:, None] * K  # (B, 1): first row of each entry

    tokens = tf.fill(tf.reshape(B * K, [1]), tf.constant(start_id, tf.int32))
    alive_lp = tf.tile(tf.constant([[0.0] + [_IMPOSSIBLE] * (K - 1)]), tf.stack([B, 1]))
    states = tile_beams(initial_states, K)
    done = tf.zeros(tf.reshape(B, [1]), tf.bool)
    best_score = tf.fill(tf.reshape(B, [1]), _IMPOSSIBLE)
    best_step = tf.fill(tf.reshape(B, [1]), -1)  # step at which the best finished one ended
    best_parent = tf.zeros(tf.reshape(B, [1]), tf.int32)  # its beam at that step
    tas = (
        tf.TensorArray(tf.int32, size=0, dynamic_size=True),  # alive tokens after step t
        tf.TensorArray(tf.int32, size=0, dynamic_size=True),  # their parent beams
        tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False),  # weights
    )
    rank = tf.range(2 * K)[None, :]  # (1, 2K)

    def body(t, tokens, alive_lp, states, done, best_score, best_step, best_parent, tas):
        log_probs, states, weights = step_fn(tokens, states)
        log_probs = _ban(log_probs, banned_ids)
        vocab = tf.shape(log_probs)[-1]
        cand = alive_lp[:, :, None] + tf.reshape(log_probs, tf.stack([B, K, vocab]))
        top_lp, top_idx = tf.math.top_k(tf.reshape(cand, tf.stack([B, K * vocab])), k=2 * K)
        top_beam, top_tok = top_idx // vocab, top_idx % vocab  # (B, 2K)
        ends = tf.equal(top_tok, end_id)

        # Finished: extensions ending with end_id among the first K.
        penalty = length_penalty(t + 1, alpha)
        fin = tf.where(ends & (rank < K), top_lp / penalty, _IMPOSSIBLE)
        pick = tf.argmax(fin, axis=-1, output_type=tf.int32)  # (B,)
        new_best = tf.gather(fin, pick, batch_dims=1)
        better = (new_best > best_score) & ~done
        best_score = tf.where(better, new_best, best_score)
        best_step = tf.where(better, t, best_step)
        best_parent = tf.where(better, tf.gather(top_beam, pick, batch_dims=1), best_parent)

        # Alive: the K best extensions that do not end. At most K of the 2K end (one end token
        # per beam), and top_k sorted them best first, so these are the first K positions
        # that do not end, in order (no sentinel score, which a diverged model's would tie).
        pos = tf.argsort(tf.cast(ends, tf.int32), axis=-1, stable=True)[:, :K]  # (B, K)
        alive_lp = tf.gather(top_lp, pos, batch_dims=1)
        parents = tf.gather(top_beam, pos, batch_dims=1)  # (B, K)
        new_tokens = tf.gather(top_tok, pos, batch_dims=1)
        flat_parents = tf.reshape(parents + offsets, [-1])  # (B*K,)
        states = tf.nest.map_structure(lambda s: tf.gather(s, flat_parents), states)

        bound = alive_lp[:, 0] / length_penalty(max_length, alpha)
        done = done | ends[:, 0] | ((best_step >= 0) & (best_score >= bound))
        tokens_ta, parents_ta, weights_ta = tas
        tas = (
            tokens_ta.write(t, tf.reshape(new_tokens, [-1])),
            parents_ta.write(t, tf.reshape(parents, [-1])),
            weights_ta.write(t, tf.cast(weights, tf.float32)),
        )
        next_tokens = tf.reshape(new_tokens, [-1])
        return t + 1, next_tokens, alive_lp, states, done, best_score, best_step, best_parent, tas

    loop = tf.while_loop(
        lambda t, _tok, _lp, _st, done, *_: (t < max_length) & ~tf.reduce_all(done),
        body,
        (tf.constant(0), tokens, alive_lp, states, done, best_score, best_step, best_parent, tas),
    )
    steps, _, alive_lp, _, _, best_score, best_step, best_parent, tas = loop
    tok_hist, par_hist, w_hist = (ta.stack() for ta in tas)  # (L, B*K), (L, B*K), (L, B*K, S)

    # Entries that never finished return their best alive hypothesis (beam 0) at the last step.
    unfinished = best_step < 0
    last = steps - 1
    end_step = tf.where(unfinished, last, best_step)
    end_token = tf.where(unfinished, tf.gather(tok_hist[last], offsets[:, 0]), end_id)
    end_parent = tf.where(unfinished, tf.gather(par_hist[last], offsets[:, 0]), best_parent)
    scores = tf.where(unfinished, alive_lp[:, 0] / length_penalty(steps, alpha), best_score)
    tokens, weights = _backtrack(
        tok_hist, par_hist, w_hist, offsets[:, 0], end_step, end_token, end_parent
    )
    return tokens, weights, scores


def _backtrack(tok_hist, par_hist, w_hist, offsets, end_step, end_token, end_parent):
    """Follow parent pointers from each entry's end back to step 0.

    At the end step the token and parent are given; before it, ``j`` is the alive beam on
    the path after step ``s``: ``token = tok_hist[s, j]``, ``parent = par_hist[s, j]``. The
    weights of step ``s`` were computed from the parent beam: ``w_hist[s, parent]``.
    """
    steps = tf.shape(tok_hist)[0]
    out_tok = tf.TensorArray(tf.int32, size=steps)
    out_w = tf.TensorArray(tf.float32, size=steps, infer_shape=False)

    def body(s, j, out_tok, out_w):
        active = s <= end_step
        at_end = tf.equal(s, end_step)
        token = tf.where(at_end, end_token, tf.gather(tok_hist[s], offsets + j))
        parent = tf.where(at_end, end_parent, tf.gather(par_hist[s], offsets + j))
        weights = tf.gather(w_hist[s], offsets + parent)  # (B, S)
        out_tok = out_tok.write(s, tf.where(active, token, 0))
        out_w = out_w.write(s, tf.where(active[:, None], weights, 0.0))
        return s - 1, tf.where(active, parent, j), out_tok, out_w

    _, _, out_tok, out_w = tf.while_loop(
        lambda s, *_: s >= 0,
        body,
        (steps - 1, tf.zeros_like(offsets), out_tok, out_w),
    )
    return tf.transpose(out_tok.stack(), [1, 0]), tf.transpose(out_w.stack(), [1, 0, 2])

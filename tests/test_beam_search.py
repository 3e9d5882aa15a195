"""Greedy and beam search on hand-built decoders whose step probabilities are fixed."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq.models import Seq2Seq
from keras_seq.models.decoding import beam_search, greedy_search, length_penalty, tile_beams

END, A, B_ = 3, 4, 5
V = 6  # ids 0..5: pad, oov, start, end, A, B


def table_step(tables: np.ndarray, forced_end_at: int | None = None, scale: float = 1.0):
    """A Markov decoder: ``P(next | previous token)`` from ``tables[row, prev] [V]`` (its
    log-probabilities times ``scale``: a diverged model's are ``scale`` times too far apart).

    States: ``(row [N] int32, t [N] int32)`` (which table, which step). The step weights are
    the one-hot previous token, so the weights returned along a hypothesis reveal its path.
    From step ``forced_end_at`` on, only the end token is possible.
    """
    log_tables = tf.constant(np.log(tables + 1e-12) * scale, tf.float32)  # (R, V, V)

    def step_fn(tokens, states):
        row, t = states
        log_probs = tf.gather_nd(log_tables, tf.stack([row, tokens], axis=-1))  # (N, V)
        if forced_end_at is not None:
            only_end = tf.one_hot(END, V, on_value=0.0, off_value=-1e4)[None, :]
            log_probs = tf.where((t >= forced_end_at)[:, None], only_end, log_probs)
        weights = tf.one_hot(tokens, V)
        return log_probs, (row, t + 1), weights

    return step_fn


def make_tables(rows: list[dict[int, list[float]]]) -> np.ndarray:
    """``rows[r][prev] = [P(end), P(A), P(B)]``; other transitions get a uniform filler."""
    tables = np.full((len(rows), V, V), 0.0)
    tables[:, :, END] = 1.0  # default: end
    for r, row in enumerate(rows):
        for prev, (p_end, p_a, p_b) in row.items():
            tables[r, prev] = 0.0
            tables[r, prev, [END, A, B_]] = [p_end, p_a, p_b]
    return tables


# Greedy takes A (0.5), then A again (0.35 > end 0.3) ... ; the best sequence is "B end" (0.36).
TRAP = {2: [0.1, 0.5, 0.4], A: [0.3, 0.35, 0.35], B_: [0.9, 0.05, 0.05]}
# A second row where greedy is right: "A B end" = 0.6 * 0.7 * 0.9 (beats "B end" = 0.315).
EASY = {2: [0.05, 0.6, 0.35], A: [0.1, 0.2, 0.7], B_: [0.9, 0.05, 0.05]}


def initial(batch: int):
    return (tf.range(batch, dtype=tf.int32), tf.zeros([batch], tf.int32))


def test_beam_finds_the_best_sequence_that_greedy_misses():
    step = table_step(make_tables([TRAP, EASY]))
    g_tokens, _, g_scores = greedy_search(step, initial(2), 2, max_length=6)
    assert g_tokens.numpy()[0].tolist() == [A] * 6  # greedy never finds "B end"
    tokens, weights, scores = beam_search(step, initial(2), 2, beam_width=2, max_length=6)
    tokens = tokens.numpy()
    assert tokens[0, :2].tolist() == [B_, END] and not tokens[0, 2:].any()
    assert tokens[1, :3].tolist() == [A, B_, END] and not tokens[1, 3:].any()
    assert g_tokens.numpy()[1, :3].tolist() == [A, B_, END]
    np.testing.assert_allclose(scores.numpy(), np.log([0.4 * 0.9, 0.6 * 0.7 * 0.9]), rtol=1e-5)
    assert scores.numpy()[0] > g_scores.numpy()[0]
    # Weights follow the returned path: one-hot of the token fed at each step, 0 after the end.
    w = weights.numpy()
    assert w.shape[:2] == tokens.shape
    np.testing.assert_array_equal(w[0, 0], np.eye(V)[2])
    np.testing.assert_array_equal(w[0, 1], np.eye(V)[B_])
    np.testing.assert_array_equal(w[0, 2:], 0.0)
    np.testing.assert_array_equal(w[1, :3], np.eye(V)[[2, A, B_]])


def test_beam_width_one_is_greedy_on_random_decoders():
    rng = np.random.default_rng(0)
    tables = rng.dirichlet(np.full(V, 0.5), size=(16, V))
    step = table_step(tables)
    g = greedy_search(step, initial(16), 16, max_length=7)
    b = beam_search(step, initial(16), 16, beam_width=1, max_length=7, length_penalty_alpha=0.7)
    np.testing.assert_array_equal(b[0].numpy(), g[0].numpy())
    np.testing.assert_array_equal(b[1].numpy(), g[1].numpy())
    assert (g[0].numpy() == END).any(), "some sequences should end before max_length"


def test_greedy_scores_are_the_log_probs_of_the_returned_path():
    """Rows that end early stop adding to their score while the others go on."""
    rng = np.random.default_rng(7)
    tables = rng.dirichlet(np.full(V, 0.5), size=(16, V))
    tokens, _, scores = greedy_search(table_step(tables), initial(16), 16, max_length=7)
    tokens = tokens.numpy()
    lengths = [row.index(END) + 1 if END in row else len(row) for row in tokens.tolist()]
    assert min(lengths) < tokens.shape[1], "some rows should end while others go on"
    for r, n in enumerate(lengths):
        assert not tokens[r, n:].any()
        want = _path_score(tables[r], tokens[r, :n].tolist(), forced_end_at=99, alpha=0.0)
        np.testing.assert_allclose(scores.numpy()[r], want, rtol=1e-5)


def _path_score(
    table: np.ndarray, seq: list[int], forced_end_at: int, alpha: float, scale: float = 1.0
) -> float:
    """``log P(seq) / ((5 + len) / 6) ** alpha`` under :func:`table_step`'s decoder (len counts
    the end token; from step ``forced_end_at`` on the end token is certain)."""
    prev, lp = 2, 0.0
    for t, tok in enumerate(seq):
        lp += 0.0 if t >= forced_end_at else np.log(table[prev, tok] + 1e-12) * scale
        prev = tok
    return lp / ((5 + len(seq)) / 6) ** alpha


def _brute_force_best(
    table: np.ndarray, forced_end_at: int, alpha: float = 0.0, scale: float = 1.0
) -> tuple[list[int], float]:
    """Best finished sequence and its score (:func:`_path_score`), by enumerating every token
    path."""
    allowed = [t for t in range(V) if t not in (0, 2, END)]  # never pad or start
    paths = [[*body, END] for n in range(forced_end_at + 1)
             for body in itertools.product(allowed, repeat=n)]
    scores = [_path_score(table, p, forced_end_at, alpha, scale) for p in paths]
    best = int(np.argmax(scores))
    return paths[best], scores[best]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wide_beam_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    tables = rng.dirichlet(np.full(V, 0.7), size=(4, V))
    step = table_step(tables, forced_end_at=3)  # every path ends within 4 tokens
    tokens, _, scores = beam_search(step, initial(4), 4, beam_width=64, max_length=6)
    for r in range(4):
        want, want_lp = _brute_force_best(tables[r], forced_end_at=3)
        got = tokens.numpy()[r]
        assert got[: len(want)].tolist() == want and not got[len(want) :].any()
        np.testing.assert_allclose(scores.numpy()[r], want_lp, rtol=1e-5)


@pytest.mark.parametrize("beam_width", [2, 64])
def test_a_diverged_decoder_ends_every_hypothesis_once(beam_width):
    """Log-probabilities of about -1e9 per step, as from a diverged model. Impossible
    hypotheses used to score a finite -1e9 and ended ones -2e9 when the alive beams were
    picked: real scores fell below both, so no finished hypothesis was recorded and ended
    ones stayed alive, emitting tokens after the end token (scored -2e9)."""
    rng = np.random.default_rng(4)
    tables = rng.dirichlet(np.full(V, 0.7), size=(4, V))
    step = table_step(tables, forced_end_at=3, scale=1e9)
    tokens, _, scores = beam_search(step, initial(4), 4, beam_width=beam_width, max_length=6)
    for r in range(4):
        got = tokens.numpy()[r].tolist()
        assert END in got and not any(got[got.index(END) + 1 :]), got
        path = got[: got.index(END) + 1]
        want = _path_score(tables[r], path, 3, 0.0, scale=1e9)
        np.testing.assert_allclose(scores.numpy()[r], want, rtol=1e-6)
        if beam_width == 64:  # holds every path: the exhaustive optimum
            _, best = _brute_force_best(tables[r], forced_end_at=3, scale=1e9)
            np.testing.assert_allclose(scores.numpy()[r], best, rtol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 4.0])
@pytest.mark.parametrize("seed", range(6))
def test_length_penalised_wide_beam_equals_exhaustive_search(seed, alpha):
    """With alpha > 0 a longer hypothesis can overtake a finished one, so the search may stop
    only when no alive one can, even at max_length's milder penalty. A bound taken at the
    current length stopped too early. The end token is never the best extension here before
    the forced end, so the OpenNMT stop (best extension ends) cannot cut the search short,
    and a beam holding every path must find the exhaustive optimum."""
    rng = np.random.default_rng(seed)
    tables = rng.dirichlet(np.full(V, 0.2), size=(4, V))
    others = tables[..., [t for t in range(V) if t not in (0, 2, END)]].max(-1)  # not banned
    tables[..., END] = np.minimum(tables[..., END], 0.5 * others)
    tables /= tables.sum(-1, keepdims=True)
    step = table_step(tables, forced_end_at=4)
    tokens, _, scores = beam_search(step, initial(4), 4, beam_width=128, max_length=8,
                                    length_penalty_alpha=alpha)
    for r in range(4):
        _, want_score = _brute_force_best(tables[r], forced_end_at=4, alpha=alpha)
        got = tokens.numpy()[r].tolist()
        got = got[: got.index(END) + 1]  # paths that reorder the same transitions tie
        np.testing.assert_allclose(_path_score(tables[r], got, 4, alpha), want_score, rtol=1e-5)
        np.testing.assert_allclose(scores.numpy()[r], want_score, rtol=1e-5)


def test_length_penalty_prefers_longer_hypotheses():
    # "end" alone: 0.4; "A end": 0.6 * 0.6 = 0.36. Normalised by ((5+len)/6)^alpha, alpha=1
    # makes "A end" win: log(0.36) / (7/6) > log(0.4) / 1.
    step = table_step(make_tables([{2: [0.4, 0.6, 0.0], A: [0.6, 0.2, 0.2]}]))
    short, _, s0 = beam_search(step, initial(1), 1, beam_width=2, max_length=5)
    long, _, s1 = beam_search(
        step, initial(1), 1, beam_width=2, max_length=5, length_penalty_alpha=1.0
    )
    assert short.numpy()[0, :1].tolist() == [END] and not short.numpy()[0, 1:].any()
    assert long.numpy()[0, :2].tolist() == [A, END]
    np.testing.assert_allclose(s0.numpy(), [np.log(0.4)], rtol=1e-5)
    np.testing.assert_allclose(s1.numpy(), [np.log(0.36) / (7 / 6)], rtol=1e-5)


def test_unfinished_hypotheses_are_returned_at_max_length():
    step = table_step(make_tables([{2: [0.0, 0.9, 0.1], A: [0.0, 0.9, 0.1], B_: [0, 0.5, 0.5]}]))
    tokens, weights, scores = beam_search(step, initial(1), 1, beam_width=3, max_length=4)
    assert tokens.numpy().tolist() == [[A, A, A, A]]
    assert weights.shape == (1, 4, V)
    np.testing.assert_allclose(scores.numpy(), [4 * np.log(0.9)], rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_unfinished_hypotheses_are_scored_with_the_length_penalty(alpha):
    step = table_step(make_tables([{2: [0.0, 0.9, 0.1], A: [0.0, 0.9, 0.1], B_: [0, 0.5, 0.5]}]))
    _, _, scores = beam_search(step, initial(1), 1, beam_width=3, max_length=4,
                               length_penalty_alpha=alpha)
    np.testing.assert_allclose(scores.numpy(), [4 * np.log(0.9) / ((5 + 4) / 6) ** alpha],
                               rtol=1e-5)


def test_an_entry_decodes_the_same_alone_and_in_a_batch():
    """An entry that is done keeps its answer while others go on: row 0 stops at step 0
    ("end" is its best extension), though with alpha=4 "A end" would score higher later."""
    short = {2: [0.5, 0.45, 0.05], A: [0.95, 0.04, 0.01]}
    long_ = {2: [0.0, 0.9, 0.1], A: [0.0, 0.9, 0.1], B_: [0.0, 0.5, 0.5]}
    step = table_step(make_tables([short, long_]))
    kwargs = dict(beam_width=2, max_length=5, length_penalty_alpha=4.0)
    alone, _, alone_scores = beam_search(step, initial(1), 1, **kwargs)
    both, _, both_scores = beam_search(step, initial(2), 2, **kwargs)
    assert alone.numpy().tolist() == [[END]]
    assert both.numpy()[0].tolist() == [END] + [0] * (both.shape[1] - 1)
    assert both.numpy()[1].tolist() == [A] * 5  # the other row ran to max_length
    np.testing.assert_allclose(both_scores.numpy()[0], alone_scores.numpy()[0], rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    # 0 failed in ArgMax / StridedSlice; 2.7 was truncated to a beam of 2.
    (dict(beam_width=0), r"argument `beam_width`. Expected a positive integer"),
    (dict(beam_width=2.7), r"argument `beam_width`. Expected a positive integer"),
    (dict(max_length=0), r"argument `max_length`. Expected a positive integer"),
])
def test_search_arguments_are_checked(kwargs, match):
    step = table_step(make_tables([TRAP]))
    with pytest.raises(ValueError, match=match):
        beam_search(step, initial(1), 1, **{"beam_width": 2, "max_length": 4, **kwargs})
    if "max_length" in kwargs:
        with pytest.raises(ValueError, match=match):
            greedy_search(step, initial(1), 1, kwargs["max_length"])


def test_length_penalty_and_tile_beams():
    np.testing.assert_allclose(length_penalty(3, 0.0).numpy(), 1.0)
    np.testing.assert_allclose(length_penalty(7, 0.6).numpy(), 2.0**0.6, rtol=1e-6)
    tiled = tile_beams((tf.constant([[1], [2]]), None), 3)
    assert tiled[0].numpy().ravel().tolist() == [1, 1, 1, 2, 2, 2] and tiled[1] is None


def test_seq2seq_beam_width_one_equals_greedy():
    keras.utils.set_random_seed(3)
    model = Seq2Seq(12, 9, units=16, embedding_dim=8, attention="luong-general",
                    input_feeding=True, bidirectional_encoder=True)
    src = np.array([[5, 6, 7, 8, 9], [4, 4, 0, 0, 0], [11, 10, 9, 0, 0]])
    greedy = model.translate(src, max_length=8)
    beam = model.translate(src, max_length=8, method="beam", beam_width=1, length_penalty=0.5)
    np.testing.assert_array_equal(beam[0].numpy(), greedy[0].numpy())
    np.testing.assert_allclose(beam[1].numpy(), greedy[1].numpy(), atol=1e-6)
    wide, wide_weights = model.translate(src, max_length=8, method="beam", beam_width=4)
    assert wide.shape[0] == 3 and wide_weights.shape[::2] == (3, 5)


def test_seq2seq_beam_search_uses_the_length_penalty():
    """``translate(method="beam", length_penalty=a)`` is `beam_search` over the model's own
    steps with that alpha, and alpha changes what it picks."""
    keras.utils.set_random_seed(5)
    model = Seq2Seq(12, 9, units=16, embedding_dim=8, attention="bahdanau")
    src = np.random.default_rng(0).integers(4, 12, size=(32, 6))
    outputs, encoder_mask, states = model.encode(src)
    outputs, encoder_mask = tile_beams((outputs, encoder_mask), 4)

    def step(tokens, step_states):
        return model.decode_step(tokens, step_states, outputs, encoder_mask)

    found = {}
    for alpha in (0.0, 5.0):
        tokens, _ = model.translate(src, max_length=6, method="beam", beam_width=4,
                                    length_penalty=alpha)
        want, _, _ = beam_search(step, states, 32, 4, 6, alpha)
        np.testing.assert_array_equal(tokens.numpy(), want.numpy())
        found[alpha] = tokens.numpy()
    assert (found[0.0] != found[5.0]).any()


def test_a_banned_id_loses_to_every_score_however_low():
    """A diverged decoder whose start token scores 2e9 above the rest: the others'
    log-probabilities (about -2e9) were below the -1e9 floor the bans used."""
    logits = tf.constant([[0.0, 0.0, 2e9, 0.0, 0.0, 0.0]])

    def step(tokens, states):
        n = tf.shape(tokens)[0]
        return tf.nn.log_softmax(tf.tile(logits, [n, 1])), states, tf.zeros([n, 0])

    greedy = greedy_search(step, (), 1, 3)[0].numpy()
    np.testing.assert_array_equal(greedy, [[1, 1, 1]])  # ties go to the lowest allowed id
    for k in (2, 8):
        tokens = beam_search(step, (), 1, k, 3)[0].numpy()
        assert tokens[0, 0] not in (0, 2) and 2 not in tokens, (k, tokens)

"""Test metrics: BLEU is scored against the raw references, not against decoded target ids;
the accuracy interval is Wilson's score interval."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import sacrebleu
import tensorflow as tf

from keras_seq.training import evaluation
from pipelines.text import Vocabulary

PUNCTUATION = '.?!,¿¡;:"'


class Oracle:
    """A stand-in for `Seq2Seq` that translates every source into its own target ids."""

    def __init__(self, targets: np.ndarray, vocab_size: int):
        self.targets, self.vocab_size = targets, vocab_size

    def translate(self, src, max_length, method):
        rows = self.targets[np.asarray(src)[:, 0]]  # the source's first id names its row
        return tf.constant(rows[:, 1:]), None

    def __call__(self, inputs, training=False):
        _, tgt_in = inputs
        return tf.fill([*tgt_in.shape, self.vocab_size], -np.log(float(self.vocab_size)))


def _evaluate(references: list[str], vocab: Vocabulary):
    ids = vocab.encode(references, add_start=True, add_end=True).to_tensor().numpy()
    src = np.arange(len(references))[:, None]
    dataset = tf.data.Dataset.from_tensors(((src, ids[:, :-1]), ids[:, 1:]))
    oracle = Oracle(ids, vocab.size)
    return evaluation.seq2seq(
        oracle, dataset, vocab, max_length=ids.shape[1], references=references
    )


@pytest.fixture
def vocab():
    return Vocabulary.build(
        ["Tom is here.", "Where is the cat?"], level="word", lowercase=True, punctuation=PUNCTUATION
    )


def test_bleu_is_100_when_every_reference_word_is_known(vocab):
    metrics = _evaluate(["Where is Tom?", "The cat is here."], vocab)
    assert metrics["exact_match"] == 1.0
    assert metrics["bleu"] == pytest.approx(100.0)


def test_a_word_outside_the_vocabulary_is_a_miss_not_a_matching_unk(vocab):
    references = ["Where is the zebra?", "Tom is here."]
    metrics = _evaluate(references, vocab)
    # The ids round-trip exactly (both sides say [UNK]); that counted as an exact match. No
    # output can match a word the vocabulary lacks, in exact match as in BLEU ...
    assert metrics["exact_match"] == 0.5
    # ... and BLEU compares with the real word and must count the [UNK] as one wrong word
    # (sacrebleu's tokenizer would make "[UNK]" three tokens).
    refs = [["where is the zebra ?", "tom is here ."]]
    expected = sacrebleu.corpus_bleu(["where is the qqq ?", "tom is here ."], refs).score
    assert metrics["bleu"] == pytest.approx(expected) and metrics["bleu"] < 90.0
    assert metrics["bleu"] > sacrebleu.corpus_bleu(["where is the [UNK] ?", "tom is here ."],
                                                   refs).score


def test_bleu_of_character_outputs_joins_the_references_as_characters():
    # References were joined with spaces, outputs without: perfect outputs scored BLEU 2.
    chars = Vocabulary.build(["2021-01-03", "1999-12-31"], level="char")
    metrics = _evaluate(["2021-01-03", "1999-12-31"], chars)
    assert metrics["exact_match"] == 1.0 and metrics["bleu"] == pytest.approx(100.0)


class Unfinished(Oracle):
    """Outputs the target without its END: decoding stopped at `max_length`."""

    def translate(self, src, max_length, method):
        rows = self.targets[np.asarray(src)[:, 0]]
        return tf.constant(rows[:, 1:max_length + 1]), None


def test_an_output_without_end_is_not_an_exact_match():
    # Cut at max_length = the reference's length, it equalled the reference and scored 1.0.
    chars = Vocabulary.build(["2021-01-03"], level="char")
    ids = chars.encode(["2021-01-03"], add_start=True, add_end=True).to_tensor().numpy()
    dataset = tf.data.Dataset.from_tensors(((np.zeros([1, 1], np.int64), ids[:, :-1]), ids[:, 1:]))
    metrics = evaluation.seq2seq(Unfinished(ids, chars.size), dataset, chars, max_length=10)
    assert metrics["exact_match"] == 0.0
    assert evaluation.seq2seq(Oracle(ids, chars.size), dataset, chars, max_length=11)[
        "exact_match"] == 1.0


class CostByPosition(Oracle):
    """The target token at position t costs t + 1 nats."""

    def __call__(self, inputs, training=False):
        _, tgt_in = inputs
        steps = np.asarray(tgt_in).shape[1]
        cost = -(np.arange(steps, dtype="float32") + 1)[None, :, None]
        return tf.constant(np.broadcast_to(cost, (*np.asarray(tgt_in).shape, self.vocab_size)))


def test_seq2seq_loss_is_the_mean_over_all_target_tokens_whatever_the_batches(vocab):
    # It was the mean of the batches' means: a short last batch counted as much as a full one.
    texts = ["Tom is here.", "Where is the cat?", "Tom is the cat.", "Where?", "Here."]
    ids = vocab.encode(texts, add_start=True, add_end=True).to_tensor().numpy()
    src = np.arange(len(texts))[:, None]
    keep = ids[:, 1:] != 0
    expected = float((keep * (np.arange(keep.shape[1]) + 1)).sum() / keep.sum())
    for batch in (2, 5):
        dataset = tf.data.Dataset.from_tensor_slices(((src, ids[:, :-1]), ids[:, 1:])).batch(batch)
        loss = evaluation.seq2seq(CostByPosition(ids, vocab.size), dataset, vocab,
                                  max_length=ids.shape[1])["loss"]
        assert loss == pytest.approx(expected, rel=1e-6), batch


def test_references_must_match_the_number_of_examples(vocab):
    ids = vocab.encode(["Tom is here."], add_start=True, add_end=True).to_tensor().numpy()
    dataset = tf.data.Dataset.from_tensors(((np.zeros([1, 1], np.int64), ids[:, :-1]), ids[:, 1:]))
    with pytest.raises(ValueError, match=r"references=2"):
        evaluation.seq2seq(
            Oracle(ids, vocab.size), dataset, vocab, max_length=8, references=["a", "b"]
        )


def test_vocabulary_split_keeps_unknown_words_and_standardizes(vocab):
    assert vocab.split(["¿Dónde está ZEBRA?"]) == [["¿", "dónde", "está", "zebra", "?"]]


def test_ema_weights_are_validated_and_checkpointed_while_training_continues_on_raw(tmp_path):
    """`ema_momentum`: the checkpoint holds the NumPy EMA of the per-step weights, the logged
    val_loss is that of the EMA weights, and the next epoch goes on from the raw weights."""
    import time

    import keras

    from keras_seq.training import recipes, runner
    from keras_seq.training.builders import compile_model, regressor

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=[64, 5, 2]).astype("float32")
    y = x.sum(axis=(1, 2))[:, None]
    model = regressor("gru", units=4)
    momentum = 0.8
    hp = {**recipes.TRAIN_DEFAULTS, "ema_momentum": momentum, "learning_rate": 0.05}
    compile_model(model, {"task": "regression", "train": hp})

    def flat():
        return np.concatenate([w.numpy().ravel() for w in model.trainable_weights])

    starts, raw, ema, val_losses = [], [], [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            starts.append(flat())

        def on_train_batch_end(self, batch, logs=None):
            raw.append(flat())
            # Keras starts the average at the weights after the first step.
            ema.append(momentum * ema[-1] + (1 - momentum) * raw[-1] if ema else raw[-1])

        def on_epoch_end(self, epoch, logs=None):
            val_losses.append(logs["val_loss"])

    (tmp_path / "checkpoints").mkdir()
    callbacks = [Record(), *runner.callbacks(tmp_path, hp, time.time())]
    model.fit(x, y, batch_size=16, epochs=2, validation_data=(x, y), callbacks=callbacks, verbose=0)

    assert len(raw) == 8
    # Epoch 2 goes on from the raw weights (Keras swaps by arithmetic: equal to an ulp or so).
    np.testing.assert_allclose(starts[4], raw[3], rtol=0, atol=1e-6)
    model.load_weights(tmp_path / "checkpoints" / "last.weights.h5")
    np.testing.assert_allclose(flat(), ema[-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(flat(), raw[-1], atol=1e-3)  # the average, not the last step
    assert val_losses[-1] == pytest.approx(float(model.evaluate(x, y, verbose=0)), rel=1e-5)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat. Med. 17,
# Table I, method 3 (score interval without continuity correction), to 4 decimals.
@pytest.mark.parametrize(
    ("successes", "n", "published"),
    [(81, 263, (0.2553, 0.3662)), (15, 148, (0.0624, 0.1605)), (0, 20, (0.0, 0.1611)),
     (1, 29, (0.0061, 0.1718))],
)
def test_wilson_interval_matches_published_values(successes, n, published):
    assert evaluation.wilson_interval(successes, n) == pytest.approx(published, abs=6e-5)


@pytest.mark.parametrize(("successes", "n"), [(734, 872), (123, 130), (3, 7), (50, 50)])
def test_wilson_interval_bounds_are_where_the_score_test_starts_rejecting(successes, n):
    p_hat, z = successes / n, evaluation.Z95

    def statistic(p):  # the score test's |z| for the null proportion p
        return abs(p_hat - p) / np.sqrt(p * (1 - p) / n)

    def crossing(inside, outside):  # bisection for statistic == z between the two points
        for _ in range(100):
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if statistic(mid) <= z else (inside, mid)
        return inside

    low, high = evaluation.wilson_interval(successes, n)
    expected_low = 0.0 if successes == 0 else crossing(min(p_hat, 1 - 1e-12), 1e-15)
    expected_high = 1.0 if successes == n else crossing(max(p_hat, 1e-12), 1 - 1e-15)
    assert (low, high) == pytest.approx((expected_low, expected_high), abs=1e-9)


@pytest.mark.parametrize(("successes", "n", "named"), [(1, 0, "n"), (5, 4, "successes")])
def test_wilson_interval_rejects_impossible_counts(successes, n, named):
    with pytest.raises(ValueError, match=named):
        evaluation.wilson_interval(successes, n)


def test_wilson_interval_is_exactly_zero_or_one_at_the_extremes():
    """At 0 or n successes the bound is exactly 0 or 1; the formula rounds it about 1e-17
    to either side (for 92 of these 200 n), and clamping fixed only one side. Every interval
    holds its proportion."""
    for n in range(1, 201):
        assert evaluation.wilson_interval(0, n)[0] == 0.0, n
        assert evaluation.wilson_interval(n, n)[1] == 1.0, n
        for successes in range(n + 1):
            low, high = evaluation.wilson_interval(successes, n)
            assert 0.0 <= low <= successes / n <= high <= 1.0, (successes, n)


def test_classification_loss_is_the_loss_fit_reports():
    """Keras's sparse cross-entropy clips probabilities at 1e-7: a true class given 1e-12 adds
    -log(1e-7) as in the validation loss of fit, not -log(1e-12)."""
    probs = np.array([[0.9, 0.1], [1.0 - 1e-12, 1e-12], [0.6, 0.4]], np.float32)
    labels = np.array([0, 1, 1])
    dataset = tf.data.Dataset.from_tensors((np.arange(3)[:, None], labels))
    metrics = evaluation.classification(lambda x, training: probs[np.asarray(x)[:, 0]], dataset, 2)
    want = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    assert metrics["loss"] == pytest.approx(want, rel=1e-6)


def test_classification_reports_the_interval_of_its_accuracy():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    labels = np.array([0, 1, 1, 1])
    dataset = tf.data.Dataset.from_tensors((np.arange(4)[:, None], labels))
    metrics = evaluation.classification(lambda x, training: probs[np.asarray(x)[:, 0]], dataset, 2)
    assert metrics["accuracy"] == 0.75
    assert metrics["accuracy_ci95"] == pytest.approx(evaluation.wilson_interval(3, 4))
    assert metrics["accuracy_ci95"][0] < 0.75 < metrics["accuracy_ci95"][1]
    # The loss is the label's probability, also where the prediction is wrong (row 2).
    assert metrics["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.4, 0.7])), rel=1e-6)
    # Rows are the true class, columns the prediction (the plot normalises rows: recall).
    np.testing.assert_array_equal(metrics["_confusion"], [[1, 0], [1, 2]])


def test_language_model_loss_leaves_padding_targets_out():
    # As the model's own loss does (ignore_class=0): padded windows must not count.
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 5, 7)).astype(np.float32)
    y = rng.integers(1, 7, (3, 5))
    y[1, 3:] = 0
    y[2, 1:] = 0
    dataset = tf.data.Dataset.from_tensors((np.arange(3)[:, None], y))
    metrics = evaluation.language_model(lambda x, training: logits[np.asarray(x)[:, 0]], dataset)
    keep = y != 0
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, y[..., None], -1)[..., 0][keep].mean()
    keras_loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    assert metrics["tokens"] == keep.sum() == 9
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert metrics["loss"] == pytest.approx(float(keras_loss(y, logits)), rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(np.exp(expected), rel=1e-5)


def test_macro_f1_counts_a_class_only_predicted_as_zero_like_sklearn():
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    # sklearn's f1_score(average="macro") averages the labels in y_true or y_pred:
    # class 0: 2*1/(2*1+0+1) = 2/3; class 1: 1; class 2 (never true, once predicted): 0.
    assert evaluation.macro_f1(y_true, y_pred, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert evaluation.macro_f1(y_true, y_true, 5) == 1.0  # absent from both: left out


def test_an_empty_split_is_an_error_not_a_score(vocab):
    # A language model's test text shorter than one window scored loss 0, perplexity 1.
    ids = tf.zeros((0, 4), tf.int32)
    calls = {
        "seq2seq": lambda: evaluation.seq2seq(
            Oracle(np.zeros((0, 4)), vocab.size), tf.data.Dataset.from_tensors(((ids, ids), ids)),
            vocab, max_length=4),
        "language_model": lambda: evaluation.language_model(
            lambda x, training: tf.zeros((0, 4, 5)), tf.data.Dataset.from_tensors((ids, ids))),
        "classification": lambda: evaluation.classification(
            lambda x, training: tf.zeros((0, 2)),
            tf.data.Dataset.from_tensors((ids, tf.zeros((0,), tf.int32))), 2),
    }
    for task, call in calls.items():
        with pytest.raises(ValueError, match=r"Expected .* to evaluate on. Received: none"):
            call()
            pytest.fail(f"{task}: an empty split was scored")


def test_regression_mse_is_keras_mean_squared_error_over_every_batch():
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 3)).astype("float32")
    y = rng.normal(size=(10, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)  # 4 + 4 + 2
    metric = keras.metrics.MeanSquaredError()
    metric.update_state(y, model(x))
    got = evaluation.regression(model, dataset)
    assert got.keys() == {"mse"}
    np.testing.assert_allclose(got["mse"], float(metric.result()), rtol=1e-6)

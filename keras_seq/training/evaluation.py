"""Test metrics per task: accuracy / macro-F1, exact match / BLEU, loss, MSE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipelines.text import END_ID as END
from pipelines.text import OOV_ID as UNKNOWN
from pipelines.text import PAD_ID as PAD

# An unknown word in a decoded output is one BLEU token that matches nothing: sacrebleu's 13a
# tokenizer would split "[UNK]" into three ASCII punctuation and letter tokens.
BLEU_UNKNOWN = "\u2047"
Z95 = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default).

    The interval holds every p whose score test ``|p_hat - p| <= z * sqrt(p (1 - p) / n)`` does
    not reject; unlike the normal approximation it stays inside [0, 1] and is not empty at
    p_hat = 0 or 1. It treats the `n` examples as independent draws.
    """
    if n <= 0:
        raise ValueError(f"Expected n > 0 examples for an interval. Received: n={n}.")
    if not 0 <= successes <= n:
        raise ValueError(f"Expected 0 <= successes <= n={n}. Received: successes={successes}.")
    p, z2 = successes / n, z * z
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At p_hat = 0 (or 1) the bound is exactly 0 (or 1); the formula rounds it up to
    # 2e-16 away, on either side.
    low = 0.0 if successes == 0 else float(center - half)
    high = 1.0 if successes == n else float(center + half)
    return low, high


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in ``y_true`` or ``y_pred``
    (sklearn's ``f1_score(average="macro")``): a class only predicted scores 0."""
    scores = []
    for c in range(num_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn == 0:
            continue
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def _require(count: int, what: str) -> None:
    """A split with nothing to score is an error, not a perfect (or zero) score."""
    if count == 0:
        raise ValueError(f"Expected {what} to evaluate on. Received: none (an empty test split).")


def classification(model, dataset: tf.data.Dataset, num_classes: int) -> dict[str, Any]:
    """Accuracy with its 95% Wilson interval, macro-F1 and cross-entropy of `model`'s class
    probabilities on `dataset` (plus ``_confusion``, the confusion matrix, for the report)."""
    y_true, probs = [], []
    for x, y in dataset:
        probs.append(np.asarray(model(x, training=False)))
        y_true.append(np.asarray(y))
    _require(sum(len(y) for y in y_true), "test examples")
    p, y = np.concatenate(probs), np.concatenate(y_true).astype(np.int64)
    pred = p.argmax(-1)
    # The loss fit reports (Keras clips probabilities at 1e-7), so test and validation agree.
    loss = np.mean(np.asarray(keras.losses.sparse_categorical_crossentropy(y, p), np.float64))
    correct = int(np.sum(pred == y))
    return {
        "accuracy": correct / len(y),
        "accuracy_ci95": list(wilson_interval(correct, len(y))),
        "macro_f1": macro_f1(y, pred, num_classes),
        "loss": float(loss),
        "examples": len(y),
        "_confusion": confusion(y, pred, num_classes),
    }


def _until_end(row: np.ndarray) -> tuple[list[int], bool]:
    """The tokens before END (or padding), and whether the row has one (a finished output)."""
    out = []
    for token in row.tolist():
        if token in (END, PAD):
            return out, True
        out.append(int(token))
    return out, False


def seq2seq(
    model,
    dataset: tf.data.Dataset,
    target_vocabulary,
    *,
    max_length: int,
    references: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Greedy decoding of the test split: exact match, and corpus BLEU when `references` is given.

    `references` are the raw target texts in the dataset's order. They are standardized the
    way the vocabulary splits text, but never mapped to ids, so a word the vocabulary lacks
    counts as a miss in BLEU (decoding the target ids would turn it into a matching
    ``[UNK]``); an ``[UNK]`` in an output is one token there (`BLEU_UNKNOWN`). Exact match
    compares ids, where both sides share the vocabulary; a reference holding ``[UNK]`` (a word
    the vocabulary lacks) is matched by no output, as in BLEU, and an output that reached
    `max_length` without END is not a match. `loss` is the mean over all target tokens.
    """
    exact, total, hyps = 0, 0, []
    nll, tokens_scored = 0.0, 0
    for (src, tgt_in), tgt_out in dataset:
        tokens, _ = model.translate(src, max_length=max_length, method="greedy")
        tokens, tgt = np.asarray(tokens), np.asarray(tgt_out)
        log_probs = np.asarray(model((src, tgt_in), training=False))  # log-probabilities
        keep = tgt != PAD
        nll -= float(np.take_along_axis(log_probs, tgt[..., None], axis=-1)[..., 0][keep].sum())
        tokens_scored += int(keep.sum())
        for hyp, ref in zip(tokens, tgt, strict=True):
            h, finished = _until_end(hyp)
            r = _until_end(ref)[0]
            exact += finished and h == r and UNKNOWN not in r
            total += 1
            hyps.append(h)
    _require(total, "test examples")
    metrics = {"exact_match": exact / total, "loss": nll / tokens_scored, "examples": total}
    if references is not None:
        import sacrebleu

        if len(references) != total:
            raise ValueError(
                f"Expected one reference per test example ({total}), but received "
                f"references={len(references)}."
            )
        sep = target_vocabulary.separator
        refs = [sep.join(tokens) for tokens in target_vocabulary.split(references)]
        unknown = target_vocabulary.id_to_token(1)
        outputs = [h.replace(unknown, BLEU_UNKNOWN) for h in target_vocabulary.decode(hyps)]
        metrics["bleu"] = float(sacrebleu.corpus_bleu(outputs, [refs]).score)
    return metrics


def language_model(model, dataset: tf.data.Dataset) -> dict[str, Any]:
    """Mean cross-entropy in nats per token (and perplexity)."""
    total, count = 0.0, 0
    for x, y in dataset:
        logits = model(x, training=False)  # LanguageModel returns logits
        nll = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(y, tf.int32), logits)
        keep = np.asarray(y) != PAD
        total += float(np.asarray(nll)[keep].sum())
        count += int(keep.sum())
    _require(count, "target tokens")
    loss = total / count
    return {"loss": loss, "perplexity": float(np.exp(loss)), "tokens": count}


def regression(model, dataset: tf.data.Dataset) -> dict[str, Any]:
    errors = []
    for x, y in dataset:
        errors.append((np.asarray(model(x, training=False)) - np.asarray(y)) ** 2)
    return {"mse": float(np.concatenate(errors).mean())}

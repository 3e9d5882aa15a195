"""keras_seq.plots: PNG files that exist, decode, and carry the given labels."""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from keras_seq import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SRC = ["<s>", "the", "black", "cat", "</s>"]
TGT = ["le", "chat", "noir", "</s>"]


def _weights(rows: int = len(TGT), cols: int = len(SRC)) -> np.ndarray:
    w = np.random.default_rng(0).random((rows, cols))
    return w / w.sum(1, keepdims=True)


def _assert_png(path, min_side: int = 200, max_side: int = 5000) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    height, width = image.shape[:2]
    assert min_side <= height <= max_side and min_side <= width <= max_side, image.shape
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


def _ticks(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels()]


# ---------------------------------------------------------------- attention_heatmap
def test_heatmap_writes_readable_png_with_tokens_on_axes(tmp_path):
    path = tmp_path / "sub" / "att.png"
    weights = _weights()
    fig = plots.attention_heatmap(weights, SRC, TGT, path, title="example")
    _assert_png(path)
    ax = fig.axes[0]
    assert _ticks(ax.xaxis) == SRC
    assert _ticks(ax.yaxis) == TGT
    assert ax.get_xlabel() == "source" and ax.get_ylabel() == "output"
    assert ax.get_title() == "example"
    np.testing.assert_allclose(ax.images[0].get_array(), weights)  # row = output token
    assert len(fig.axes) == 2  # heatmap + colourbar


def test_heatmap_accepts_tensors_and_token_ids(tmp_path):
    tf = pytest.importorskip("tensorflow")
    weights = tf.constant(_weights(2, 3), tf.float32)
    fig = plots.attention_heatmap(weights, [5, 6, 7], ("a", "b"), tmp_path / "a.png")
    assert _ticks(fig.axes[0].xaxis) == ["5", "6", "7"]


@pytest.mark.parametrize(
    ("weights", "src", "tgt", "message"),
    [
        (
            np.ones(5),
            SRC,
            TGT,
            r"`weights`\. Expected a 2-D array\. Received: weights\.shape=\(5,\)",
        ),
        (_weights(), SRC[:-1], TGT, r"`src_tokens`\. Expected 5 tokens .*Received: 4 tokens"),
        (_weights(), SRC, TGT + ["x"], r"`tgt_tokens`\. Expected 4 tokens .*Received: 5 tokens"),
        (_weights().T, SRC, TGT, r"`src_tokens`\. Expected 4 tokens"),
        (_weights(), "abcde", TGT, r"sequence of tokens, not one string"),
        (np.full((4, 5), np.nan), SRC, TGT, r"Expected finite numbers"),
        (np.zeros((0, 0)), [], [], r"at least one row and column"),
    ],
)
def test_heatmap_bad_inputs_raise(tmp_path, weights, src, tgt, message):
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match=message):
        plots.attention_heatmap(weights, src, tgt, path)
    assert not path.exists()


# ---------------------------------------------------------------- training_curves
def test_training_curves_one_panel_per_metric(tmp_path):
    history = {
        "loss": [1.0, 0.7, 0.5],
        "val_loss": [1.1, 0.8, 0.6],
        "accuracy": [0.5, 0.6, 0.7],
        "val_accuracy": [0.4, 0.5, 0.6],
    }
    path = tmp_path / "curves.png"
    fig = plots.training_curves(history, path)
    _assert_png(path)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    lines = {line.get_label(): line for line in loss_ax.get_lines()}
    assert set(lines) == {"train", "validation"}
    np.testing.assert_allclose(lines["validation"].get_ydata(), history["val_loss"])
    np.testing.assert_array_equal(lines["train"].get_xdata(), [1, 2, 3])
    assert loss_ax.get_xlabel() == "epoch"


def test_training_curves_accepts_history_object_and_lone_val_metric(tmp_path):
    class History:  # the shape of keras.callbacks.History
        history = {"loss": [1.0, 0.5], "val_bleu": [3.0, 9.0]}

    fig = plots.training_curves(History(), tmp_path / "c.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "bleu"]
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["validation"]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({}, r"`history`\. Expected a non-empty dict"),
        ([1.0, 2.0], r"`history`\. Expected a non-empty dict"),
        ({"loss": []}, r"non-empty list of floats\. Received: history\['loss'\] with shape \(0,\)"),
        ({"loss": [[1.0]]}, r"Received: history\['loss'\] with shape \(1, 1\)"),
    ],
)
def test_training_curves_bad_history_raises(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plots.training_curves(history, tmp_path / "c.png")


# ---------------------------------------------------------------- confusion_matrix
def test_confusion_matrix_normalized_shows_percentages_and_counts(tmp_path):
    matrix = np.array([[8, 2, 0], [1, 3, 0], [0, 0, 0]])
    labels = ["negative", "neutral", "positive"]
    path = tmp_path / "cm.png"
    fig = plots.confusion_matrix(matrix, labels, path)
    _assert_png(path)
    ax = fig.axes[0]
    assert _ticks(ax.xaxis) == labels and _ticks(ax.yaxis) == labels
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9
    assert texts[0] == "80.0%\n(8)" and texts[3] == "25.0%\n(1)"
    assert texts[8] == "0.0%\n(0)"  # an empty row is drawn as zeros, not NaN
    np.testing.assert_allclose(ax.images[0].get_array()[0], [0.8, 0.2, 0.0])


def test_confusion_matrix_counts_and_large_matrix_unannotated(tmp_path):
    fig = plots.confusion_matrix([[3, 1], [0, 4]], ["a", "b"], tmp_path / "c.png", normalize=False)
    assert [t.get_text() for t in fig.axes[0].texts] == ["3", "1", "0", "4"]
    n = 20
    big = plots.confusion_matrix(np.eye(n) * 5, [f"c{i}" for i in range(n)], tmp_path / "big.png")
    assert len(big.axes[0].texts) == 0 and _ticks(big.axes[0].xaxis)[-1] == "c19"
    _assert_png(tmp_path / "big.png")


@pytest.mark.parametrize(
    ("matrix", "labels", "message"),
    [
        (
            np.ones((2, 3)),
            ["a", "b"],
            r"`matrix`\. Expected a non-empty square \[C, C\] array\. "
            r"Received: matrix\.shape=\(2, 3\)",
        ),
        (np.ones(3), ["a", "b", "c"], r"`matrix`\. Expected a 2-D array"),
        ([[1, -1], [0, 1]], ["a", "b"], r"Expected non-negative counts"),
        (np.ones((2, 2)), "ab", r"`labels`\. Expected a sequence of labels, not one string"),
        (np.ones((2, 2)), ["a"], r"`labels`\. Expected 2 labels .*Received: 1 labels"),
    ],
)
def test_confusion_matrix_bad_inputs_raise(tmp_path, matrix, labels, message):
    with pytest.raises(ValueError, match=message):
        plots.confusion_matrix(matrix, labels, tmp_path / "c.png")


def test_history_skips_the_na_that_csvlogger_writes_for_a_missing_value(tmp_path):
    from keras_seq.training import reports

    path = tmp_path / "history.csv"
    path.write_text("epoch,loss,val_loss\n0,0.9,NA\n1,0.5,0.7\n")
    assert reports.read_history(path) == {"loss": [0.9, 0.5], "val_loss": [0.7]}

"""PNG figures for people: attention heatmaps, training curves, confusion matrices.

Drawn with matplotlib's Agg canvas (no display, no pyplot global state, safe in threads and
on servers). Each function writes ``path`` (creating its folder) and returns the
``matplotlib.figure.Figure`` so callers and tests can inspect it.

    fig = attention_heatmap(weights, src_tokens=["le", "chat", "</s>"],
                            tgt_tokens=["the", "cat"], path="att.png")  # weights [2, 3]
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_MAX_ANNOTATED = 12  # annotate cells of matrices up to this many rows and columns


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def _matrix(name: str, value: Any) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a 2-D array. "
            f"Received: {name}.shape={array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected finite numbers. "
            f"Received: {name} with NaN or infinite entries"
        )
    return array


def _labels(
    name: str, tokens: Sequence[Any], expected: int, axis_text: str, noun: str = "tokens"
) -> list[str]:
    if isinstance(tokens, str):
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a sequence of {noun}, not one "
            f"string. Received: {name}={tokens!r}"
        )
    labels = [str(t) for t in tokens]
    if len(labels) != expected:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected {expected} {noun} ({axis_text}). "
            f"Received: {len(labels)} {noun}"
        )
    return labels


def attention_heatmap(
    weights: Any,
    src_tokens: Sequence[str],
    tgt_tokens: Sequence[str],
    path: str | os.PathLike,
    title: str | None = None,
) -> Figure:
    """Write an attention map: source tokens along x, output tokens along y.

    Args:
        weights: ``[T_tgt, T_src]`` attention weights (row i: where output token i looked).
        src_tokens: ``T_src`` source tokens (x axis, left to right).
        tgt_tokens: ``T_tgt`` output tokens (y axis, top to bottom).
        path: PNG to write.
        title: optional figure title.

    Returns:
        The figure (already saved).
    """
    w = _matrix("weights", weights)
    t_tgt, t_src = w.shape
    src = _labels("src_tokens", src_tokens, t_src, "weights.shape[1], the x axis")
    tgt = _labels("tgt_tokens", tgt_tokens, t_tgt, "weights.shape[0], the y axis")
    if t_tgt == 0 or t_src == 0:
        raise ValueError(
            f"Invalid value for argument `weights`. Expected at least one row and column. "
            f"Received: weights.shape={w.shape}"
        )
    longest_src = max(len(s) for s in src)
    longest_tgt = max(len(t) for t in tgt)
    width = 2.5 + 0.45 * t_src + 0.08 * longest_tgt
    height = 1.8 + 0.45 * t_tgt + 0.08 * longest_src
    fig = _new_figure(min(max(width, 4.0), 40.0), min(max(height, 3.0), 40.0))
    ax = fig.add_subplot()
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=max(1e-12, float(w.max())), aspect="auto")
    ax.set_xticks(range(t_src), labels=src, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(t_tgt), labels=tgt)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    ax.set_xticks(np.arange(-0.5, t_src, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, t_tgt, 1.0), minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5, alpha=0.4)
    ax.tick_params(which="minor", length=0)
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)
    _save(fig, path)
    return fig


def training_curves(
    history: Mapping[str, Sequence[float]] | Any, path: str | os.PathLike
) -> Figure:
    """Write one panel per metric, training and validation (``val_<name>``) together.

    Args:
        history: ``{"loss": [...], "val_loss": [...], "accuracy": [...], ...}`` as in
            ``keras.callbacks.History.history`` (a ``History`` object is accepted too).
            Each series is drawn against epochs ``1..len(series)``.
        path: PNG to write.

    Returns:
        The figure (already saved).
    """
    history = getattr(history, "history", history)
    if not isinstance(history, Mapping) or not history:
        raise ValueError(
            "Invalid value for argument `history`. Expected a non-empty dict of metric name to "
            f"list of floats. Received: history={history!r}"
        )
    series: dict[str, np.ndarray] = {}
    for name, values in history.items():
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or array.size == 0:
            raise ValueError(
                "Invalid value for argument `history`. Expected each metric to be a non-empty "
                f"list of floats. Received: history[{name!r}] with shape {array.shape}"
            )
        series[str(name)] = array
    metrics = list(dict.fromkeys(n.removeprefix("val_") for n in series))
    fig = _new_figure(4.5 * len(metrics), 3.6)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        for name, label in ((metric, "train"), (f"val_{metric}", "validation")):
            if name in series:
                y = series[name]
                ax.plot(np.arange(1, y.size + 1), y, marker="o", markersize=3, label=label)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    _save(fig, path)
    return fig


def confusion_matrix(
    matrix: Any,
    labels: Sequence[str],
    path: str | os.PathLike,
    normalize: bool = True,
) -> Figure:
    """Write a confusion matrix: true class along y (rows), predicted class along x.

    Args:
        matrix: ``[C, C]`` non-negative counts, ``matrix[i, j]`` = examples of class i
            predicted as j.
        labels: ``C`` class names.
        path: PNG to write.
        normalize: colour by each row's share (recall per class) and print percentages;
            otherwise colour and print counts. Cells are annotated when ``C <= 12``.

    Returns:
        The figure (already saved).
    """
    counts = _matrix("matrix", matrix)
    if counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(
            "Invalid value for argument `matrix`. Expected a non-empty square [C, C] array. "
            f"Received: matrix.shape={counts.shape}"
        )
    if np.any(counts < 0):
        raise ValueError(
            "Invalid value for argument `matrix`. Expected non-negative counts. "
            f"Received: minimum {counts.min()}"
        )
    n = counts.shape[0]
    names = _labels("labels", labels, n, "one per row/column of `matrix`", "labels")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        shown = counts
    longest = max(len(s) for s in names)
    side = 2.5 + 0.6 * n + 0.08 * longest
    fig = _new_figure(min(side + 1.2, 40.0), min(side, 40.0))
    ax = fig.add_subplot()
    top = 1.0 if normalize else max(1.0, float(shown.max()))
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=top)
    ax.set_xticks(range(n), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= _MAX_ANNOTATED:
        for i in range(n):
            for j in range(n):
                if normalize:
                    text = f"{100 * shown[i, j]:.1f}%\n({counts[i, j]:g})"
                else:
                    text = f"{counts[i, j]:g}"
                colour = "white" if shown[i, j] > 0.6 * top else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    fig.colorbar(image, ax=ax, label="share of true class" if normalize else "count", shrink=0.8)
    _save(fig, path)
    return fig

"""`adding`: the adding problem (Hochreiter & Schmidhuber, 1997), synthetic regression.

Each example is a sequence of `length` (T) steps with two channels: ``x[:, 0]`` values drawn
uniformly from [0, 1), ``x[:, 1]`` a marker that is 1 at exactly two steps (one in the first
half ``[0, T//2)``, one in the second half ``[T//2, T)``) and 0 elsewhere. The target is the
sum of the two marked values, ``y = sum(x[:, 0] * x[:, 1])`` in [0, 2). This is the
formulation of Le et al. (2015) and Arjovsky et al. (2016); predicting the constant 1 gives
MSE 1/6 ~ 0.167 (``info.extra["baseline_mse"]``), the bar a model must beat.

Generated in process from `seed` (train, validation and test from independent child seeds).
`test_path`: an ``.npz`` file with ``x`` float ``[N, T, 2]`` and ``y`` float ``[N]`` or
``[N, 1]``.

Element: ``(x float32 [B, T, 2], y float32 [B, 1])``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines import _checks
from pipelines.batching import batched, fingerprint
from pipelines.splits import SourceInfo, Splits, sample_indices

BASELINE_MSE = 1.0 / 6.0


def generate(n: int, length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` examples: ``x`` float32 ``[n, length, 2]``, ``y`` float32 ``[n, 1]``."""
    values = rng.random((n, length), dtype=np.float32)
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), np.float32)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1, keepdims=True).astype(np.float32)
    return x, y


def read_npz(path: str | Path, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of an ``.npz`` test file (see module docstring), shapes checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Expected an .npz file with arrays x [N, {length}, 2] and "
            f"y [N] at {str(path)!r}, but there is no such file."
        )
    try:
        with np.load(path) as data:
            x, y = np.asarray(data["x"], np.float32), np.asarray(data["y"], np.float32)
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(
            f"Expected an .npz file with arrays 'x' and 'y' at {str(path)!r}. "
            f"Received: {type(err).__name__}: {err}"
        ) from err
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if x.ndim != 3 or x.shape[1:] != (length, 2) or y.shape != (x.shape[0], 1):
        raise ValueError(
            f"Expected x [N, {length}, 2] and y [N] in {str(path)!r}. "
            f"Received: x {list(x.shape)}, y {list(y.shape)}"
        )
    return x, y


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    length: int = 100,
    num_train: int = 10_000,
    num_validation: int = 1_000,
    num_test: int = 1_000,
) -> Splits:
    """The adding problem as batched datasets (`data_dir` is not used)."""
    seed = _checks.seed("seed", seed)
    _checks.positive_int("batch_size", batch_size)
    if _checks.positive_int("length", length) < 2:
        raise _checks.invalid("length", "an integer >= 2", length)
    sizes = {
        "train": _checks.positive_int("num_train", num_train),
        "validation": _checks.positive_int("num_validation", num_validation),
        "test": _checks.non_negative_int("num_test", num_test),
    }
    children = np.random.SeedSequence(seed).spawn(3)
    arrays = {
        name: generate(n, length, np.random.default_rng(child))
        for (name, n), child in zip(sizes.items(), children, strict=True)
    }
    if test_path is not None:
        arrays["test"] = read_npz(test_path, length)
    datasets = {
        name: batched((x, y), training=name == "train", batch_size=batch_size, seed=seed)
        for name, (x, y) in arrays.items()
    }
    x_test, y_test = arrays["test"]
    info = SourceInfo(
        name="adding",
        task="regression",
        counts={k: int(v[0].shape[0]) for k, v in arrays.items()},
        fingerprint=fingerprint(arrays),
        test_examples=[(x_test[i], float(y_test[i, 0])) for i in sample_indices(len(x_test), seed)],
        batch_size=batch_size,
        seed=seed,
        options=dict(
            length=length,
            num_train=num_train,
            num_validation=num_validation,
            num_test=num_test,
            test_path=test_path,
        ),
        extra={"baseline_mse": BASELINE_MSE, "layout": "x[:, :, 0] values, x[:, :, 1] markers"},
    )
    return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

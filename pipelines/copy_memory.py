"""`copy_memory`: the copy-memory task with delay T (Hochreiter & Schmidhuber, 1997;
Arjovsky et al., 2016), synthetic per-step classification.

Layout of one example, ``T_total = T + 2 * copy_length`` steps (defaults T=100, copy_length=10,
8 symbols)::

    inputs : s1 .. s10 | blank x (T - 1) | delimiter | blank x 10
    targets: blank x (T + 10)                          | s1 .. s10

The model reads `copy_length` random symbols, waits T steps, sees the delimiter and must output
the symbols in order. Ids follow the project convention (0 is padding, never used here, so a
model may mask on 0): 4 blank ``-``, 5 delimiter ``:``, symbols ``a, b, ...`` are 6, 7, ...
(``info.vocabulary``, char level; ``decode`` shows an example as text). A memoryless model
scores cross-entropy ``copy_length * ln(num_symbols) / T_total`` (``info.extra["baseline_loss"]``).
Task kind ``language_model``: one softmax per step over ``info.vocabulary.size`` ids.

Generated from `seed`; validation and test symbol strings that also occur in train are redrawn
so no example is in two splits. `test_path`: an ``.npz`` with ``inputs`` and ``targets``
int ``[N, T_total]``.

Element: ``(ids int32 [B, T_total], targets int32 [B, T_total])``.
"""

from __future__ import annotations

import math
import string
from pathlib import Path

import numpy as np

from pipelines import _checks
from pipelines.batching import batched, fingerprint
from pipelines.splits import SourceInfo, Splits, sample_indices
from pipelines.text import Vocabulary

BLANK_ID, DELIMITER_ID, FIRST_SYMBOL_ID = 4, 5, 6


def vocabulary(num_symbols: int) -> Vocabulary:
    """Blank ``-`` (4), delimiter ``:`` (5), symbols ``a, b, ...`` (6, 7, ...)."""
    return Vocabulary(["-", ":", *string.ascii_lowercase[:num_symbols]], level="char")


def generate(
    n: int,
    delay: int,
    copy_length: int,
    num_symbols: int,
    rng: np.random.Generator,
    exclude: set[bytes] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` examples (inputs, targets) int32 ``[n, delay + 2 * copy_length]``.

    Symbol strings in `exclude` are redrawn (to keep splits disjoint).
    """
    symbols = rng.integers(FIRST_SYMBOL_ID, FIRST_SYMBOL_ID + num_symbols, (n, copy_length))
    if exclude:
        for i in range(n):
            while symbols[i].astype(np.int8).tobytes() in exclude:
                symbols[i] = rng.integers(
                    FIRST_SYMBOL_ID, FIRST_SYMBOL_ID + num_symbols, copy_length
                )
    total = delay + 2 * copy_length
    inputs = np.full((n, total), BLANK_ID, np.int32)
    targets = np.full((n, total), BLANK_ID, np.int32)
    inputs[:, :copy_length] = symbols
    inputs[:, copy_length + delay - 1] = DELIMITER_ID
    targets[:, -copy_length:] = symbols
    return inputs, targets


def read_npz(path: str | Path, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of an ``.npz`` test file, shapes checked."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Expected an .npz file with int arrays inputs and targets "
            f"[N, {total}] at {str(path)!r}, but there is no such file."
        )
    try:
        with np.load(path) as data:
            x, y = np.asarray(data["inputs"]), np.asarray(data["targets"])
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(
            f"Expected an .npz file with arrays 'inputs' and 'targets' at "
            f"{str(path)!r}. Received: {type(err).__name__}: {err}"
        ) from err
    if x.ndim != 2 or x.shape[1] != total or y.shape != x.shape:
        raise ValueError(
            f"Expected inputs and targets [N, {total}] in {str(path)!r}. "
            f"Received: inputs {list(x.shape)}, targets {list(y.shape)}"
        )
    return x.astype(np.int32), y.astype(np.int32)


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    delay: int = 100,
    copy_length: int = 10,
    num_symbols: int = 8,
    num_train: int = 10_000,
    num_validation: int = 1_000,
    num_test: int = 1_000,
) -> Splits:
    """The copy-memory task as batched datasets (`data_dir` is not used)."""
    seed = _checks.seed("seed", seed)
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("delay", delay)
    _checks.positive_int("copy_length", copy_length)
    if not 2 <= _checks.positive_int("num_symbols", num_symbols) <= 26:
        raise _checks.invalid("num_symbols", "an integer in [2, 26]", num_symbols)
    sizes = {
        "train": _checks.positive_int("num_train", num_train),
        "validation": _checks.positive_int("num_validation", num_validation),
        "test": _checks.non_negative_int("num_test", num_test),
    }
    if num_symbols**copy_length < 4 * sum(sizes.values()):
        raise _checks.invalid(
            "num_symbols",
            f"enough symbols for {sum(sizes.values())} "
            f"distinct strings of copy_length={copy_length}",
            num_symbols,
        )
    children = np.random.SeedSequence(seed).spawn(3)
    seen: set[bytes] = set()
    arrays = {}
    for (name, n), child in zip(sizes.items(), children, strict=True):
        x, y = generate(
            n, delay, copy_length, num_symbols, np.random.default_rng(child), exclude=seen
        )
        seen.update(r.astype(np.int8).tobytes() for r in x[:, :copy_length])
        arrays[name] = (x, y)
    total = delay + 2 * copy_length
    if test_path is not None:
        arrays["test"] = read_npz(test_path, total)
    datasets = {
        name: batched((x, y), training=name == "train", batch_size=batch_size, seed=seed)
        for name, (x, y) in arrays.items()
    }
    vocab = vocabulary(num_symbols)
    x_test, y_test = arrays["test"]
    picks = sample_indices(len(x_test), seed)
    inputs = vocab.decode(x_test[picks], stop_at_end=False)
    targets = vocab.decode(y_test[picks], stop_at_end=False)
    info = SourceInfo(
        name="copy_memory",
        task="language_model",
        vocabulary=vocab,
        counts={k: int(v[0].shape[0]) for k, v in arrays.items()},
        fingerprint=fingerprint(arrays),
        test_examples=list(zip(inputs, targets, strict=True)),
        batch_size=batch_size,
        seed=seed,
        options=dict(
            delay=delay,
            copy_length=copy_length,
            num_symbols=num_symbols,
            num_train=num_train,
            num_validation=num_validation,
            num_test=num_test,
            test_path=test_path,
        ),
        extra={
            "baseline_loss": copy_length * math.log(num_symbols) / total,
            "total_length": total,
            "layout": "symbols | blank*(delay-1) | delimiter | blank*copy_length",
        },
    )
    return Splits(datasets["train"], datasets["validation"], datasets["test"], info)

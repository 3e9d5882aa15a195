"""`shakespeare`: character-level language modelling on Tiny Shakespeare.

Layout: one plain UTF-8 text file, ``<data_dir>/tinyshakespeare/input.txt`` (public copy:
karpathy/char-rnn), or TFDS ``tiny_shakespeare`` with ``use_tfds=True``.

Splits are contiguous: the text is cut at line boundaries into train | validation (| test)
segments (the first line boundary at or after ``int(f * len)``, as nanoGPT does), and windows
are cut inside each segment only, so no character is in two splits. `test_fraction=0` (the
default) gives ``test=None`` unless `test_path` (another plain text file, which then replaces the
test share: it goes to training) or TFDS provides one;
``info.test_examples`` (raw windows for export checks) then come from the validation text.
Lines that are not UTF-8 are dropped (``dropped["non_utf8"]``).

Element: ``(ids int32 [B, T], next_ids int32 [B, T])`` with ``T = seq_length``: each window of
``seq_length + 1`` characters gives inputs ``w[:-1]`` and targets ``w[1:]``. Windows start every
`shift` characters (default ``seq_length + 1``: disjoint windows, the TensorFlow tutorial's cut).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import tensorflow as tf

from pipelines import _checks
from pipelines import transforms as T
from pipelines.batching import batched, fingerprint
from pipelines.download import Remote, locate
from pipelines.files import DataUnavailableError, cache_dir, read_lines
from pipelines.splits import SourceInfo, Splits, sample_indices
from pipelines.text import Vocabulary, normalize

REMOTE = Remote(
    url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    target="tinyshakespeare/input.txt",
    about="karpathy/char-rnn, MIT; the text is public domain",
)


def read_text(path: str | Path, *, strict: bool = False) -> tuple[str, Counter]:
    """The text of a plain UTF-8 file (NFC), with non-UTF-8 lines dropped and counted."""
    lines = read_lines(path, "a plain UTF-8 text file", strict=strict)
    text = "".join(t + "\n" for t in lines.texts)
    if not text.strip():
        raise ValueError(
            f"Expected text in {str(path)!r}, but it holds only whitespace "
            f"(dropped: {dict(lines.dropped)})."
        )
    return normalize(text), Counter(lines.dropped)


def cut_points(text: str, fractions: tuple[float, ...]) -> list[int]:
    """Offsets of the first line boundary at or after each cumulative fraction of `text`."""
    points, total = [], 0.0
    for f in fractions[:-1]:
        total += f
        at = int(total * len(text))
        newline = text.find("\n", max(at - 1, 0))
        points.append(len(text) if newline < 0 else newline + 1)
    return points


def _read_tfds(download: bool) -> dict[str, str]:
    import tensorflow_datasets as tfds

    directory = cache_dir() / "tensorflow_datasets"
    try:
        parts = tfds.load(
            "tiny_shakespeare",
            split=["train", "validation", "test"],
            data_dir=str(directory),
            download=download,
        )
    except Exception as err:  # TFDS raises many types (network, assertion, not-found)
        raise DataUnavailableError(
            f"Could not load the TFDS dataset 'tiny_shakespeare' from {str(directory)!r} "
            f"({type(err).__name__}: {str(err)[:200]}). Use the plain text file instead "
            "(use_tfds=False) or prepare it when online."
        ) from err
    return {
        name: normalize("".join(e["text"].decode("utf-8") for e in tfds.as_numpy(ds)))
        for name, ds in zip(("train", "validation", "test"), parts, strict=True)
    }


def locate_data(
    *,
    data_dir: str | None = None,
    download: bool = True,
    path: str | None = None,
    use_tfds: bool = False,
    **_,
) -> Path | None:
    """The text file: `path`, else ``tinyshakespeare/input.txt`` found or downloaded (`None`
    with `use_tfds`)."""
    if use_tfds:
        return None
    if path:
        return Path(path)
    return locate(
        "tinyshakespeare/input.txt",
        what="the Tiny Shakespeare text",
        explicit_dir=data_dir,
        remote=REMOTE,
        download=download,
    )


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    path: str | None = None,
    seq_length: int = 100,
    shift: int | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    lowercase: bool = False,
    use_tfds: bool = False,
    download: bool = True,
    strict: bool = False,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Tiny Shakespeare windows as batched datasets (see module docstring)."""
    seed = _checks.seed("seed", seed)
    strict = _checks.boolean("strict", strict)
    lowercase = _checks.boolean("lowercase", lowercase)
    use_tfds = _checks.boolean("use_tfds", use_tfds)
    download = _checks.boolean("download", download)  # also read by TFDS
    _checks.positive_int("batch_size", batch_size)
    _checks.positive_int("seq_length", seq_length)
    shift = seq_length + 1 if shift is None else _checks.positive_int("shift", shift)
    vf = _checks.fraction("validation_fraction", validation_fraction, allow_zero=False)
    tf_ = _checks.fraction("test_fraction", test_fraction)
    if vf + tf_ >= 1:
        raise _checks.invalid(
            "test_fraction", f"a float below 1 - validation_fraction = {1 - vf}", test_fraction
        )
    dropped: Counter = Counter()
    if use_tfds:
        segments = _read_tfds(download)
        source = "tfds:tiny_shakespeare"
    else:
        file = locate_data(data_dir=data_dir, download=download, path=path)
        text, dropped = read_text(file, strict=strict)
        # With test_path the test share goes to training, as in the other sources.
        fr = (1 - vf, vf, 0.0) if test_path is not None else (1 - vf - tf_, vf, tf_)
        a, b = cut_points(text, fr)
        segments = {"train": text[:a], "validation": text[a:b], "test": text[b:] if tf_ else ""}
        source = str(file)
    if test_path is not None:
        segments["test"], test_dropped = read_text(test_path, strict=strict)
        dropped.update({f"test_{k}": v for k, v in test_dropped.items()})
    if lowercase:
        segments = {k: v.lower() for k, v in segments.items()}

    if vocabularies:
        vocab = vocabularies["text"]
    else:
        vocab = Vocabulary.build([segments["train"]], level="char", lowercase=lowercase)
    datasets, counts, windows, encoded = {}, {}, {}, {}
    for split, segment in segments.items():
        if not segment and split == "test":
            continue
        if not segment:  # the cut fell after the text's last line break
            raise ValueError(
                f"The {split} text of {source} is empty: splits are cut at line breaks, and "
                f"none follows the {split} cut (validation_fraction={vf}). Expected a text of "
                "many lines."
            )
        ids = vocab.encode([segment]).flat_values
        n = max(0, (int(ids.shape[0]) - (seq_length + 1)) // shift + 1)
        if n == 0:
            where = f" ({test_path})" if split == "test" and test_path is not None else ""
            raise ValueError(
                f"The {split} text{where} has {int(ids.shape[0])} characters, fewer than "
                f"seq_length + 1 = {seq_length + 1}; lower `seq_length`."
            )
        counts[split], windows[split] = n, (segment, n)
        # the windows of `T.windows`, cut once: [n, seq_length + 1] (none crosses a split)
        frames = encoded[split] = tf.signal.frame(ids, seq_length + 1, shift)
        datasets[split] = batched(
            frames,
            training=split == "train",
            batch_size=batch_size,
            seed=seed,
            maps=[T.shift_for_language_model()],
        )
    examples = []
    segment, n = windows["test" if "test" in windows else "validation"]  # held-out text
    for i in sample_indices(n, seed):
        start = i * shift
        examples.append(
            (segment[start : start + seq_length], segment[start + 1 : start + seq_length + 1])
        )
    info = SourceInfo(
        name="shakespeare",
        task="language_model",
        vocabulary=vocab,
        counts=counts,
        dropped={k: v for k, v in sorted(dropped.items()) if v},
        test_examples=examples,
        fingerprint=fingerprint(encoded),
        batch_size=batch_size,
        seed=seed,
        options=dict(
            seq_length=seq_length,
            shift=shift,
            validation_fraction=vf,
            test_fraction=tf_,
            lowercase=lowercase,
            use_tfds=use_tfds,
            test_path=test_path,
        ),
        extra={"source": source, "characters": {k: len(v) for k, v in segments.items()}},
    )
    return Splits(datasets["train"], datasets["validation"], datasets.get("test"), info)

"""`imdb`: IMDB movie-review sentiment (0 negative, 1 positive), word level, via TFDS.

Data: ``tensorflow_datasets.load("imdb_reviews")`` (25,000 train / 25,000 test reviews),
prepared in ``<data_dir>/tensorflow_datasets`` when that folder exists, else in
``<cache>/tensorflow_datasets`` (TFDS downloads it there; offline this fails with a
`DataUnavailableError`).

Text: ``<br />`` tags become spaces, lowercase, punctuation ``.,!?;:"()`` split into tokens;
reviews keep their first `max_length` tokens. Splits: TFDS train cut into train / validation
(grouped by review text), TFDS test as test. `test_path`: a folder in the ``aclImdb`` layout
(``pos/*.txt`` and ``neg/*.txt``, or a parent holding ``test/pos`` ...).

Element: ``(word_ids int32 [B, T], label int32 [B])``; training batches bucketed by length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from pipelines import _checks
from pipelines.classification import assemble, by_split
from pipelines.files import DataUnavailableError, cache_dir
from pipelines.files import data_dir as resolve_data_dir
from pipelines.splits import Splits, assign_splits, select
from pipelines.text import Vocabulary, normalize

LABELS = ["negative", "positive"]
PUNCTUATION = '.,!?;:"()'
REPLACEMENTS = (("<br\\s*/?>", " "),)


def tfds_dir(data_dir: str | None) -> Path:
    """Where TFDS data is read and prepared."""
    own = resolve_data_dir(data_dir) / "tensorflow_datasets"
    return own if own.is_dir() else cache_dir() / "tensorflow_datasets"


def read_tfds(data_dir: str | None, download: bool) -> dict[str, tuple[list[str], list[int]]]:
    """{"train": (texts, labels), "test": ...} from TFDS ``imdb_reviews``."""
    import tensorflow_datasets as tfds

    directory = tfds_dir(data_dir)
    try:
        parts = tfds.load(
            "imdb_reviews",
            split=["train", "test"],
            as_supervised=True,
            data_dir=str(directory),
            download=download,
        )
    except Exception as err:  # TFDS raises many types (network, assertion, not-found)
        raise DataUnavailableError(
            f"Could not load the TFDS dataset 'imdb_reviews' from {str(directory)!r} "
            f"({type(err).__name__}: {str(err)[:200]}). Prepare it when online with "
            f"tfds.load('imdb_reviews', data_dir={str(directory)!r}), or pass a data directory "
            "containing tensorflow_datasets/imdb_reviews."
        ) from err
    out = {}
    for name, ds in zip(("train", "test"), parts, strict=True):
        texts, labels = [], []
        for text, label in tfds.as_numpy(ds):
            texts.append(text.decode("utf-8", "replace"))
            labels.append(int(label))
        out[name] = (texts, labels)
    return out


def read_acl_dir(path: str | Path) -> tuple[list[str], list[int], Counter]:
    """Reviews of an aclImdb-layout folder: ``pos/*.txt`` (label 1), ``neg/*.txt`` (label 0)."""
    path = Path(path)
    if (path / "test" / "pos").is_dir():
        path = path / "test"
    if not ((path / "pos").is_dir() and (path / "neg").is_dir()):
        raise FileNotFoundError(
            f"Expected an aclImdb-style folder with pos/*.txt and neg/*.txt at {str(path)!r}, "
            "but those sub-folders are missing."
        )
    texts, labels, dropped = [], [], Counter()
    for label, sub in ((0, "neg"), (1, "pos")):
        for file in sorted((path / sub).glob("*.txt")):
            try:
                text = file.read_bytes().decode("utf-8-sig").strip()
            except UnicodeDecodeError:
                dropped["non_utf8"] += 1
                continue
            if not text:
                dropped["empty"] += 1
                continue
            texts.append(text)
            labels.append(label)
    if not texts:
        raise ValueError(
            f"Expected review .txt files under {str(path)!r}/pos and /neg, but "
            f"none is usable (dropped: {dict(dropped)})."
        )
    return texts, labels, dropped


def load(
    *,
    data_dir: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    test_path: str | None = None,
    validation_fraction: float = 0.1,
    max_tokens: int | None = 20_000,
    min_count: int = 1,
    max_length: int | None = 256,
    download: bool = True,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """IMDB reviews as batched datasets (see module docstring)."""
    seed = _checks.seed("seed", seed)
    download = _checks.boolean("download", download)  # also read by TFDS
    _checks.positive_int("batch_size", batch_size)
    vf = _checks.fraction("validation_fraction", validation_fraction)
    _checks.optional_positive_int("max_length", max_length)
    parts = read_tfds(data_dir, download)
    texts, labels = parts["train"]
    dropped: Counter = Counter()
    if test_path is not None:
        test_texts, test_labels, test_dropped = read_acl_dir(test_path)
        dropped.update({f"test_{k}": v for k, v in test_dropped.items()})
    else:
        test_texts, test_labels = parts["test"]
    test_keys = {normalize(t) for t in test_texts}
    keys = [normalize(t) for t in texts]
    keep = [k not in test_keys for k in keys]
    dropped["in_test"] += keep.count(False)
    texts, labels, keys = select(keep, texts, labels, keys)
    groups = by_split(texts, labels, assign_splits(keys, (1 - vf, vf, 0.0), seed))
    groups["test"] = (test_texts, test_labels)
    options = dict(
        validation_fraction=vf,
        max_tokens=max_tokens,
        min_count=min_count,
        max_length=max_length,
        test_path=test_path,
    )
    return assemble(
        name="imdb",
        splits=groups,
        label_names=LABELS,
        vocab_options=dict(
            level="word",
            lowercase=True,
            punctuation=PUNCTUATION,
            replacements=REPLACEMENTS,
            max_tokens=max_tokens,
            min_count=min_count,
        ),
        batch_size=batch_size,
        seed=seed,
        dropped=dropped,
        options=options,
        max_length=max_length,
        bucket=True,
        extra={"tfds_dir": str(tfds_dir(data_dir))},
        vocabularies=vocabularies,
    )

"""`translation`: sentence pairs (ManyThings / Tatoeba), word level, English <-> Spanish.

Layout: ``<data_dir>/spa-eng/spa.txt``, one pair per UTF-8 line,
``english<TAB>spanish[<TAB>attribution]`` (the attribution column of newer ManyThings files is
ignored). Public copy: TensorFlow's ``spa-eng.zip``. Data: www.manythings.org/anki and
tatoeba.org, CC-BY 2.0 (France).

Cleaning, counted in ``info.dropped``: ``"non_utf8"``, ``"empty"``, ``"malformed"`` (not 2
fields, or 3 with a third that neither starts ``CC-BY`` nor is empty, or an empty side),
``"duplicate"`` (the same pair again, after NFC and lowercasing), ``"too_long"`` (more than
`max_length` tokens on either side).

Text: lowercase, punctuation ``.?!,¿¡;:"`` split into tokens (``"¿Qué?"`` -> ``¿ qué ?``).
Splits: grouped by sentence on both sides, seeded: pairs that share an English or a Spanish
sentence, directly or through other pairs, stay in one split (one English sentence with several
Spanish translations, in either `direction`), so no test reference or source is trained on. `direction`: ``"eng-spa"`` (default) or ``"spa-eng"``.

Element: ``((src_ids [B, Ts], tgt_in_ids [B, Tt]), tgt_out_ids [B, Tt])``, int32, see
`pipelines.seq2seq`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from pipelines import _checks, seq2seq
from pipelines.download import Remote, locate
from pipelines.files import bad_line, non_blank, read_lines, skip
from pipelines.splits import Splits, assign_splits, linked_keys, select
from pipelines.text import Vocabulary, normalize, split_tokens

DIRECTIONS = ("eng-spa", "spa-eng")
PUNCTUATION = '.?!,¿¡;:"'
ATTRIBUTION = "CC-BY"  # how the third column of newer ManyThings files starts
REMOTE = Remote(
    url="http://storage.googleapis.com/download.tensorflow.org/data/spa-eng.zip",
    target="spa-eng/spa.txt",
    members={"spa-eng/spa.txt": "spa-eng/spa.txt", "spa-eng/_about.txt": "spa-eng/_about.txt"},
    about="ManyThings.org / Tatoeba, CC-BY 2.0 (France)",
)


def read_pairs(path: str | Path, *, strict: bool = False) -> tuple[list[str], list[str], Counter]:
    """(english, other, dropped) of a ManyThings pairs file (see module docstring)."""
    lines = read_lines(path, "a tab-separated pairs file (english<TAB>translation)", strict=strict)
    first, second, dropped = [], [], Counter(lines.dropped)
    for number, line in non_blank(lines, dropped, lines.path):
        fields = line.split("\t")
        # A third field must be ManyThings' attribution, or empty (a trailing tab): a tab
        # inside a sentence would otherwise cut that sentence short unseen.
        attributed = len(fields) == 3 and (
            fields[2].startswith(ATTRIBUTION) or not fields[2].strip()
        )
        if not (len(fields) == 2 or attributed) or not fields[0].strip() or not fields[1].strip():
            if strict:
                raise bad_line(
                    lines.path,
                    number,
                    "expected english<TAB>translation[<TAB>attribution] (starting "
                    f"{ATTRIBUTION!r}) with both sentences non-empty",
                    line,
                )
            skip(dropped, "malformed", lines.path, number, line)
            continue
        first.append(normalize(fields[0].strip()))
        second.append(normalize(fields[1].strip()))
    if not first:
        raise ValueError(
            f"Expected sentence pairs in {str(lines.path)!r}, but no line is "
            f"usable (dropped: {dict(dropped)})."
        )
    return first, second, dropped


def token_counts(texts: Sequence[str], lowercase: bool) -> np.ndarray:
    """Number of word tokens of each text under this source's standardization."""
    if not texts:
        return np.zeros([0], np.int64)
    tokens = split_tokens(
        tf.constant(list(texts)),
        level="word",
        lowercase=lowercase,
        punctuation=PUNCTUATION,
        replacements=(),
    )
    return tokens.row_lengths().numpy()


def locate_data(
    *, data_dir: str | None = None, download: bool = True, path: str | None = None, **_
) -> Path:
    """The pairs file: `path`, else ``spa-eng/spa.txt`` found or downloaded."""
    if path:
        return Path(path)
    return locate(
        "spa-eng/spa.txt",
        what="the English-Spanish pairs file",
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
    direction: str = "eng-spa",
    max_length: int | None = 20,
    lowercase: bool = True,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_tokens: int | None = None,
    min_count: int = 1,
    target_min_count: int | None = None,
    download: bool = True,
    strict: bool = False,
    vocabularies: Mapping[str, Vocabulary] | None = None,
) -> Splits:
    """Translation pairs as batched datasets (see module docstring).

    Args:
        max_length: drop pairs with more tokens on either side (`None`: keep all).
        max_tokens, min_count: vocabulary limits (each side).
        target_min_count: the target side's `min_count` when it differs (the output layer's
            width, most of a training step's cost, is the target vocabulary's size).
        test_path: a pairs file in the same layout used as the test split (pairs sharing an
            English or a Spanish sentence with it are removed from train / validation).
    """
    seed = _checks.seed("seed", seed)
    download = _checks.boolean("download", download)
    strict = _checks.boolean("strict", strict)
    lowercase = _checks.boolean("lowercase", lowercase)
    _checks.positive_int("batch_size", batch_size)
    _checks.one_of("direction", direction, DIRECTIONS)
    _checks.optional_positive_int("max_length", max_length)
    _checks.optional_positive_int("target_min_count", target_min_count)
    fr = _checks.fractions("fractions", fractions)
    file = locate_data(data_dir=data_dir, download=download, path=path)
    english, other, dropped = read_pairs(file, strict=strict)
    src, tgt = (english, other) if direction == "eng-spa" else (other, english)
    src, tgt = _clean(src, tgt, lowercase, max_length, dropped)

    src_keys = [normalize(s, lowercase) for s in src]
    tgt_keys = [normalize(t, lowercase) for t in tgt]
    external = None
    if test_path is not None:
        t_en, t_other, t_dropped = read_pairs(test_path, strict=strict)
        dropped.update({f"test_{k}": v for k, v in t_dropped.items()})
        external = (t_en, t_other) if direction == "eng-spa" else (t_other, t_en)
        test_src, test_tgt = ({normalize(s, lowercase) for s in side} for side in external)
        keep = [s not in test_src and t not in test_tgt
                for s, t in zip(src_keys, tgt_keys, strict=True)]
        dropped["in_test_path"] += keep.count(False)
        src, tgt, src_keys, tgt_keys = select(keep, src, tgt, src_keys, tgt_keys)
        fr = (fr[0] + fr[2], fr[1], 0.0)
    split = assign_splits(linked_keys(src_keys, tgt_keys), fr, seed)
    groups = {
        name: (
            [s for s, i in zip(src, split, strict=True) if i == n],
            [t for t, i in zip(tgt, split, strict=True) if i == n],
        )
        for n, name in enumerate(("train", "validation", "test"))
    }
    if external is not None:
        groups["test"] = (list(external[0]), list(external[1]))
    vocab_options = dict(
        level="word",
        lowercase=lowercase,
        punctuation=PUNCTUATION,
        max_tokens=max_tokens,
        min_count=min_count,
    )
    options = dict(
        direction=direction,
        max_length=max_length,
        lowercase=lowercase,
        fractions=fr,
        max_tokens=max_tokens,
        min_count=min_count,
        target_min_count=target_min_count,
        test_path=test_path,
    )
    target_options = {**vocab_options, "min_count": target_min_count or min_count}
    return seq2seq.assemble(
        name="translation",
        splits=groups,
        source_options=vocab_options,
        target_options=target_options,
        batch_size=batch_size,
        seed=seed,
        dropped=dropped,
        options=options,
        extra={"file": str(file), "direction": direction},
        vocabularies=vocabularies,
    )


def _clean(src, tgt, lowercase, max_length, dropped):
    """Drop duplicate pairs (after normalization) and pairs longer than `max_length`."""
    seen, keep = set(), []
    for s, t in zip(src, tgt, strict=True):
        key = (normalize(s, lowercase), normalize(t, lowercase))
        keep.append(key not in seen)
        seen.add(key)
    dropped["duplicate"] += keep.count(False)
    src, tgt = select(keep, src, tgt)
    if max_length is not None:
        longest = np.maximum(token_counts(src, lowercase), token_counts(tgt, lowercase))
        keep = (longest <= max_length).tolist()
        dropped["too_long"] += keep.count(False)
        src, tgt = select(keep, src, tgt)
    return src, tgt

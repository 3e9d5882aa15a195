"""Vocabularies: text to token ids and back, the same in Python and inside a TensorFlow graph.

Id convention (whole project): 0 padding, 1 out-of-vocabulary, 2 start, 3 end; learned tokens
get ids 4, 5, ... in order of decreasing training-set frequency (ties by token text).

One standardization pipeline, written once with `tf.strings` ops, serves vocabulary building,
Python `encode` and the in-graph `tokenize_tf` (the exporter puts it in the SavedModel):

1. Unicode NFC. Core TensorFlow has no normalization op (`tf.strings.unicode_transcode`
   changes encodings, not normal forms), so NFC is applied on the Python side by
   `unicodedata.normalize`. In the graph, literal `regex_replace`s do what NFC does to the
   vocabulary's characters: the characters NFC replaces (the Kelvin sign, the Greek question
   mark, composition exclusions) are replaced, and the canonical decompositions (NFD) of
   every character the vocabulary knows are recomposed, so decomposed input of known
   characters (``"z\\u0307"`` for ``"ż"``) still gives the NFC ids; those of every other
   composite become one out-of-vocabulary character, as NFC makes them. Not handled: a
   composite whose marks are not adjacent in the input (canonical order may put a mark of a
   lower class between them: NFD "أَ" is alef, fatha, hamza above), input that is neither NFC
   nor NFD for characters with several marks, decomposed Hangul syllables, a replaced
   character whose replacement the vocabulary lacks followed by a combining mark (NFC may
   compose the two: Kelvin sign + acute is "Ḱ"), and a several-character `replacements`
   pattern that needs such a replacement through an escape (``\\x{3b}`` for ";").
2. `replacements`: (RE2 pattern, rewrite) pairs in order, e.g. ``("<br\\s*/?>", " ")``.
3. `lowercase`: `tf.strings.lower(encoding="utf-8")`, full Unicode, as `str.lower` up to
   Unicode 13 (``"ŁÓDŹ" -> "łódź"``, ``"Großmann"`` keeps its ``ß``; 40 letters added in
   Unicode 14, such as Vithkuqi, stay uppercase).
4. Split. ``level="char"``: Unicode code points (`tf.strings.unicode_split`; invalid UTF-8
   becomes U+FFFD, hence OOV). ``level="word"``: each character of `punctuation` becomes a
   token of its own, Unicode spaces (``\\p{Z}``) count as spaces, `tf.strings.split`.
5. Lookup in a `tf.lookup.StaticHashTable`; unknown tokens get id 1.

Why not `keras.layers.TextVectorization`: its ``standardize="lower"`` calls `tf.strings.lower`
without ``encoding="utf-8"``, which lowercases ASCII only (``"ŁÓDŹ" -> "ŁÓdŹ"``), and it reserves
only ids 0 and 1, not the project's start and end ids. The same `tf.strings` ops are used here,
with Unicode lowercasing and the full id convention.

Example:

>>> vocab = Vocabulary.build(["Broż", "Großmann"], level="char")
>>> vocab.decode(vocab.encode(["Broż"]))
['Broż']
"""

from __future__ import annotations

import functools
import json
import os
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from pipelines._checks import (
    boolean,
    invalid,
    non_negative_int,
    one_of,
    optional_positive_int,
)
from pipelines._checks import texts as checked_texts

PAD_ID, OOV_ID, START_ID, END_ID = 0, 1, 2, 3
SPECIAL_TOKENS = ("", "[UNK]", "[START]", "[END]")
NUM_SPECIAL = len(SPECIAL_TOKENS)
UNLEARNED = frozenset(SPECIAL_TOKENS) | {"\ufffd"}  # never learned by `Vocabulary.build`
LEVELS = ("char", "word")
JSON_FORMAT = "keras_seq.vocabulary"
JSON_VERSION = 1


def normalize(text: str, lowercase: bool = False) -> str:
    """NFC-normalize (and optionally lowercase) one string, as the Python side of `encode` does."""
    text = unicodedata.normalize("NFC", text)
    return text.lower() if lowercase else text


def _re2_literal(text: str) -> str:
    """An RE2 pattern matching `text` literally (`\\x{...}` escapes for everything not [0-9A-Za-z])."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


@functools.cache
def _normal_forms() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(composites, replaced), Hangul syllables left out. Composites: every character that NFC
    composes from its canonical decomposition (941 in Unicode 15). Replaced: every character
    that NFC replaces (1,120): singletons such as the Kelvin sign (-> "K"), the Greek question
    mark (-> ";") or CJK compatibility ideographs, and composition exclusions such as U+0958
    (-> U+0915 U+093C)."""
    composites, replaced = [], []
    for cp in range(sys.maxunicode + 1):
        if 0xAC00 <= cp <= 0xD7A3:
            continue
        c = chr(cp)
        if unicodedata.normalize("NFC", c) != c:
            replaced.append(c)
        elif unicodedata.normalize("NFD", c) != c:
            composites.append(c)
    return tuple(composites), tuple(replaced)


def _composites() -> tuple[str, ...]:
    return _normal_forms()[0]


def _replaced() -> tuple[str, ...]:
    return _normal_forms()[1]


def _rewritten(chars: Sequence[str], replacements: Sequence[tuple[str, str]]) -> set[str]:
    """The characters of `chars` that the `replacements` (RE2) change."""
    if not replacements:
        return set()
    with tf.init_scope():  # eager, also when the tokenizer is first built inside a tf.function
        strings = tf.constant(list(chars))
        for pattern, rewrite in replacements:
            strings = tf.strings.regex_replace(strings, pattern, rewrite)
        after = [s.decode("utf-8") for s in strings.numpy()]
    return {c for c, a in zip(chars, after, strict=True) if a != c}


def _compositions(
    tokens: Iterable[str],
    lowercase: bool,
    replacements: Sequence[tuple[str, str]] = (),
    punctuation: str = "",
) -> tuple[tuple[str, str], ...]:
    """(RE2 pattern, rewrite) pairs that give input the ids of its NFC form.

    First the characters NFC replaces (`_replaced`): each becomes its NFC form, or, when that
    is characters the vocabulary lacks (and no leading mark, space, punctuation or replacement
    is involved: a replacement rewrites it, or names it literally in its pattern), as many
    characters the vocabulary lacks. Then the decompositions (NFD): a known
    character's decomposition becomes the character. The decompositions of the other
    composites become one character the vocabulary lacks, so that, as after Python's NFC, an
    unknown accented letter is one out-of-vocabulary token, not a known base letter and a mark.
    A composite that a replacement rewrites is recomposed exactly, for the replacement to see.
    Longest decompositions first, so that "u" + diaeresis + acute is not cut after the
    diaeresis when only "ü" is known.
    """
    chars: set[str] = set()
    for token in tokens:
        chars.update(token)
    nfc = {c: unicodedata.normalize("NFC", c) for c in _replaced()}
    rewritten = _rewritten((*_composites(), *nfc, *set(nfc.values())), replacements)
    unknown = next(c for c in ("\ufffd", *map(chr, range(0xE000, 0xF900))) if c not in chars)
    in_patterns = set("".join(pattern for pattern, _ in replacements))  # "&#39;" may need ";"
    pairs: list[tuple[str, str]] = []
    exact: list[tuple[str, str]] = []
    unknown_by_length: dict[int, list[str]] = {}
    for c, n in nfc.items():
        target = n.lower() if lowercase else n
        # Exact when its replacement may be known, split or rewritten, or compose with the
        # character before (a leading mark: U+0340 is U+0300, and "a" U+0300 is "à").
        if (len(target) != len(n) or c in rewritten or n in rewritten
                or unicodedata.combining(n[0])
                or any(ch in chars or ch in punctuation or ch in in_patterns
                       or unicodedata.category(ch).startswith("Z") for ch in target + n)):
            exact.append((_re2_literal(c), n))
        else:
            unknown_by_length.setdefault(len(n), []).append(_re2_literal(c))
    for length, patterns in sorted(unknown_by_length.items()):
        pairs.append(("(?:" + "|".join(sorted(patterns)) + ")", unknown * length))
    pairs += sorted(exact)
    by_length: dict[int, tuple[list[str], list[tuple[str, str]]]] = {}
    for c in _composites():
        d = unicodedata.normalize("NFD", c)
        others, known = by_length.setdefault(len(d), ([], []))
        # Recomposed exactly unless it becomes one character the vocabulary lacks (with
        # `lowercase`, its lowercase: "É" -> "é"; "İ" -> "i" + combining dot, two tokens).
        target = c.lower() if lowercase else c
        if len(target) == 1 and target not in chars and c not in rewritten:
            others.append(_re2_literal(d))
        else:
            known.append((_re2_literal(d), c))
    for length in sorted(by_length, reverse=True):
        others, known = by_length[length]
        if others:
            pairs.append(("(?:" + "|".join(sorted(others)) + ")", unknown))
        pairs += sorted(known)
    return tuple(pairs)


def split_tokens(
    strings: tf.Tensor,
    *,
    level: str,
    lowercase: bool,
    punctuation: str,
    replacements: Sequence[tuple[str, str]],
    compositions: Sequence[tuple[str, str]] = (),
) -> tf.RaggedTensor:
    """Standardize and split `strings` (string `[N]`) into a `RaggedTensor` of tokens `[N, None]`.

    Pure `tf.strings` ops: traceable inside `tf.function`, the same eagerly and in a graph.
    """
    for pattern, rewrite in (*compositions, *replacements):
        strings = tf.strings.regex_replace(strings, pattern, rewrite)
    if lowercase:
        strings = tf.strings.lower(strings, encoding="utf-8")
    if level == "char":
        return tf.strings.unicode_split(strings, "UTF-8", errors="replace")
    if punctuation:
        char_class = "[" + "".join(_re2_literal(c) for c in punctuation) + "]"
        strings = tf.strings.regex_replace(strings, f"({char_class})", r" \1 ")
    strings = tf.strings.regex_replace(strings, r"\p{Z}", " ")
    return tf.strings.split(strings)


class Tokenizer(tf.Module):
    """In-graph tokenizer of a `Vocabulary`: string `[N]` -> int32 ids `RaggedTensor [N, None]`.

    A `tf.Module` owning its lookup table, so an exporter can track it
    (`keras.export.ExportArchive.track(vocab.tokenizer)`) and call it from a serving function.
    The standardization options are Python constants baked in when it is traced.
    """

    def __init__(self, vocabulary: Vocabulary):
        super().__init__(name="keras_seq_tokenizer")
        learned = list(vocabulary.tokens[NUM_SPECIAL:])
        keys = tf.constant(learned, dtype=tf.string)
        values = tf.range(NUM_SPECIAL, NUM_SPECIAL + len(learned), dtype=tf.int64)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, values), default_value=OOV_ID
        )
        self._options = dict(
            level=vocabulary.level,
            lowercase=vocabulary.lowercase,
            punctuation=vocabulary.punctuation,
            replacements=vocabulary.replacements,
            compositions=_compositions(learned, vocabulary.lowercase, vocabulary.replacements,
                                       vocabulary.punctuation),
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, strings: tf.Tensor) -> tf.RaggedTensor:
        tokens = split_tokens(strings, **self._options)
        ids = tf.ragged.map_flat_values(self.table.lookup, tokens)
        return tf.cast(ids, tf.int32)


class Vocabulary:
    """Token <-> id mapping with the project's special ids (0 pad, 1 OOV, 2 start, 3 end).

    Args:
        tokens: learned tokens, in id order (ids 4, 5, ...). No duplicates, none empty.
        level: ``"char"`` (Unicode code points) or ``"word"``.
        lowercase: lowercase text before splitting.
        punctuation: word level only: characters split off as tokens of their own.
        replacements: (RE2 pattern, rewrite) pairs applied before lowercasing.
    """

    def __init__(
        self,
        tokens: Sequence[str],
        *,
        level: str = "char",
        lowercase: bool = False,
        punctuation: str = "",
        replacements: Sequence[Sequence[str]] = (),
        _stored: bool = False,
    ):
        one_of("level", level, LEVELS)
        tokens = checked_texts("tokens", tokens)
        # Files written before `build` left special-token texts out may hold them as learned
        # tokens ("[UNK]" at id 4, say): `from_config` keeps their ids, so old runs still load.
        refused = {""} if _stored else set(SPECIAL_TOKENS)
        if len(set(tokens)) != len(tokens) or set(tokens) & refused:
            bad = next((t for t, n in Counter(tokens).items() if n > 1 or t in refused))
            shown = [t for t in SPECIAL_TOKENS if t in refused]
            raise invalid("tokens", f"distinct strings, none of {shown}", bad)
        if level == "char" and any(len(t) != 1 for t in tokens):
            bad = next(t for t in tokens if len(t) != 1)
            raise invalid("tokens", "single characters when level='char'", bad)
        if not isinstance(punctuation, str):
            raise invalid("punctuation", "a str of characters", punctuation)
        if level == "char" and punctuation:
            raise invalid("punctuation", "'' when level='char'", punctuation)
        pairs = []
        for pair in replacements:
            ok = isinstance(pair, (tuple, list)) and len(pair) == 2
            if not ok or not all(isinstance(p, str) for p in pair):
                raise invalid("replacements", "(pattern, rewrite) string pairs", pair)
            pairs.append((pair[0], pair[1]))
        self.level = level
        self.lowercase = boolean("lowercase", lowercase)
        self.punctuation = punctuation
        self.replacements: tuple[tuple[str, str], ...] = tuple(pairs)
        if tokens and not _stored:
            # The last steps of splitting (lowercasing, punctuation split off, whitespace
            # split) leave a token they could give as it is; any other token never matches.
            options = {**self._split_options(), "replacements": ()}
            split = split_tokens(tf.constant(tokens), **options).to_list()
            bad = next((t for t, row in zip(tokens, split, strict=True)
                        if row != [t.encode("utf-8")]), None)
            if bad is not None:
                raise invalid(
                    "tokens", "tokens that split text can hold (none with uppercase when "
                    "lowercase=True; at level='word' none with whitespace, and a punctuation "
                    "character only on its own)", bad)
        self.tokens: tuple[str, ...] = SPECIAL_TOKENS + tuple(tokens)
        self._index = {t: i for i, t in enumerate(tokens, start=NUM_SPECIAL)}
        self._tokenizer: Tokenizer | None = None

    # ---------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        *,
        level: str = "char",
        lowercase: bool = False,
        punctuation: str = "",
        replacements: Sequence[Sequence[str]] = (),
        max_tokens: int | None = None,
        min_count: int = 1,
    ) -> Vocabulary:
        """Vocabulary of the tokens in `texts` (the training split only).

        Args:
            max_tokens: keep at most this many learned tokens (ids 4 .. 4 + max_tokens - 1),
                the most frequent. `None`: all.
            min_count: drop tokens seen fewer times.
        """
        one_of("level", level, LEVELS)
        optional_positive_int("max_tokens", max_tokens)
        non_negative_int("min_count", min_count)
        probe = cls(
            [], level=level, lowercase=lowercase, punctuation=punctuation, replacements=replacements
        )
        counts: Counter[bytes] = Counter()
        for chunk in _chunks([normalize(t) for t in checked_texts("texts", texts)], 50_000):
            tokens = split_tokens(tf.constant(chunk, dtype=tf.string), **probe._split_options())
            counts.update(tokens.flat_values.numpy().tolist())
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        learned = [t.decode("utf-8", "replace") for t, n in ranked if n >= max(min_count, 1)]
        # Text that spells a special token ("[UNK]") or held invalid UTF-8 (U+FFFD) is OOV.
        learned = [t for t in dict.fromkeys(learned) if t not in UNLEARNED][:max_tokens]
        return cls(
            learned,
            level=level,
            lowercase=lowercase,
            punctuation=punctuation,
            replacements=replacements,
        )

    def extended(self, texts: Iterable[str]) -> Vocabulary:
        """This vocabulary plus the tokens of `texts` that it lacks, after its own, so every
        id it gives stays the same."""
        known = set(self.tokens)
        found = Vocabulary.build(texts, **self._split_options()).tokens[NUM_SPECIAL:]
        missing = [t for t in found if t not in known]
        if not missing:
            return self
        # `_stored`: this vocabulary's own tokens keep their ids, even an old file's "[UNK]".
        return Vocabulary(
            [*self.tokens[NUM_SPECIAL:], *missing], **self._split_options(), _stored=True
        )

    def _split_options(self) -> dict[str, Any]:
        return dict(
            level=self.level,
            lowercase=self.lowercase,
            punctuation=self.punctuation,
            replacements=self.replacements,
        )

    # ---------------------------------------------------------------- properties
    @property
    def size(self) -> int:
        """Number of ids, specials included (the `input_dim` of an `Embedding`)."""
        return len(self.tokens)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.get_config() == other.get_config()

    def __repr__(self) -> str:
        return f"Vocabulary(level={self.level!r}, size={self.size}, lowercase={self.lowercase})"

    def token_to_id(self, token: str) -> int:
        """Id of one token (1 if unknown)."""
        return self._index.get(token, OOV_ID)

    def id_to_token(self, index: int) -> str:
        """Token of one id (``""`` padding, ``[UNK]``, ``[START]``, ``[END]`` for 0-3;
        ``[UNK]`` for an id outside the vocabulary)."""
        index = int(index)
        return self.tokens[index] if 0 <= index < self.size else SPECIAL_TOKENS[OOV_ID]

    # ---------------------------------------------------------------- encoding
    @property
    def tokenizer(self) -> Tokenizer:
        """The in-graph tokenizer (`tf.Module`), created once and reused."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self)
        return self._tokenizer

    def tokenize_tf(
        self, strings: tf.Tensor, *, add_start: bool = False, add_end: bool = False
    ) -> tf.RaggedTensor:
        """In-graph encoding of string `[N]` to int32 ids `RaggedTensor [N, None]`.

        Traceable in a `tf.function`; gives the ids of `encode` for NFC input.
        `add_start` / `add_end` put id 2 before / id 3 after each sequence.
        """
        ids = self.tokenizer(strings)
        return _add_markers(ids, add_start, add_end)

    @property
    def separator(self) -> str:
        """What joins tokens into text: nothing between characters, a space between words."""
        return "" if self.level == "char" else " "

    def split(self, texts: Sequence[str]) -> list[list[str]]:
        """Tokens of each text under this vocabulary's standardization, before any id lookup.

        Out-of-vocabulary words stay as they are (no ``[UNK]``): the reference side of BLEU.
        """
        texts = checked_texts("texts", texts)
        if not texts:
            return []
        strings = tf.constant([normalize(t) for t in texts])
        tokens = split_tokens(strings, **self._split_options())
        return [[t.decode("utf-8") for t in row] for row in tokens.to_list()]

    def encode(
        self, texts: str | Sequence[str], *, add_start: bool = False, add_end: bool = False
    ) -> tf.RaggedTensor:
        """Ids of `texts` as an int32 `RaggedTensor [N, None]` (NFC applied here, in Python)."""
        if isinstance(texts, str):
            texts = [texts]
        add_start, add_end = boolean("add_start", add_start), boolean("add_end", add_end)
        chunks = [
            self.tokenize_tf(
                tf.constant(chunk, dtype=tf.string), add_start=add_start, add_end=add_end
            )
            for chunk in _chunks([normalize(t) for t in checked_texts("texts", texts)], 50_000)
        ]
        if not chunks:
            return tf.RaggedTensor.from_row_lengths(
                tf.zeros([0], tf.int32), tf.zeros([0], tf.int64)
            )
        return chunks[0] if len(chunks) == 1 else tf.concat(chunks, axis=0)

    def encode_padded(
        self,
        texts: str | Sequence[str],
        *,
        length: int | None = None,
        add_start: bool = False,
        add_end: bool = False,
    ) -> np.ndarray:
        """Ids as int32 `[N, length]`, right-padded with 0 (truncated when longer than `length`)."""
        optional_positive_int("length", length)
        ids = self.encode(texts, add_start=add_start, add_end=add_end)
        if length is None:
            return ids.to_tensor(default_value=PAD_ID).numpy()
        return ids.to_tensor(default_value=PAD_ID, shape=[None, length]).numpy()

    def decode(self, ids: Any, *, skip_special: bool = True, stop_at_end: bool = True) -> list[str]:
        """Strings of id rows (`[N, T]` array, list of lists or `RaggedTensor`).

        Padding (0) and start (2) are dropped, decoding stops at end (3) unless
        `stop_at_end=False`; OOV (1) shows as ``[UNK]``. Word tokens are joined by one space.
        """
        rows = _rows(ids)
        sep = self.separator
        texts = []
        for row in rows:
            out = []
            for i in row:
                i = int(i)
                if i == END_ID and stop_at_end:
                    break
                if skip_special and i in (PAD_ID, START_ID, END_ID):
                    continue
                out.append(self.id_to_token(i))
            texts.append(sep.join(out))
        return texts

    # ---------------------------------------------------------------- serialization
    def get_config(self) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT,
            "version": JSON_VERSION,
            "level": self.level,
            "lowercase": self.lowercase,
            "punctuation": self.punctuation,
            "replacements": [list(p) for p in self.replacements],
            "normalization": "NFC",
            "special_ids": {"pad": PAD_ID, "oov": OOV_ID, "start": START_ID, "end": END_ID},
            "tokens": list(self.tokens),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Vocabulary:
        if not isinstance(config, dict) or config.get("format") != JSON_FORMAT:
            received = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise invalid("config", f"a dict with format={JSON_FORMAT!r}", received)
        missing = [k for k in ("tokens", "level", "lowercase") if k not in config]
        if missing:
            raise invalid("config", f"a vocabulary config with the keys {missing}", sorted(config))
        tokens = list(config["tokens"])
        if tuple(tokens[:NUM_SPECIAL]) != SPECIAL_TOKENS:
            raise invalid(
                "config", f"tokens starting with {list(SPECIAL_TOKENS)}", tokens[:NUM_SPECIAL]
            )
        return cls(
            tokens[NUM_SPECIAL:],
            level=config["level"],
            lowercase=config["lowercase"],
            punctuation=config.get("punctuation", ""),
            replacements=config.get("replacements", ()),
            _stored=True,
        )

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the vocabulary (options and id -> token list) as UTF-8 JSON."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.get_config(), f, ensure_ascii=False, indent=1)
            f.write("\n")

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Vocabulary:
        """Read a vocabulary written by `to_json`."""
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"Vocabulary file {os.fspath(path)!r} is not valid JSON: {err}"
            ) from err
        return cls.from_config(config)


def _add_markers(ids: tf.RaggedTensor, add_start: bool, add_end: bool) -> tf.RaggedTensor:
    rows = ids.nrows()
    parts = []
    if add_start:
        parts.append(tf.fill([rows, 1], tf.constant(START_ID, tf.int32)))
    parts.append(ids)
    if add_end:
        parts.append(tf.fill([rows, 1], tf.constant(END_ID, tf.int32)))
    if len(parts) == 1:
        return ids
    parts = [tf.RaggedTensor.from_tensor(p) if isinstance(p, tf.Tensor) else p for p in parts]
    return tf.concat(parts, axis=1)


def _rows(ids: Any) -> list[list[int]]:
    if isinstance(ids, tf.RaggedTensor):
        return ids.to_list()
    if isinstance(ids, tf.Tensor):
        ids = ids.numpy()
    if isinstance(ids, np.ndarray):
        return ids.reshape(1, -1).tolist() if ids.ndim == 1 else ids.tolist()
    ids = list(ids)
    if ids and not isinstance(ids[0], (list, tuple, np.ndarray)):
        return [ids]
    return [list(r) for r in ids]


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]

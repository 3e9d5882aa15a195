"""pipelines.text: Vocabulary building, encode/decode, JSON, NFC, and the in-graph tokenizer."""

import json
import re
import unicodedata
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from pipelines import text, translation
from pipelines.text import END_ID, OOV_ID, PAD_ID, START_ID, Vocabulary

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_special_ids_and_frequency_order():
    vocab = Vocabulary.build(["abb", "bcc", "cc"], level="char")
    # c x4, b x3, a x1 -> ids 4, 5, 6 after the four specials
    assert vocab.tokens == ("", "[UNK]", "[START]", "[END]", "c", "b", "a")
    assert (PAD_ID, OOV_ID, START_ID, END_ID) == (0, 1, 2, 3)
    assert vocab.size == 7 == len(vocab)
    assert vocab.encode(["abcz"]).to_list() == [[6, 5, 4, OOV_ID]]


def test_ties_broken_by_token_text_and_build_is_deterministic():
    a = Vocabulary.build(["ba", "dc"], level="char")
    b = Vocabulary.build(["dc", "ba"], level="char")
    assert a.tokens[4:] == ("a", "b", "c", "d")
    assert a == b


def test_extended_appends_the_missing_tokens_and_keeps_every_id():
    vocab = Vocabulary.build(["abb", "bcc", "cc"], level="char", lowercase=True)
    wider = vocab.extended(["d", "Ea", "e"])
    assert wider.tokens == (*vocab.tokens, "e", "d") and wider.lowercase  # by frequency
    assert vocab.extended(["cab"]) is vocab


def test_max_tokens_and_min_count():
    texts = ["a a a b b c"]
    assert Vocabulary.build(texts, level="word", max_tokens=2).tokens[4:] == ("a", "b")
    assert Vocabulary.build(texts, level="word", min_count=2).tokens[4:] == ("a", "b")


def test_names_with_diacritics_round_trip():
    vocab = Vocabulary.build(["Broż", "Großmann", "Łukasz"], level="char")
    ids = vocab.encode(["Broż", "Großmann"])
    assert vocab.decode(ids) == ["Broż", "Großmann"]
    assert OOV_ID not in ids.flat_values.numpy()


def test_python_encode_applies_nfc():
    vocab = Vocabulary.build(["Broż"], level="char")
    decomposed = unicodedata.normalize("NFD", "Broż")
    assert len(decomposed) == 5
    assert vocab.encode([decomposed]).to_list() == vocab.encode(["Broż"]).to_list()


def test_lowercase_is_full_unicode_and_keeps_eszett():
    vocab = Vocabulary.build(["łódź großmann"], level="char", lowercase=True)
    assert vocab.decode(vocab.encode(["ŁÓDŹ GROßMANN"])) == ["łódź großmann"]
    assert "Ł" not in vocab.tokens


def test_word_level_punctuation_and_unicode_spaces():
    vocab = Vocabulary.build(
        ["¿Qué tal? Hola, amigo."], level="word", lowercase=True, punctuation="¿?,."
    )
    assert set(vocab.tokens[4:]) == {"¿", "qué", "tal", "?", "hola", ",", "amigo", "."}
    ids = vocab.encode(["HOLA\u00a0amigo,tal"]).to_list()[0]
    assert vocab.decode([ids]) == ["hola amigo , tal"]


def test_replacements_apply_before_splitting():
    vocab = Vocabulary.build(
        ["good<br />bad"], level="word", replacements=[("<br\\s*/?>", " ")]
    )
    assert vocab.tokens[4:] == ("bad", "good")


def test_add_start_end_and_padding():
    vocab = Vocabulary.build(["ab"], level="char")
    padded = vocab.encode_padded(["ab", "a"], add_start=True, add_end=True)
    np.testing.assert_array_equal(padded, [[2, 4, 5, 3], [2, 4, 3, 0]])
    assert padded.dtype == np.int32
    np.testing.assert_array_equal(vocab.encode_padded(["ab", "a"], length=1), [[4], [4]])


def test_decode_drops_specials_and_stops_at_end():
    vocab = Vocabulary.build(["ab"], level="char")
    assert vocab.decode([[2, 4, 1, 5, 3, 4, 0]]) == ["a[UNK]b"]
    assert vocab.decode(np.array([2, 4, 3, 5])) == ["a"]
    assert vocab.decode([[4, 3, 5]], stop_at_end=False) == ["ab"]


def test_token_id_lookups():
    vocab = Vocabulary.build(["ab"], level="char")
    assert [vocab.id_to_token(i) for i in range(6)] == ["", "[UNK]", "[START]", "[END]", "a", "b"]
    assert vocab.id_to_token(99) == "[UNK]"
    assert vocab.token_to_id("b") == 5 and vocab.token_to_id("z") == OOV_ID


def test_encode_of_empty_list_and_single_string():
    vocab = Vocabulary.build(["ab"], level="char")
    assert vocab.encode([]).shape[0] == 0
    assert vocab.encode("ba").to_list() == [[5, 4]]


def test_json_round_trip(tmp_path):
    vocab = Vocabulary.build(
        ["Qué tal, Broż?"], level="word", lowercase=True, punctuation="?,",
        replacements=[("x", "y")],
    )
    path = tmp_path / "vocab.json"
    vocab.to_json(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["tokens"][:4] == ["", "[UNK]", "[START]", "[END]"]
    assert "broż" in raw["tokens"]  # UTF-8, not \u escapes
    assert "broż" in path.read_text(encoding="utf-8")
    loaded = Vocabulary.from_json(path)
    assert loaded == vocab
    texts = ["QUÉ tal, broż? nada"]
    assert loaded.encode(texts).to_list() == vocab.encode(texts).to_list()


def test_from_json_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid JSON"):
        Vocabulary.from_json(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"format": "something"}), encoding="utf-8")
    with pytest.raises(ValueError, match="Expected a dict with format='keras_seq.vocabulary'"):
        Vocabulary.from_json(other)
    config = Vocabulary(["a"]).get_config()
    del config["level"]
    with pytest.raises(ValueError, match=r"argument `config`. Expected a vocabulary config with "
                                         r"the keys \['level'\]"):
        Vocabulary.from_config(config)


def test_text_spelling_a_special_token_or_invalid_utf8_is_not_learned():
    # "[START]" was learned as a second token of that text (id 2 and id 4 both decoded to it),
    # and U+FFFD as a known character, so invalid UTF-8 in the graph was not out-of-vocabulary.
    vocab = Vocabulary.build(["[UNK] is bad", "hello [START]"], level="word")
    assert vocab.tokens == ("", "[UNK]", "[START]", "[END]", "bad", "hello", "is")
    assert vocab.encode(["hello [START]"]).to_list() == [[5, 1]]
    # A file written before learned "[UNK]" at id 4 still loads with every id kept.
    old = vocab.get_config() | {"tokens": [*vocab.tokens[:4], "[UNK]", *vocab.tokens[4:]]}
    loaded = Vocabulary.from_config(old)
    assert loaded.tokens == tuple(old["tokens"])
    assert loaded.encode(["hello [UNK]"]).to_list() == [[6, 4]]
    assert loaded.extended(["new"]).tokens[:8] == loaded.tokens
    chars = Vocabulary.build(["a\ufffd", "ab"], level="char")
    assert "\ufffd" not in chars.tokens
    assert chars.tokenize_tf(tf.constant([b"a\xffb"])).to_list() == [[4, 1, 5]]


def test_argument_errors():
    with pytest.raises(ValueError, match=r"argument `level`. Expected one of \{'char', 'word'\}"):
        Vocabulary(["a"], level="byte")
    with pytest.raises(ValueError, match=r"Expected distinct strings, none of \['', '\[UNK\]', "
                                         r"'\[START\]', '\[END\]'\]\. Received: tokens='a'"):
        Vocabulary(["a", "a"])
    for special in ("", "[START]"):
        with pytest.raises(ValueError, match=re.escape(f"Received: tokens={special!r}")):
            Vocabulary(["a", special], level="word")
    with pytest.raises(ValueError, match="Expected single characters when level='char'"):
        Vocabulary(["ab"], level="char")
    with pytest.raises(ValueError, match="argument `punctuation`"):
        Vocabulary(["a"], level="char", punctuation=".")
    with pytest.raises(ValueError, match="argument `max_tokens`. Expected a positive integer"):
        Vocabulary.build(["a"], max_tokens=0)
    assert Vocabulary.build(["abca"], max_tokens=np.int64(2)).tokens[4:] == ("a", "b")


@pytest.mark.parametrize(("tokens", "options", "bad"), [
    (["hello", "World"], dict(level="word", lowercase=True), "World"),
    (["A"], dict(level="char", lowercase=True), "A"),
    (["new york"], dict(level="word"), "new york"),
    (["a\u00a0b"], dict(level="word"), "a\u00a0b"),  # a no-break space is split on too
    ([".", "end."], dict(level="word", punctuation="."), "end."),
])
def test_a_token_no_text_can_give_is_refused(tokens, options, bad):
    """A hand-built vocabulary's token that splitting never gives (an id no text reaches)
    was accepted, and text holding it was encoded as unknown."""
    with pytest.raises(ValueError, match=rf"`tokens`. Expected tokens that split text can "
                       rf"hold .*Received: tokens={re.escape(repr(bad))}$"):
        Vocabulary(tokens, **options)
    fine = Vocabulary([t for t in tokens if t != bad], **options)
    # A stored vocabulary (a run's files) loads with its tokens and ids as written.
    stored = Vocabulary.from_config({**fine.get_config(), "tokens": [*fine.tokens[:4], *tokens]})
    assert stored.tokens[4:] == tuple(tokens)


def test_one_text_where_a_list_is_expected_is_refused():
    # A bare string was iterated: a word vocabulary of single letters, one "text" per character.
    with pytest.raises(ValueError, match=r"argument `texts`. Expected a sequence of strings .* "
                                         r"Received: texts='hello world'"):
        Vocabulary.build("hello world", level="word")
    vocab = Vocabulary.build(["hello world"], level="word")
    with pytest.raises(ValueError, match=r"argument `texts`. Expected a sequence of strings"):
        vocab.split("hello world")
    assert vocab.split(["hello world"]) == [["hello", "world"]]
    for bad in ([1], [b"hello"], ["ok", None]):
        with pytest.raises(ValueError, match=r"argument `texts\[\d\]`. Expected a str"):
            Vocabulary.build(bad)
        with pytest.raises(ValueError, match=r"argument `texts\[\d\]`. Expected a str"):
            vocab.encode(bad)


@pytest.mark.parametrize("kwargs, match", [
    # punctuation=[".", ","] became the text "['.', ',']" (splitting off brackets and quotes).
    (dict(level="word", punctuation=[".", ","]), r"argument `punctuation`. Expected a str"),
    # "ab" was taken as the pair ("a", "b").
    (dict(replacements=["ab"]), r"argument `replacements`. Expected \(pattern, rewrite\)"),
    # lowercase="no" lowercased.
    (dict(lowercase="no"), r"argument `lowercase`. Expected a bool"),
])
def test_vocabulary_options_are_checked_not_coerced(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Vocabulary.build(["Cab. Cab, cab"], **kwargs)


def test_tokens_are_strings_not_their_reprs():
    # [b"hello", None] became the tokens "b'hello'" and "None".
    with pytest.raises(ValueError, match=r"argument `tokens\[0\]`. Expected a str. Received: "
                                         r"tokens\[0\]=b'hello'"):
        Vocabulary([b"hello", None], level="word")
    vocab = Vocabulary(["a"])
    with pytest.raises(ValueError, match=r"argument `add_start`. Expected a bool"):
        vocab.encode(["a"], add_start="no")


def test_tokenize_tf_in_tf_function_matches_encode():
    vocab = Vocabulary.build(["Hello, Wörld!", "good bye"], level="word", lowercase=True,
                             punctuation=",!")
    texts = ["HELLO wörld!", "bye, good day", ""]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def tokenize(strings):
        return vocab.tokenize_tf(strings, add_start=True, add_end=True).to_tensor()

    expected = vocab.encode_padded(texts, add_start=True, add_end=True)
    np.testing.assert_array_equal(tokenize(tf.constant(texts)).numpy(), expected)


def test_graph_recomposes_decomposed_known_characters():
    vocab = Vocabulary.build(["Émile Broż"], level="char", lowercase=True)
    nfd = tf.constant([unicodedata.normalize("NFD", "ÉMILE BROŻ")])
    assert vocab.tokenize_tf(nfd).to_list() == vocab.encode(["émile broż"]).to_list()


@pytest.mark.parametrize("lowercase", [False, True])
def test_graph_gives_every_decomposed_composite_the_ids_of_its_nfc_form(lowercase):
    # An unknown composite typed decomposed (as macOS does) was a known base letter and an
    # unknown mark in the graph, one unknown character in Python: TF Serving disagreed.
    vocab = Vocabulary.build(["Émile Broż Müller Nguyễn xy"], level="char", lowercase=lowercase)
    composites = text._composites()
    assert len(composites) > 900 and "Å" in composites and "ǘ" in composites
    texts = [f"x{unicodedata.normalize(form, c)}y" for c in composites for form in ("NFD", "NFC")]
    texts += ["A\u030aberg", "u\u0308\u0301", "ÉMILE", unicodedata.normalize("NFD", "NGUYỄN")]
    got = vocab.tokenize_tf(tf.constant(texts)).to_list()
    assert got == vocab.encode(texts).to_list()
    assert got[-4][:2] == [OOV_ID, vocab.token_to_id("b")]  # Å: one unknown character
    assert len(got[-3]) == 1  # ǘ, unknown, although ü is known


@pytest.mark.parametrize("lowercase", [False, True])
def test_graph_replaces_what_nfc_replaces(lowercase):
    # Singletons (Kelvin sign, Greek question mark, U+0340) and composition exclusions
    # (U+0958) kept their own ids in the graph, while Python's NFC replaced them.
    vocab = Vocabulary.build(["Kelvin Ωmega à ;", "\u0915"], level="char", lowercase=lowercase)
    replaced = text._replaced()
    assert len(replaced) > 1000 and {"\u212a", "\u2126", "\u037e", "\u0958"} <= set(replaced)
    texts = [f"x{c}y" for c in replaced] + [c for c in replaced]
    texts += ["a\u0340", "\u03b9\u0344", "\u212a\u0301", "\u212aelvin"]
    got = vocab.tokenize_tf(tf.constant(texts)).to_list()
    assert got == vocab.encode(texts).to_list()
    assert got[-4] == vocab.encode(["à"]).to_list()[0]  # U+0340 is U+0300, then recomposed
    assert got[-1] == vocab.encode(["Kelvin"]).to_list()[0]


def test_graph_replaces_what_nfc_replaces_for_a_replacement_that_needs_it():
    # The Greek question mark is ";" after NFC, which completes "&#39;".
    vocab = Vocabulary.build(["it's"], level="char", replacements=[("&#39;", "'")])
    texts = ["it&#39\u037es", "it&#39;s"]
    assert vocab.tokenize_tf(tf.constant(texts)).to_list() == vocab.encode(texts).to_list()
    assert vocab.encode(texts).to_list()[0] == vocab.encode(["it's"]).to_list()[0]


def test_graph_replaces_what_nfc_replaces_in_words():
    vocab = Vocabulary.build(["¿ qué ? sí ; hola kelvin"], level="word", lowercase=True,
                             punctuation=translation.PUNCTUATION)
    texts = ["¿Qué? Sí\u037e hola", "\u212aelvin\u037e", "hola\u0958 \u2000 sí",
             "hola\u2126", "\uf900 x"]
    got = vocab.tokenize_tf(tf.constant(texts)).to_list()
    assert got == vocab.encode(texts).to_list()
    assert len(got[0]) == 6 and got[1] == vocab.encode(["kelvin;"]).to_list()[0]


def test_graph_decomposed_composites_that_a_replacement_rewrites():
    # Unknown é became the out-of-vocabulary character before the replacement could see it.
    vocab = Vocabulary.build(["cafe naive"], level="char",
                             replacements=[("[éèêë]", "e"), ("[ïî]", "i")])
    texts = [unicodedata.normalize(form, "café naïve") for form in ("NFC", "NFD")]
    ids = vocab.tokenize_tf(tf.constant(texts)).to_list()
    assert ids == vocab.encode(texts).to_list() == [vocab.encode(["cafe naive"]).to_list()[0]] * 2


def test_graph_decomposed_words():
    vocab = Vocabulary.build(["the café is open", "a café"], level="word")
    texts = [unicodedata.normalize("NFD", t) for t in ("the café", "a naïve café", "Å")]
    ids = vocab.tokenize_tf(tf.constant(texts)).to_list()
    assert ids == vocab.encode(texts).to_list()
    assert ids[1] == [vocab.token_to_id("a"), OOV_ID, vocab.token_to_id("café")]


def test_invalid_utf8_in_graph_gives_oov_not_a_crash():
    vocab = Vocabulary.build(["abc"], level="char")
    ids = vocab.tokenize_tf(tf.constant([b"a\xffc"])).to_list()
    assert ids == [[vocab.token_to_id("a"), OOV_ID, vocab.token_to_id("c")]]


def test_tokenizer_survives_export_archive(tmp_path):
    vocab = Vocabulary.build(["Broż Großmann"], level="char")
    archive = keras.export.ExportArchive()
    archive.track(vocab.tokenizer)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(strings):
        return vocab.tokenize_tf(strings, add_end=True).to_tensor()

    archive.add_endpoint("tokenize", serve)
    archive.write_out(str(tmp_path / "sm"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    texts = ["Großmann", "Broż x"]
    got = loaded.tokenize(tf.constant(texts)).numpy()
    np.testing.assert_array_equal(got, vocab.encode_padded(texts, add_end=True))


def test_graph_and_python_agree_on_real_names():
    names_dir = SHARED / "names"
    if not names_dir.is_dir():
        pytest.skip(f"shared data not found at {names_dir}")
    texts = []
    for f in sorted(names_dir.glob("*.txt")):
        texts += [t.strip() for t in f.read_text(encoding="utf-8").splitlines()[:200]]
    vocab = Vocabulary.build(texts[::2], level="char", lowercase=True)
    graph = vocab.tokenize_tf(tf.constant([unicodedata.normalize("NFC", t) for t in texts]))
    assert graph.to_list() == vocab.encode(texts).to_list()

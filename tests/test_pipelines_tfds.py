"""TFDS-backed paths (imdb, shakespeare with use_tfds) with `tfds.testing.mock_data`."""

import pytest

pytest.importorskip("tensorflow_datasets")
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import pipelines  # noqa: E402
from pipelines import imdb, shakespeare  # noqa: E402


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SEQ_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KERAS_SEQ_DATA", raising=False)


def fake_reviews(self, split, **kwargs):
    """30 train / 10 test reviews, distinct per split, with <br /> tags (mock as_dataset)."""
    name = "train" if "train" in str(split) else "test"
    n = 30 if name == "train" else 10
    texts = [f"{name} review {i} was {'great' if i % 2 else 'awful'}!<br />Really." for i in
             range(n)]
    texts[-1] = texts[0] if name == "train" else texts[-1]  # one duplicate review
    return tf.data.Dataset.from_tensor_slices(
        {"text": texts, "label": tf.constant([i % 2 for i in range(n)], tf.int64)})


def test_imdb_with_mock_data():
    with tfds.testing.mock_data(as_dataset_fn=fake_reviews):
        s = imdb.load(seed=0, batch_size=8, max_length=5, validation_fraction=0.2)
    info = s.info
    assert info.labels == ["negative", "positive"] and info.task == "classification"
    assert info.counts["test"] == 10
    assert info.counts["train"] + info.counts["validation"] == 30
    assert info.counts["validation"] in (6, 7)  # 6 of 29 distinct reviews; one occurs twice
    assert "<br" not in " ".join(info.vocabulary.tokens) and "really" in info.vocabulary.tokens
    lengths = []
    for x, y in s.train.as_numpy_iterator():
        assert x.dtype.name == "int32" and y.dtype.name == "int32"
        lengths.append(x.shape[1])
    assert max(lengths) <= 5  # truncated to max_length
    assert set(info.class_weight) == {0, 1}


def test_imdb_text_standardization():
    vocab = pipelines.Vocabulary.build(["Great film!<br /><br />Loved it."], level="word",
                                       lowercase=True, punctuation=imdb.PUNCTUATION,
                                       replacements=imdb.REPLACEMENTS)
    assert set(vocab.tokens[4:]) == {"great", "film", "!", "loved", "it", "."}


def test_imdb_acl_test_path(tmp_path):
    root = tmp_path / "aclImdb" / "test"
    for sub, texts in (("pos", [b"great fun", b"\xef\xbb\xbfloved it\r\n"]),
                       ("neg", [b"awful", b"bad \xff"])):
        (root / sub).mkdir(parents=True)
        for i, t in enumerate(texts):
            (root / sub / f"{i}_1.txt").write_bytes(t)
    with tfds.testing.mock_data(as_dataset_fn=fake_reviews):
        s = imdb.load(test_path=str(tmp_path / "aclImdb"))
    assert s.info.counts["test"] == 3 and s.info.dropped["test_non_utf8"] == 1
    assert sorted(s.info.test_examples) == [("awful", 0), ("great fun", 1), ("loved it", 1)]
    with pytest.raises(FileNotFoundError, match="Expected an aclImdb-style folder with pos"):
        imdb.read_acl_dir(tmp_path)


def test_imdb_unavailable_offline():
    with pytest.raises(pipelines.DataUnavailableError, match="Could not load the TFDS dataset "
                       "'imdb_reviews'"):
        imdb.load(download=False)


def test_shakespeare_from_tfds_mock():
    with tfds.testing.mock_data(num_examples=3):
        s = shakespeare.load(use_tfds=True, seq_length=4, batch_size=2)
    assert s.test is not None
    assert set(s.info.counts) == {"train", "validation", "test"}
    x, y = next(iter(s.train))
    assert x.shape[1] == 4 and (x.numpy()[:, 1:] == y.numpy()[:, :-1]).all()

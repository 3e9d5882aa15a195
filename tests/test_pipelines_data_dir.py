"""Data-directory resolution, downloads (with a fake URL opener) and the offline error path."""

import io
import urllib.error
import zipfile
from pathlib import Path

import pytest

import pipelines
from pipelines import download, files, names, shakespeare, sst2, translation


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No real data dir, a private cache, and a network that always fails unless replaced."""
    monkeypatch.delenv(files.DATA_ENV, raising=False)
    monkeypatch.setenv(files.CACHE_ENV, str(tmp_path / "cache"))

    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download, "urlopen", offline)


class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def zip_bytes(members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return buf.getvalue()


def test_data_dir_resolution(tmp_path, monkeypatch):
    assert pipelines.data_dir("/x/y") == Path("/x/y")
    assert pipelines.data_dir(None) == tmp_path / "cache" / "data"
    monkeypatch.setenv("KERAS_SEQ_DATA", str(tmp_path / "env"))
    assert pipelines.data_dir(None) == tmp_path / "env"
    assert pipelines.data_dir("/explicit") == Path("/explicit")


def test_env_variable_is_used_by_sources(tmp_path, monkeypatch):
    folder = tmp_path / "env" / "spa-eng"
    folder.mkdir(parents=True)
    (folder / "spa.txt").write_text("".join(f"Go {i}.\tVe {i}.\n" for i in range(40)),
                                    encoding="utf-8")
    monkeypatch.setenv("KERAS_SEQ_DATA", str(tmp_path / "env"))
    assert sum(translation.load().info.counts.values()) == 40


def test_offline_error_names_expected_path_and_url(tmp_path):
    with pytest.raises(pipelines.DataUnavailableError) as err:
        names.load(data_dir=str(tmp_path / "nothing"))
    message = str(err.value)
    assert str(tmp_path / "nothing" / "names") in message
    assert "https://download.pytorch.org/tutorial/data.zip" in message
    assert "URLError" in message and "KERAS_SEQ_DATA" in message
    assert isinstance(err.value, FileNotFoundError)


@pytest.mark.parametrize("module, relative", [
    (sst2, "sentiment/sst2/train.tsv"),
    (translation, "spa-eng/spa.txt"),
    (shakespeare, "tinyshakespeare/input.txt"),
])
def test_offline_error_for_each_file_source(tmp_path, module, relative):
    with pytest.raises(pipelines.DataUnavailableError, match="downloading it from http") as err:
        module.load(data_dir=str(tmp_path / "nothing"))
    assert relative in str(err.value) and module.REMOTE.url in str(err.value)


@pytest.mark.parametrize("cached", [False, True], ids=["no-cache", "cached-copy"])
@pytest.mark.parametrize("module, relative, inside", [
    (names, "names/German.txt", "names"),
    (sst2, "sentiment/sst2/train.tsv", "sentiment/sst2"),
    (shakespeare, "tinyshakespeare/input.txt", "tinyshakespeare/input.txt"),
])
def test_a_data_dir_inside_the_dataset_names_its_parent(tmp_path, monkeypatch, module,
                                                        relative, inside, cached):
    # A cached copy of the dataset (from an earlier download) must not be read instead.
    for root in [tmp_path / "data"] + ([tmp_path / "cache" / "data"] if cached else []):
        path = root / relative
        path.parent.mkdir(parents=True)
        path.write_text("Müller\n")

    def unexpected(url, timeout=None):
        raise AssertionError("the hint must come before any download")

    monkeypatch.setattr(download, "urlopen", unexpected)
    expected = (f"points inside the dataset. Expected the directory that contains "
                f"{str(Path(relative).parent if module is names else relative)!r}: "
                f"{{}} {str(tmp_path / 'data')!r}.")
    with pytest.raises(pipelines.DataUnavailableError) as err:
        module.load(data_dir=str(tmp_path / "data" / inside))
    assert str(err.value).endswith(expected.format("--data-dir"))
    monkeypatch.setenv(files.DATA_ENV, str(tmp_path / "data" / inside))  # the same setting
    with pytest.raises(pipelines.DataUnavailableError) as err:
        module.load()
    assert str(err.value).endswith(expected.format("$KERAS_SEQ_DATA"))


def test_download_off_says_where_to_get_it(tmp_path):
    with pytest.raises(pipelines.DataUnavailableError, match="downloading is off. Get it from "
                       "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"):
        sst2.load(data_dir=str(tmp_path), download=False)


def test_download_extracts_names_archive_into_cache(tmp_path, monkeypatch):
    lines = "\n".join(f"Name{chr(97 + i)}" for i in range(20)) + "\n"
    payload = zip_bytes({"data/names/German.txt": lines, "data/names/Italian.txt": lines.lower(),
                         "data/eng-fra.txt": "ignored", "data/names/../../evil.txt": "x"})
    calls = []

    def fake(url, timeout=None):
        calls.append(url)
        return FakeResponse(payload)

    monkeypatch.setattr(download, "urlopen", fake)
    s = names.load(data_dir=str(tmp_path / "empty"))
    assert calls == [names.REMOTE.url]
    cached = tmp_path / "cache" / "data" / "names"
    assert sorted(p.name for p in cached.iterdir()) == ["German.txt", "Italian.txt"]
    assert not (tmp_path / "cache" / "evil.txt").exists()
    assert s.info.labels == ["German", "Italian"] and sum(s.info.counts.values()) == 40
    names.load(data_dir=str(tmp_path / "empty"))  # second time: from the cache
    assert len(calls) == 1


def test_download_of_plain_file(tmp_path, monkeypatch):
    text = "".join(f"Line {i} of the play.\n" for i in range(200)).encode()
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: FakeResponse(text))
    s = shakespeare.load(data_dir=str(tmp_path / "empty"), seq_length=20)
    assert (tmp_path / "cache" / "data" / "tinyshakespeare" / "input.txt").read_bytes() == text
    assert s.info.counts["train"] > 0


def test_archive_without_expected_member(tmp_path, monkeypatch):
    payload = zip_bytes({"other/file.txt": "x"})
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: FakeResponse(payload))
    with pytest.raises(pipelines.DataUnavailableError, match="has no member spa-eng/"):
        translation.load(data_dir=str(tmp_path / "empty"))


def test_an_archive_missing_a_named_file_leaves_no_dataset(tmp_path, monkeypatch):
    # SST-2 without dev.tsv passed: only train.tsv was looked for.
    payload = zip_bytes({"SST-2/train.tsv": "sentence\tlabel\ngood \t1\n",
                         "SST-2/test.tsv": "index\tsentence\n0\tfine\n"})
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: FakeResponse(payload))
    with pytest.raises(pipelines.DataUnavailableError, match="has no member SST-2/dev.tsv"):
        sst2.load(data_dir=str(tmp_path / "empty"))
    assert not (tmp_path / "cache" / "data" / "sentiment").exists()


def test_a_failed_extraction_leaves_no_partial_dataset(tmp_path, monkeypatch):
    # A bad member after good ones left those in the cache: the next run took one language.
    lines = "\n".join(f"Name{chr(97 + i)}" for i in range(20)) + "\n"
    payload = bytearray(zip_bytes({"data/names/Arabic.txt": lines,
                                   "data/names/Chinese.txt": lines.lower()}))
    at = payload.rindex(lines.lower().encode())
    payload[at] ^= 0xFF  # the second member's CRC no longer matches
    monkeypatch.setattr(download, "urlopen",
                        lambda url, timeout=None: FakeResponse(bytes(payload)))
    with pytest.raises(pipelines.DataUnavailableError, match="BadZipFile"):
        names.load(data_dir=str(tmp_path / "empty"))
    assert list((tmp_path / "cache" / "data").iterdir()) == []


@pytest.mark.parametrize("body", [b"", b"Line 1 of the play.\n"])
def test_a_download_cut_short_is_not_cached(tmp_path, monkeypatch, body):
    # read() does not fail when the server closes early: the short file was cached for good.
    response = FakeResponse(body)
    response.headers = {"Content-Length": "1000000"}
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: response)
    with pytest.raises(pipelines.DataUnavailableError,
                       match=rf"cut short: {len(body)} of 1000000 bytes"):
        shakespeare.load(data_dir=str(tmp_path / "empty"))
    assert not (tmp_path / "cache" / "data" / "tinyshakespeare").exists()


def test_corrupt_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "urlopen", lambda url, timeout=None: FakeResponse(b"notazip"))
    with pytest.raises(pipelines.DataUnavailableError, match="BadZipFile"):
        translation.load(data_dir=str(tmp_path / "empty"))
    assert not list((tmp_path / "cache" / "data").glob("*.part"))


def test_source_check_fails_early(tmp_path):
    with pytest.raises(pipelines.DataUnavailableError, match="spa-eng/spa.txt"):
        pipelines.get_source("translation").check(data_dir=str(tmp_path), download=False)
    folder = tmp_path / "spa-eng"
    folder.mkdir()
    (folder / "spa.txt").write_text("Go.\tVe.\n", encoding="utf-8")
    found = pipelines.get_source("translation").check(data_dir=str(tmp_path))
    assert found == folder / "spa.txt"
    with pytest.raises(pipelines.DataUnavailableError, match=r"Expected test data for source "
                       r"'translation' at '.*nope.txt' \(a file of english<TAB>translation"):
        pipelines.get_source("translation").check(data_dir=str(tmp_path),
                                                  test_path=str(tmp_path / "nope.txt"))
    assert pipelines.get_source("dates").check() is None
    assert pipelines.get_source("shakespeare").check(use_tfds=True) is None


@pytest.mark.parametrize("tail", [b"", b"\xff bad\r\n"], ids=["utf-8", "a non-utf-8 line"])
def test_read_lines_takes_windows_line_endings_off(tmp_path, tail):
    """Both paths (a whole UTF-8 file, and line by line when a line is not UTF-8) drop the
    "\\r" of CRLF files: "ROMEO:\\r" was a different speaker, and a name a new spelling."""
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbfROMEO:\r\nBro\xc5\xbc\r\nlast" + (b"\r\n" + tail if tail else b""))
    lines = files.read_lines(path, "a test file")
    assert lines.texts == ["ROMEO:", "Bro\u017c", "last"]
    assert lines.numbers == [1, 2, 3]
    assert sum(lines.dropped.values()) == (1 if tail else 0)


@pytest.mark.parametrize("tail", [b"", b"\xff bad\n"], ids=["utf-8", "a non-utf-8 line"])
def test_read_lines_drops_the_byte_order_marks_of_concatenated_files(tmp_path, tail):
    # `cat a.txt b.txt` of two files saved with a BOM puts one inside: it was kept as the first
    # character of "Run.", a word of its own in the vocabulary.
    path = tmp_path / "cat.txt"
    path.write_bytes(b"\xef\xbb\xbfGo.\tVe.\n\xef\xbb\xbfRun.\tCorre.\r\n" + tail)
    assert files.read_lines(path, "a test file").texts == ["Go.\tVe.", "Run.\tCorre."]


@pytest.mark.parametrize("name", sorted(pipelines.SOURCES))
@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_every_source_refuses_a_bad_seed_by_name(tmp_path, name, seed):
    # Three sources handed the seed to NumPy unchecked: "SeedSequence expects int ..." or
    # "expected non-negative integer", neither naming `seed`.
    with pytest.raises(ValueError, match=rf"argument `seed`\. Expected a non-negative integer\. "
                                         rf"Received: seed={seed!r}"):
        pipelines.get_source(name).load(data_dir=str(tmp_path), seed=seed)


@pytest.mark.parametrize("name, flag", [
    ("names", "deduplicate"), ("names", "pretrain"), ("names", "drop_ambiguous"),
    ("names", "download"), ("sst2", "lowercase"), ("sst2", "download"),
    ("translation", "lowercase"), ("shakespeare", "lowercase"), ("shakespeare", "use_tfds"),
    ("imdb", "download"), ("shakespeare", "download"), ("dates", "strict"), ("names", "strict"),
    ("sst2", "strict"), ("translation", "strict"), ("shakespeare", "strict"),
])
def test_a_sources_flags_refuse_strings(tmp_path, name, flag):
    # bool("no") is True: strict="no" turned strict mode on, deduplicate="no" deduplicated.
    with pytest.raises(ValueError, match=rf"argument `{flag}`\. Expected a bool\. "
                                         rf"Received: {flag}='no'"):
        pipelines.get_source(name).load(data_dir=str(tmp_path), **{flag: "no"})


def test_reading_and_batching_flags_refuse_strings(tmp_path):
    from pipelines import transforms as T

    path = tmp_path / "a.txt"
    path.write_text("a\n", encoding="utf-8")
    calls = {"strict": lambda: files.read_lines(path, "a test file", strict="no"),
             "drop_remainder": lambda: T.padded_batch(3, drop_remainder="no"),
             "reshuffle_each_iteration": lambda: T.shuffle(10, 0, reshuffle_each_iteration="no")}
    for flag, call in calls.items():
        with pytest.raises(ValueError, match=rf"argument `{flag}`\. Expected a bool"):
            call()
    with pytest.raises(ValueError, match=r"argument `drop_remainder`\. Expected a bool"):
        T.bucket_by_length([4, 8], 3, drop_remainder=1)

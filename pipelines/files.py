"""Where data lives, and reading text files line by line with bad lines counted, not fatal.

Resolution order for a source's files (relative paths are those of `/work/shared/data`:
``names/``, ``sentiment/sst2/``, ``spa-eng/spa.txt``, ``tinyshakespeare/input.txt``):

1. the `--data-dir` argument (`explicit`), else the ``KERAS_SEQ_DATA`` environment variable;
2. the download cache, ``$KERAS_SEQ_CACHE/data`` (default ``~/.cache/keras_seq/data``);
3. the source's public download into that cache (see `pipelines.download`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pipelines._checks import boolean

logger = logging.getLogger("pipelines")
SHOWN = 3  # skipped lines logged with their file and line number, per reason
DATA_ENV = "KERAS_SEQ_DATA"
CACHE_ENV = "KERAS_SEQ_CACHE"


class DataUnavailableError(FileNotFoundError):
    """A source's files are neither on disk nor downloadable (offline, or no public copy)."""


def cache_dir() -> Path:
    """Download cache: ``$KERAS_SEQ_CACHE`` or ``~/.cache/keras_seq``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "keras_seq"


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data directory: `explicit` (``--data-dir``), else ``$KERAS_SEQ_DATA``, else the cache.

    The directory may not exist yet (downloads create it).
    """
    if explicit is not None and os.fspath(explicit) != "":
        return Path(explicit).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return cache_dir() / "data"


def candidate_dirs(explicit: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for a source's files, in order (data dir, then the cache)."""
    dirs = [data_dir(explicit), cache_dir() / "data"]
    return list(dict.fromkeys(dirs))


@dataclass
class Lines:
    """Decoded lines of a file with their 1-based line numbers, and counts of dropped lines."""

    path: Path
    numbers: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def __iter__(self):
        return iter(zip(self.numbers, self.texts, strict=True))

    def __len__(self) -> int:
        return len(self.texts)


def check_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a `Path` if it is an existing, non-empty file; else a clear error.

    Raises:
        FileNotFoundError: no such file (the message says what was expected there).
        ValueError: a directory, or an empty file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Expected {what} at {str(path)!r}, but there is no such file.")
    if path.is_dir():
        raise ValueError(f"Expected {what} at {str(path)!r}, but it is a directory.")
    if path.stat().st_size == 0:
        raise ValueError(f"Expected {what} at {str(path)!r}, but the file is empty.")
    return path


def read_lines(path: str | os.PathLike, what: str, *, strict: bool = False) -> Lines:
    """Read a UTF-8 text file as lines (LF or CRLF; a UTF-8 BOM removed where a line starts with
    one, as in files concatenated from files that each had one).

    Lines that are not valid UTF-8, or hold NUL characters (UTF-16 text decodes as UTF-8 with
    a NUL in every other place), are dropped and counted under ``"non_utf8"``, or with
    ``strict=True`` raise a `ValueError` naming the file, line and byte offset. Empty lines
    are kept (callers decide).
    """
    strict = boolean("strict", strict)
    path = check_file(path, what)
    data = path.read_bytes()
    out = Lines(path)
    if b"\x00" not in data:
        try:
            texts = data.decode("utf-8").split("\n")
            if texts and texts[-1] == "":
                texts.pop()
            out.texts = [_clean(t) for t in texts]
            out.numbers = list(range(1, len(out.texts) + 1))
            return out
        except UnicodeDecodeError:
            pass
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    for number, line in enumerate(raw, start=1):
        text, problem = _decode_line(line)
        if problem:
            if strict:
                raise ValueError(f"{str(path)!r}, line {number}: {problem}. Expected UTF-8 text.")
            skip(out.dropped, "non_utf8", path, number, problem)
            continue
        out.numbers.append(number)
        out.texts.append(_clean(text))
    return out


def non_blank(rows: Iterable[tuple[int, str]], dropped: Counter, path: Path):
    """The ``(number, line)`` rows that are not blank; each blank one is counted in `dropped`
    under ``"empty"`` (the readers of line-per-record files skip them, also when strict)."""
    for number, line in rows:
        if line.strip():
            yield number, line
        else:
            skip(dropped, "empty", path, number, line)


def _clean(line: str) -> str:
    """A decoded line without its CR (CRLF files) and its byte-order mark, if any."""
    return line.removeprefix("\ufeff").removesuffix("\r")


def _decode_line(line: bytes) -> tuple[str, str | None]:
    """``(text, None)``, or ``("", why the line is not UTF-8 text)``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        return "", f"not valid UTF-8 (byte 0x{line[err.start]:02x} at column {err.start + 1})"
    nul = line.find(b"\x00")
    if nul >= 0:
        return "", f"a NUL byte at column {nul + 1} (UTF-16 text?)"
    return text, None


def skip(dropped: Counter, reason: str, path: Path, number: int, line: str) -> None:
    """Count a skipped line under `reason`; log the first `SHOWN` of each reason (blank lines
    aside) with the file, line number and text. The source's summary gives the totals."""
    dropped[reason] += 1
    if reason != "empty" and dropped[reason] <= SHOWN:
        more = " (later ones are only counted)" if dropped[reason] == SHOWN else ""
        logger.warning("%r, line %d: skipped (%s): %r%s", str(path), number, reason,
                       _shorten(line), more)


def bad_line(path: Path, number: int, problem: str, line: str) -> ValueError:
    """The error raised for a malformed line when `strict=True`."""
    return ValueError(f"{str(path)!r}, line {number}: {problem}. Received: {_shorten(line)!r}")


def _shorten(line: str, width: int = 80) -> str:
    """`line` as shown in a message: cut to `width` characters, ending with "..." if cut."""
    return line if len(line) <= width else line[:width - 3] + "..."

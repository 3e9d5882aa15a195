"""Public downloads of the file-based sources into the cache, with a `tqdm` progress bar.

`locate` finds a source's file or folder in the data directory or the cache and, when it is in
neither, downloads the source's documented public copy into ``<cache>/data`` in the same layout.
Offline (or with ``download=False``) it raises `DataUnavailableError` naming the expected path
and the URL to fetch it from.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from pipelines._checks import boolean
from pipelines.files import DATA_ENV, DataUnavailableError, cache_dir, candidate_dirs, data_dir

urlopen = urllib.request.urlopen  # the one network entry point (tests replace it)


@dataclass(frozen=True)
class Remote:
    """A public copy of a source.

    Attributes:
        url: what to download.
        members: for a zip archive, {archive path prefix: layout path prefix}; only members
            under a listed prefix are extracted. `None`: the download is the file itself and
            is saved at `target`.
        target: the file or folder (relative to the data directory) the source reads.
        about: where the data comes from (shown in errors).
    """

    url: str
    target: str
    members: dict[str, str] | None = field(default=None)
    about: str = ""


def fetch(remote: Remote, root: Path) -> None:
    """Download `remote` into `root` (keeping the data-directory layout), with a progress bar."""
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".download-{PurePosixPath(remote.url).name}.part"
    try:
        with urlopen(remote.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                open(partial, "wb") as f,
                tqdm(
                    total=total, unit="B", unit_scale=True, desc=PurePosixPath(remote.url).name
                ) as bar,
            ):
                received = 0
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                    bar.update(len(chunk))
                    received += len(chunk)
        # A connection closed early is not an error to read(): a short file would be cached
        # as the dataset for good.
        if received == 0 or (total is not None and received != total):
            raise ValueError(f"the download was cut short: {received} of {total or '?'} bytes")
        if remote.members is None:
            target = root / remote.target
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, target)
        else:
            _extract(partial, root, remote.members)
    finally:
        partial.unlink(missing_ok=True)


def _extract(archive: Path, root: Path, members: dict[str, str]) -> None:
    """Extract `members` (``{archive prefix or file: layout path}``; a prefix ends with "/")
    into a staging folder, then move each layout folder into `root` whole: a failed or killed
    extraction leaves nothing that looks like a dataset. Every named file must be there."""
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        found: set[str] = set()
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                for prefix, layout in members.items():
                    if not info.filename.startswith(prefix):
                        continue
                    relative = PurePosixPath(layout + info.filename[len(prefix) :])
                    if ".." in relative.parts or relative.is_absolute():
                        continue
                    target = staging.joinpath(*relative.parts)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    found.add(prefix)
        missing = sorted(set(members) - found)
        if missing:
            raise ValueError(f"the archive has no member {' or '.join(missing)}")
        folders = {PurePosixPath(layout if layout.endswith("/") else PurePosixPath(layout).parent)
                   for layout in members.values()}
        for folder in sorted(folders):
            source, destination = staging.joinpath(*folder.parts), root.joinpath(*folder.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            if destination.exists():  # a dataset folder of the cache, being replaced
                shutil.rmtree(destination)
            os.replace(source, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _present(path: Path, pattern: str | None) -> bool:
    if pattern is None:
        return path.is_file()
    return path.is_dir() and any(path.glob(pattern))


def locate(
    relative: str,
    *,
    what: str,
    explicit_dir: str | os.PathLike | None = None,
    remote: Remote | None = None,
    download: bool = True,
    pattern: str | None = None,
) -> Path:
    """Path of a source's file (or folder, when `pattern` is a glob its files match).

    Searches `explicit_dir` / ``$KERAS_SEQ_DATA`` then the cache, then downloads `remote`.

    Raises:
        DataUnavailableError: not found, and not downloadable (offline, or `download=False`).
    """
    download = boolean("download", download)
    searched = [d / relative for d in candidate_dirs(explicit_dir)]
    shown = " or ".join(repr(str(p)) for p in searched)
    expected = f"{what} at {shown}" + (f" (files {pattern})" if pattern else "")
    given = data_dir(explicit_dir)
    if given != cache_dir() / "data" and not _present(searched[0], pattern):
        # --data-dir or $KERAS_SEQ_DATA pointed inside the dataset (its folder or file): name
        # the parent to use, before the cache is searched (a cached copy would be read in its
        # place, unnoticed).
        setting = "--data-dir" if explicit_dir is not None else f"${DATA_ENV}"
        for parent in list(given.parents)[: len(Path(relative).parts)]:
            if _present(parent / relative, pattern):
                raise DataUnavailableError(
                    f"Could not find {expected}: {setting} {str(given)!r} points inside the "
                    f"dataset. Expected the directory that contains {relative!r}: "
                    f"{setting} {str(parent)!r}."
                )
    for path in searched:
        if _present(path, pattern):
            return path
    hint = (
        f"Place it at {str(data_dir(explicit_dir) / relative)!r}, or point --data-dir / the "
        f"KERAS_SEQ_DATA environment variable at a directory containing {relative!r}."
    )
    if remote is None:
        raise DataUnavailableError(f"Could not find {expected}. {hint}")
    source = f"{remote.url}" + (f" ({remote.about})" if remote.about else "")
    if not download:
        raise DataUnavailableError(
            f"Could not find {expected}, and downloading is off. Get it from {source}. {hint}"
        )
    root = cache_dir() / "data"
    try:
        fetch(remote, root)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, ValueError) as err:
        raise DataUnavailableError(
            f"Could not find {expected}, and downloading it from {remote.url} failed "
            f"({type(err).__name__}: {err}). Get it from {source} when online. {hint}"
        ) from err
    path = root / relative
    if not _present(path, pattern):
        raise DataUnavailableError(
            f"Downloaded {remote.url}, but it did not contain {relative!r}. {hint}"
        )
    return path

"""The registry of data sources: ``SOURCES[name].load(...) -> Splits``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from pipelines import (
    adding,
    copy_memory,
    dates,
    imdb,
    names,
    shakespeare,
    sst2,
    translation,
)
from pipelines._checks import one_of
from pipelines.files import DataUnavailableError
from pipelines.splits import Splits


@dataclass(frozen=True)
class Source:
    """A data source.

    Attributes:
        name: registry key. task: the task kind its datasets feed.
        module: the module implementing it (its docstring documents layout and elements).
        files: what it reads, relative to the data directory (empty for synthetic sources).
        url: its public download (or TFDS name); `None` for synthetic sources.
        test_layout: what `load(test_path=...)` expects.
        test_is_dir: whether that is a directory (else a file).
    """

    name: str
    task: str
    module: ModuleType
    files: tuple[str, ...] = ()
    url: str | None = None
    test_layout: str = ""
    test_is_dir: bool = False

    @property
    def load(self) -> Callable[..., Splits]:
        """``load(*, data_dir=None, seed=0, batch_size=64, test_path=None, **options)``.

        Sources with text also take ``vocabularies={role: Vocabulary}`` (as
        ``SourceInfo.load_vocabularies`` reads them from a run directory): the splits are then
        encoded with a trained model's vocabularies instead of ones built on the train split.
        """
        return self.module.load

    def check(
        self,
        *,
        data_dir: str | None = None,
        test_path: str | None = None,
        download: bool = True,
        **options,
    ) -> Path | None:
        """Fail early, before any training: find (or download) the source's data and check
        that `test_path` exists, as a directory or a file as the source reads it. Returns the
        data path (`None` for synthetic / TFDS sources).

        Raises:
            DataUnavailableError: naming the missing file and where to get it.
        """
        if test_path is not None and not Path(test_path).exists():
            raise DataUnavailableError(
                f"Expected test data for source {self.name!r} at {str(test_path)!r} "
                f"({self.test_layout}), but there is no such file or directory."
            )
        if test_path is not None and Path(test_path).is_dir() != self.test_is_dir:
            raise DataUnavailableError(
                f"Expected test data for source {self.name!r} at {str(test_path)!r} "
                f"({self.test_layout}), but it is a {'file' if self.test_is_dir else 'directory'}."
            )
        locate_data = getattr(self.module, "locate_data", None)
        if locate_data is None:
            return None
        return locate_data(data_dir=data_dir, download=download, **options)

    @property
    def description(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "names",
            "classification",
            names,
            ("names/<Language>.txt",),
            names.REMOTE.url,
            "a directory of <Language>.txt files, one name per line",
            test_is_dir=True,
        ),
        Source(
            "sst2",
            "classification",
            sst2,
            ("sentiment/sst2/train.tsv", "sentiment/sst2/dev.tsv", "sentiment/sst2/test.tsv"),
            sst2.REMOTE.url,
            "a TSV file with the header sentence<TAB>label",
        ),
        Source(
            "imdb",
            "classification",
            imdb,
            (),
            "tfds:imdb_reviews",
            "an aclImdb-style folder with pos/*.txt and neg/*.txt",
            test_is_dir=True,
        ),
        Source(
            "shakespeare",
            "language_model",
            shakespeare,
            ("tinyshakespeare/input.txt",),
            shakespeare.REMOTE.url,
            "a plain UTF-8 text file",
        ),
        Source(
            "translation",
            "seq2seq",
            translation,
            ("spa-eng/spa.txt",),
            translation.REMOTE.url,
            "a file of english<TAB>translation[<TAB>attribution] lines",
        ),
        Source("dates", "seq2seq", dates, test_layout="a file of human<TAB>YYYY-MM-DD lines"),
        Source(
            "adding", "regression", adding, test_layout="an .npz file with x [N, T, 2] and y [N]"
        ),
        Source(
            "copy_memory",
            "language_model",
            copy_memory,
            test_layout="an .npz file with inputs and targets [N, T_total]",
        ),
    )
}


def get_source(name: str) -> Source:
    """The source registered as `name` (one of `SOURCES`)."""
    one_of("name", name, SOURCES)
    return SOURCES[name]

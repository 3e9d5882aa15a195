"""The registry of data sources: ``SOURCES[name].load(...) -> Splits``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
from pipelines.splits import Splits


@dataclass(frozen=True)
class Source:
    """A data source.

    Attributes:
        name: registry key. task: the task kind its datasets feed.
        module: the module implementing it (its docstring documents layout and elements).
        files: what it reads, relative to the data directory (empty for synthetic sources).
        url: its public download (or TFDS name); `None` for synthetic sources.
    """

    name: str
    task: str
    module: ModuleType
    files: tuple[str, ...] = ()
    url: str | None = None

    @property
    def load(self) -> Callable[..., Splits]:
        """``load(*, data_dir=None, seed=0, batch_size=64, test_path=None, **options)``."""
        return self.module.load

    @property
    def description(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("names", "classification", names, ("names/<Language>.txt",), names.REMOTE.url),
        Source(
            "sst2",
            "classification",
            sst2,
            ("sentiment/sst2/train.tsv", "sentiment/sst2/dev.tsv", "sentiment/sst2/test.tsv"),
            sst2.REMOTE.url,
        ),
        Source("imdb", "classification", imdb, (), "tfds:imdb_reviews"),
        Source(
            "shakespeare",
            "language_model",
            shakespeare,
            ("tinyshakespeare/input.txt",),
            shakespeare.REMOTE.url,
        ),
        Source("translation", "seq2seq", translation, ("spa-eng/spa.txt",), translation.REMOTE.url),
        Source("dates", "seq2seq", dates),
        Source("adding", "regression", adding),
        Source("copy_memory", "language_model", copy_memory),
    )
}


def get_source(name: str) -> Source:
    """The source registered as `name` (one of `SOURCES`)."""
    one_of("name", name, SOURCES)
    return SOURCES[name]

"""tf.data input pipelines: raw text -> batched `tf.data.Dataset`s for the task models.

The same code feeds training, evaluation, export warm-up and TFLite calibration::

    import pipelines
    splits = pipelines.get_source("names").load(data_dir="../shared/data", seed=0)
    model.fit(splits.train, validation_data=splits.validation,
              class_weight=splits.info.class_weight)
    splits.info.vocabulary.to_json("vocab.json")

Modules: `text` (`Vocabulary`, in-graph tokenizer), `transforms` (`dataset.apply` factories),
`splits` (`Splits`, `SourceInfo`), `files` / `download` (data directory, downloads), one
module per source (`names`, `sst2`, `imdb`, `shakespeare`, `translation`, `dates`, `adding`,
`copy_memory`), `registry` (`SOURCES`, `get_source`).
"""

from pipelines import transforms
from pipelines.files import DATA_ENV, DataUnavailableError, cache_dir, data_dir
from pipelines.registry import SOURCES, Source, get_source
from pipelines.splits import SourceInfo, Splits
from pipelines.text import END_ID, OOV_ID, PAD_ID, START_ID, Vocabulary

__all__ = [
    "DATA_ENV",
    "END_ID",
    "OOV_ID",
    "PAD_ID",
    "SOURCES",
    "START_ID",
    "DataUnavailableError",
    "Source",
    "SourceInfo",
    "Splits",
    "Vocabulary",
    "cache_dir",
    "data_dir",
    "get_source",
    "transforms",
]

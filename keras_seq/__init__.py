"""keras_seq: recurrent and attention sequence models for Keras 3 (TensorFlow backend).

Public modules: :mod:`keras_seq.cells`, :mod:`keras_seq.layers`, :mod:`keras_seq.models`,
:mod:`keras_seq.interop`, :mod:`keras_seq.ops` and :mod:`keras_seq.registry`.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["cells", "interop", "layers", "models", "ops", "registry"]


def __getattr__(name):  # lazy submodules: `import keras_seq` stays cheap
    if name in __all__:
        return importlib.import_module(f"keras_seq.{name}")
    raise AttributeError(f"module 'keras_seq' has no attribute {name!r}")

"""Every ``>>>`` example in the package's docstrings runs and prints what it shows.

Examples may use ``np``, ``tf`` and ``keras`` without importing them; anything else they
import themselves, as a reader would. Examples marked ``+SKIP`` need an export or a converter.
"""

import doctest
import importlib
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("keras_seq", "pipelines")
    for path in (ROOT / package).rglob("*.py")
    if any(">>>" in line and "+SKIP" not in line
           for line in path.read_text(encoding="utf-8").splitlines())
)


def test_examples_were_found():
    assert "keras_seq.layers.recurrent" in MODULES and "pipelines.text" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name.removesuffix(".__init__"))
    result = doctest.testmod(
        module, extraglobs={"np": np, "tf": tf, "keras": keras}, report=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
    )
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed (above)"

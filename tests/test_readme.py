"""The README's examples run as written, and its results table names every recipe."""

import ast
import re
from pathlib import Path

import numpy as np

from keras_seq.training import recipes

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_python_example_runs_and_gives_the_shapes_its_comments_state():
    (block,) = re.findall(r"```python\n(.*?)```", README, re.S)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)  # asserts equality with keras.layers
    stated = re.findall(r"^([\w, ]+?) = .*#\s*(\(.*\))\s*$", block, re.M)
    assert len(stated) == 2
    for targets, comment in stated:
        shapes = [ast.literal_eval(s) for s in re.findall(r"\([\d, ]+\)", comment)]
        names = [n.strip() for n in targets.split(",")]
        assert [np.shape(namespace[n]) for n in names] == shapes, targets


def test_results_table_lists_every_recipe():
    table = README.split("## Results", 1)[1].split("\n\n")[2]
    assert sorted(re.findall(r"^\| `([\w-]+)`", table, re.M)) == sorted(recipes.available())

"""``exported/models.config``: TF Serving's ``model_config_list`` for every exported model.

Regenerated after each export from what is on disk: one entry per ``<root>/<name>/saved_model``
that holds at least one numeric version directory. ``base_path`` is where the folder appears
inside the serving container (``docker run -v $PWD/exported:/models ...`` -> ``/models``)::

    model_config_list {
      config {
        name: "names"
        base_path: "/models/names/saved_model"
        model_platform: "tensorflow"
      }
    }

TF Serving serves the highest version of each model (its default version policy).
"""

from __future__ import annotations

import os
from pathlib import Path

from keras_seq import _lock

__all__ = ["CONFIG_FILE", "exported_models", "models_config_text", "write_models_config"]

CONFIG_FILE = "models.config"


def exported_models(root: str | Path) -> dict[str, list[int]]:
    """``{name: sorted versions}`` of the SavedModels under ``root``."""
    found: dict[str, list[int]] = {}
    root = Path(root)
    if not root.is_dir():
        return found
    for model_dir in sorted(root.iterdir()):
        base = model_dir / "saved_model"
        if model_dir.name.startswith(".") or not base.is_dir():
            continue
        versions = sorted(
            int(v.name) for v in base.iterdir()
            if v.is_dir() and v.name.isdigit() and (v / "saved_model.pb").is_file()
        )
        if versions:
            found[model_dir.name] = versions
    return found


def models_config_text(names: list[str], base: str = "/models") -> str:
    """The ``model_config_list`` text proto for ``names`` under ``base``."""
    lines = ["model_config_list {"]
    for name in names:
        lines += [
            "  config {",
            f'    name: "{name}"',
            f'    base_path: "{base.rstrip("/")}/{name}/saved_model"',
            '    model_platform: "tensorflow"',
            "  }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_models_config(root: str | Path, base: str = "/models") -> Path:
    """Rewrite ``<root>/models.config`` (atomically) for every model exported under ``root``.

    Exports of other names may finish at the same time: each reads the disk and writes under
    one lock, so the last writer read every export committed before it (without the lock, one
    that read before another's commit could write last and drop that model)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_FILE
    with _lock.hold(root / f".{CONFIG_FILE}.lock", wait=True):
        text = models_config_text(list(exported_models(root)), base)
        tmp = root / f".{CONFIG_FILE}.{os.getpid()}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return path

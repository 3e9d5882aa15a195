"""Distribution strategies: `default`, `mirrored` (all local devices), `multiworker` (TF_CONFIG)."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker")


_created: dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The strategy ``name``, created once per process (multi-worker collectives must be
    configured before TensorFlow runs its first op, so the CLI calls this first)."""
    if name not in _created:
        _created[name] = _new_strategy(name)
    return _created[name]


def _new_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # Every local GPU; without one, every logical CPU (one unless configured otherwise).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError(
                "--strategy multiworker needs the TF_CONFIG environment variable "
                '(e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}})'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown --strategy {name!r}. Expected one of {', '.join(STRATEGIES)}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Worker 0 (or the only process) writes reports; the others train silently."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    task = json.loads(os.environ["TF_CONFIG"]).get("task", {})
    return task.get("type", "worker") in ("worker", "chief") and int(task.get("index", 0)) == 0


def patch_multiworker_fit(model, strategy: tf.distribute.Strategy) -> None:
    """Work around keras-team/keras#20585 (open; Keras 3 ``fit`` under
    MultiWorkerMirroredStrategy), on this model instance only:

    1. ``fit`` reduces the first *(x, y) structure* of PerReplica values with
       ``strategy.reduce``, which accepts single values only ("Attempt to convert a value
       (PerReplica ...) to a Tensor"). That batch only builds the metrics and the optimizer,
       so each value's local replica is used instead.
    2. Each step's logged scalars are reduced with ``strategy.reduce("MEAN", v, axis=0)``,
       which fails on 0-d values; the steps return them as ``[1]`` tensors (same mean).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: tf.nest.map_structure(
            lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data)))
    original = model._maybe_symbolic_build

    def local(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local, next(batches))
                break
        return original(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build

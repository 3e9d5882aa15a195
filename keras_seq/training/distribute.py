"""Distribution strategies: `default`, `mirrored` (all local devices), `multiworker` (TF_CONFIG)."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
        tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown --strategy {name!r}. Expected one of {', '.join(STRATEGIES)}")


_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}')


def tf_config() -> dict:
    """The TF_CONFIG environment variable, checked: a cluster of ``host:port`` lists and a task
    of it. ValueError naming TF_CONFIG otherwise (TensorFlow's own errors are tracebacks)."""
    raw = os.environ.get("TF_CONFIG")
    if raw is None:
        raise ValueError(f"--strategy multiworker needs the TF_CONFIG environment variable "
                         f"(e.g. {_EXAMPLE})")

    def invalid(why: str) -> ValueError:
        return ValueError(f"Invalid TF_CONFIG for --strategy multiworker: {why}. Expected JSON "
                          f"such as {_EXAMPLE}. Received: TF_CONFIG={raw!r}")

    try:
        config = json.loads(raw)
    except ValueError:
        raise invalid("not JSON") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not cluster or not all(
        isinstance(hosts, list) and hosts and all(_host_port(h) for h in hosts)
        for hosts in cluster.values()
    ):
        raise invalid('"cluster" must map each job to a list of "host:port" strings')
    others = sorted(set(cluster) - {"chief", "worker"})
    if others:  # e.g. "ps": MultiWorkerMirroredStrategy has none, and waited forever for it
        raise invalid(f'"cluster" may have only "chief" and "worker" jobs, not '
                      f'{", ".join(map(repr, others))}')
    if len(cluster.get("chief", [])) > 1:
        raise invalid('"cluster" may have at most one "chief"')
    task = config.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise invalid(f'"task" must have a "type" of the cluster ({", ".join(cluster)})')
    index, size = task.get("index", 0), len(cluster[task["type"]])
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise invalid(f'"task.index" must be an integer in [0, {size})')
    return config


def _host_port(text) -> bool:
    host, _, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief (or, without one, worker 0; or the only process) writes reports; the others
    train silently."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    return is_chief_task(tf_config())


def worker_dir(run_dir: Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes its run: `run_dir` for the chief (or the only process), and
    ``run_dir/.worker-<index>`` for another worker, as Keras 2's ``write_dirpath`` did. Workers
    that share a file system and a ``--run-dir`` would otherwise write the same checkpoints,
    backup and history; each keeps its own backup to resume from."""
    if is_chief(strategy):
        return run_dir
    task = tf_config()["task"]
    return run_dir / f".{task['type']}-{task.get('index', 0)}"


def is_chief_task(config: dict) -> bool:
    """Whether TF_CONFIG's task is the cluster's chief: ``chief`` 0, or worker 0 without one."""
    task = config["task"]
    chief = "chief" if "chief" in config["cluster"] else "worker"
    return task["type"] == chief and task.get("index", 0) == 0


def patch_fit(model, strategy: tf.distribute.Strategy, first_batch) -> None:
    """Make ``fit`` under `strategy` see the data the default strategy sees, on this model
    instance only. `first_batch`: a batch the caller has already taken from the training set.

    1. Under any strategy but the default, Keras's ``fit`` first pulls a batch from an
       iterator of its own to build the metrics and the optimizer. With the pipelines' seeded
       reshuffles that pull moves the shuffle order: mirrored runs differed from default, and a
       run resumed after a kill (``repeat().skip(...)``) trained on other batches than an
       uninterrupted one. The build uses `first_batch` instead.
    2. keras-team/keras#20585 (open; Keras 3 ``fit`` under MultiWorkerMirroredStrategy): each
       step's logged scalars are reduced with ``strategy.reduce("MEAN", v, axis=0)``, which
       fails on 0-d values; the steps return them as ``[1]`` tensors (same mean). (The same
       issue's failing reduce of the build batch's PerReplica values is gone with 1.)
    """
    if strategy is tf.distribute.get_strategy():
        return
    original = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: original(
        data_batch=first_batch)
    # One worker: Keras takes the local mean, not strategy.reduce, and the [1] values of
    # workaround 2 would reach the callbacks (TensorBoard refuses them).
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not (
        strategy.extended._in_multi_worker_mode()
    ):
        return
    for name in ("train_step", "test_step"):
        step = getattr(model, name)
        setattr(model, name, lambda data, step=step: tf.nest.map_structure(
            lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, step(data)))

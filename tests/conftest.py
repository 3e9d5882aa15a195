import importlib.util
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: the module ``benchmarks/<name>.py`` (a script folder, not a
    package), for tests of the benchmark scripts' check logic."""
    return _load_benchmark


def _load_benchmark(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, env=None, check=True, **kwargs)``: ``python -m keras_seq ARGS`` in a fresh
    process from the project root; `check` fails the test on a non-zero exit."""
    return _cli


def _cli(*args, env=None, check=True, **kwargs):
    result = subprocess.run(
        [sys.executable, "-m", "keras_seq", *args], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}, **kwargs,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"keras-seq {args} failed:\n{result.stderr[-3000:]}")
    return result


def kill_after_an_epoch(args, backup, timeout=240):
    """Start ``python -m keras_seq ARGS`` (a training run) and ``kill -9`` it once the
    BackupAndRestore directory `backup` records a finished epoch; return that epoch."""
    import json
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "keras_seq", *args], cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    meta = Path(backup) / "training_metadata.json"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if meta.exists() and json.loads(meta.read_text() or "{}").get("epoch", 0) >= 1:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "training finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return json.loads(meta.read_text())["epoch"]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm_step(x_t, h, c, kernel, recurrent, bias, peephole=None, coupled=False):
    """One LSTM step, ``(h_t, c_t)``: Gers & Schmidhuber peepholes (``peephole`` [(G-1)U]:
    i, f, o; or f, o when ``coupled``) and the CIFG input gate ``i = 1 - f`` of
    ``coupled=True``; the output gate peeps at ``c_t``. ``h`` is what the recurrent kernel
    reads (with recurrent dropout applied, if any)."""
    z = x_t @ kernel + h @ recurrent + bias
    if coupled:
        z_f, z_g, z_o = np.split(z, 3, axis=-1)
        p_f, p_o = np.split(peephole, 2) if peephole is not None else (0.0, 0.0)
    else:
        z_i, z_f, z_g, z_o = np.split(z, 4, axis=-1)
        p_i, p_f, p_o = np.split(peephole, 3) if peephole is not None else (0.0, 0.0, 0.0)
    f = sigmoid(z_f + p_f * c)
    i = 1.0 - f if coupled else sigmoid(z_i + p_i * c)
    c_t = f * c + i * np.tanh(z_g)
    o = sigmoid(z_o + p_o * c_t)
    return o * np.tanh(c_t), c_t

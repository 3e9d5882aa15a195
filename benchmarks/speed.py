"""Speed benchmark: keras_seq recurrent layers vs keras.layers vs torch.nn on this machine.

For LSTM, GRU and SimpleRNN at two shapes (B=64 T=100 I=64 H=256 and B=32 T=400 I=64
H=128) it measures, in one process with the contenders alternated round by round:

* training throughput: sequences/s of one compiled ``model.fit`` step (``train_on_batch``,
  Adam, MSE on the layer's last output), and the share of the machine's sgemm peak that the
  step's GEMM FLOPs reach;
* inference latency at batch 1 and batch 64: one call of a compiled ``tf.function`` wrapping
  ``model(x, training=False)`` on a tensor (torch: the module in ``inference_mode``);
* training memory: the allocator's peak during one training step above what was live before
  it (one fresh subprocess per contender with ``TF_CPU_ALLOCATOR_USE_BFC=true``, which makes
  TensorFlow's CPU allocator count every tensor; TensorFlow contenders only).

Every figure is the median of ``--rounds`` measurements (default 7); ratios are taken
between medians of the same run. Results go to ``benchmarks/results/speed.json`` and
``benchmarks/results/speed.md`` (``speed_quick.*`` for ``--quick``).

Usage::

    python benchmarks/speed.py            # full run (about 5 minutes on 2 cores)
    python benchmarks/speed.py --quick    # 3 rounds, first shape only, no memory
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# torch's OpenMP threads spin at barriers by default; on 2 cores shared with other processes
# (as here) a preempted spinner stalls every step, 10-50x. Passive waiting keeps it stable.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_seq import layers as seq_layers  # noqa: E402

try:
    import torch

    # TensorFlow flushes denormals to zero in its kernels; let torch do the same.
    torch.set_flush_denormal(True)
except ImportError:  # torch is optional
    torch = None

RESULTS = ROOT / "benchmarks" / "results"
KINDS = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}  # kind -> gates
SHAPES = [
    {"batch": 64, "steps": 100, "features": 64, "units": 256},
    {"batch": 32, "steps": 400, "features": 64, "units": 128},
]
CONTENDERS = ["keras_seq", "keras", "torch"]
MEASURE_SECONDS = 0.4  # target duration of one measurement


# -- machine --------------------------------------------------------------------------------
def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": None if torch is None else torch.__version__,
        "date": datetime.date.today().isoformat(),
    }


def sgemm_peak(size: int = 2048, repeats: int = 10) -> dict:
    """Best GFLOP/s of a square float32 GEMM through NumPy (OpenBLAS) and TensorFlow (oneDNN)."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
    flops = 2.0 * size**3

    def best(run) -> float:
        for _ in range(3):
            run()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return flops / min(times) / 1e9

    ta, tb = tf.constant(a), tf.constant(b)
    gemm = tf.function(lambda: tf.linalg.matmul(ta, tb)[0, 0])
    result = {"numpy": best(lambda: a @ b), "tensorflow": best(lambda: gemm().numpy())}
    result["peak"] = max(result.values())
    return result


def train_gflop(kind: str, shape: dict) -> float:
    """GEMM FLOPs of one training step (forward + backward, no input gradient)."""
    g, b, t, i, h = (KINDS[kind], shape["batch"], shape["steps"], shape["features"],
                     shape["units"])
    # forward x W and h R; backward dR, dh, dW: 2 B T G H (2 I + 3 H)
    return 2.0 * b * t * g * h * (2 * i + 3 * h) / 1e9


# -- contenders -----------------------------------------------------------------------------
def keras_model(module, kind: str, shape: dict) -> keras.Model:
    inputs = keras.Input((shape["steps"], shape["features"]))
    model = keras.Model(inputs, getattr(module, kind)(shape["units"])(inputs))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def data(shape: dict, batch: int | None = None):
    rng = np.random.default_rng(0)
    batch = batch or shape["batch"]
    x = rng.standard_normal((batch, shape["steps"], shape["features"]), dtype=np.float32)
    y = rng.standard_normal((batch, shape["units"]), dtype=np.float32)
    return x, y


def train_step(contender: str, kind: str, shape: dict):
    """A no-argument callable running one training step (synchronously)."""
    x, y = data(shape)
    if contender == "torch":
        module = getattr(torch.nn, "RNN" if kind == "SimpleRNN" else kind)(
            shape["features"], shape["units"], batch_first=True)
        optimizer = torch.optim.Adam(module.parameters(), 1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)

        def step():
            optimizer.zero_grad()
            out, _ = module(tx)
            loss = torch.mean((out[:, -1] - ty) ** 2)
            loss.backward()
            optimizer.step()

        return step
    model = keras_model(seq_layers if contender == "keras_seq" else keras.layers, kind, shape)
    return lambda: model.train_on_batch(x, y)


def infer_call(contender: str, kind: str, shape: dict, batch: int):
    x, _ = data(shape, batch)
    if contender == "torch":
        module = getattr(torch.nn, "RNN" if kind == "SimpleRNN" else kind)(
            shape["features"], shape["units"], batch_first=True)
        tx = torch.from_numpy(x)

        def call():
            with torch.inference_mode():
                return module(tx)[0][:, -1].numpy()

        return call
    model = keras_model(seq_layers if contender == "keras_seq" else keras.layers, kind, shape)
    tx = tf.constant(x)
    fn = tf.function(lambda v: model(v, training=False))
    return lambda: fn(tx).numpy()


# -- measurement ----------------------------------------------------------------------------
def alternate(runs: dict, rounds: int) -> dict:
    """Seconds per call of each callable: ``rounds`` measurements each, contenders taking
    turns within every round. Returns ``{name: [seconds, ...]}``."""
    reps = {}
    for name, run in runs.items():
        run()  # trace / compile
        start = time.perf_counter()
        run()
        reps[name] = max(1, round(MEASURE_SECONDS / max(time.perf_counter() - start, 1e-6)))
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            time.sleep(0.02)  # let the previous contender's spinning threads go idle
            start = time.perf_counter()
            for _ in range(reps[name]):
                run()
            times[name].append((time.perf_counter() - start) / reps[name])
    return times


def summary(samples: list[float]) -> dict:
    return {"median": statistics.median(samples), "min": min(samples), "samples": samples}


def contenders(include_torch: bool) -> list[str]:
    return [c for c in CONTENDERS if c != "torch" or (include_torch and torch is not None)]


def measure_training(kind, shape, names, rounds, peak) -> dict:
    times = alternate({n: train_step(n, kind, shape) for n in names}, rounds)
    gflop = train_gflop(kind, shape)
    out = {}
    for name, samples in times.items():
        stats = summary(samples)
        stats["seq_per_s"] = shape["batch"] / stats["median"]
        stats["peak_fraction"] = gflop / stats["median"] / peak
        out[name] = stats
    return out


def measure_inference(kind, shape, names, rounds, batch) -> dict:
    times = alternate({n: infer_call(n, kind, shape, batch) for n in names}, rounds)
    return {name: {**summary(s), "ms": 1e3 * statistics.median(s)} for name, s in times.items()}


def measure_memory(shape: dict, kind: str, contender: str, repeats: int = 5) -> dict:
    """Peak MiB above the live set during one training step (median of ``repeats``).

    Meant for a fresh process with ``TF_CPU_ALLOCATOR_USE_BFC=true``: TensorFlow's default
    CPU allocator leaves tensors under 256 KiB out of its statistics, and per-step tensors
    of a recurrent loop are that small.
    """
    step = train_step(contender, kind, shape)
    step()
    step()
    peaks = []
    for _ in range(repeats):
        tf.config.experimental.reset_memory_stats("CPU:0")
        base = tf.config.experimental.get_memory_info("CPU:0")["current"]
        step()
        peak = tf.config.experimental.get_memory_info("CPU:0")["peak"]
        peaks.append((peak - base) / 2**20)
    return {"mib": statistics.median(peaks), "samples": peaks}


def memory_in_subprocess(shape: dict, kind: str, contender: str) -> dict | None:
    """:func:`measure_memory` in a fresh process, so contenders do not share allocator state."""
    env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}
    job = json.dumps({"shape": shape, "kind": kind, "contender": contender})
    done = subprocess.run([sys.executable, __file__, "--memory-worker", job], env=env,
                          capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("MEMORY "):
            return json.loads(line[len("MEMORY "):])
    print(done.stderr[-2000:], file=sys.stderr)
    return None


# -- report ---------------------------------------------------------------------------------
def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def fmt(value, spec=".0f", none="n/a") -> str:
    return none if value is None else format(value, spec)


def markdown(report: dict) -> str:
    info = report["machine"]
    lines = [
        f"Measured {info['date']} on {info['cpu']} ({info['cores']} cores), TensorFlow "
        f"{info['tensorflow']}, Keras {info['keras']}, torch {info['torch'] or 'n/a'}; sgemm "
        f"peak {report['sgemm']['peak']:.0f} GFLOP/s (NumPy {report['sgemm']['numpy']:.0f}, "
        f"TensorFlow {report['sgemm']['tensorflow']:.0f}). Medians of {report['rounds']} "
        "alternated measurements; ratios from the same run.",
        "",
        "Training (`train_on_batch`, Adam, loss on the last output):",
        "",
        "| shape | layer | keras_seq seq/s | keras seq/s | torch seq/s | keras_seq / keras "
        "| keras_seq / torch | peak keras_seq | peak keras |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in report["results"]:
        t = entry["train"]
        get = lambda n, k="seq_per_s", t=t: t.get(n, {}).get(k)  # noqa: E731
        lines.append(
            f"| {entry['label']} | {entry['kind']} | {fmt(get('keras_seq'))} | "
            f"{fmt(get('keras'))} | {fmt(get('torch'))} | "
            f"{fmt(ratio(get('keras_seq'), get('keras')), '.2f')} | "
            f"{fmt(ratio(get('keras_seq'), get('torch')), '.2f')} | "
            f"{fmt(get('keras_seq', 'peak_fraction'), '.1%')} | "
            f"{fmt(get('keras', 'peak_fraction'), '.1%')} |"
        )
    lines += [
        "",
        "Inference latency, ms per call (compiled `tf.function` of `model(x, training=False)`;"
        " torch eager in `inference_mode`):",
        "",
        "| shape | layer | batch | keras_seq | keras | torch | keras_seq / keras |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in report["results"]:
        for batch, inf in entry["infer"].items():
            get = lambda n, inf=inf: inf.get(n, {}).get("ms")  # noqa: E731
            lines.append(
                f"| {entry['label']} | {entry['kind']} | {batch} | {fmt(get('keras_seq'), '.2f')}"
                f" | {fmt(get('keras'), '.2f')} | {fmt(get('torch'), '.2f')} | "
                f"{fmt(ratio(get('keras_seq'), get('keras')), '.2f')} |"
            )
    if any(entry.get("memory") for entry in report["results"]):
        lines += [
            "",
            "Training memory, MiB above the live set at the step's peak (TensorFlow allocator,"
            " `TF_CPU_ALLOCATOR_USE_BFC=true`):",
            "",
            "| shape | layer | keras_seq | keras | keras_seq / keras |",
            "|---|---|---|---|---|",
        ]
        for entry in report["results"]:
            mem = entry.get("memory")
            if mem and mem.get("keras_seq") and mem.get("keras"):
                ours, theirs = mem["keras_seq"]["mib"], mem["keras"]["mib"]
                lines.append(f"| {entry['label']} | {entry['kind']} | {ours:.1f} | "
                             f"{theirs:.1f} | {ratio(ours, theirs):.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="measurements per figure (>= 5)")
    parser.add_argument("--quick", action="store_true", help="3 rounds, first shape, no memory")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated layer kinds")
    parser.add_argument("--no-torch", action="store_true", help="skip torch.nn")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocess")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_worker:
        job = json.loads(args.memory_worker)
        result = measure_memory(job["shape"], job["kind"], job["contender"])
        print("MEMORY " + json.dumps(result))
        return {}

    kinds = [k for k in args.kinds.split(",") if k]
    shapes = SHAPES[:1] if args.quick else SHAPES
    rounds = 3 if args.quick else args.rounds
    names = contenders(not args.no_torch)
    if not args.no_torch and torch is None:
        print("torch is not installed: no torch.nn figures (make bench EXTRAS=dev,torch, or "
              "pip install -e '.[torch]')", file=sys.stderr, flush=True)
    report = {"machine": machine(), "sgemm": sgemm_peak(), "rounds": rounds, "results": []}
    print(f"sgemm peak {report['sgemm']['peak']:.0f} GFLOP/s; contenders {names}", flush=True)
    for shape in shapes:
        label = "B={batch} T={steps} I={features} H={units}".format(**shape)
        for kind in kinds:
            entry = {"label": label, "shape": shape, "kind": kind}
            entry["train"] = measure_training(kind, shape, names, rounds,
                                              report["sgemm"]["peak"])
            entry["infer"] = {
                str(batch): measure_inference(kind, shape, names, rounds, batch)
                for batch in (1, 64)
            }
            entry["memory"] = None
            if not (args.quick or args.no_memory):
                entry["memory"] = {n: memory_in_subprocess(shape, kind, n)
                                   for n in ("keras_seq", "keras")}
            report["results"].append(entry)
            t = entry["train"]
            print(f"{label} {kind}: train seq/s "
                  + ", ".join(f"{n} {t[n]['seq_per_s']:.0f}" for n in names)
                  + "; latency b1 ms "
                  + ", ".join(f"{n} {entry['infer']['1'][n]['ms']:.2f}" for n in names),
                  flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    stem = "speed_quick" if args.quick else "speed"  # a quick look never overwrites a full run
    (args.output / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()

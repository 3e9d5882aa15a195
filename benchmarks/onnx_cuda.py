"""Exported ONNX models on ONNX Runtime's CUDA execution provider, against the Keras model.

``keras-seq verify`` checks the ONNX files on ONNX Runtime's CPU provider. This checks them
where the brief sends them too, on a GPU: the native ``LSTM`` / ``GRU`` nodes then run on
ONNX Runtime's CUDA kernels (cuDNN). Two steps, because the GPU machine has no TensorFlow:

    .venv/bin/python benchmarks/onnx_cuda.py fixtures exported/dates ... --out .gpu/onnx
    python3 benchmarks/onnx_cuda.py check .gpu/onnx          # onnxruntime-gpu, NumPy only

``fixtures`` copies each export's ONNX files and records every call that ``verify``'s client
makes on the export's sample texts (batch 1; for seq2seq the decoder steps along Keras's
greedy path), plus one right-padded batch of all samples for each signature that reads ids,
with the Keras model's outputs for each. ``check`` replays the calls on the requested
providers, compares with Keras (``max|diff|``; on ``[B, T, ...]`` outputs only at real
tokens), reads ONNX Runtime's profile to see which provider ran each recurrent node, and times
batch-1 and batched calls (median of ``--repeats``). It exits 1 when a float32 run (TF32 off)
differs from Keras by more than ``--tolerance`` (1e-4, as ``verify``) or a recurrent node did
not run on the provider asked for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

SAMPLES = 16


# -- fixtures (TensorFlow side) --------------------------------------------------------------


def make_fixtures(export_dirs: list[Path], out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_seq.export.metadata import read_metadata
    from keras_seq.export.run_dir import load_run
    from keras_seq.export.runtimes import keras_runner
    from keras_seq.export.tasks import make_client, make_graphs

    out.mkdir(parents=True, exist_ok=True)
    for export_dir in export_dirs:
        metadata = read_metadata(export_dir)
        files = {name: e["file"] for name, e in metadata["artifacts"]["onnx"]["files"].items()}
        samples = json.loads((export_dir / "samples.json").read_text(encoding="utf-8"))
        texts = [s["input"] for s in samples][:SAMPLES]
        keras = keras_runner(make_graphs(load_run(metadata["source_run"]["path"])))
        client = make_client(metadata)

        calls: list[tuple[str, dict, dict]] = []

        def recording(name, feeds, calls=calls, keras=keras):
            outputs = keras(name, feeds)
            calls.append((name, dict(feeds), outputs))
            return outputs

        for text in texts:
            client.probe(recording, text)
        # One right-padded batch of all samples for each signature that reads only ids.
        for name in files:
            singles = [f for n, f, _ in calls if n == name and list(f) == [_ids_key(f)]]
            if not singles:
                continue
            key = _ids_key(singles[0])
            rows = [f[key][0] for f in singles]
            batch = np.zeros((len(rows), max(len(r) for r in rows)), rows[0].dtype)
            for i, r in enumerate(rows):
                batch[i, : len(r)] = r
            calls.append((name, {key: batch}, keras(name, {key: batch})))

        target = out / metadata["name"]
        target.mkdir(parents=True, exist_ok=True)
        for file in files.values():
            shutil.copyfile(export_dir / file, target / file)
        arrays, manifest = {}, []
        for i, (name, feeds, outputs) in enumerate(calls):
            if name not in files:
                continue
            for k, v in feeds.items():
                arrays[f"{i}/in/{k}"] = np.asarray(v)
            for k, v in outputs.items():
                arrays[f"{i}/out/{k}"] = np.asarray(v)
            manifest.append({"index": i, "signature": name, "inputs": sorted(feeds),
                             "outputs": sorted(outputs), "batch": int(next(iter(feeds.values())).shape[0])})
        np.savez_compressed(target / "calls.npz", **arrays)
        (target / "manifest.json").write_text(json.dumps(
            {"name": metadata["name"], "task": metadata["task"], "files": files, "calls": manifest},
            indent=1) + "\n")
        print(f"{metadata['name']}: {len(manifest)} calls, files {sorted(files.values())}")


def _ids_key(feeds: dict) -> str | None:
    keys = [k for k, v in feeds.items() if k.endswith("ids") and np.asarray(v).ndim == 2]
    return keys[0] if keys else None


# -- check (onnxruntime side, no TensorFlow) ---------------------------------------------------


def _diff(got: np.ndarray, ref: np.ndarray, ids: np.ndarray | None) -> float:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if ids is not None and got.ndim >= 2 and got.shape[:2] == ids.shape:
        real = ids != 0  # padded steps are outside the ONNX contract's outputs
        got, ref = got[real], ref[real]
    return float(np.max(np.abs(got - ref), initial=0.0))


def check_model(ort, folder: Path, provider: str, options: dict, repeats: int) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    data = dict(np.load(folder / "calls.npz"))  # read once: the timed calls must not decompress
    sessions, profiles = {}, {}
    for name, file in manifest["files"].items():
        so = ort.SessionOptions()
        so.enable_profiling = True
        so.profile_file_prefix = f"/tmp/ort_{manifest['name']}_{name}"
        providers = [(provider, options)] if provider != "CPUExecutionProvider" else [provider]
        sessions[name] = ort.InferenceSession(str(folder / file), so, providers=providers)
    inputs = {name: {i.name for i in s.get_inputs()} for name, s in sessions.items()}
    outputs = {name: [o.name for o in s.get_outputs()] for name, s in sessions.items()}
    calls = [
        (call, {k: data[f"{call['index']}/in/{k}"] for k in call["inputs"]
                if k in inputs[call["signature"]]})
        for call in manifest["calls"]
    ]

    def run(call, feeds):
        names = outputs[call["signature"]]
        return dict(zip(names, sessions[call["signature"]].run(names, feeds), strict=True))

    diffs: dict[str, float] = {}
    for call, feeds in calls:
        got = run(call, feeds)
        key = _ids_key(feeds)
        ids = feeds[key] if key else None
        for name in call["outputs"]:
            d = _diff(got[name], data[f"{call['index']}/out/{name}"], ids)
            sig = call["signature"] + ("" if call["batch"] == 1 else f" (batch {call['batch']})")
            diffs[sig] = max(diffs.get(sig, 0.0), d)
    for name, session in sessions.items():
        profiles[name] = session.end_profiling()

    # Which provider ran the recurrent nodes (from ONNX Runtime's own profile).
    placed: dict[str, int] = {}
    for path in profiles.values():
        events = json.loads(Path(path).read_text())
        Path(path).unlink()  # read once; ONNX Runtime writes a new file per session
        for event in events:
            args = event.get("args", {})
            if event.get("cat") == "Node" and args.get("op_name") in ("LSTM", "GRU", "RNN") \
                    and event["name"].endswith("_kernel_time"):
                key = f"{args['op_name']}@{args.get('provider', '?')}"
                placed[key] = placed.get(key, 0) + 1

    # Latency: mean time of one call (seq2seq: encoder calls and decoder steps alike) over the
    # batch-1 calls and over the batched ones, median of `repeats` passes.
    single = [(c, f) for c, f in calls if c["batch"] == 1]
    batched = [(c, f) for c, f in calls if c["batch"] > 1]

    def timed(prepared) -> float | None:
        if not prepared:
            return None
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for call, feeds in prepared:
                run(call, feeds)
            samples.append((time.perf_counter() - start) * 1000 / len(prepared))
        return statistics.median(samples)

    return {"model": manifest["name"], "task": manifest["task"], "provider": provider,
            "options": options, "max_abs_diff": diffs, "recurrent_nodes": placed,
            "ms_per_call_batch1": timed(single), "ms_per_call_batched": timed(batched),
            "batched_size": batched[0][0]["batch"] if batched else None}


def check(folder: Path, providers: list[str], tolerance: float, repeats: int, out: Path) -> int:
    import onnxruntime as ort

    if hasattr(ort, "preload_dlls") and "CUDAExecutionProvider" in providers:
        ort.preload_dlls()  # CUDA / cuDNN from the nvidia-* wheels next to torch
    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        print(f"check: onnxruntime {ort.__version__} lacks {missing}; available: {available}")
        return 2
    runs = []
    for provider in providers:
        configs = [({}, "fp32")]
        if provider == "CUDAExecutionProvider":  # precise first, then ORT's default (TF32 on)
            configs = [({"use_tf32": "0"}, "fp32"), ({}, "default (TF32)")]
        for options, math in configs:
            for model in sorted(p.parent for p in folder.glob("*/manifest.json")):
                row = check_model(ort, model, provider, options, repeats)
                row["math"] = math
                rows_ok = all(d <= tolerance for d in row["max_abs_diff"].values())
                on_provider = all(k.endswith("@" + provider) for k in row["recurrent_nodes"])
                row["ok"] = (rows_ok and on_provider) if math == "fp32" else None
                runs.append(row)

    env = {"date": datetime.date.today().isoformat(), "onnxruntime": ort.__version__,
           "providers": providers, "tolerance": tolerance, "repeats": repeats}
    try:
        import torch  # only to name the GPU
        env["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    except ImportError:
        env["device"] = "unknown"
    out.mkdir(parents=True, exist_ok=True)
    # The committed figures are the GPU's; a check without CUDA never overwrites them.
    stem = "onnx_cuda" if "CUDAExecutionProvider" in providers else "onnx_cpu_check"
    (out / f"{stem}.json").write_text(json.dumps({"env": env, "runs": runs}, indent=1) + "\n")
    lines = [
        f"Measured {env['date']} on {env['device']}, onnxruntime {env['onnxruntime']}; "
        f"reference: the Keras model (TensorFlow, CPU); tolerance {tolerance:g}.", "",
        "| model | provider | math | signature | max abs diff | recurrent node runs, by provider "
        "| ms/call batch 1 | ms/call batched | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        nodes = ", ".join(f"{v}x {k}" for k, v in sorted(r["recurrent_nodes"].items())) or "-"
        for i, (sig, d) in enumerate(sorted(r["max_abs_diff"].items())):
            first = i == 0
            b1 = f"{r['ms_per_call_batch1']:.2f}" if first and r["ms_per_call_batch1"] else ""
            bb = (f"{r['ms_per_call_batched']:.2f} (B={r['batched_size']})"
                  if first and r["ms_per_call_batched"] else "")
            ok = "-" if r["ok"] is None else r["ok"]
            lines.append(f"| {r['model'] if first else ''} | {r['provider'] if first else ''} | "
                         f"{r['math'] if first else ''} | {sig} | {d:.1e} | "
                         f"{nodes if first else ''} | {b1} | {bb} | {ok if first else ''} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    failed = [f"{r['model']} on {r['provider']}" for r in runs if r["ok"] is False]
    if failed:
        print(f"check: FAILED: {', '.join(failed)}")
        return 1
    print("check: every float32 run within tolerance, recurrent nodes on the provider asked for")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fx = sub.add_parser("fixtures", help="record Keras references for exports (needs TensorFlow)")
    fx.add_argument("export_dirs", type=Path, nargs="+")
    fx.add_argument("--out", type=Path, required=True)
    ck = sub.add_parser("check", help="replay on ONNX Runtime providers and compare")
    ck.add_argument("folder", type=Path)
    ck.add_argument("--providers", default="CUDAExecutionProvider,CPUExecutionProvider")
    ck.add_argument("--tolerance", type=float, default=1e-4)
    ck.add_argument("--repeats", type=int, default=5)
    ck.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if args.command == "fixtures":
        make_fixtures(args.export_dirs, args.out)
        return 0
    return check(args.folder, args.providers.split(","), args.tolerance, args.repeats, args.out)


if __name__ == "__main__":
    sys.exit(main())

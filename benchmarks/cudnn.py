"""keras_seq weights on cuDNN: forward and gradient parity with PyTorch's cuDNN RNN kernels.

A keras_seq ``SimpleRNN`` / ``LSTM`` / ``GRU`` (stacked, bidirectional, masked, with initial
states) is converted with :func:`keras_seq.interop.to_torch`; the torch module then runs on
cuDNN and must reproduce the Keras layer's outputs, final states and the gradients of a loss
with respect to the inputs, the initial states and every weight. Padded batches go to cuDNN
as packed sequences, which is how torch users feed them.

It runs in two steps, which may run on different machines: the references need TensorFlow,
the check only torch (the GPU machine it was verified on has a CUDA build of torch and no
TensorFlow):

    .venv/bin/python benchmarks/cudnn.py fixtures cudnn.npz      # TensorFlow, keras_seq, torch
    python3 benchmarks/cudnn.py check cudnn.npz                   # torch with CUDA, no TensorFlow

``fixtures`` writes the torch state dicts, inputs and the Keras references (outputs, states,
gradients, all computed by keras_seq on CPU) into one ``.npz``. ``check`` needs only NumPy and
torch; it runs every case in float32 with TF32 off (the precise comparison), then again with
TF32 allowed, which is torch's default for cuDNN (``torch.backends.cudnn.allow_tf32``) and
matters on Ampere and newer GPUs; it records whether ``aten::_cudnn_rnn`` ran,
and writes ``cudnn.json`` / ``cudnn.md`` (``--out``). It exits 1 if a precise case misses its
tolerance or did not run on cuDNN. ``check --device cpu`` runs the same comparison on torch's
CPU kernels (the test suite does that).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np

# Tolerances for float32 with TF32 off: outputs and states are O(1); gradients are compared
# relative to the largest magnitude of the reference gradient.
TOL_VALUES = 2e-5
TOL_GRADS = 1e-4

# name -> (kind, num_layers, bidirectional, masked, initial_state, B, T, D, U)
CASES = {
    "rnn-1": ("rnn", 1, False, False, True, 4, 9, 5, 6),
    "rnn-2-bi-masked": ("rnn", 2, True, True, False, 4, 9, 5, 6),
    "lstm-1": ("lstm", 1, False, False, True, 4, 9, 5, 6),
    "lstm-2-masked": ("lstm", 2, False, True, True, 4, 9, 5, 6),
    "lstm-2-bi-masked": ("lstm", 2, True, True, False, 4, 9, 5, 6),
    "gru-1": ("gru", 1, False, False, True, 4, 9, 5, 6),
    "gru-2-masked": ("gru", 2, False, True, True, 4, 9, 5, 6),
    "gru-2-bi-masked": ("gru", 2, True, True, False, 4, 9, 5, 6),
    # The speed benchmark's first shape.
    "lstm-bench": ("lstm", 1, False, False, False, 64, 100, 64, 256),
    "gru-bench": ("gru", 1, False, False, False, 64, 100, 64, 256),
    "lstm-bench-bi-masked": ("lstm", 1, True, True, False, 32, 100, 64, 256),
}
SMALL = [name for name in CASES if "bench" not in name]


def loss_weights(shape: tuple[int, ...], salt: int) -> np.ndarray:
    """Fixed, distinct loss weights, computed alike on both sides (not stored)."""
    return np.sin(np.arange(int(np.prod(shape)), dtype="float64") * 0.7 + salt).reshape(shape).astype("float32")


# -- fixtures (TensorFlow side) --------------------------------------------------------------


def make_fixtures(path: Path, names: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from keras_seq import interop, layers

    classes = {"rnn": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}
    arrays: dict[str, np.ndarray] = {}
    for index, name in enumerate(names):
        kind, num_layers, bidirectional, masked, with_init, B, T, D, U = CASES[name]
        rng = np.random.default_rng(index)

        def build(kind=kind, num_layers=num_layers, bidirectional=bidirectional, U=U, D=D):
            inner = classes[kind](U, num_layers=num_layers, return_sequences=True, return_state=True)
            layer = layers.Bidirectional(inner) if bidirectional else inner
            layer.build((None, None, D))
            return layer

        layer = build()
        scale = 0.6 if U < 64 else 0.15  # wide enough that every gate matters
        for v in layer.weights:
            v.assign(rng.uniform(-scale, scale, v.shape).astype("float32"))

        x = tf.constant(rng.standard_normal((B, T, D)).astype("float32"))
        lengths = np.full(B, T, dtype="int64")
        if masked:  # right-padded, lengths from 1 to T
            lengths = np.concatenate([[T, 1], rng.integers(1, T + 1, B - 2)]).astype("int64")
        valid = (np.arange(T)[None, :] < lengths[:, None]).astype("float32")  # [B, T]
        per_level = 2 if kind == "lstm" else 1
        dirs = 2 if bidirectional else 1
        init = [
            tf.constant(rng.standard_normal((B, U)).astype("float32"))
            for _ in range(num_layers * per_level)
        ] if with_init else []

        # Loss weights, so that every output and state gets a distinct gradient.
        r_out = loss_weights((B, T, dirs * U), 0) * valid[:, :, None]
        r_h = loss_weights((num_layers * dirs, B, U), 1)
        r_c = loss_weights((num_layers * dirs, B, U), 2)

        with tf.GradientTape() as tape:
            tape.watch([x, *init])
            kwargs = {"mask": tf.constant(valid > 0)} if masked else {}
            if init:
                kwargs["initial_state"] = init
            out, *states = layer(x, **kwargs)
            # Keras lists states per direction, per level (LSTM h, c); torch stacks h_n and
            # c_n as [num_layers * dirs, B, U] ordered level 0 fwd, level 0 bwd, level 1 ...
            order = [d * num_layers + k for k in range(num_layers) for d in range(dirs)]
            h_n = tf.stack([states[i * per_level] for i in order])
            c_n = tf.stack([states[i * per_level + 1] for i in order]) if kind == "lstm" else None
            loss = tf.reduce_sum(out * r_out) + tf.reduce_sum(h_n * r_h)
            if c_n is not None:
                loss += tf.reduce_sum(c_n * r_c)
        grads = tape.gradient(loss, [x, *init, *layer.trainable_weights])
        dx, d_init, d_weights = grads[0], grads[1 : 1 + len(init)], grads[1 + len(init) :]

        # Gradients in torch's layout: a twin layer holding them, converted like the weights.
        twin = build()
        for v, g in zip(twin.trainable_weights, d_weights, strict=True):
            v.assign(g)
        module, grad_module = interop.to_torch(layer), interop.to_torch(twin)

        prefix = f"{name}/"
        arrays[prefix + "x"] = x.numpy()
        arrays[prefix + "lengths"] = lengths
        arrays[prefix + "out"] = out.numpy() * valid[:, :, None]
        arrays[prefix + "h_n"] = h_n.numpy()
        arrays[prefix + "dx"] = dx.numpy()
        if c_n is not None:
            arrays[prefix + "c_n"] = c_n.numpy()
        if init:  # torch's h0 / c0: [num_layers, B, U]
            arrays[prefix + "h0"] = np.stack([init[k * per_level].numpy() for k in range(num_layers)])
            arrays[prefix + "dh0"] = np.stack([d_init[k * per_level].numpy() for k in range(num_layers)])
            if kind == "lstm":
                arrays[prefix + "c0"] = np.stack([init[k * 2 + 1].numpy() for k in range(num_layers)])
                arrays[prefix + "dc0"] = np.stack([d_init[k * 2 + 1].numpy() for k in range(num_layers)])
        for key, value in module.state_dict().items():
            arrays[prefix + "param." + key] = value.numpy()
        for key, value in grad_module.state_dict().items():
            arrays[prefix + "grad." + key] = value.numpy()
    arrays["cases"] = np.array(json.dumps({name: CASES[name] for name in names}))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(names)} cases to {path}")


# -- check (torch side, no TensorFlow) ---------------------------------------------------------


def _max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) if np.size(a) else 0.0


def run_case(torch, data: dict, name: str, spec, device: str) -> dict:
    kind, num_layers, bidirectional, masked, with_init, B, T, D, U = spec
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    module = cls(D, U, num_layers=num_layers, bidirectional=bidirectional, batch_first=True)
    get = lambda key: data[f"{name}/{key}"]  # noqa: E731
    module.load_state_dict({k.split("param.", 1)[1]: torch.from_numpy(v) for k, v in data.items()
                            if k.startswith(f"{name}/param.")})
    module.to(device).train()  # train mode: cuDNN keeps what the backward pass needs

    x = torch.tensor(get("x"), device=device, requires_grad=True)
    init = []
    if with_init:
        init = [torch.tensor(get("h0"), device=device, requires_grad=True)]
        if kind == "lstm":
            init.append(torch.tensor(get("c0"), device=device, requires_grad=True))
    hx = None if not init else (tuple(init) if kind == "lstm" else init[0])

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        if masked:
            lengths = torch.from_numpy(get("lengths"))
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False)
            out, state = module(packed, hx)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
        else:
            out, state = module(x, hx)
        h_n, c_n = state if kind == "lstm" else (state, None)
        dirs = 2 if bidirectional else 1
        weights = lambda shape, salt: torch.tensor(loss_weights(shape, salt), device=device)  # noqa: E731
        # Padded steps are zero in torch's output, so r_out needs no mask here.
        loss = (out * weights((B, T, dirs * U), 0)).sum()
        loss = loss + (h_n * weights((num_layers * dirs, B, U), 1)).sum()
        if c_n is not None:
            loss = loss + (c_n * weights((num_layers * dirs, B, U), 2)).sum()
        loss.backward()
    ops = {event.key for event in prof.key_averages()}

    numpy = lambda t: t.detach().cpu().numpy()  # noqa: E731
    values = {"out": _max_abs(numpy(out), get("out")), "h_n": _max_abs(numpy(h_n), get("h_n"))}
    if c_n is not None:
        values["c_n"] = _max_abs(numpy(c_n), get("c_n"))

    def rel(grad, ref) -> float:
        return _max_abs(grad, ref) / max(float(np.max(np.abs(ref))), 1e-30)

    grads = {"x": rel(numpy(x.grad), get("dx"))}
    for tensor, key in zip(init, ("dh0", "dc0"), strict=False):
        grads[key[1:]] = rel(numpy(tensor.grad), get(key))
    for key, param in module.named_parameters():
        ref = get(f"grad.{key}")
        if key.startswith("bias_hh") and kind != "gru":
            ref = get(f"grad.{key.replace('bias_hh', 'bias_ih')}")  # b = b_ih + b_hh
        grads[key] = rel(numpy(param.grad), ref)
    value_err, grad_err = max(values.values()), max(grads.values())
    return {
        "case": name, "kind": kind, "num_layers": num_layers, "bidirectional": bidirectional,
        "masked": masked, "initial_state": with_init, "shape": [B, T, D, U],
        "cudnn": "aten::_cudnn_rnn" in ops,
        "max_abs_values": value_err, "max_rel_grads": grad_err,
        "worst_grad": max(grads, key=grads.get),
        "ok": value_err <= TOL_VALUES and grad_err <= TOL_GRADS,
    }


def check(path: Path, device: str, out_dir: Path) -> int:
    import torch

    data = dict(np.load(path))
    cases = json.loads(str(data.pop("cases")))
    if device == "cuda" and not torch.cuda.is_available():
        print("check: torch sees no CUDA device (use --device cpu for torch's CPU kernels)")
        return 2
    modes = [("fp32", False)] + ([("tf32", True)] if device == "cuda" else [])
    rows = []
    for mode, tf32 in modes:
        torch.backends.cudnn.allow_tf32 = tf32
        for name, spec in cases.items():
            row = run_case(torch, data, name, spec, device)
            row["mode"] = mode
            if tf32:  # a figure, not a pass/fail: TF32 rounds inputs of products to 10 bits
                row["ok"] = None
            rows.append(row)
    precise = [r for r in rows if r["mode"] == "fp32"]
    failed = [r["case"] for r in precise if not r["ok"] or (device == "cuda" and not r["cudnn"])]

    env = {
        "date": datetime.date.today().isoformat(),
        "device": torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
        "tolerances": {"values_abs": TOL_VALUES, "grads_rel": TOL_GRADS},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "cudnn" if device == "cuda" else "cudnn_cpu"
    (out_dir / f"{stem}.json").write_text(json.dumps({"env": env, "rows": rows}, indent=1) + "\n")
    lines = [
        f"Measured {env['date']} on {env['device']}, torch {env['torch']}, cuDNN {env['cudnn']}. "
        f"Reference: keras_seq on CPU (TensorFlow), weights converted with `interop.to_torch`.",
        "",
        "| case | B T D U | masked | h0 | math | cuDNN | max abs diff (out, states) "
        "| max rel diff (grads) | worst grad | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {' '.join(map(str, r['shape']))} | {r['masked']} | "
            f"{r['initial_state']} | {r['mode']} | {r['cudnn']} | {r['max_abs_values']:.1e} | "
            f"{r['max_rel_grads']:.1e} | {r['worst_grad']} | {'-' if r['ok'] is None else r['ok']} |")
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if failed:
        print(f"check: FAILED (fp32): {', '.join(failed)}")
        return 1
    print(f"check: all {len(precise)} fp32 cases within tolerance"
          + (" and on cuDNN" if device == "cuda" else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    fx = sub.add_parser("fixtures", help="write the Keras references (needs TensorFlow)")
    fx.add_argument("path", type=Path)
    fx.add_argument("--small", action="store_true", help="only the small cases (no bench shapes)")
    ck = sub.add_parser("check", help="compare torch (cuDNN) against the references")
    ck.add_argument("path", type=Path)
    ck.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ck.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    if args.command == "fixtures":
        make_fixtures(args.path, SMALL if args.small else list(CASES))
        return 0
    return check(args.path, args.device, args.out)


if __name__ == "__main__":
    sys.exit(main())

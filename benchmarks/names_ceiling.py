"""How far a character RNN gets on the `names` recipe's own split: a capacity sweep in torch.

Evidence for the README's `names` row, not a recipe. The recipe (2-level BiGRU 256, Keras, 2 CPU
cores) reaches 77.4% test accuracy and macro-F1 0.50 against a target of 85% / 0.70. The sweep
trains the same split with up to 4x the units, a third level, LSTM instead of GRU, class
weights, 3 seeds each, and ensembles, selecting nothing on the test split (early stopping on
validation loss; every row is printed):

    .venv/bin/python benchmarks/names_ceiling.py split ../shared/data .gpu/names_split.json
    python3 benchmarks/names_ceiling.py sweep .gpu/names_split.json names_ceiling.json  # GPU

``split`` writes the recipe's train / validation / test names (distinct names, stratified,
seed 0: `pipelines.names`). ``sweep`` needs only torch and NumPy (a CUDA device by default).
"""
import json
import sys
import time
from pathlib import Path

import numpy as np


def write_split(data_dir: str, path: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines.classification import by_split
    from pipelines.names import locate_data, read_names_dir
    from pipelines.splits import assign_splits
    from pipelines.text import normalize

    names, langs, _, _ = read_names_dir(locate_data(data_dir=data_dir, download=False), None)
    label_names = sorted(set(langs))
    labels = [label_names.index(g) for g in langs]
    split = assign_splits([normalize(n, False) for n in names], (0.8, 0.1, 0.1), 0, strata=labels)
    groups = by_split(names, labels, split)
    out = {k: {"names": list(v[0]), "labels": [int(i) for i in v[1]]} for k, v in groups.items()}
    out["label_names"] = label_names
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)
    print({k: len(v[0]) for k, v in groups.items()})


def sweep(split_path: str, out_path: str, device: str = "cuda") -> None:
    import torch
    from torch import nn

    torch.backends.cudnn.allow_tf32 = False
    with open(split_path, encoding="utf-8") as f:
        data = json.load(f)
    chars = sorted({c for n in data["train"]["names"] for c in n})
    index = {c: i + 2 for i, c in enumerate(chars)}  # 0 padding, 1 unknown
    vocab, classes = len(chars) + 2, len(data["label_names"])

    def encode(names):
        ids = np.zeros((len(names), max(len(n) for n in names)), np.int64)
        for i, n in enumerate(names):
            ids[i, : len(n)] = [index.get(c, 1) for c in n]
        return torch.tensor(ids), torch.tensor([len(n) for n in names])

    splits = {k: (*encode(data[k]["names"]), torch.tensor(data[k]["labels"]))
              for k in ("train", "validation", "test")}

    class Net(nn.Module):  # the recipe's model: embedding 64, BiRNN, last states, dropout
        def __init__(self, cell, units, levels, dropout):
            super().__init__()
            self.embed = nn.Embedding(vocab, 64, padding_idx=0)
            rnn = nn.GRU if cell == "gru" else nn.LSTM
            self.rnn = rnn(64, units, levels, batch_first=True, bidirectional=True,
                           dropout=dropout)
            self.drop = nn.Dropout(dropout)
            self.out = nn.Linear(2 * units, classes)

        def forward(self, ids, lengths):
            packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(),
                                                       batch_first=True, enforce_sorted=False)
            _, h = self.rnn(packed)
            h = h[0] if isinstance(h, tuple) else h
            return self.out(self.drop(torch.cat([h[-2], h[-1]], -1)))

    def probabilities(model, split):
        ids, lengths, _ = splits[split]
        model.eval()
        with torch.no_grad():
            return torch.softmax(model(ids.to(device), lengths), -1).cpu().numpy()

    def metrics(p, split):
        y = splits[split][2].numpy()
        pred = p.argmax(-1)
        f1 = []
        for c in range(classes):
            tp = np.sum((pred == c) & (y == c))
            wrong = np.sum((pred == c) != (y == c))  # false positives + false negatives
            f1.append(2 * tp / max(2 * tp + wrong, 1))
        nll = float(-np.log(p[np.arange(len(y)), y] + 1e-12).mean())
        return {"acc": float(np.mean(pred == y)), "macro_f1": float(np.mean(f1)), "nll": nll}

    def train(cell, units, levels, dropout, class_weight, seed, epochs=40, patience=6):
        torch.manual_seed(seed)
        model = Net(cell, units, levels, dropout).to(device)
        optimizer = torch.optim.Adam(model.parameters(), 2e-3)
        ids, lengths, y = splits["train"]
        weight = None
        if class_weight:
            counts = np.maximum(np.bincount(y.numpy(), minlength=classes), 1)
            weight = torch.tensor(len(y) / (classes * counts), dtype=torch.float32, device=device)
        loss_fn = nn.CrossEntropyLoss(weight=weight)
        best, best_state, waited = float("inf"), None, 0
        order = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(y), generator=order)
            for i in range(0, len(y), 64):
                b = perm[i : i + 64]
                optimizer.zero_grad()
                loss_fn(model(ids[b].to(device), lengths[b]), y[b].to(device)).backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
            val = metrics(probabilities(model, "validation"), "validation")["nll"]
            if val < best:
                best, waited = val, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= patience:
                    break
        model.load_state_dict(best_state)
        return model

    # (cell, units, levels, dropout, class_weight); the first is the recipe's model.
    configs = [
        ("gru", 256, 2, 0.3, False),
        ("gru", 512, 2, 0.3, False),
        ("lstm", 512, 2, 0.3, False),
        ("gru", 1024, 2, 0.5, False),
        ("gru", 512, 3, 0.4, False),
        ("gru", 512, 2, 0.3, True),
    ]
    results, every_val, every_test = [], [], []

    def report(config, seed, val, test, seconds=None):
        row = {"config": config, "seed": seed, "val": metrics(val, "validation"),
               "test": metrics(test, "test"), "s": seconds}
        results.append(row)
        print(json.dumps(row), flush=True)
        with open(out_path, "w") as f:
            json.dump(results, f, indent=1)

    for config in configs:
        vals, tests = [], []
        for seed in range(3):
            start = time.time()
            model = train(*config, seed)
            vals.append(probabilities(model, "validation"))
            tests.append(probabilities(model, "test"))
            report(config, seed, vals[-1], tests[-1], round(time.time() - start, 1))
        report(config, "ensemble-3", np.mean(vals, 0), np.mean(tests, 0))
        every_val += vals
        every_test += tests
    report("all", f"ensemble-{len(every_val)}", np.mean(every_val, 0), np.mean(every_test, 0))

if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "split":
        write_split(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 4 and sys.argv[1] == "sweep":
        sweep(sys.argv[2], sys.argv[3], *(sys.argv[4:5] or ["cuda"]))
    else:
        sys.exit(__doc__)

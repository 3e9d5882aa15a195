"""benchmarks/cudnn.py on torch's CPU kernels: masked, stacked, bidirectional layers and their
gradients, converted with interop.to_torch, against keras_seq. On a GPU the same check runs on
cuDNN (benchmarks/README.md); here it guards the script and the torch side of the mapping."""

import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[torch]')")


@pytest.fixture(scope="module")
def cudnn(load_benchmark):
    return load_benchmark("cudnn")


@pytest.fixture(scope="module")
def fixtures(cudnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("cudnn") / "small.npz"
    assert cudnn.main(["fixtures", str(path), "--small"]) == 0
    return path


def test_every_small_case_matches_keras_seq_values_and_gradients(cudnn, fixtures, tmp_path):
    assert cudnn.main(["check", str(fixtures), "--device", "cpu", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "cudnn_cpu.json").read_text())["rows"]
    assert [r["case"] for r in rows] == cudnn.SMALL
    assert {r["kind"] for r in rows} == {"rnn", "lstm", "gru"}
    assert any(r["masked"] and r["bidirectional"] for r in rows)
    for r in rows:
        assert r["ok"], r
        assert r["max_abs_values"] <= cudnn.TOL_VALUES and r["max_rel_grads"] <= cudnn.TOL_GRADS
        assert not r["cudnn"]  # torch's CPU kernels
    assert "| lstm-2-bi-masked |" in (tmp_path / "cudnn_cpu.md").read_text()


@pytest.mark.parametrize(
    "key",
    ["gru-2-bi-masked/grad.weight_hh_l0_reverse", "lstm-2-masked/dc0", "rnn-2-bi-masked/out"],
)
def test_a_wrong_reference_fails_the_check(cudnn, fixtures, tmp_path, capsys, key):
    data = dict(np.load(fixtures))
    case = key.split("/")[0]
    ref = data[key]
    ref.flat[ref.size // 2] += 1e-3 * max(1.0, float(np.max(np.abs(ref))))
    broken = tmp_path / "broken.npz"
    np.savez(broken, **data)
    assert cudnn.main(["check", str(broken), "--device", "cpu", "--out", str(tmp_path)]) == 1
    assert f"FAILED (fp32): {case}" in capsys.readouterr().out
    rows = json.loads((tmp_path / "cudnn_cpu.json").read_text())["rows"]
    assert [r["case"] for r in rows if not r["ok"]] == [case]

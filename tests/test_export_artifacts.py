"""End to end: every exporter over every task model, then verify, warm-up, predict, serving.

Three tiny untrained task models (classifier: LSTM; language model: GRU; seq2seq: LSTM with
Luong attention) are written as fake run directories (the run-dir contract) and exported
once per module (conversion is the slow part); the tests then check the artifacts against the
models' own public methods.
"""

import importlib
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

import keras_seq.export.tflite as tflite_export
import keras_seq.models as models
from keras_seq.export import export_all_latest, export_run, predict, verify
from keras_seq.export.runtimes import SavedModelSession, onnx_runner, tflite_runner
from keras_seq.export.tflite import tflite_ops
from keras_seq.export.warmup import read_warmup_requests
from pipelines.text import Vocabulary

NAMES = ["Nakamura", "Smith", "Broż", "Müller", "Rossi", "Ivanov", "Kim", "Dubois", "Ng"]
LABELS = ["Japanese", "English", "Polish"]
TEXT = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak."
PAIRS = [("I am here .", "estoy aqui ."), ("you are", "eres"), ("we go now !", "vamos ya !"),
         ("hello", "hola"), ("unknown words here", "")]


def make_run(root: Path, task: str, seed: int = 0, **model_options: Any) -> Path:
    """A complete run directory (config, model.keras, vocab/, labels, samples, metrics)."""
    keras.utils.set_random_seed(seed)
    (root / "vocab").mkdir(parents=True)
    small = {"units": 8, "embedding_dim": 8, **model_options}
    if task == "classification":
        vocab = Vocabulary.build(NAMES[:6], level="char")
        vocab.to_json(root / "vocab" / "source.json")
        spec = {"class": "SequenceClassifier", "cell": "lstm", **small}
        model = models.SequenceClassifier(vocab.size, len(LABELS), **_options(spec))
        model(vocab.encode_padded(NAMES[:2]))
        (root / "labels.json").write_text(json.dumps(LABELS))
        samples = [{"input": t, "target": LABELS[i % 3]} for i, t in enumerate(NAMES)]
    elif task == "language_model":
        vocab = Vocabulary.build([TEXT[:40]], level="char")  # later characters are OOV
        vocab.to_json(root / "vocab" / "source.json")
        spec = {"class": "LanguageModel", "cell": "gru", **small}
        model = models.LanguageModel(vocab.size, **_options(spec))
        model(vocab.encode_padded([TEXT[:10]]))
        samples = [{"input": TEXT[i:i + 12], "target": TEXT[i + 1:i + 13]} for i in range(0, 60, 6)]
    else:
        src = Vocabulary.build([s for s, _ in PAIRS[:4]], level="word", lowercase=True,
                               punctuation=".!")
        tgt = Vocabulary.build([t for _, t in PAIRS[:4]], level="word", lowercase=True,
                               punctuation=".!")
        src.to_json(root / "vocab" / "source.json")
        tgt.to_json(root / "vocab" / "target.json")
        spec = {"class": "Seq2Seq", "cell": "lstm", "attention": "luong-general", **small}
        model = models.Seq2Seq(src.size, tgt.size, **_options(spec))
        model((src.encode_padded(["you are"]), tgt.encode_padded(["eres"], add_start=True)))
        samples = [{"input": s, "target": t} for s, t in PAIRS]
    model.save(root / "model.keras")
    config = {"recipe": f"tiny_{task}", "task": task, "source": "fake", "data": {},
              "model": spec, "train": {"max_decode_length": 6, "generate_length": 5},
              "seed": seed, "data_dir": None}
    (root / "config.json").write_text(json.dumps(config))
    (root / "samples.json").write_text(json.dumps(samples, ensure_ascii=False))
    (root / "metrics.json").write_text(json.dumps({"recipe": config["recipe"], "test": {}}))
    return root


def _options(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "class"}


TASKS = ("classification", "language_model", "seq2seq")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def exports(root):
    """``{task: (run_dir, export_dir)}``, all formats, with a dynamic-range TFLite variant."""
    result = {}
    for task in TASKS:
        run = make_run(root / "runs" / f"tiny_{task}" / "run1", task)
        out = export_run(run, root / "exported" / f"tiny_{task}", quantize="dynamic")
        result[task] = (run, out)
    return result


def _model(run: Path):
    return keras.saving.load_model(run / "model.keras", safe_mode=True)


def _vocab(export_dir: Path, role: str = "source") -> Vocabulary:
    return Vocabulary.from_json(export_dir / "vocab" / f"{role}.json")


def _texts(export_dir: Path) -> list[str]:
    return [s["input"] for s in json.loads((export_dir / "samples.json").read_text())]


def _calibration_texts(export_dir: Path) -> list[str]:
    """The samples the export's int8 file was calibrated on."""
    meta = json.loads((export_dir / "metadata.json").read_text())
    start, end = meta["artifacts"]["tflite"]["variants"]["int8"]["calibration_samples"]
    return _texts(export_dir)[start:end]


# -- layout and metadata ------------------------------------------------------------------------


def test_layout_and_models_config(exports, root):
    for task, (_, out) in exports.items():
        expected = ["metadata.json", "samples.json", "vocab/source.json",
                    "saved_model/1/saved_model.pb",
                    "saved_model/1/assets.extra/tf_serving_warmup_requests",
                    "model.tflite", "model.dynamic.tflite"]
        expected += (["model_encoder.onnx", "model_decoder_step.onnx", "vocab/target.json"]
                     if task == "seq2seq" else ["model.onnx"])
        missing = [p for p in expected if not (out / p).is_file()]
        assert not missing, (task, missing)
    config = (root / "exported" / "models.config").read_text()
    assert config.count("config {") == 3
    for task in TASKS:
        assert f'base_path: "/models/tiny_{task}/saved_model"' in config
    assert not list((root / "exported").glob(".staging-*"))


def test_metadata_describes_artifacts_run_and_parity(exports):
    run, out = exports["classification"]
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["task"] == "classification" and meta["labels"] == LABELS
    assert meta["vocabularies"]["source"] == Vocabulary.from_json(
        run / "vocab" / "source.json").get_config()
    assert meta["signatures"]["classify"]["inputs"]["token_ids"] == {
        "dtype": "int32", "shape": [None, None]}
    assert meta["source_run"]["path"] == str(run.resolve())
    assert meta["source_run"]["model_class"] == "SequenceClassifier"
    assert meta["source_run"]["members"] == 1
    tflite = meta["artifacts"]["tflite"]
    assert tflite["variants"]["none"]["size_bytes"] == (out / "model.tflite").stat().st_size
    assert tflite["inputs"]["classify"]["token_ids"]["shape"] == [1, -1]
    assert meta["artifacts"]["onnx"]["files"]["classify"]["file"] == "model.onnx"
    assert meta["artifacts"]["saved_model"]["version"] == 1
    assert meta["parity"]["ok"] is True and len(meta["parity"]["rows"]) >= 5


# -- verify ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_verify_passes_for_every_runtime(exports, task):
    report = verify(exports[task][1])
    table = report.table()
    assert report.ok and report.exit_code == 0, table
    runtimes = [row.runtime for row in report.rows]
    assert runtimes[:3] == ["keras", "saved_model (TF1 loader)",
                            "saved_model serving_default (text)"]
    assert {"tflite", "tflite dynamic", "onnxruntime"} <= set(runtimes)
    for row in report.rows:
        assert row.examples == len(_texts(exports[task][1]))
        if row.kind == "float" and row.max_abs_diff is not None:
            assert row.max_abs_diff <= 1e-4
        assert row.latency_ms is not None and row.latency_ms > 0
    if task == "seq2seq":  # whole greedy decodes in one graph
        assert {"saved_model translate", "tflite translate"} <= set(runtimes)
    assert table.splitlines()[-1] == "PASS"


def test_verify_runs_the_saved_models_translate_signature(exports, monkeypatch):
    """The SavedModel's `translate` (greedy decode in one graph) is checked against Keras's
    greedy tokens: a wrong one fails verify (it was not run before)."""
    from keras_seq.export import runtimes

    real = runtimes.SavedModelSession.__call__

    def wrong_translate(self, name, feeds):
        outputs = real(self, name, feeds)
        if name == "translate":
            outputs["token_ids"] = outputs["token_ids"][:, ::-1].copy()
        return outputs

    monkeypatch.setattr(runtimes.SavedModelSession, "__call__", wrong_translate)
    report = verify(exports["seq2seq"][1])
    rows = {row.runtime: row for row in report.rows}
    assert not rows["saved_model translate"].ok and not report.ok
    assert rows["tflite translate"].ok and rows["saved_model (TF1 loader)"].ok


def test_a_mixed_precision_run_exports_in_float32(tmp_path):
    """A --mixed-precision run (saved under mixed_float16) failed to export once its model
    loaded in its own policy: a float16 weight met a float32 input in the export graph. It
    exports in float32, the same variables computing in float32, and verifies against that."""
    from keras_seq.export.run_dir import load_model

    previous = keras.config.dtype_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        run = make_run(tmp_path / "runs" / "tiny_seq2seq" / "mixed", "seq2seq")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    mixed = _model(run)
    assert mixed.dtype_policy.name == "mixed_float16"
    full = load_model(run / "model.keras", float32=True)
    assert {layer.dtype_policy.name for layer in full._flatten_layers()} == {"float32"}
    for a, b in zip(full.weights, mixed.weights, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    out = export_run(run, tmp_path / "exported", formats=("tflite", "onnx"))
    report = verify(out)
    assert report.ok, report.table()
    assert {"tflite", "onnxruntime"} <= {row.runtime for row in report.rows}


def test_verify_fails_on_a_corrupted_artifact(exports, tmp_path):
    out = tmp_path / "corrupt"
    shutil.copytree(exports["classification"][1], out)
    data = bytearray((out / "model.tflite").read_bytes())
    (out / "model.tflite").write_bytes(bytes(data[: len(data) // 3]))
    report = verify(out, max_examples=4)
    rows = {row.runtime: row for row in report.rows}
    assert not report.ok and report.exit_code == 1
    assert not rows["tflite"].ok and rows["tflite"].note
    assert rows["onnxruntime"].ok and rows["tflite dynamic"].ok
    assert report.table().splitlines()[-1] == "FAIL"


def test_verify_fails_on_a_perturbed_weight(exports, tmp_path):
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "perturbed"
    shutil.copytree(exports["classification"][1], out)
    model = onnx.load(out / "model.onnx")
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest).copy()
    weights += 0.05  # every element: no row of it is unused (e.g. the padding embedding)
    biggest.CopyFrom(numpy_helper.from_array(weights, biggest.name))
    onnx.save(model, out / "model.onnx")
    report = verify(out)
    rows = {row.runtime: row for row in report.rows}
    assert not report.ok
    assert not rows["onnxruntime"].ok and rows["onnxruntime"].max_abs_diff > 1e-4
    assert rows["tflite"].ok


def test_verify_fails_on_nan_outputs(exports, tmp_path):
    # Python's max(0.0, nan) is 0.0: an ONNX model answering NaN passed with max|diff| 0.
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "nan"
    shutil.copytree(exports["classification"][1], out)
    model = onnx.load(out / "model.onnx")
    heads = [t for t in model.graph.initializer if "head" in t.name]  # every probability NaN
    assert heads
    for head in heads:
        head.CopyFrom(numpy_helper.from_array(
            np.full_like(numpy_helper.to_array(head), np.nan), head.name))
    onnx.save(model, out / "model.onnx")
    report = verify(out, max_examples=4)
    rows = {row.runtime: row for row in report.rows}
    assert not report.ok and report.table().splitlines()[-1] == "FAIL"
    onnx_row = rows["onnxruntime"]
    assert not onnx_row.ok and np.isnan(onnx_row.max_abs_diff) and onnx_row.note == "NaN outputs"
    assert rows["tflite"].ok


def test_verify_fails_when_serving_returns_other_labels(exports, tmp_path, monkeypatch):
    """``serving_default``'s label must agree as well as its probabilities: a graph whose
    label lookup is wrong (right probabilities, another label) fails its row."""
    from keras_seq.export.runtimes import SavedModelSession

    serve = SavedModelSession.serve

    def wrong_labels(self, texts):
        outputs = dict(serve(self, texts))
        outputs["label"] = np.full_like(outputs["label"], b"WRONG")
        return outputs

    monkeypatch.setattr(SavedModelSession, "serve", wrong_labels)
    report = verify(exports["classification"][1], max_examples=4)
    row = next(r for r in report.rows if "serving_default" in r.runtime)
    assert row.max_abs_diff is not None and row.max_abs_diff <= 1e-4  # the probabilities agree
    assert row.agreement == 0.0 and not row.ok and not report.ok


class _BatchedServingDiffers:
    """A real ``SavedModelSession`` whose ``serving_default`` answers multi-text requests with
    ``skew`` applied to the outputs; single-text requests and the numeric signatures are the
    real graph's."""

    def __init__(self, session, skew):
        self._session, self._skew, self.skewed = session, skew, 0

    def __getattr__(self, name):
        return getattr(self._session, name)

    def __call__(self, name, feeds):
        return self._session(name, feeds)

    def serve(self, texts):
        outputs = self._session.serve(texts)
        if len(texts) == 1:
            return outputs
        self.skewed += 1
        return self._skew(dict(outputs))


def _off_by_1e3(outputs):  # the probabilities drift, the label does not
    return {**outputs, "probabilities": outputs["probabilities"] + np.float32(1e-3)}


def _rows_rotated(outputs):  # each row gets the real answer to its neighbour's text
    return {key: np.roll(value, 1, axis=0) for key, value in outputs.items()}


@pytest.mark.parametrize("task,skew", [("classification", _off_by_1e3),
                                       ("language_model", _rows_rotated),
                                       ("seq2seq", _rows_rotated)])
def test_verify_fails_when_batched_serving_differs_from_single_requests(
    exports, monkeypatch, task, skew
):
    """TF Serving batches requests: ``serving_default`` on all the texts at once must answer
    each one as a request of its own does. The classifier's batched probabilities are off by
    1e-3 with the labels right (caught by max|diff| alone); the text tasks' batched rows are
    their neighbours' answers (caught by top-1 alone)."""
    from keras_seq.export import runtimes

    opened = []

    def open_session(path):
        opened.append(_BatchedServingDiffers(real(path), skew))
        return opened[-1]

    real = runtimes.SavedModelSession
    monkeypatch.setattr(runtimes, "SavedModelSession", open_session)
    report = verify(exports[task][1])
    rows = {row.runtime: row for row in report.rows}
    serving = rows["saved_model serving_default (text)"]
    assert [session.skewed for session in opened] == [1]  # one batched request, skewed
    assert rows["saved_model (TF1 loader)"].ok  # the session itself is the real one
    assert not serving.ok and not report.ok, report.table()
    if task == "classification":
        assert serving.max_abs_diff == pytest.approx(1e-3, abs=1e-6)
        assert serving.agreement == 1.0  # single and batched labels agree with Keras
    else:
        assert serving.max_abs_diff is None and serving.agreement < 1.0


# The rows judged on top-1 against `min_agreement`, and their kinds.
AGREEMENT_ROWS = {
    "classification": {"tflite dynamic": "quantized",
                       "saved_model serving_default (text)": "float"},  # labels, and numbers
    "seq2seq": {"tflite dynamic": "quantized", "tflite dynamic translate": "quantized",
                "saved_model translate": "float", "tflite translate": "float",  # decodes only
                "saved_model serving_default (text)": "float"},
}


@pytest.mark.parametrize("task", AGREEMENT_ROWS)
def test_verify_passes_a_row_exactly_at_the_agreement_bar(exports, task):
    """Quantized rows, whole-decode rows (no numbers to compare) and serving_default's text
    pass when their top-1 agreement is at least ``min_agreement``: exactly at the bar passes,
    just above it fails (float rows with numbers are judged on max|diff| alone)."""
    out, judged = exports[task][1], AGREEMENT_ROWS[task]
    first = {row.runtime: row for row in verify(out).rows}
    assert {name: first[name].kind for name in judged} == judged
    bar = first["tflite dynamic"].agreement
    assert {first[name].agreement for name in judged} == {bar}  # the tiny models: 100%

    at = verify(out, min_agreement=bar)
    assert at.ok and at.min_agreement == bar, at.table()
    above = {row.runtime: row for row in verify(out, min_agreement=np.nextafter(bar, 2.0)).rows}
    assert [name for name in judged if above[name].ok] == []
    assert all(above[name].ok for name in ("tflite", "onnxruntime", "saved_model (TF1 loader)"))
    if task == "seq2seq":
        assert first["saved_model translate"].max_abs_diff is None  # judged on top-1 alone


def test_verify_notes_a_model_keras_changed_since_export(exports, tmp_path, capsys):
    """verify compares the artifacts with the run's model.keras as it is now: one rewritten
    after the export (its sha256 no longer the metadata's) is named on the keras row, in the
    report and in `keras-seq verify`'s table; an unchanged run has no note."""
    from keras_seq import cli

    note = "model.keras changed since export"
    run, out = tmp_path / "run", tmp_path / "export"
    shutil.copytree(exports["classification"][0], run)
    shutil.copytree(exports["classification"][1], out)
    meta = json.loads((out / "metadata.json").read_text())
    meta["source_run"]["path"] = str(run)
    (out / "metadata.json").write_text(json.dumps(meta))

    unchanged = verify(out)
    assert unchanged.ok and unchanged.rows[0].note == "", unchanged.table()
    assert cli.main(["verify", str(out)]) == 0
    assert note not in capsys.readouterr().out

    model = _model(run)
    model.weights[0].assign(model.weights[0] + 0.05)
    model.save(run / "model.keras")
    report = verify(out)
    keras_row = report.rows[0]
    assert keras_row.runtime == "keras" and keras_row.artifact == str(run / "model.keras")
    assert keras_row.ok and keras_row.note == note
    assert not report.ok  # the artifacts are the old model's
    assert cli.main(["verify", str(out)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].startswith("keras ") and lines[2].endswith(f"ok ({note})"), lines


# -- SavedModel: TF1 loader, saved_model_cli, warm-up --------------------------------------------


def _expected_readable(task: str, run: Path, out: Path, texts: list[str]) -> list:
    """What the model's own public methods produce for ``texts``."""
    model, vocab = _model(run), _vocab(out)
    ids = vocab.encode_padded(texts)
    if task == "classification":
        return [LABELS[i] for i in np.argmax(model(ids), -1)]
    if task == "language_model":
        tokens = model.generate(ids, 5, temperature=0.0, seed=0)
        return vocab.decode(np.asarray(tokens))
    tokens, _ = model.translate(ids, max_length=6)
    return _vocab(out, "target").decode(np.asarray(tokens))


@pytest.mark.parametrize("task", TASKS)
def test_serving_default_takes_raw_text_through_the_tf1_loader(exports, task):
    run, out = exports[task]
    texts = _texts(out)[:4]
    session = SavedModelSession(out / "saved_model" / "1")
    try:
        outputs = session.serve(texts)
    finally:
        session.close()
    key = {"classification": "label", "language_model": "text", "seq2seq": "translation"}[task]
    got = [v.decode("utf-8") for v in outputs[key]]
    assert got == _expected_readable(task, run, out, texts)
    if task == "classification":
        np.testing.assert_allclose(
            outputs["probabilities"], _model(run)(_vocab(out).encode_padded(texts)), atol=1e-6
        )


@pytest.mark.parametrize("task,signature,key", [
    ("classification", "classify", "token_ids"),
    ("language_model", "next_token", "token_ids"),
    ("seq2seq", "encode", "source_ids"),
    ("seq2seq", "translate", "source_ids"),
])
def test_saved_model_takes_ids_with_no_steps_as_one_padding_step(exports, task, signature, key):
    """A TF Serving request of ``[B, 0]`` ids failed inside TensorFlow (TensorListConcatV2: an
    empty list needs a fully defined element shape). It is answered as ``serving_default``
    answers an empty text: one padding step, which the models mask."""
    _, out = exports[task]
    session = SavedModelSession(out / "saved_model" / "1")
    try:
        empty = session(signature, {key: np.zeros((2, 0), np.int32)})
        padding = session(signature, {key: np.zeros((2, 1), np.int32)})
    finally:
        session.close()
    assert empty.keys() == padding.keys()
    for name in empty:
        np.testing.assert_array_equal(empty[name], padding[name], err_msg=name)


@pytest.mark.parametrize("task", TASKS)
def test_saved_model_stores_each_weight_once(exports, task):
    """Keras's ExportArchive writes a tracked model's weights twice (keras-team/keras#23553)."""
    run, out = exports[task]
    reader = tf.train.load_checkpoint(str(out / "saved_model" / "1" / "variables" / "variables"))
    stored = sum(
        int(np.prod(shape)) for key, shape in reader.get_variable_to_shape_map().items()
        if key.endswith("VARIABLE_VALUE")
    )
    assert stored == _model(run).count_params()


def test_saved_model_cli_runs_serving_default(exports):
    run, out = exports["classification"]
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [str(cli), "run", "--dir", str(out / "saved_model" / "1"), "--tag_set", "serve",
         "--signature_def", "serving_default", "--input_exprs", 'text=["Nakamura","Smith"]'],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    labels = _expected_readable("classification", run, out, ["Nakamura", "Smith"])
    match = re.search(r"Result for output key label:\s*\[(.*?)\]", result.stdout, re.S)
    assert match and re.findall(r"b'([^']*)'", match.group(1)) == labels


@pytest.mark.parametrize("task", TASKS)
def test_warmup_records_replay_through_the_tf1_loader(exports, task):
    _, out = exports[task]
    texts = _texts(out)
    version = out / "saved_model" / "1"
    requests = list(read_warmup_requests(version))
    assert len(requests) == min(len(texts), 16) + 1
    assert json.loads((out / "metadata.json").read_text())["artifacts"]["saved_model"][
        "warmup_requests"] == len(requests)
    session = SavedModelSession(version)
    try:
        replies = [session.run_request(r) for r in requests]
        direct = session.serve(texts)
    finally:
        session.close()
    assert all(len(next(iter(r.values()))) == 1 for r in replies[:-1])
    for key, value in direct.items():  # the batch record is the samples, replayed exactly
        np.testing.assert_array_equal(replies[-1][key], value)


# -- TFLite -------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_tflite_is_builtins_only_at_batch_one_with_resizable_length(exports, task):
    _, out = exports[task]
    ops = tflite_ops((out / "model.tflite").read_bytes())
    assert ops and all(op.isupper() and not op.startswith("FLEX") for op in ops), set(ops)
    run = tflite_runner(out / "model.tflite")
    signatures = run.interpreter.get_signature_list()
    first = {"classification": "classify", "language_model": "next_token",
             "seq2seq": "encode"}[task]
    details = run.interpreter.get_signature_runner(first).get_input_details()
    shape = next(iter(details.values()))["shape_signature"].tolist()
    assert shape == [1, -1]
    if task == "seq2seq":
        assert set(signatures) == {"encode", "decode_step", "translate"}


def test_tflite_lstm_is_one_fused_op(exports):
    """TFLite inputs are unpadded (``export_mode(padding="none")``): the mask is dropped and
    the classifier's LSTM fuses."""
    ops = tflite_ops((exports["classification"][1] / "model.tflite").read_bytes())
    assert ops.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == 1, sorted(set(ops))
    assert "WHILE" not in ops


def test_tflite_matches_keras_on_exact_length_ids(exports):
    run_dir, out = exports["classification"]
    model, vocab = _model(run_dir), _vocab(out)
    run = tflite_runner(out / "model.tflite")
    for text in ["Nakamura", "Kim", "Broż"]:
        ids = vocab.encode_padded([text])
        got = run("classify", {"token_ids": ids})["probabilities"]
        np.testing.assert_allclose(got, model(ids), atol=1e-5)


@pytest.mark.parametrize("pooling,op", [("mean", "MEAN"), ("max", "REDUCE_MAX")])
def test_tflite_pools_unpadded_inputs_without_their_mask(tmp_path, pooling, op):
    """TFLite inputs are unpadded, so the all-True mask is dropped from the pooling as from the
    LSTM: the mean is one MEAN, whose int8 result stays within its input's range (the sum of
    the masked form saturated on texts longer than the int8 calibration samples)."""
    run = make_run(tmp_path / "run", "classification", bidirectional=True, pooling=pooling)
    out = export_run(run, tmp_path / "names", formats=["tflite"])
    ops = tflite_ops((out / "model.tflite").read_bytes())
    assert op in ops and "SUM" not in ops, sorted(set(ops))
    model, vocab = _model(run), _vocab(out)
    runner = tflite_runner(out / "model.tflite")
    for text in ["Nakamura", "Kim", "Broż", "Nakamura Smith Rossi Dubois Ivanov"]:
        ids = vocab.encode_padded([text])
        got = runner("classify", {"token_ids": ids})["probabilities"]
        np.testing.assert_allclose(got, model(ids), atol=1e-5)


def test_int8_is_judged_on_samples_it_was_not_calibrated_on(exports, tmp_path, monkeypatch):
    # It was calibrated on samples.json[:32]: all of the export's 16 parity examples and half
    # of verify's, so its agreement was measured mostly on its own calibration data.
    from keras_seq.export import api

    run, _ = exports["classification"]
    texts = [s["input"] for s in json.loads((run / "samples.json").read_text())]
    # The tiny model's near-even probabilities flip under int8 (max|diff| ~4e-3): no bar here.
    verify_module = importlib.import_module("keras_seq.export.verify")
    real_verify = verify_module.verify
    monkeypatch.setattr(verify_module, "verify",
                        lambda *args, **kw: real_verify(*args, **kw, min_agreement=0.0))
    calibrated = []
    real = api._record_feeds
    monkeypatch.setattr(api, "_record_feeds",
                        lambda client, graphs, t: (calibrated.extend(t), real(client, graphs, t))[1])
    out = export_run(run, tmp_path / "names", formats=["tflite"], quantize="int8")
    half = len(texts) // 2
    assert calibrated == texts[half:half + 32] and len(texts) >= 4
    entry = json.loads((out / "metadata.json").read_text())["artifacts"]["tflite"]["variants"]
    assert entry["int8"]["calibration_samples"] == [half, min(len(texts), half + 32)]
    rows = {row.runtime: row for row in verify(out).rows}
    assert rows["tflite int8"].examples == half  # the samples before the calibration's
    assert rows["tflite"].examples == len(texts)


def test_int8_lstm_states_are_in_the_types_the_fused_kernel_uses(exports, tmp_path):
    """Full-integer LSTMs keep h in int8 and the cell state in int16. The state copies fed
    them through an ADD whose int16 output the TFLite kernel retyped int8: the fused LSTM then
    read and wrote 2 bytes per value in a 1-byte buffer. (A names-de-it BiLSTM gave every
    name the same answer: 56% top-1 agreement with Keras.)"""
    run, _ = exports["classification"]
    out = export_run(run, tmp_path / "names", formats=["tflite"], quantize="int8",
                     parity_examples=0)
    interpreter = tf.lite.Interpreter(model_path=str(out / "model.int8.tflite"))
    interpreter.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    lstms = [op for op in interpreter._get_ops_details()
             if op["op_name"] == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    assert lstms, tflite_ops((out / "model.int8.tflite").read_bytes())
    for op in lstms:  # inputs 18 and 19: the h and c state operands
        assert dtypes[op["inputs"][18]] == np.int8 and dtypes[op["inputs"][19]] == np.int16


def test_int8_lstms_follow_the_float_file_on_their_calibration_data(tmp_path):
    """Quantizations TFLite's int8 kernels compute wrong with, repaired on export:

    - its int8 h state is copied raw into its output, so the two must be quantized alike; a
      Bidirectional's concatenation gave the forward output both directions' scale and left
      its state's (features ~1.3x too large: 93.8% agreement on a names-de-it BiLSTM). The
      backward direction is made to range wider here, so that the scales differ;
    - max pooling narrows the second layer's output quantization to the maxima's range, which
      the state, tied to it, cannot leave: its negative values were clipped (11 steps off);
    - its ``tanh(c)`` is skipped when the int16 cell state's scale is finer than 2**-15 (the
      range it can hold is then under +-1; this untrained model's is +-2**-5): every step
      gave one saturated output.

    Each fused LSTM's output sequence, dequantized, is compared with the float file's on the
    names the int8 ranges were calibrated on (others may fall outside them and clip)."""
    run = make_run(tmp_path / "run", "classification", bidirectional=True, num_layers=2,
                   pooling="max")
    model = _model(run)
    backward = model.encoder.backward_layer
    backward.set_weights([4.0 * w for w in backward.get_weights()])
    model.save(run / "model.keras")
    out = export_run(run, tmp_path / "names", formats=["tflite"], quantize="int8",
                     parity_examples=0)

    def run(path: Path, ids: np.ndarray) -> tuple[list[tuple[np.ndarray, float]], np.ndarray]:
        """Each fused LSTM's output sequence, dequantized, with its scale (0 in float), and
        the probabilities."""
        [(sequences, outputs)] = tflite_export.lstm_outputs(
            path.read_bytes(), "classify", [{"token_ids": ids}])
        return sequences, outputs["probabilities"]

    # The k-th int8 LSTM gets the k-th float one's range: the pairing is checked on weights.
    float_file = (out / "model.tflite").read_bytes()
    int8_file = (out / "model.int8.tflite").read_bytes()
    tflite_export._check_lstm_pairing(float_file, int8_file)
    swapped = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_file))
    operators = swapped.subgraphs[0].operators
    first, second = [i for i, op in enumerate(operators) if op.inputs is not None
                     and len(op.inputs) == 24][:2]  # the first two fused LSTMs
    operators[first], operators[second] = operators[second], operators[first]
    with pytest.raises(RuntimeError, match="do not pair up in order"):
        tflite_export._check_lstm_pairing(
            float_file, bytes(flatbuffer_utils.convert_object_to_bytearray(swapped)))

    vocab = _vocab(out)
    for text in _calibration_texts(out):
        ids = vocab.encode_padded([text])
        (exact, p_exact), (quantized, p_quantized) = (
            run(out / "model.tflite", ids), run(out / "model.int8.tflite", ids))
        assert len(exact) == len(quantized) == 4  # 2 layers x 2 directions
        for (want, _), (got, scale) in zip(exact, quantized, strict=True):
            assert scale > 0
            np.testing.assert_allclose(got, want, atol=4 * scale, err_msg=text)
        # Before the pooling dropped its mask, the reversed backward output of the last layer
        # was also read in the quantization max pooling narrowed: 0.03-0.05 off, now 0.002.
        np.testing.assert_allclose(p_quantized, p_exact, atol=0.01, err_msg=text)


def test_int8_lstm_cell_state_holds_every_step_of_its_calibration_data(tmp_path, monkeypatch):
    """The quantizer calibrates the int16 cell state on zero and the final ``c_T`` only, and
    the fused op clipped it at 10 (Keras does not clip). A cell state that climbs to about
    11.5 over twelve "a"s and falls back to about 1.8 over ten "b"s saturated at +-2 and then
    at 10 in the int8 file: the last output was -0.24 instead of 0.8, and the answer flipped."""
    monkeypatch.setitem(globals(), "NAMES", ["a" * n + "b" * m for n, m in
                                             [(12, 10), (11, 10), (12, 9), (10, 8)] * 2])
    run = make_run(tmp_path / "run", "classification", units=2, embedding_dim=2)
    model = _model(run)
    vocab = _vocab(run)
    a, b = (int(vocab.encode_padded([ch])[0, 0]) for ch in "ab")
    embeddings = np.zeros(model.embedding.embeddings.shape, np.float32)
    embeddings[a, 0], embeddings[b, 0] = 1, -1
    kernel = np.full((2, 8), 0.05, np.float32)
    kernel[0, 4:6] = 3  # candidate tanh(+-3) = +-0.995
    bias = np.full(8, 5.0, np.float32)
    bias[4:6] = 0  # input, forget and output gates ~0.993
    model.embedding.embeddings.assign(embeddings)
    model.encoder.cell.kernel.assign(kernel)
    model.encoder.cell.recurrent_kernel.assign(np.full((2, 8), 0.01, np.float32))
    model.encoder.cell.bias.assign(bias)
    model.head.kernel.assign(np.array([[3, -3, 0], [0, 0, 0]], np.float32))
    model.head.bias.assign(np.zeros(3, np.float32))
    model.save(run / "model.keras")
    out = export_run(run, tmp_path / "out", formats=["tflite"], quantize="int8",
                     parity_examples=0)
    ids = vocab.encode_padded(["a" * 12 + "b" * 10])  # a calibration sample
    [((exact, _),), _] = next(tflite_export.lstm_outputs(
        (out / "model.tflite").read_bytes(), "classify", [{"token_ids": ids}]))
    [((quantized, scale),), outputs] = next(tflite_export.lstm_outputs(
        (out / "model.int8.tflite").read_bytes(), "classify", [{"token_ids": ids}]))
    assert exact[0, -1, 0] > 0.7  # c came back down to ~1.8: tanh(c) ~0.95
    np.testing.assert_allclose(quantized, exact, atol=4 * scale)
    np.testing.assert_allclose(outputs["probabilities"], model(ids), atol=0.01)


def test_a_raw_copy_reads_its_input_in_its_own_quantization_after_repair(tmp_path):
    """int8 kernels such as REVERSE_V2 copy values as they are, so an input the quantizer left
    in another quantization than the output was read in the output's (a BiLSTM's REVERSE_V2:
    scale 0.00030 in, 0.00034 out). Mimicked on the reversal of a real int8 file's embedding
    by giving its output twice the scale; requantize_raw_copies inserts a QUANTIZE first."""
    run = make_run(tmp_path / "run", "classification", bidirectional=True)
    out = export_run(run, tmp_path / "names", formats=["tflite"], quantize="int8",
                     parity_examples=0)
    model = flatbuffer_utils.convert_bytearray_to_object(
        bytearray((out / "model.int8.tflite").read_bytes()))
    tensors, codes = model.subgraphs[0].tensors, tflite_export._opcodes(model)
    operators = model.subgraphs[0].operators
    lstm_inputs = {op.inputs[0] for op in operators
                   if codes[op.opcodeIndex] == "UNIDIRECTIONAL_SEQUENCE_LSTM"}
    reverse = next(op for op in operators  # the backward LSTM's reversed embeddings
                   if codes[op.opcodeIndex] == "REVERSE_V2" and op.outputs[0] in lstm_inputs)
    source, target = reverse.inputs[0], reverse.outputs[0]
    assert tflite_export._params(tensors[source]) == tflite_export._params(tensors[target])
    tensors[target].quantization.scale = [2 * tensors[target].quantization.scale[0]]
    mangled = bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    def steps_off(model_bytes: bytes) -> float:
        """Largest |reversed input - output| of that REVERSE_V2, in steps of its output."""
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True)
        interpreter.get_signature_runner("classify")(token_ids=_vocab(out).encode_padded(["Rossi"]))
        values = {}
        for index in (source, target):
            scale, zero = tflite_export._params(tensors[index])
            values[index] = (interpreter.get_tensor(index).astype(np.float64) - zero) * scale
        scale = tflite_export._params(tensors[target])[0]
        return float(np.abs(values[source][:, ::-1] - values[target]).max() / scale)

    assert steps_off(mangled) > 5  # read at twice the scale
    assert steps_off(tflite_export.requantize_raw_copies(mangled)) <= 0.5


def test_a_quantized_artifact_below_the_agreement_bar_stops_the_export(
    exports, tmp_path, monkeypatch
):
    """It used to be written with a warning: an int8 file that gave every name the same
    answer was exported with exit 0. The bar is raised past 100% so that the real dynamic
    file fails it."""
    verify_module = importlib.import_module("keras_seq.export.verify")
    real = verify_module.verify
    monkeypatch.setattr(verify_module, "verify",
                        lambda *args, **kw: real(*args, **kw, min_agreement=1.01))
    run, _ = exports["classification"]
    with pytest.raises(ValueError, match=r"stopped: quantized artifacts agree with the Keras "
                       r"model's top-1 on fewer than 101% .*tflite dynamic 100\.0%.*nothing"):
        export_run(run, tmp_path / "names", formats=["tflite"], quantize="dynamic")
    assert not (tmp_path / "names").exists()


def _while_bodies(model: Any) -> list[Any]:
    return [model.subgraphs[op.builtinOptions.bodySubgraphIndex]
            for subgraph in model.subgraphs for op in subgraph.operators or []
            if isinstance(op.builtinOptions, schema.WhileOptionsT)]


def test_while_bodies_are_unaliased_without_changing_what_they_compute(exports, tmp_path):
    """TensorFlow's int8 calibrator crashed (SIGSEGV) on a WHILE body that returns an input as
    that same tensor: the WHILE kernel frees such an output, the calibrator reads it."""
    _, out = exports["language_model"]  # GRU: a WHILE loop in TFLite

    def passed_through(model_bytes: bytes) -> int:
        model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
        return sum(int(i == o) for body in _while_bodies(model)
                   for i, o in zip(body.inputs, body.outputs, strict=True))

    float_file = (out / "model.tflite").read_bytes()
    unaliased = tflite_export.unalias_while_bodies(float_file)
    assert passed_through(float_file) >= 2 and passed_through(unaliased) == 0
    (tmp_path / "unaliased.tflite").write_bytes(unaliased)
    before, after = tflite_runner(out / "model.tflite"), tflite_runner(tmp_path / "unaliased.tflite")
    vocab = _vocab(out)
    for text in ["F", "First Cit", TEXT[:30]]:
        feeds = {"token_ids": vocab.encode_padded([text])}
        np.testing.assert_array_equal(after("next_token", feeds)["logits"],
                                      before("next_token", feeds)["logits"])


@pytest.mark.parametrize("task,options,signature", [
    ("language_model", {}, "next_token"),  # GRU
    ("classification", {"cell": "rnn", "bidirectional": True}, "classify"),
])
def test_int8_computes_while_loops_in_int8(tmp_path, task, options, signature):
    """int8 used to be refused for WHILE loops, whose calibration crashed TensorFlow."""
    run = make_run(tmp_path / "run", task, **options)
    out = export_run(run, tmp_path / "out", formats=["tflite"], quantize="int8",
                     parity_examples=0)  # an untrained classifier's near-even answers flip
    int8_file = (out / "model.int8.tflite").read_bytes()
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_file))
    codes = tflite_export._opcodes(model)
    bodies = _while_bodies(model)
    assert len(bodies) == 1 + options.get("bidirectional", False)
    for body in bodies:
        products = [op for op in body.operators if codes[op.opcodeIndex] == "FULLY_CONNECTED"]
        assert products and all(body.tensors[i].type == schema.TensorType.INT8
                                for op in products for i in op.inputs[:2])
    exact, quantized = tflite_runner(out / "model.tflite"), tflite_runner(out / "model.int8.tflite")
    vocab, texts = _vocab(out), _calibration_texts(out)  # others may leave the int8 ranges

    def probabilities(runner: Any, text: str) -> np.ndarray:
        outputs = runner(signature, {"token_ids": vocab.encode_padded([text])})
        return outputs["probabilities"] if "probabilities" in outputs else np.asarray(
            keras.ops.softmax(outputs["logits"]))

    for text in texts:
        np.testing.assert_allclose(probabilities(quantized, text), probabilities(exact, text),
                                   atol=0.02, err_msg=text)


@pytest.mark.parametrize("attention", ["luong-general", "luong-dot"])
def test_int8_translate_decodes_as_the_float_file(tmp_path, attention):
    """Greedy decoding bans ids with -inf: calibrated, the SELECT_V2 that does so ranged to
    -FLT_MAX, its int8 scale was 1.3e36 and every input translated to [1, 1, 1, 1, 1, 1]. A
    seq2seq model fit to its pairs, so that its tokens are decisive. With "dot" scores the
    encoder outputs feed BATCH_MATMUL directly, and TensorFlow's calibrator failed on the
    second encoder length; it is then calibrated on one."""
    run = make_run(tmp_path / "run", "seq2seq", attention=attention)
    model = _model(run)
    source, target = _vocab(run, "source"), _vocab(run, "target")
    pairs = PAIRS[:4]
    model.compile(optimizer=keras.optimizers.Adam(3e-2), loss=model.default_loss())
    model.fit((source.encode_padded([s for s, _ in pairs]),
               target.encode_padded([t for _, t in pairs], add_start=True)),
              target.encode_padded([t for _, t in pairs], add_end=True), epochs=60, verbose=0)
    model.save(run / "model.keras")
    out = export_run(run, tmp_path / "out", formats=["tflite"], quantize="int8")  # passes the bar
    int8_file = (out / "model.int8.tflite").read_bytes()
    flat = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_file))
    codes = tflite_export._opcodes(flat)
    scales = [tflite_export._params(subgraph.tensors[op.outputs[0]])[0]
              for subgraph in flat.subgraphs for op in subgraph.operators or []
              if codes[op.opcodeIndex] == "SELECT_V2"
              and tflite_export._params(subgraph.tensors[op.outputs[0]])]
    assert scales and max(scales) < 10, scales
    exact, quantized = tflite_runner(out / "model.tflite"), tflite_runner(out / "model.int8.tflite")
    for text in [s for s, _ in PAIRS] + ["we are here", "hello you"]:
        feeds = {"source_ids": source.encode_padded([text])}
        np.testing.assert_array_equal(quantized("translate", feeds)["token_ids"],
                                      exact("translate", feeds)["token_ids"], err_msg=text)


# -- ONNX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_onnx_has_native_recurrent_nodes(exports, task):
    """ONNX inputs are right-padded (``export_mode(padding="right")``): masks become
    ``sequence_lens`` of one native node per recurrent layer, no ``Loop``."""
    import onnx

    from keras_seq.ops.inspect import onnx_op_types

    _, out = exports[task]
    file = "model_encoder.onnx" if task == "seq2seq" else "model.onnx"
    ops = onnx_op_types(onnx.load(out / file))
    native = {"classification": "LSTM", "language_model": "GRU", "seq2seq": "LSTM"}[task]
    assert ops.count(native) == 1 and "Loop" not in ops, sorted(set(ops))


@pytest.mark.parametrize("task", TASKS)
def test_onnx_opset_and_dynamic_batch(exports, task):
    import onnx

    _, out = exports[task]
    file = "model_encoder.onnx" if task == "seq2seq" else "model.onnx"
    model = onnx.load(out / file)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch.HasField("dim_value")  # dynamic


def test_runners_reject_feeds_that_break_the_padding_contract(exports):
    """A padded batch would run on TFLite (no mask there) and a left-padded row on ONNX
    (``sequence_lens`` counts from the left) and give wrong numbers; both are refused."""
    _, out = exports["classification"]
    vocab = _vocab(out)
    padded = vocab.encode_padded(["Nakamura", "Kim"])
    with pytest.raises(ValueError, match=r"'token_ids' for the TFLite .* row 0, position 3"):
        tflite_runner(out / "model.tflite")("classify", {"token_ids": padded[1:]})
    onnx = onnx_runner({"classify": out / "model.onnx"})
    left = np.concatenate([np.zeros([1, 2], padded.dtype), padded[1:, :3]], axis=1)
    with pytest.raises(ValueError, match=r"'token_ids' for the ONNX .* right-padded .* row 0"):
        onnx("classify", {"token_ids": left})


def test_onnx_runs_a_padded_batch_like_keras(exports):
    run_dir, out = exports["classification"]
    model, vocab = _model(run_dir), _vocab(out)
    ids = vocab.encode_padded(["Nakamura", "Kim", "Broż"])
    got = onnx_runner({"classify": out / "model.onnx"})("classify", {"token_ids": ids})
    np.testing.assert_allclose(got["probabilities"], model(ids), atol=1e-5)


def test_onnx_right_padded_batches_match_keras_at_every_position(exports):
    """The ONNX contract (right-padded rows, native nodes with ``sequence_lens``): the LM's
    logits and the seq2seq encoder's outputs and states equal Keras's, padded steps included
    (Keras repeats the last valid output there)."""
    run_dir, out = exports["language_model"]
    model, vocab = _model(run_dir), _vocab(out)
    ids = vocab.encode_padded([TEXT[:12], TEXT[3:6], "F"])
    got = onnx_runner({"next_token": out / "model.onnx"})("next_token", {"token_ids": ids})
    np.testing.assert_allclose(got["logits"], model(ids), atol=1e-5)

    run_dir, out = exports["seq2seq"]
    model, src = _model(run_dir), _vocab(out)
    ids = src.encode_padded(["I am here .", "hello", "we go now !"])
    got = onnx_runner({"encode": out / "model_encoder.onnx"})("encode", {"source_ids": ids})
    outputs, mask, states = model.encode(ids)
    np.testing.assert_allclose(got["encoder_outputs"], outputs, atol=1e-5)
    np.testing.assert_array_equal(got["encoder_mask"], mask)
    for i, state in enumerate(states):
        np.testing.assert_allclose(got[f"state_{i}"], state, atol=1e-5)


def test_onnx_encoder_and_decoder_step_reproduce_translate(exports):
    run_dir, out = exports["seq2seq"]
    model, src, tgt = _model(run_dir), _vocab(out), _vocab(out, "target")
    got = predict(out / "model_encoder.onnx", ["I am here .", "hello"])
    tokens, _ = model.translate(src.encode_padded(["I am here .", "hello"]), max_length=6)
    assert [g["output"] for g in got] == tgt.decode(np.asarray(tokens))


def test_onnx_provider_check_replays_keras_calls_and_fails_on_a_wrong_reference(
    exports, tmp_path, capsys, load_benchmark
):
    """benchmarks/onnx_cuda.py (run on a GPU with CUDAExecutionProvider) on the CPU provider:
    every recorded Keras call replays within verify's tolerance, and a perturbed one fails."""
    script = load_benchmark("onnx_cuda")
    fixtures, results = tmp_path / "fixtures", tmp_path / "results"
    assert script.main(["fixtures", *(str(exports[t][1]) for t in TASKS), "--out", str(fixtures)]) == 0
    check = ["check", str(fixtures), "--providers", "CPUExecutionProvider", "--repeats", "1",
             "--out", str(results)]
    assert script.main(check) == 0
    # A check without CUDA writes its own files: the committed GPU figures are not replaced.
    assert not (results / "onnx_cuda.json").exists()
    runs = json.loads((results / "onnx_cpu_check.json").read_text())["runs"]
    assert {r["task"] for r in runs} == set(TASKS) and all(r["ok"] for r in runs)
    by_task = {r["task"]: r for r in runs}
    assert by_task["seq2seq"]["max_abs_diff"].keys() == {"encode", "encode (batch 5)", "decode_step"}
    assert by_task["classification"]["recurrent_nodes"] == {"LSTM@CPUExecutionProvider": 10}
    assert by_task["language_model"]["recurrent_nodes"] == {"GRU@CPUExecutionProvider": 11}

    name = "tiny_classification"
    calls = dict(np.load(fixtures / name / "calls.npz"))
    calls["0/out/probabilities"] = calls["0/out/probabilities"] + 1e-3
    np.savez(fixtures / name / "calls.npz", **calls)
    capsys.readouterr()
    assert script.main(check) == 1
    assert f"FAILED: {name} on CPUExecutionProvider" in capsys.readouterr().out


# -- predict ------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS)
def test_predict_agrees_across_formats(exports, task):
    run, out = exports[task]
    texts = _texts(out)[:3]
    onnx_file = "model_encoder.onnx" if task == "seq2seq" else "model.onnx"
    paths = [out, out / "saved_model" / "1", out / "model.tflite", out / onnx_file]
    results = [predict(path, texts) for path in paths]
    assert all(r == results[0] or _close(r, results[0]) for r in results[1:])
    expected = _expected_readable(task, run, out, texts)
    key = "label" if task == "classification" else "output"
    assert [r[key] for r in results[0]] == expected
    assert set(results[0][0]) == ({"input", "label", "probabilities"}
                                  if task == "classification" else {"input", "output"})
    lines = predict(out / "model.tflite", texts, as_json=True)
    assert [json.loads(line)[key] for line in lines] == expected


def _close(a: list[dict], b: list[dict]) -> bool:
    for x, y in zip(a, b, strict=True):
        if x.keys() != y.keys() or x.get("label") != y.get("label"):
            return False
        if "probabilities" in x and not np.allclose(x["probabilities"], y["probabilities"],
                                                    atol=1e-5):
            return False
        if x.get("output") != y.get("output"):
            return False
    return True


def test_cli_predict_prints_the_answer_without_the_tf1_loaders_notice(exports, cli):
    # The TF1 loader (TF Serving's) is used on purpose; TensorFlow's notice that it is
    # deprecated is printed once per process, so only a fresh process shows it.
    run, out = exports["classification"]
    texts = _texts(out)[:2]
    result = cli("predict", str(out), *texts)
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == _expected_readable(
        "classification", run, out, texts)
    assert "deprecated" not in result.stderr


def test_cli_predict_takes_options_between_the_texts(exports, capsys):
    from keras_seq import cli

    _, out = exports["classification"]
    texts = _texts(out)[:3]
    # argparse ended TEXT... at the first option: "unrecognized arguments" for the rest.
    assert cli.main(["predict", str(out), "--json", texts[0], texts[1], "--model", "x",
                     texts[2]]) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [g["input"] for g in got] == texts
    with pytest.raises(SystemExit):
        cli.main(["predict", str(out), "--json", texts[0], "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


def test_predict_names_a_missing_metadata_and_a_bad_path(exports, tmp_path):
    lone = tmp_path / "model.tflite"
    shutil.copy(exports["classification"][1] / "model.tflite", lone)
    with pytest.raises(FileNotFoundError, match=r"needs metadata.json"):
        predict(lone, ["x"])
    with pytest.raises(ValueError, match=r"argument `texts`"):
        predict(exports["classification"][1], [])
    for path in (exports["seq2seq"][1], exports["seq2seq"][1] / "model.tflite"):
        # Was an answer for padding alone from the SavedModel, an id-0 feed error from TFLite.
        with pytest.raises(ValueError, match=r"Expected texts with at least one token of the "
                                             r"model's vocabulary. Received: texts\[1\]=''"):
            predict(path, ["x", ""])
    with pytest.raises(ValueError, match=r"Received: texts\[0\]=''"):
        predict(None, [""], server="http://127.0.0.1:1", model_name="m")
    with pytest.raises(ValueError, match=r"argument `model_name`"):
        predict(None, ["x"], server="http://127.0.0.1:1")


def test_predict_takes_whitespace_where_the_vocabulary_has_it_as_a_token(exports):
    """A space is a token of a character vocabulary: every runtime answers for it, as the
    SavedModel always did (predict refused any blank text). A word vocabulary has no token
    in a space, so there it is refused."""
    _, out = exports["language_model"]  # characters
    assert _vocab(out).encode([" "]).to_list()[0]
    saved_model, tflite = (predict(p, ["x", " "]) for p in (out, out / "model.tflite"))
    assert saved_model == tflite and [r["input"] for r in tflite] == ["x", " "]
    _, out = exports["seq2seq"]  # words
    for path in (out, out / "model.tflite"):
        with pytest.raises(ValueError, match=r"at least one token .* Received: texts\[1\]=' '"):
            predict(path, ["x", " "])


def test_an_empty_prompt_continues_on_onnx_like_the_saved_model(exports):
    """Its placeholder padding id was kept before the generated tokens: left padding, which
    the ONNX artifact refuses."""
    from keras_seq.export.metadata import read_metadata
    from keras_seq.export.tasks.language_model import LanguageModelClient

    run, out = exports["language_model"]
    client = LanguageModelClient(read_metadata(out))
    got = client.predict(onnx_runner({"next_token": out / "model.onnx"}), "")["output"]
    length = int(client.metadata["decoding"]["length"])
    want = _model(run).generate(np.zeros((1, 1), np.int32), length, temperature=0.0)
    assert got == _vocab(out).decode(np.asarray(want))[0]


def test_predict_on_an_export_without_saved_model_uses_its_edge_artifact(exports, tmp_path):
    run, out = exports["classification"]
    edge = export_run(run, tmp_path / "edge_only", formats=["onnx"], parity_examples=0)
    assert not (edge / "saved_model").exists()
    assert _close(predict(edge, ["Kim", "Smith"]), predict(out, ["Kim", "Smith"]))


class _TFServingREST(BaseHTTPRequestHandler):
    """TF Serving's REST predict contract, served from SavedModels (a test stand-in)."""

    sessions: dict = {}

    def _reply(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - http.server API
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", self.path)
        if not match:
            return self._reply(404, {"error": "Malformed request: POST " + self.path})
        session = self.sessions.get(match.group(1))
        if session is None:
            return self._reply(404, {"error": f"Servable not found for request: "
                                              f"Latest({match.group(1)})"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        signature = body.get("signature_name", "serving_default")
        instances = body["instances"]
        names = list(session.signatures[signature].inputs)
        rows = [r if isinstance(r, dict) else {names[0]: r} for r in instances]
        feeds = {k: np.asarray([r[k].encode("utf-8") for r in rows], dtype=object) for k in names}
        outputs = session(signature, feeds)

        def plain(value):
            value = value.tolist() if hasattr(value, "tolist") else value
            return value.decode("utf-8") if isinstance(value, bytes) else value

        if len(outputs) == 1:  # one named output: bare values
            predictions = [plain(v) for v in next(iter(outputs.values()))]
        else:
            predictions = [{k: plain(v[i]) for k, v in outputs.items()} for i in range(len(rows))]
        return self._reply(200, {"predictions": predictions})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def serving(exports):
    sessions = {out.name: SavedModelSession(out / "saved_model" / "1")
                for _, out in exports.values()}
    _TFServingREST.sessions = sessions
    server = HTTPServer(("127.0.0.1", 0), _TFServingREST)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    for session in sessions.values():
        session.close()


@pytest.mark.parametrize("task", TASKS)
def test_predict_through_the_tf_serving_rest_contract(exports, serving, task):
    _, out = exports[task]
    texts = _texts(out)[:3]
    remote = predict(None, texts, server=serving, model_name=out.name)
    local = predict(out, texts)
    assert remote == local or _close(remote, local)
    from keras_seq.export.serving_client import ServingError

    with pytest.raises(ServingError, match=r"Servable not found"):
        predict(None, texts, server=serving, model_name="absent")


def test_predict_command_without_a_path_sends_every_text_to_the_server(
    exports, serving, capsys, tmp_path, monkeypatch
):
    from keras_seq import cli

    _, out = exports["classification"]
    texts = _texts(out)[:2]
    # The first text was taken as PATH and silently left out of the request.
    assert cli.main(["predict", "--server", serving, "--model", out.name, *texts, "--json"]) == 0
    remote = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in remote] == texts
    assert _close(remote, predict(out, texts))
    # An unreachable server was a URLError traceback.
    assert cli.main(["predict", "--server", "http://127.0.0.1:1", "--model", "names", "x"]) == 2
    assert "error: Cannot reach TF Serving at http://127.0.0.1:1" in capsys.readouterr().err
    # Without --model the first text was taken as PATH: "expected at least one TEXT".
    assert cli.main(["predict", "--server", serving, texts[0]]) == 2
    assert "argument `model_name`. Expected the model's name on the server" in (
        capsys.readouterr().err)
    # A first text that names a folder (not an export) was taken as PATH and dropped.
    monkeypatch.chdir(tmp_path)
    (tmp_path / texts[0]).mkdir()
    assert cli.main(["predict", "--server", serving, "--model", out.name, *texts, "--json"]) == 0
    assert [json.loads(line)["input"] for line in capsys.readouterr().out.splitlines()] == texts


# -- versions, atomicity, make export ---------------------------------------------------------


def test_versions_are_explicit_and_exports_atomic(exports, tmp_path, monkeypatch):
    run, _ = exports["classification"]
    out = tmp_path / "exported" / "names"
    export_run(run, out, formats=["saved_model"], parity_examples=0)
    with pytest.raises(ValueError, match=r"pass version=2 \(--version 2\) or replace=True"):
        export_run(run, out, formats=["saved_model"], parity_examples=0)
    export_run(run, out, formats=["saved_model"], version=2, parity_examples=0)
    assert sorted(p.name for p in (out / "saved_model").iterdir()) == ["1", "2"]
    before = (out / "saved_model" / "2" / "saved_model.pb").stat().st_mtime_ns
    export_run(run, out, formats=["saved_model"], replace=True, parity_examples=0)
    assert (out / "saved_model" / "2" / "saved_model.pb").stat().st_mtime_ns != before
    # An older version than the latest is refused: TF Serving and `predict` serve version 2,
    # while metadata.json (and TFLite, ONNX) would have described the model put in version 1.
    with pytest.raises(ValueError, match=r"Expected a version >= 2, the latest in .*"
                       r"Received: version=1"):
        export_run(run, out, formats=["saved_model"], version=1, replace=True,
                   parity_examples=0)

    from keras_seq.export import onnx as onnx_exporter

    def broken(*args, **kwargs):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(onnx_exporter, "convert_signature", broken)
    snapshot = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(RuntimeError, match="converter crashed"):
        export_run(run, out, formats=["saved_model", "onnx"], version=3, parity_examples=0)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == snapshot
    assert not list(out.parent.glob(".staging-*"))
    assert 'name: "names"' in (out.parent / "models.config").read_text()


def test_metadata_counts_the_warmup_requests_written_without_samples(exports, tmp_path):
    # With no samples the writer warms up with [""] (alone, then as the batch): 2 requests,
    # which metadata.json counted as 1.
    run = tmp_path / "run"
    shutil.copytree(exports["classification"][0], run)
    (run / "samples.json").write_text("[]\n")
    out = export_run(run, tmp_path / "names", formats=["saved_model"], parity_examples=0)
    written = list(read_warmup_requests(out / "saved_model" / "1"))
    assert len(written) == 2
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["artifacts"]["saved_model"]["warmup_requests"] == 2


def test_a_partial_export_of_another_model_does_not_leave_the_old_ones_artifacts(
    exports, tmp_path
):
    # They stayed: metadata named the new model while TF Serving and `predict DIR` served the
    # old SavedModel, and `predict model.onnx` failed with a KeyError traceback.
    run, _ = exports["classification"]
    out = tmp_path / "exported" / "names"
    export_run(run, out, formats=["saved_model", "onnx"], parity_examples=0)
    metadata = json.loads((out / "metadata.json").read_text())
    metadata["source_run"]["model_sha256"] = "0" * 64  # as if another model were exported
    (out / "metadata.json").write_text(json.dumps(metadata))
    snapshot = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    with pytest.raises(ValueError, match=r"holds saved_model, onnx of another model \(.*\); "
                       r"export it in those formats too, or into another directory"):
        export_run(run, out, formats=["tflite"], parity_examples=0)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == snapshot
    export_run(run, out, formats=["saved_model", "onnx", "tflite"], version=2, parity_examples=0)
    assert sorted(json.loads((out / "metadata.json").read_text())["artifacts"]) == [
        "onnx", "saved_model", "tflite"]
    metadata = json.loads((out / "metadata.json").read_text())
    del metadata["artifacts"]["onnx"]
    (out / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(FileNotFoundError, match=r"model.onnx is not an artifact of .*: its "
                       r"metadata.json lists model.tflite \(a file left by another export"):
        predict(out / "model.onnx", ["Kim"])


def test_an_earlier_exports_quantized_file_is_removed_and_never_served(exports, tmp_path):
    # It stayed beside a newer export without --quantize, and `predict` ran its old weights
    # with the new model's vocabulary and labels.
    run, _ = exports["classification"]
    out = tmp_path / "exported" / "names"
    export_run(run, out, formats=["tflite"], quantize="dynamic", parity_examples=0)
    assert (out / "model.dynamic.tflite").is_file()
    export_run(run, out, formats=["tflite"], replace=True, parity_examples=0)
    assert not (out / "model.dynamic.tflite").exists() and (out / "model.tflite").is_file()
    shutil.copy(out / "model.tflite", out / "model.stale.tflite")  # left by hand
    with pytest.raises(FileNotFoundError, match=r"model.stale.tflite is not an artifact of .*: "
                       r"its metadata.json lists model.tflite \(a file left by another"):
        predict(out / "model.stale.tflite", ["Kim"])


def test_predict_on_a_damaged_artifact_names_the_file(exports, tmp_path):
    from keras_seq import cli

    _, out = exports["seq2seq"]
    damaged = tmp_path / "dates"
    shutil.copytree(out, damaged)
    (damaged / "model_encoder.onnx").write_bytes(
        (out / "model_encoder.onnx").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"Could not load the ONNX file .*model_encoder.onnx: "
                       r".*INVALID_PROTOBUF"):
        predict(damaged / "model_decoder_step.onnx", ["x"])
    variables = next((damaged / "saved_model" / "1" / "variables").glob("variables.data-*"))
    variables.write_bytes(variables.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"Could not load the SavedModel at .*saved_model/1: "
                       r"Read less bytes than requested"):  # not "Graph execution error:"
        predict(damaged, ["x"])
    (damaged / "saved_model" / "1" / "saved_model.pb").write_bytes(b"garbage")
    assert cli.main(["predict", str(damaged), "x"]) == 2  # was an OSError traceback
    with pytest.raises(ValueError, match=r"Could not load the SavedModel at .*saved_model/1: "
                       r"Cannot parse file"):
        predict(damaged, ["x"])


def test_export_stops_when_a_float_artifact_differs_from_keras(exports, tmp_path, monkeypatch):
    from keras_seq.export import runtimes

    real = runtimes.tflite_runner

    def drifting(path, **kwargs):
        run = real(path, **kwargs)
        return lambda name, feeds: {k: v + 1e-3 for k, v in run(name, feeds).items()}

    monkeypatch.setattr(runtimes, "tflite_runner", drifting)
    run, _ = exports["classification"]
    with pytest.raises(ValueError, match=r"stopped: artifacts differ from the Keras model \(tflite"):
        export_run(run, tmp_path / "drift", formats=["tflite"], parity_examples=4)
    assert not (tmp_path / "drift").exists() and not list(tmp_path.glob(".staging-*"))


def test_export_without_samples_is_refused_before_converting(exports, tmp_path):
    run, _ = exports["language_model"]
    bare = tmp_path / "run"
    shutil.copytree(run, bare)
    (bare / "samples.json").write_text("[]")
    with pytest.raises(ValueError, match=r"argument `run_dir`. Expected real examples in .*"
                                         r"samples.json .*Received: none"):
        export_run(bare, tmp_path / "lm", formats=["onnx"])
    assert not (tmp_path / "lm").exists() and not list(tmp_path.glob(".staging-*"))


def test_export_all_latest_exports_each_recipe_once(exports, root, tmp_path, capsys):
    out = tmp_path / "all"
    first = export_all_latest(root / "runs", out, formats=["saved_model"], parity_examples=0)
    assert set(first) == {f"tiny_{t}" for t in TASKS}
    assert all(path == out / name for name, path in first.items())
    again = export_all_latest(root / "runs", out, formats=["saved_model"], parity_examples=0)
    assert again == {name: None for name in first}  # same model.keras: nothing to do
    # `make export` said nothing at all then.
    from keras_seq import cli

    assert cli.main(["export", "--all-latest", str(root / "runs"), "--out", str(out),
                     "--formats", "saved_model"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{name}: the latest run is already exported (--replace to redo it)" for name in first]
    newer = make_run(root / "runs" / "tiny_classification" / "run2", "classification", seed=1)
    third = export_all_latest(root / "runs", out, formats=["saved_model"], parity_examples=0)
    assert third["tiny_classification"] == out / "tiny_classification"
    assert third["tiny_seq2seq"] is None
    meta = json.loads((out / "tiny_classification" / "metadata.json").read_text())
    assert meta["source_run"]["path"] == str(newer.resolve())
    assert sorted(p.name for p in (out / "tiny_classification" / "saved_model").iterdir()) == [
        "1", "2"]
    # With --replace a newer run is still the next version (it overwrote the latest, which TF
    # Serving, having loaded that number, does not reload), and the latest run's own is redone.
    newest = make_run(root / "runs" / "tiny_classification" / "run3", "classification", seed=2)
    export_all_latest(root / "runs", out, formats=["saved_model"], replace=True,
                      parity_examples=0)
    versions = out / "tiny_classification" / "saved_model"
    assert sorted(p.name for p in versions.iterdir()) == ["1", "2", "3"]
    before = (versions / "3" / "saved_model.pb").stat().st_mtime_ns
    export_all_latest(root / "runs", out, formats=["saved_model"], replace=True,
                      parity_examples=0)
    assert sorted(p.name for p in versions.iterdir()) == ["1", "2", "3"]
    assert (versions / "3" / "saved_model.pb").stat().st_mtime_ns != before
    shutil.rmtree(newer)
    shutil.rmtree(newest)


def test_a_run_killed_while_saving_its_model_is_neither_latest_nor_a_traceback(tmp_path):
    """A cut-off model.keras (a kill while saving, before metrics.json): `export --all-latest`
    stopped on it with a BadZipFile traceback, and so did `export RUN`."""
    from keras_seq import cli

    finished = make_run(tmp_path / "runs" / "tiny_classification" / "run1", "classification")
    killed = make_run(tmp_path / "runs" / "tiny_classification" / "run2", "classification",
                      seed=1)
    (killed / "metrics.json").unlink()
    model = killed / "model.keras"
    model.write_bytes(model.read_bytes()[:5000])
    out = tmp_path / "exported"
    exported = export_all_latest(tmp_path / "runs", out, formats=["saved_model"],
                                 parity_examples=0)
    assert exported == {"tiny_classification": out / "tiny_classification"}
    meta = json.loads((out / "tiny_classification" / "metadata.json").read_text())
    assert meta["source_run"]["path"] == str(finished.resolve())
    with pytest.raises(ValueError, match=rf"Expected a Keras model file at {re.escape(str(model))}"
                       r", but it is not a readable .keras archive"):
        export_run(killed, tmp_path / "other", formats=["saved_model"])
    assert cli.main(["export", str(killed), "--out", str(tmp_path / "other")]) == 2


def test_a_model_of_another_task_is_refused_beside_existing_versions(exports, tmp_path):
    """It became version 2 under the seq2seq export's name; metadata.json then described only
    it, and `predict` on version 1 failed with a KeyError."""
    out = tmp_path / "dates"
    shutil.copytree(exports["seq2seq"][1], out)
    before = (out / "metadata.json").read_text()
    with pytest.raises(ValueError, match=r"holds a seq2seq export \(SavedModel version\(s\) "
                       r"\[1\]\) whose signatures differ from this classification model's"):
        export_run(exports["classification"][0], out, formats=["saved_model"], version=2)
    assert (out / "metadata.json").read_text() == before
    assert sorted(p.name for p in (out / "saved_model").iterdir()) == ["1"]


def test_save_model_replaces_model_keras_in_one_step(tmp_path, monkeypatch):
    from keras_seq.training import runner

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous")

    def killed(path, *args, **kwargs):  # a kill while writing: only part of the file exists
        Path(path).write_bytes(b"PK\x03\x04 cut")
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        runner.save_model(model, target)
    assert target.read_bytes() == b"previous"
    monkeypatch.undo()
    runner.save_model(model, target)
    assert keras.saving.load_model(target).count_params() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]


def test_predict_through_tf_serving_grpc(exports):
    """The gRPC option against a stand-in PredictionService running the SavedModel."""
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    _, out = exports["classification"]
    session = SavedModelSession(out / "saved_model" / "1")

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 - gRPC API
            if request.model_spec.name != out.name:
                context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found")
            outputs = session.run_request(request)
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        texts = _texts(out)[:3]
        remote = predict(None, texts, server=f"grpc://127.0.0.1:{port}", model_name=out.name)
        assert _close(remote, predict(out, texts))
    finally:
        server.stop(None)
        session.close()

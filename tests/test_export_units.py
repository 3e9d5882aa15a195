"""keras_seq.export pieces that need no conversion: registry, versions, configs, clients."""

import contextlib
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import tensorflow as tf

from keras_seq.export import api, registry, serving_config
from keras_seq.export.metadata import read_metadata
from keras_seq.export.run_dir import find_latest_runs, load_run
from keras_seq.export.serving_client import ServingError, rest_predict
from keras_seq.export.tasks.text_graph import decode_ids, padded_ids
from keras_seq.export.warmup import read_warmup_requests, write_warmup_requests
from pipelines.text import Vocabulary

# -- int8 calibration fixes ---------------------------------------------------------------------


def test_int8_calibration_fixes_restore_tensorflows_functions_and_name_what_is_missing(
    monkeypatch,
):
    from tensorflow.lite.python import lite

    from keras_seq.export.tflite import int8_calibration_fixes

    originals = lite._calibrator.add_intermediate_tensors, lite._mlir_quantize
    with pytest.raises(KeyError), int8_calibration_fixes():
        assert (lite._calibrator.add_intermediate_tensors, lite._mlir_quantize) != originals
        raise KeyError("a failed conversion")
    assert (lite._calibrator.add_intermediate_tensors, lite._mlir_quantize) == originals
    monkeypatch.delattr(lite, "_mlir_quantize")
    with pytest.raises(RuntimeError, match=r"no longer has .*_mlir_quantize.*TensorFlow 2\.21"):
        with int8_calibration_fixes():
            pass
    assert lite._calibrator.add_intermediate_tensors is originals[0]


def test_int8_conversion_retries_signatures_at_one_shape_then_names_the_calibrators_failure():
    from types import SimpleNamespace

    from keras_seq.export.tflite import _convert_int8

    lengths = {"a": [3, 4, 3], "b": [2, 5, 5], "c": [2]}
    job = SimpleNamespace(calibration=(10, 13), feeds={
        name: [{"ids": np.zeros((1, n), np.int32)} for n in ns] for name, ns in lengths.items()
    })

    class Converter:  # records what each attempt calibrates on
        def __init__(self, succeed_when=None):
            self.attempts, self.succeed_when = [], succeed_when

        def convert(self):
            seen = {}
            for name, feed in self.representative_dataset():
                seen.setdefault(name, []).append(feed["ids"].shape[1])
            self.attempts.append(seen)
            if seen == self.succeed_when:
                return b"converted"
            raise RuntimeError("accum_dim_lhs != accum_dim_rhs\nsecond line")

    failing = Converter()
    with pytest.raises(
        ValueError,
        match=r"argument `quantize`.*calibrator failed on this model \(accum_dim_lhs != "
              r"accum_dim_rhs\); expected 'none', 'dynamic' or 'float16'.*quantize='int8'$",
    ):
        _convert_int8(failing, job, ["a", "b", "c"])
    assert failing.attempts == [  # all samples; then a, then b, then both at their common shape
        {"a": [3, 4, 3], "b": [2, 5, 5], "c": [2]},
        {"a": [3, 3], "b": [2, 5, 5], "c": [2]},
        {"a": [3, 4, 3], "b": [5, 5], "c": [2]},
        {"a": [3, 3], "b": [5, 5], "c": [2]},
    ]
    second = Converter(succeed_when={"a": [3, 3], "b": [2, 5, 5], "c": [2]})
    assert _convert_int8(second, job, ["a", "b", "c"]) == b"converted"
    assert len(second.attempts) == 2


def test_a_signature_called_at_every_step_is_calibrated_at_one_shape_across_the_samples():
    from types import SimpleNamespace

    from keras_seq.export.tflite import _calibration

    # 32 samples; decode_step's feeds are their tokens: sample k has 5 tokens and an encoder of
    # length 9 if k % 3 == 0, else 7. The first 32 feeds would be 7 samples' tokens at 2 lengths.
    length = [9 if k % 3 == 0 else 7 for k in range(32)]
    encode = [{"ids": np.full((1, length[k]), k)} for k in range(32)]
    step = [{"encoder": np.full((1, length[k], 2), k), "token": np.array([t])}
            for k in range(32) for t in range(5)]
    job = SimpleNamespace(calibration=(32, 64), feeds={"encode": encode, "decode_step": step})
    feeds = _calibration(job, ["encode", "decode_step", "absent"])

    def ids(chosen, key):
        return [int(f[key].flat[0]) for f in chosen]

    assert ids(feeds["encode"], "ids") == list(range(32))  # once per sample: all, any length
    chosen = feeds["decode_step"]
    assert len(chosen) == 32 and {f["encoder"].shape for f in chosen} == {(1, 7, 2)}
    assert set(ids(chosen, "encoder")) == {k for k in range(32) if length[k] == 7}
    assert set(ids(chosen, "token")) == set(range(5))
    assert feeds["absent"] == []
    one = _calibration(job, ["encode"], one_shape=["encode"])["encode"]
    assert ids(one, "ids") == [k for k in range(32) if length[k] == 7]


# -- registry -----------------------------------------------------------------------------------


def test_registry_has_the_three_formats_with_validated_options():
    assert set(registry.exporter_names()) >= {"saved_model", "tflite", "onnx"}
    assert registry.make_exporter("tflite").options == {"quantize": "none"}
    assert registry.make_exporter("tflite", quantize="int8").options["quantize"] == "int8"
    assert registry.make_exporter("onnx").options["opset"] >= 17
    with pytest.raises(ValueError, match=r"argument `quantize`.*Received: quantize='int4'"):
        registry.make_exporter("tflite", quantize="int4")
    with pytest.raises(ValueError, match=r"Invalid option for exporter 'saved_model'.*opset=17"):
        registry.make_exporter("saved_model", opset=17)
    with pytest.raises(ValueError, match=r"argument `formats`.*Received: formats='coreml'"):
        registry.make_exporter("coreml")


def test_register_exporter_adds_a_plugin_and_refuses_a_duplicate_name():
    @registry.register_exporter("unit_test_format")
    class Dummy(registry.Exporter):
        OPTIONS = {"level": (1, 2)}

        def export(self, job, staging):
            return {"level": self.options["level"]}

    try:
        assert registry.make_exporter("unit_test_format", level=2).export(None, None) == {"level": 2}
        with pytest.raises(ValueError, match=r"already Dummy"):

            @registry.register_exporter("unit_test_format")
            class Other(registry.Exporter):
                pass

    finally:
        registry.EXPORTERS.pop("unit_test_format")


def test_export_run_rejects_bad_arguments_before_reading_the_run(tmp_path):
    run = tmp_path / "missing_run"
    with pytest.raises(ValueError, match=r"argument `formats`.*Received: formats=\['pdf'\]"):
        api.export_run(run, tmp_path / "out", formats="pdf")
    with pytest.raises(ValueError, match=r"argument `quantize`.*Received: quantize='int3'"):
        api.export_run(run, tmp_path / "out", quantize="int3")
    with pytest.raises(ValueError, match=r"unless 'tflite' is in `formats`"):
        api.export_run(run, tmp_path / "out", formats=["onnx"], quantize="dynamic")
    with pytest.raises(ValueError, match=r"argument `version`.*Received: version=0"):
        api.export_run(run, tmp_path / "out", version=0)
    with pytest.raises(FileNotFoundError, match=r"not a run directory"):
        api.export_run(run, tmp_path / "out")


# -- versions -----------------------------------------------------------------------------------


def _versions(out, *numbers):
    for n in numbers:
        (out / "saved_model" / str(n)).mkdir(parents=True)
        (out / "saved_model" / str(n) / "saved_model.pb").write_bytes(b"")


def test_version_is_never_overwritten_silently(tmp_path):
    out = tmp_path / "names"
    assert api._pick_version(out, None, False) == 1
    _versions(out, 1, 3)
    assert api.existing_versions(out) == [1, 3]
    with pytest.raises(ValueError, match=r"version\(s\) \[1, 3\]; pass version=4"):
        api._pick_version(out, None, False)
    assert api._pick_version(out, None, True) == 3  # --replace: the latest
    assert api._pick_version(out, 4, False) == 4  # a new version
    with pytest.raises(ValueError, match=r"Received: version=3"):
        api._pick_version(out, 3, False)
    assert api._pick_version(out, 3, True) == 3
    assert api._pick_version(out, "next", False) == 4  # what `make train` asks for
    assert api._pick_version(tmp_path / "new", "next", False) == 1


@contextlib.contextmanager
def _held_by_another_process(path):
    """A live process holding the lock file `path` until the block ends (then killed -9)."""
    code = ("import sys; from pathlib import Path; from keras_seq import _lock; "
            "lock = _lock.hold(Path(sys.argv[1])); print('held', flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait()


def test_an_export_into_a_directory_another_process_exports_into_is_refused(tmp_path):
    """Two exports at once both picked version 1, and the later one's commit replaced the
    earlier one's. The lock goes with its process: after the holder's kill -9 the export goes
    on (here to the missing run directory, past the lock)."""
    out = tmp_path / "exported" / "names"
    out.parent.mkdir()
    with _held_by_another_process(out.parent / ".names.lock") as holder:
        with pytest.raises(ValueError, match=rf"argument `out`.*{out} is being exported by "
                           rf"another process \(pid {holder.pid}\)"):
            api.export_run(tmp_path / "no-run", out, formats=["saved_model"])
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        api.export_run(tmp_path / "no-run", out, formats=["saved_model"])
    with _held_by_another_process(out.parent / ".names.lock"):  # released after the error
        pass


# -- models.config ------------------------------------------------------------------------------


def test_models_config_is_read_and_written_under_its_lock(tmp_path):
    """Exports of two names finishing together: one that read the disk before the other's
    commit could write last and drop that model, unless reading and writing hold one lock."""
    _versions(tmp_path / "names", 1)
    with _held_by_another_process(tmp_path / ".models.config.lock") as holder:
        writer = threading.Thread(target=serving_config.write_models_config, args=(tmp_path,))
        writer.start()
        writer.join(1.0)
        assert writer.is_alive() and not (tmp_path / "models.config").exists()
        _versions(tmp_path / "spa_eng", 1)  # committed while the writer waits
        holder.stdin.close()  # releases the lock
        writer.join(60)
    assert not writer.is_alive()
    assert serving_config.models_config_text(["names", "spa_eng"]) == (
        tmp_path / "models.config").read_text()


def test_models_config_lists_every_exported_model(tmp_path):
    _versions(tmp_path / "names", 1, 2)
    _versions(tmp_path / "spa_eng", 1)
    (tmp_path / "empty" / "saved_model").mkdir(parents=True)  # no version: not served
    (tmp_path / ".staging-x-1" / "saved_model" / "1").mkdir(parents=True)
    path = serving_config.write_models_config(tmp_path)
    assert serving_config.exported_models(tmp_path) == {"names": [1, 2], "spa_eng": [1]}
    text = path.read_text()
    assert text.count("config {") == 2
    assert 'name: "names"' in text and 'base_path: "/models/names/saved_model"' in text
    assert 'model_platform: "tensorflow"' in text and "empty" not in text
    # It is a valid ModelServerConfig text proto.
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    names = [c.name for c in parsed.model_config_list.config]
    assert names == ["names", "spa_eng"]


# -- run directories and metadata --------------------------------------------------------------


def _run_files(root, task="classification", name="tiny", labels=True):
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"recipe": name, "task": task, "model": {}}))
    (root / "model.keras").write_bytes(b"not a model")
    (root / "vocab").mkdir()
    Vocabulary.build(["ab"]).to_json(root / "vocab" / "source.json")
    if labels:
        (root / "labels.json").write_text('["a", "b"]')
    return root


def test_load_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a run directory \(no config.json\)"):
        load_run(tmp_path)
    run = _run_files(tmp_path / "r1", labels=False)
    with pytest.raises(FileNotFoundError, match=r"no labels.json"):
        load_run(run, load_keras_model=False)
    run = _run_files(tmp_path / "r2", task="seq2seq")
    with pytest.raises(FileNotFoundError, match=r"no target vocabulary"):
        load_run(run, load_keras_model=False)
    run = _run_files(tmp_path / "r3", task="regression")
    with pytest.raises(ValueError, match=r"argument `task`.*Received: task='regression'"):
        load_run(run, load_keras_model=False)
    bundle = load_run(_run_files(tmp_path / "r4"), load_keras_model=False)
    assert bundle.name == "tiny" and bundle.labels == ["a", "b"]
    assert bundle.vocabularies["source"].tokens[4:] == ("a", "b")


def test_load_run_reads_the_pipelines_vocabulary_file_names(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"name": "lm", "task": "language_model"}))
    (run / "model.keras").write_bytes(b"")
    Vocabulary.build(["xyz"]).to_json(run / "vocab_text.json")  # what SourceInfo.save writes
    bundle = load_run(run, load_keras_model=False)
    assert bundle.name == "lm" and bundle.vocabularies["source"].size == 7


def test_find_latest_runs_picks_the_newest_model_per_recipe(tmp_path):
    import os

    old = _run_files(tmp_path / "tiny" / "2024")
    new = _run_files(tmp_path / "tiny" / "2025")
    other = _run_files(tmp_path / "other" / "x", name="other")
    _run_files(tmp_path / "adding" / "x", task="regression", name="adding")
    for run in (old, new, other, tmp_path / "adding" / "x"):
        (run / "metrics.json").write_text("{}")  # finished
    _run_files(tmp_path / "tiny" / "2026")  # newest, but unfinished: no metrics.json
    worker = _run_files(new / ".worker-1")  # a multi-worker run's copy, finished last
    (worker / "metrics.json").write_text("{}")
    os.utime(old / "model.keras", (1, 1))
    os.utime(new / "model.keras", (2, 2))
    assert find_latest_runs(tmp_path) == {"other": other, "tiny": new}


def test_read_metadata_rejects_foreign_json(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a keras_seq export"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match=r"Received: format='other'"):
        read_metadata(tmp_path)


# -- text in the graph --------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["char", "word"])
def test_decode_ids_in_graph_equals_vocabulary_decode(level):
    texts = ["ab cd", "dc ba ab"] if level == "word" else ["abcd", "dcba"]
    vocab = Vocabulary.build(texts, level=level)
    rows = np.array([[2, 4, 5, 1, 3, 6], [4, 0, 99, 5, 6, 7], [3, 4, 4, 4, 4, 4]], np.int32)
    got = [s.decode("utf-8") for s in decode_ids(vocab, tf.constant(rows)).numpy()]
    assert got == vocab.decode(rows)


def test_padded_ids_pads_right_and_keeps_one_column_for_empty_text():
    vocab = Vocabulary.build(["abc"])
    ids = padded_ids(vocab, tf.constant(["abc", "a", ""])).numpy()
    np.testing.assert_array_equal(ids, vocab.encode_padded(["abc", "a", ""]))
    assert padded_ids(vocab, tf.constant([""])).numpy().tolist() == [[0]]


# -- warm-up records ----------------------------------------------------------------------------


def test_warmup_records_round_trip_as_prediction_logs(tmp_path):
    texts = ["Nakamura", "Broż", "Smith"]
    path = write_warmup_requests(tmp_path, "names", texts, max_single=2)
    assert path == tmp_path / "assets.extra" / "tf_serving_warmup_requests"
    requests = list(read_warmup_requests(tmp_path))
    assert len(requests) == 3  # two single-text requests, then all texts in one batch
    assert {r.model_spec.name for r in requests} == {"names"}
    assert {r.model_spec.signature_name for r in requests} == {"serving_default"}
    batches = [[b.decode("utf-8") for b in tf.make_ndarray(r.inputs["text"])] for r in requests]
    assert batches == [["Nakamura"], ["Broż"], texts]


# -- REST client --------------------------------------------------------------------------------


class _Canned(BaseHTTPRequestHandler):
    reply: tuple[int, dict] = (200, {})
    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, json.loads(body)))
        code, payload = self.reply
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def canned_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Canned.seen = []
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rest_predict_sends_the_tf_serving_request(canned_server):
    _, url = canned_server
    _Canned.reply = (200, {"predictions": ["hola", "adios"]})
    assert rest_predict(url, "spa", ["hello", "bye"]) == ["hola", "adios"]
    path, body = _Canned.seen[-1]
    assert path == "/v1/models/spa:predict"
    assert body == {"signature_name": "serving_default",
                    "instances": [{"text": "hello"}, {"text": "bye"}]}
    _Canned.reply = (200, {"predictions": [{"label": "a", "raw_bytes": {"b64": "aGk="}}]})
    assert rest_predict(url, "spa", ["x"], version=3) == [{"label": "a", "raw_bytes": b"hi"}]
    assert _Canned.seen[-1][0] == "/v1/models/spa/versions/3:predict"


def test_rest_predict_raises_the_servers_error(canned_server):
    _, url = canned_server
    _Canned.reply = (404, {"error": "Servable not found for request: Latest(nope)"})
    with pytest.raises(ServingError, match=r"HTTP 404: Servable not found"):
        rest_predict(url, "nope", ["x"])
    _Canned.reply = (200, {"predictions": []})
    with pytest.raises(ServingError, match=r"no 'predictions' list of 1 entries"):
        rest_predict(url, "m", ["x"])
    with pytest.raises(ValueError, match=r"argument `server`.*Received: server='localhost:8501'"):
        rest_predict("localhost:8501", "m", ["x"])

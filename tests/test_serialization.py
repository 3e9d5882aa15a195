"""Every public layer (the golden registry) survives get_config and .keras save/load."""

import keras
import numpy as np
import pytest

from keras_seq.registry import PUBLIC_LAYERS


def outputs(layer, inputs):
    y = layer(*inputs)
    return [np.asarray(v) for v in (y if isinstance(y, (list, tuple)) else [y])]


@pytest.mark.parametrize("case", PUBLIC_LAYERS, ids=lambda c: c.name)
def test_config_round_trip(case, rng):
    layer = case.make()
    inputs = case.inputs(rng)
    want = outputs(layer, inputs)
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    outputs(clone, inputs)
    clone.set_weights(layer.get_weights())
    for a, b in zip(outputs(clone, inputs), want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", PUBLIC_LAYERS, ids=lambda c: c.name)
def test_keras_file_round_trip(case, rng, tmp_path):
    inputs = case.inputs(rng)
    symbolic = [keras.Input(a.shape[1:], dtype=a.dtype) for a in inputs]
    model = keras.Model(symbolic, case.make()(*symbolic))
    want = model.predict(list(inputs), verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    got = loaded.predict(list(inputs), verbose=0)
    as_list = lambda y: list(y) if isinstance(y, (list, tuple)) else [y]  # noqa: E731
    assert len(as_list(got)) == len(as_list(want))
    for a, b in zip(as_list(got), as_list(want), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_saved_task_model_loads_in_a_fresh_process_after_importing_keras_seq_models(tmp_path):
    """The README's recipe for using a run's model.keras: import keras_seq.models, then load."""
    import subprocess
    import sys

    from keras_seq.models import SequenceClassifier

    model = SequenceClassifier(12, 3, units=4, embedding_dim=4, pooling="attention")
    ids = np.array([[4, 5, 6, 0], [7, 8, 0, 0]], np.int32)
    want = np.asarray(model(ids))
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "ids.npy", ids)
    script = (
        "import sys, keras, numpy as np\n"
        "import keras_seq.models\n"
        "d = sys.argv[1]\n"
        "m = keras.saving.load_model(d + '/model.keras', safe_mode=True)\n"
        "np.save(d + '/got.npy', np.asarray(m(np.load(d + '/ids.npy'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "got.npy"), want)

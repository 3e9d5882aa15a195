"""Peephole and coupled-gate LSTMs against a NumPy reference (Keras has neither)."""

import numpy as np
import pytest
from conftest import numpy_lstm_step

from keras_seq import layers

B, T, D, U = 3, 6, 4, 5


def numpy_lstm(x, mask, kernel, recurrent, bias, peephole, coupled):
    """Gers & Schmidhuber peepholes; CIFG input gate i = 1 - f. Keras mask semantics."""
    h = np.zeros((x.shape[0], U))
    c = np.zeros((x.shape[0], U))
    outputs = []
    for t in range(x.shape[1]):
        h_new, c_new = numpy_lstm_step(x[:, t], h, c, kernel, recurrent, bias, peephole, coupled)
        keep = mask[:, t : t + 1]
        h, c = np.where(keep, h_new, h), np.where(keep, c_new, c)
        outputs.append(h)
    return np.stack(outputs, 1), h, c


@pytest.mark.parametrize(
    "peephole,coupled", [(True, False), (False, True), (True, True)], ids=["peep", "cifg", "both"]
)
def test_variants_match_numpy(peephole, coupled, rng):
    layer = layers.LSTM(
        U, peephole=peephole, coupled_gates=coupled, return_sequences=True, return_state=True
    )
    x = rng.normal(size=(B, T, D)).astype("float32")
    layer(x)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    gates = 3 if coupled else 4
    assert weights[0].shape == (D, gates * U) and weights[1].shape == (U, gates * U)
    if peephole:
        assert weights[3].shape == ((gates - 1) * U,)
    mask = np.array([[1] * T, [1] * 3 + [0] * 3, [1] + [0] * 5], bool)
    got = layer(x, mask=mask)
    want = numpy_lstm(x, mask, *weights[:3], weights[3] if peephole else None, coupled)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_coupled_forget_bias_initialised_to_one(rng):
    layer = layers.LSTM(U, coupled_gates=True)
    layer(rng.normal(size=(1, 2, D)).astype("float32"))
    np.testing.assert_array_equal(layer.get_weights()[2], np.r_[np.ones(U), np.zeros(2 * U)])
    standard = layers.LSTM(U)
    standard(rng.normal(size=(1, 2, D)).astype("float32"))
    np.testing.assert_array_equal(
        standard.get_weights()[2], np.r_[np.zeros(U), np.ones(U), np.zeros(2 * U)]
    )

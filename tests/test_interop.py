"""keras_seq.interop: torch.nn.RNN / LSTM / GRU <-> keras_seq layers, checked against torch."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install -e '.[torch]')")

import keras  # noqa: E402

from keras_seq import interop, layers  # noqa: E402

B, T, D, U = 3, 7, 5, 6
TOL = 1e-5

# kind -> (torch class, constructor extras, keras_seq class)
KINDS = {
    "rnn_tanh": (torch.nn.RNN, {"nonlinearity": "tanh"}, layers.SimpleRNN),
    "rnn_relu": (torch.nn.RNN, {"nonlinearity": "relu"}, layers.SimpleRNN),
    "lstm": (torch.nn.LSTM, {}, layers.LSTM),
    "gru": (torch.nn.GRU, {}, layers.GRU),
}


def make_module(kind, num_layers=1, bidirectional=False, seed=0, **kwargs):
    cls, extras, _ = KINDS[kind]
    torch.manual_seed(seed)
    options = {"batch_first": True, **extras, **kwargs}
    module = cls(D, U, num_layers=num_layers, bidirectional=bidirectional, **options)
    with torch.no_grad():  # wider than torch's default init, so every gate matters
        for p in module.parameters():
            p.uniform_(-0.6, 0.6)
    return module.float().eval()


def inputs(seed=1, dtype=torch.float32):
    return torch.randn(B, T, D, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def run_torch(module, x):
    with torch.no_grad():
        out, state = module(x)
    return out.numpy(), state


def max_abs(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


GRID = [
    (kind, n, bi) for kind in KINDS for n in (1, 2) for bi in (False, True)
]


@pytest.mark.parametrize("kind,num_layers,bidirectional", GRID)
def test_from_torch_matches_outputs_and_states(kind, num_layers, bidirectional):
    module = make_module(kind, num_layers, bidirectional)
    x = inputs()
    ref, torch_state = run_torch(module, x)

    layer = interop.from_torch(module)
    assert layer.built
    expected_type = layers.Bidirectional if bidirectional else KINDS[kind][2]
    assert type(layer) is expected_type
    out = layer(x.numpy())
    assert out.shape == (B, T, (2 if bidirectional else 1) * U)
    assert max_abs(out, ref) < TOL

    # States: keras lists per level (LSTM h, c), forward then backward; torch stacks
    # [num_layers * dirs, B, U] as level 0 fwd, level 0 bwd, level 1 fwd, ...
    with_state = interop.from_torch(module, return_state=True)
    seq, *states = with_state(x.numpy())
    assert max_abs(seq, ref) < TOL
    per_level = 2 if kind == "lstm" else 1
    dirs = 2 if bidirectional else 1
    assert len(states) == num_layers * per_level * dirs
    h_n, c_n = torch_state if kind == "lstm" else (torch_state, None)
    for d in range(dirs):
        for k in range(num_layers):
            base = d * num_layers * per_level + k * per_level
            assert max_abs(states[base], h_n[k * dirs + d].numpy()) < TOL
            if c_n is not None:
                assert max_abs(states[base + 1], c_n[k * dirs + d].numpy()) < TOL


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_torch_without_bias(kind):
    module = make_module(kind, num_layers=2, bidirectional=True, bias=False)
    x = inputs()
    layer = interop.from_torch(module)
    for sub in (layer.forward_layer, layer.backward_layer):
        assert not sub.use_bias
        assert all(cell.bias is None for cell in sub.cells)
    assert not any("bias" in w.path for w in layer.weights)
    assert max_abs(layer(x.numpy()), run_torch(module, x)[0]) < TOL


def test_gru_gate_blocks_are_reordered():
    module = make_module("gru")
    cell = interop.from_torch(module).cell
    w_ih = module.weight_ih_l0.detach().numpy()  # torch rows r, z, n
    b_hh = module.bias_hh_l0.detach().numpy()
    kernel, bias = cell.kernel.numpy(), cell.bias.numpy()  # keras columns z, r, h
    np.testing.assert_array_equal(kernel[:, :U], w_ih[U : 2 * U].T)  # z
    np.testing.assert_array_equal(kernel[:, U : 2 * U], w_ih[:U].T)  # r
    np.testing.assert_array_equal(kernel[:, 2 * U :], w_ih[2 * U :].T)  # h / n
    assert bias.shape == (2, 3 * U)
    np.testing.assert_array_equal(bias[1], np.concatenate([b_hh[U : 2 * U], b_hh[:U], b_hh[2 * U :]]))


@pytest.mark.parametrize(
    "kind,keras_layer",
    [
        ("rnn_tanh", lambda: keras.layers.SimpleRNN(U, return_sequences=True)),
        ("lstm", lambda: keras.layers.LSTM(U, return_sequences=True)),
        ("gru", lambda: keras.layers.GRU(U, reset_after=True, return_sequences=True)),
    ],
)
def test_imported_weights_run_in_keras_layers(kind, keras_layer):
    """The imported weights are in Keras's own layout: keras.layers.* reproduces torch too."""
    module = make_module(kind)
    x = inputs()
    reference = keras_layer()
    reference.build((None, T, D))
    reference.set_weights(interop.from_torch(module).get_weights())
    assert max_abs(reference(x.numpy()), run_torch(module, x)[0]) < TOL


def test_batch_first_false_is_accepted_and_layer_is_batch_major():
    module = make_module("lstm", num_layers=2, batch_first=False)
    x = inputs()  # [B, T, D]
    ref = run_torch(module, x.transpose(0, 1))[0].transpose(1, 0, 2)  # torch is [T, B, ...]
    assert max_abs(interop.from_torch(module)(x.numpy()), ref) < TOL


def test_dropout_maps_to_inter_layer_dropout():
    module = make_module("gru", num_layers=2, bidirectional=True, dropout=0.25)
    layer = interop.from_torch(module)
    assert layer.forward_layer.inter_layer_dropout == pytest.approx(0.25)
    assert layer.backward_layer.inter_layer_dropout == pytest.approx(0.25)
    x = inputs()
    assert max_abs(layer(x.numpy(), training=False), run_torch(module, x)[0]) < TOL
    # In training mode the dropout is active (outputs differ from the eval outputs).
    assert max_abs(layer(x.numpy(), training=True), run_torch(module, x)[0]) > 1e-3


def test_float64_module_gives_float64_layer():
    module = make_module("lstm", bidirectional=True).double()
    x = inputs(dtype=torch.float64)
    layer = interop.from_torch(module)
    out = layer(x.numpy())
    assert out.dtype == "float64"
    assert max_abs(out, run_torch(module, x)[0]) < 1e-12


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_bfloat16_module_gives_bfloat16_layer(kind):
    module = make_module(kind, num_layers=2, bidirectional=True).to(torch.bfloat16)
    x = inputs().to(torch.bfloat16)
    layer = interop.from_torch(module)
    out = layer(x.float().numpy().astype(keras.backend.standardize_dtype("bfloat16")))
    assert out.dtype == "bfloat16"
    expected = run_torch(module.float(), x.float())[0]  # the same bfloat16 weights, in float32
    assert max_abs(np.asarray(out, "float32"), expected) < 0.05  # bfloat16: ~3 digits


def test_name_and_return_sequences_pass_through():
    module = make_module("rnn_relu")
    layer = interop.from_torch(module, return_sequences=False, name="imported")
    assert layer.name == "imported"
    x = inputs()
    assert max_abs(layer(x.numpy()), run_torch(module, x)[0][:, -1]) < TOL


def test_imported_layer_survives_keras_save_and_load(tmp_path):
    module = make_module("gru", num_layers=2, bidirectional=True)
    inp = keras.Input((None, D))
    model = keras.Model(inp, interop.from_torch(module)(inp))
    model.save(tmp_path / "imported.keras")
    restored = keras.saving.load_model(tmp_path / "imported.keras", safe_mode=True)
    x = inputs()
    assert max_abs(restored(x.numpy()), run_torch(module, x)[0]) < TOL


def test_rejects_non_recurrent_module():
    with pytest.raises(
        ValueError,
        match=r"Invalid value for argument `module`\. Expected torch\.nn\.RNN, LSTM or GRU\. "
        r"Received: module=Linear",
    ):
        interop.from_torch(torch.nn.Linear(D, U))
    with pytest.raises(ValueError, match=r"Expected torch\.nn\.RNN, LSTM or GRU"):
        interop.from_torch(torch.nn.LSTMCell(D, U))


@pytest.mark.parametrize("how", ["prune", "weight_norm"])
def test_a_pruned_or_weight_normed_module_imports_the_weights_it_runs(how):
    """Their parameters are renamed ("weight_hh_l1_orig", "parametrizations...."); the
    weights forward() uses are the module's attributes (a bare KeyError before)."""
    from torch.nn.utils import parametrizations, prune

    module = make_module("lstm", num_layers=2, bidirectional=True)
    for name in ("weight_hh_l1", "weight_ih_l0_reverse", "bias_ih_l0"):
        if how == "prune":
            prune.l1_unstructured(module, name, amount=0.5)
        else:
            parametrizations.weight_norm(module, name)
    x = inputs()
    assert max_abs(interop.from_torch(module)(x.numpy()), run_torch(module, x)[0]) < TOL


def test_rejects_dropout_of_one_by_the_module():
    module = torch.nn.GRU(D, U, num_layers=2, dropout=1.0)
    with pytest.raises(ValueError, match=r"argument `module`\. Expected dropout in \[0, 1\).*"
                                         r"Received: .*dropout=1\.0"):
        interop.from_torch(module)


def test_rejects_projected_lstm():
    module = torch.nn.LSTM(D, U, proj_size=3, batch_first=True)
    with pytest.raises(
        ValueError,
        match=r"Invalid value for argument `module`\. Expected torch\.nn\.LSTM with "
        r"proj_size=0 .* Received: .*proj_size=3",
    ):
        interop.from_torch(module)


def test_missing_torch_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match=r"pip install 'keras_seq\[torch\]'"):
        interop.from_torch(object())
    with pytest.raises(ImportError, match=r"pip install 'keras_seq\[torch\]'"):
        interop.to_torch(object())


# -- keras -> torch -------------------------------------------------------------------------


def keras_layer(kind, num_layers=2, bidirectional=True, **kwargs):
    _, extras, cls = KINDS[kind]
    if kind.startswith("rnn"):
        kwargs.setdefault("activation", extras["nonlinearity"])
    layer = cls(U, num_layers=num_layers, return_sequences=True, **kwargs)
    if bidirectional:
        layer = layers.Bidirectional(layer)
    layer.build((None, None, D))
    rng = np.random.default_rng(7)
    for w in layer.weights:  # random weights, biases included
        w.assign(rng.uniform(-0.6, 0.6, w.shape).astype("float32"))
    return layer


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_torch_matches_and_round_trips(kind, bidirectional):
    layer = keras_layer(kind, bidirectional=bidirectional)
    module = interop.to_torch(layer)
    cls, extras, _ = KINDS[kind]
    assert type(module) is cls and module.batch_first and not module.training
    assert module.num_layers == 2 and module.bidirectional == bidirectional
    if extras:
        assert module.nonlinearity == extras["nonlinearity"]
    x = inputs()
    assert max_abs(run_torch(module, x)[0], layer(x.numpy())) < TOL
    back = interop.from_torch(module)
    for a, b in zip(back.get_weights(), layer.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_to_torch_without_bias_and_with_inter_layer_dropout():
    layer = keras_layer("gru", use_bias=False, inter_layer_dropout=0.2)
    module = interop.to_torch(layer)
    assert not module.bias and module.dropout == pytest.approx(0.2)
    x = inputs()
    assert max_abs(run_torch(module, x)[0], layer(x.numpy())) < TOL


def test_to_torch_warns_about_cell_dropout():
    layer = keras_layer("lstm", bidirectional=False, dropout=0.1, recurrent_dropout=0.1)
    with pytest.warns(UserWarning, match=r"dropout=0\.1, recurrent_dropout=0\.1"):
        module = interop.to_torch(layer)
    x = inputs()
    assert max_abs(run_torch(module, x)[0], layer(x.numpy())) < TOL


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: layers.Bidirectional(layers.LSTM(U), merge_mode="sum"), r"merge_mode='sum'"),
        (lambda: layers.GRU(U, go_backwards=True), r"Expected go_backwards=False"),
        (lambda: layers.LSTM(U, peephole=True), r"peephole=True"),
        (lambda: layers.GRU(U, reset_after=False), r"reset_after=False"),
        (lambda: layers.SimpleRNN(U, activation="sigmoid"), r"activation='sigmoid'"),
        # torch.nn.RNN has one nonlinearity: the backward half was silently computed in tanh
        (lambda: layers.Bidirectional(layers.SimpleRNN(U), backward_layer=layers.SimpleRNN(
            U, activation="relu", go_backwards=True)), r"backward=SimpleRNN\(.*'relu'\)"),
        (lambda: keras.layers.Dense(U), r"Expected keras_seq\.layers\.SimpleRNN, LSTM, GRU"),
    ],
)
def test_to_torch_rejects_layers_torch_cannot_express(make, match):
    layer = make()
    layer.build((None, None, D))
    with pytest.raises(ValueError, match=r"Invalid value for argument `layer`\. .*" + match):
        interop.to_torch(layer)


def test_to_torch_rejects_unbuilt_layer():
    with pytest.raises(ValueError, match=r"Expected a built layer"):
        interop.to_torch(layers.LSTM(U))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_masked_batch_equals_torch_on_packed_sequences(kind, bidirectional):
    """Right-padded rows under a mask give torch's outputs for the packed batch: zeros at
    the padding (pad_packed_sequence's), and the states of each row's last valid step."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    module = make_module(kind, num_layers=2, bidirectional=bidirectional)
    x, lengths = inputs(), torch.tensor([T, 4, 1])
    with torch.no_grad():
        packed, h_n = module(pack_padded_sequence(x, lengths, batch_first=True))
    want, _ = pad_packed_sequence(packed, batch_first=True, total_length=T)
    h_n = h_n[0] if kind == "lstm" else h_n
    mask = np.arange(T)[None, :] < lengths.numpy()[:, None]
    outputs, *states = interop.from_torch(module, return_state=True)(x.numpy(), mask=mask)
    assert max_abs(outputs, want) < TOL
    np.testing.assert_array_equal(np.asarray(outputs)[~mask], 0.0)
    hs = states[:: 2 if kind == "lstm" else 1]  # h of levels 0, 1 forward, then backward
    dirs = 2 if bidirectional else 1
    assert len(hs) == 2 * dirs
    for i, h in enumerate(hs):
        direction, level = divmod(i, 2)
        assert max_abs(h, h_n[level * dirs + direction]) < TOL

"""SequenceClassifier: masking, pooling references, gradients, learning, save/load, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq.models import AttentionPooling, SequenceClassifier
from keras_seq.models.pooling import masked_max, masked_mean

IDS = np.array([[5, 6, 7, 8, 0, 0], [4, 9, 0, 0, 0, 0], [11, 4, 6, 10, 12, 5]], np.int32)

# (cell, pooling, bidirectional, num_layers): every pooling in both directions, all cells.
CASES = [
    ("lstm", "last", False, 1),
    ("gru", "last", True, 2),
    ("rnn", "mean", False, 2),
    ("lstm", "mean", True, 1),
    ("gru", "max", True, 1),
    ("gru", "attention", False, 1),
    ("lstm", "attention", True, 2),
]


def make(cell="lstm", pooling="last", bidirectional=False, num_layers=1, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return SequenceClassifier(
        20, 3, cell=cell, units=8, num_layers=num_layers, bidirectional=bidirectional,
        pooling=pooling, embedding_dim=6, **kw,
    )


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_extra_padding_does_not_change_predictions(case):
    model = make(*case)
    probs = model(IDS).numpy()
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    padded = np.pad(IDS, ((0, 0), (0, 7)))
    np.testing.assert_allclose(model(padded).numpy(), probs, atol=1e-6)
    # Each row alone, trimmed to its valid steps, gives the same prediction.
    for row, want in zip(IDS, probs, strict=True):
        trimmed = row[row > 0][None, :]
        np.testing.assert_allclose(model(trimmed).numpy()[0], want, atol=1e-6)


def test_last_pooling_is_the_state_after_the_last_valid_step():
    model = make("gru", "last")
    pooled, _ = model.encode(IDS)
    # Reference: run the encoder over the trimmed row and take its final output.
    for row, got in zip(IDS, pooled.numpy(), strict=True):
        x = model.embedding(row[row > 0][None, :])
        np.testing.assert_allclose(got, model.encoder(x).numpy()[0], atol=1e-6)


def test_mean_pooling_matches_numpy():
    model = make("lstm", "mean")
    pooled, mask = model.encode(IDS)
    x = model.embedding(IDS)
    h = model.encoder(x, mask=tf.not_equal(IDS, 0)).numpy()  # (B, T, U): all outputs
    m = (IDS > 0)[:, :, None]
    np.testing.assert_allclose(pooled.numpy(), (h * m).sum(1) / m.sum(1), atol=1e-6)
    np.testing.assert_array_equal(mask.numpy(), IDS > 0)
    empty, _ = model.encode(np.zeros((1, 3), np.int32))  # an empty text: zeros, not NaN
    np.testing.assert_array_equal(empty.numpy(), np.zeros((1, model.encoder.units)))
    assert np.isfinite(model(np.zeros((1, 3), np.int32)).numpy()).all()


def test_max_pooling_matches_numpy():
    model = make("gru", "max", bidirectional=True)
    pooled, _ = model.encode(IDS)
    h = model.encoder(model.embedding(IDS), mask=tf.not_equal(IDS, 0)).numpy()
    expected = np.stack([h[b, IDS[b] > 0].max(0) for b in range(len(IDS))])
    np.testing.assert_allclose(pooled.numpy(), expected, atol=1e-6)
    empty = masked_max(tf.ones((1, 3, 2)) * -5.0, tf.zeros((1, 3), tf.bool))
    np.testing.assert_array_equal(empty.numpy(), np.zeros((1, 2)))  # no valid step: zeros


def test_attention_pooling_matches_numpy():
    rng = np.random.default_rng(0)
    h = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    pool = AttentionPooling(3)
    pool.build((None, None, 4))
    for w in pool.weights:
        w.assign(rng.normal(size=w.shape).astype(np.float32))
    w_, b, ctx = (v.numpy().astype(np.float64) for v in (pool.kernel, pool.bias, pool.context))
    scores = np.tanh(h @ w_ + b) @ ctx
    scores = np.where(mask, scores, -np.inf)
    a = np.exp(scores - scores.max(1, keepdims=True))
    a /= a.sum(1, keepdims=True)
    np.testing.assert_allclose(pool(h, mask=mask).numpy(), np.einsum("bt,btd->bd", a, h),
                               atol=1e-5)
    np.testing.assert_allclose(pool.attention_weights(h, mask).numpy(), a, atol=1e-6)
    # A row with nothing valid pools to zeros, not NaN.
    empty = pool(h, mask=np.zeros_like(mask)).numpy()
    np.testing.assert_array_equal(empty, 0.0)


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_nan_padding_reaches_no_pooled_vector_or_gradient(pooling):
    """Padding holds anything (here NaN): the pooled vector and the gradients equal those of
    the same batch with zeros there."""
    rng = np.random.default_rng(1)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    clean = rng.normal(size=(3, 5, 4)).astype(np.float32) * mask[:, :, None]
    dirty = np.where(mask[:, :, None], clean, np.nan).astype(np.float32)
    pool = {"mean": masked_mean, "max": masked_max, "attention": AttentionPooling(3)}[pooling]

    def run(h):
        h = tf.constant(h)
        with tf.GradientTape() as tape:
            tape.watch(h)
            pooled = pool(h, mask=tf.constant(mask))
            loss = tf.reduce_sum(pooled**2)
        weights = getattr(pool, "trainable_weights", [])
        return [pooled, *tape.gradient(loss, [h, *weights])]

    want, got = run(clean), run(dirty)
    for g, w in zip(got, want, strict=True):
        assert np.isfinite(g).all()
        np.testing.assert_allclose(g, w, atol=1e-6)


@pytest.mark.parametrize("case", [CASES[1], CASES[-1]], ids=["gru-last-bi-2", "lstm-attn-bi-2"])
def test_every_weight_gets_a_gradient(case):
    model = make(*case, dropout=0.1)
    with tf.GradientTape() as tape:
        loss = model.default_loss()(np.array([0, 1, 2]), model(IDS, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(model.trainable_variables) >= 10
    for var, grad in zip(model.trainable_variables, grads, strict=True):
        assert grad is not None, var.path
        assert float(tf.norm(tf.convert_to_tensor(grad))) > 0, var.path


def test_learns_whether_a_token_occurs():
    """Label 1 when token 4 occurs anywhere in a variable-length, 0-padded sequence."""
    rng = np.random.default_rng(0)
    n, t = 1500, 12
    ids = rng.integers(5, 20, size=(n, t))
    lengths = rng.integers(3, t + 1, size=n)
    labels = rng.integers(0, 2, size=n)
    for i in range(n):
        if labels[i]:
            ids[i, rng.integers(0, lengths[i])] = 4
        ids[i, lengths[i] :] = 0
    keras.utils.set_random_seed(0)
    model = SequenceClassifier(20, 2, cell="gru", units=16, pooling="mean", embedding_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(ids[:1200], labels[:1200], batch_size=64, epochs=6, verbose=0)
    acc = np.mean(model.predict(ids[1200:], verbose=0).argmax(-1) == labels[1200:])
    print(f"occurrence task accuracy {acc:.3f}")
    assert acc >= 0.9


def test_save_and_load(tmp_path):
    model = make("lstm", "attention", True, 2, dropout=0.2)
    model.compile()
    model.fit(IDS, np.array([0, 1, 2]), epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, SequenceClassifier)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(IDS).numpy(), model(IDS).numpy())
    assert isinstance(loaded.loss, keras.losses.SparseCategoricalCrossentropy)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 1


def test_config_round_trip():
    model = make("rnn", "mean", True, 2, dropout=0.3)
    clone = SequenceClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    model.ensure_built()
    clone.ensure_built()
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone(IDS).numpy(), model(IDS).numpy())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pooling="sum"), r"argument `pooling`. Expected one of \{'last', 'mean', 'max', "),
        (dict(cell="lstm2"), r"argument `cell`. Expected one of \{'lstm', 'gru', 'rnn'\}"),
        (dict(num_classes=1), r"argument `num_classes`. Expected an integer >= 2"),
        (dict(units=0), r"argument `units`. Expected a positive integer"),
        (dict(dropout=-0.1), r"argument `dropout`. Expected a float in \[0, 1\)"),
        (dict(bidirectional="yes"), r"argument `bidirectional`. Expected a bool"),
        (dict(token_dropout=1.0), r"argument `token_dropout`. Expected a float in \[0, 1\)"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SequenceClassifier(**{"vocab_size": 10, "num_classes": 2, **kwargs})


def test_token_dropout_replaces_tokens_by_the_oov_id_in_training_only():
    keras.utils.set_random_seed(0)
    model = SequenceClassifier(20, 3, units=6, embedding_dim=4, pooling="mean",
                               token_dropout=0.999999)
    plain = SequenceClassifier.from_config({**model.get_config(), "token_dropout": 0.0})
    model.ensure_built()
    plain.ensure_built()
    plain.set_weights(model.get_weights())
    np.testing.assert_array_equal(model(IDS).numpy(), plain(IDS).numpy())  # inference
    oov = np.where(IDS > 0, 1, 0)  # every token dropped, padding kept
    np.testing.assert_allclose(model(IDS, training=True).numpy(), plain(oov).numpy(), atol=1e-6)
    half = SequenceClassifier(20, 3, units=6, embedding_dim=4, pooling="mean",
                              token_dropout=0.5)
    ids = np.full((64, 50), 7)
    replaced = np.asarray(half.encode(ids, training=True)[0])  # pooled features vary by row
    assert len({tuple(np.round(r, 5)) for r in replaced}) > 32



def test_dropout_hits_the_embeddings_and_the_pooled_vector_in_training_only():
    keras.utils.set_random_seed(0)
    model = SequenceClassifier(20, 3, cell="gru", units=32, bidirectional=True, pooling="max",
                               embedding_dim=32, dropout=0.5)
    calls = {"dropout": [], "head": []}

    def spy(layer, name):
        call = layer.call

        def recorded(x, *args, **kwargs):
            out = call(x, *args, **kwargs)
            calls[name].append((np.asarray(x), np.asarray(out)))
            return out

        layer.call = recorded

    spy(model.dropout_layer, "dropout")
    spy(model.head, "head")
    ids = np.tile(IDS, (20, 1))
    valid = ids > 0
    model(ids)
    (embedded, _), (pooled, _) = calls["dropout"]
    np.testing.assert_array_equal(embedded, model.embedding(ids).numpy())
    np.testing.assert_array_equal(pooled, model.encode(ids)[0].numpy())
    np.testing.assert_array_equal(calls["head"][0][0], pooled)  # inference: no dropout
    calls["dropout"].clear()
    model(ids, training=True)
    (emb_in, emb_out), (pool_in, pool_out) = calls["dropout"]
    np.testing.assert_array_equal(emb_in, embedded)
    np.testing.assert_array_equal(calls["head"][-1][0], pool_out)  # the head sees dropout
    for x, y in ((emb_in[valid], emb_out[valid]), (pool_in, pool_out)):
        dropped = y == 0
        assert 0.45 < dropped.mean() < 0.55, dropped.mean()  # rate 0.5, thousands of draws
        np.testing.assert_allclose(y[~dropped], 2 * x[~dropped], rtol=1e-6)
    assert np.all(pool_in != 0)

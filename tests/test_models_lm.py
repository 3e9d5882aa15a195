"""LanguageModel: stateful generation equals a full pass, seeded sampling, learning, save/load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq.models import LanguageModel

PROMPT = np.array([[2, 5, 9, 4], [2, 7, 7, 11], [2, 13, 6, 8]], np.int32)
CASES = [("lstm", 2), ("gru", 1), ("rnn", 2)]


def make(cell="lstm", num_layers=2, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return LanguageModel(16, cell=cell, units=12, num_layers=num_layers, embedding_dim=6, **kw)


@pytest.mark.parametrize("cell, num_layers", CASES)
def test_generation_logits_equal_a_full_forward_pass(cell, num_layers):
    """State carrying is right: the logits each token was drawn from equal the logits of
    one pass of the model over prompt + generated tokens."""
    model = make(cell, num_layers)
    tokens, logits = model.generate(PROMPT, length=7, seed=3, return_logits=True)
    assert tokens.shape == (3, 7) and tokens.dtype == tf.int32 and logits.shape == (3, 7, 16)
    full = model(np.concatenate([PROMPT, tokens.numpy()], 1)).numpy()  # (B, Tp + 7, V)
    np.testing.assert_allclose(logits.numpy(), full[:, 3:-1], atol=1e-5)


def test_same_seed_same_tokens_different_seed_different_tokens():
    model = make()
    a = model.generate(PROMPT, length=12, seed=7).numpy()
    b = model.generate(PROMPT, length=12, seed=7).numpy()
    c = model.generate(PROMPT, length=12, seed=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert not (a == 0).any(), "padding is never generated"


def _without_padding(logits):
    logits = logits.copy()
    logits[..., 0] = -np.inf  # generation never draws the padding id
    return logits


def test_top_k_and_temperature():
    model = make()
    greedy, logits = model.generate(PROMPT, length=6, temperature=0.0, return_logits=True)
    np.testing.assert_array_equal(greedy.numpy(), _without_padding(logits.numpy()).argmax(-1))
    top1 = model.generate(PROMPT, length=6, top_k=1, seed=1)
    np.testing.assert_array_equal(top1.numpy(), greedy.numpy())
    tokens, logits = model.generate(PROMPT, length=20, top_k=3, seed=2, return_logits=True)
    top3 = np.argsort(-_without_padding(logits.numpy()), -1)[..., :3]
    assert (top3 == tokens.numpy()[..., None]).any(-1).all()
    cold = model.generate(PROMPT, length=6, temperature=1e-6, seed=2)
    np.testing.assert_array_equal(cold.numpy(), greedy.numpy())  # T -> 0 is argmax
    hot = model.generate(PROMPT, length=20, temperature=50.0, seed=2).numpy()
    assert len(np.unique(hot)) > len(np.unique(greedy.numpy()))  # flatter: more distinct
    # The padding mask was scaled by the temperature too: at 1e10 it drew id 0.
    for top_k in (None, 8):
        flat = model.generate(np.full((64, 1), 2), 20, temperature=1e10, top_k=top_k, seed=0)
        assert 0 not in flat.numpy()


def favour_padding(model):
    """`model` with its head's padding bias so high that padding is the best logit at every step."""
    model.ensure_built()
    bias = model.head.bias.numpy()
    bias[0] = 100.0
    model.head.bias.assign(bias)
    return model


def test_padding_is_never_drawn_even_where_it_is_the_best_logit():
    """Greedy, top-k (padding masked before the k best are taken) and sampling alike."""
    model = favour_padding(make())
    for kwargs in (dict(temperature=0.0), dict(top_k=1, seed=0), dict(top_k=2, seed=0),
                   dict(seed=0)):
        tokens, logits = model.generate(PROMPT, length=8, return_logits=True, **kwargs)
        assert 0 not in tokens.numpy(), kwargs
    best = _without_padding(logits.numpy()).argmax(-1)
    top1 = model.generate(PROMPT, length=8, top_k=1, seed=0)
    np.testing.assert_array_equal(top1.numpy(), model.generate(PROMPT, 8, temperature=0.0))
    assert best.shape == top1.shape


def test_exported_clients_continuation_skips_padding_like_generate():
    """The TFLite / ONNX path (``LanguageModelClient`` re-reading the growing text through
    ``next_token``) gives ``generate``'s greedy tokens, padding excluded where it is best."""
    from keras_seq.export.tasks.language_model import LanguageModelClient
    from pipelines.text import Vocabulary

    vocab = Vocabulary.build(["abcdefghijkl"], level="char")
    model = favour_padding(LanguageModel(vocab.size, units=12, embedding_dim=6))
    client = LanguageModelClient(
        {"vocabularies": {"source": vocab.get_config()}, "decoding": {"length": 6}}
    )
    ids = client.token_ids("abc")
    assert np.argmax(model(ids).numpy()[0, -1]) == 0  # padding is the best logit
    want = model.generate(ids, 6, temperature=0.0).numpy()
    assert 0 not in want
    got = client.continue_text(lambda name, inputs: {"logits": model(inputs["token_ids"])}, ids)
    assert got == vocab.decode(want)[0]


def test_each_top_k_gets_its_own_compiled_sampler():
    # A cache keyed without top_k reused the first call's top_k=1 for every later call.
    model = make()
    greedy = model.generate(PROMPT, length=20, temperature=0.0).numpy()
    np.testing.assert_array_equal(model.generate(PROMPT, 20, top_k=1, seed=3), greedy)
    hot = model.generate(PROMPT, 20, temperature=50.0, top_k=None, seed=3).numpy()
    assert (hot != greedy).mean() > 0.5


def test_batched_prompts_and_padding():
    model = make("gru", 1)
    batch = model.generate(PROMPT, length=5, temperature=0).numpy()
    for row, want in zip(PROMPT, batch, strict=True):
        np.testing.assert_array_equal(model.generate(row[None], 5, temperature=0)[0], want)
    # A shorter prompt padded with 0 (either side) continues from its last real token.
    short = np.array([[2, 5, 9]])
    want = model.generate(short, 5, temperature=0).numpy()
    for padded in ([[0, 0, 2, 5, 9]], [[2, 5, 9, 0, 0]]):
        np.testing.assert_array_equal(model.generate(np.array(padded), 5, temperature=0), want)


def test_every_weight_gets_a_gradient():
    model = make("lstm", 2, dropout=0.1)
    ids = np.concatenate([PROMPT, PROMPT[:, ::-1]], 1)
    with tf.GradientTape() as tape:
        loss = model.default_loss()(ids[:, 1:], model(ids[:, :-1], training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert len(model.trainable_variables) == 9
    for var, grad in zip(model.trainable_variables, grads, strict=True):
        assert grad is not None, var.path
        assert float(tf.norm(tf.convert_to_tensor(grad))) > 0, var.path


def test_learns_a_cycle_and_generates_it():
    """After a short fit on the cycle 4 5 6 7 8 4 5 ..., greedy generation continues it."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 5, size=400)
    seqs = np.array([[4 + (s + i) % 5 for i in range(13)] for s in starts], np.int32)
    model = LanguageModel(10, cell="gru", units=16, embedding_dim=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(seqs[:, :-1], seqs[:, 1:], batch_size=32, epochs=8, verbose=0)
    out = model.generate(np.array([[6, 7], [8, 4]]), length=10, temperature=0).numpy()
    np.testing.assert_array_equal(out[0], [4 + (4 + i) % 5 for i in range(10)])
    np.testing.assert_array_equal(out[1], [4 + (1 + i) % 5 for i in range(10)])


def test_save_and_load(tmp_path):
    model = make("lstm", 2, dropout=0.1)
    model.compile()
    ids = np.concatenate([PROMPT, PROMPT[:, ::-1]], 1)
    model.fit(ids[:, :-1], ids[:, 1:], epochs=1, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(loaded, LanguageModel) and loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded(ids).numpy(), model(ids).numpy())
    np.testing.assert_array_equal(
        loaded.generate(PROMPT, 6, seed=5), model.generate(PROMPT, 6, seed=5)
    )
    assert isinstance(loaded.loss, keras.losses.SparseCategoricalCrossentropy)
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(cell="lstm3"), r"argument `cell`. Expected one of"),
        (dict(vocab_size=1), r"argument `vocab_size`. Expected an integer >= 2"),
        (dict(num_layers=0), r"argument `num_layers`. Expected a positive integer"),
        (dict(dropout=1.5), r"argument `dropout`. Expected a float in \[0, 1\)"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LanguageModel(**{"vocab_size": 10, **kwargs})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=0), r"argument `length`. Expected a positive integer"),
        (dict(length=3, temperature=-1.0), r"argument `temperature`. Expected a finite float >= 0"),
        # NaN passed `< 0` and drew id V (outside the vocabulary); inf drew padding.
        (dict(length=3, temperature=float("nan")), r"Expected a finite float >= 0"),
        (dict(length=3, temperature=float("inf")), r"Expected a finite float >= 0"),
        (dict(length=3, top_k=0), r"argument `top_k`. Expected None or an integer in \[1, "),
        (dict(length=3, top_k=17), r"argument `top_k`. Expected None or an integer in \[1, "),
        # "a" failed in int(), 1.7 was truncated to seed 1, "no" returned the logits.
        (dict(length=3, seed="a"), r"argument `seed`. Expected None or a non-negative integer"),
        (dict(length=3, seed=1.7), r"argument `seed`. Expected None or a non-negative integer"),
        (dict(length=3, return_logits="no"), r"argument `return_logits`. Expected a bool"),
    ],
)
def test_generate_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make().generate(PROMPT, **kwargs)


def test_generate_rejects_ids_outside_the_vocabulary():
    for bad in (-1, 16):
        with pytest.raises(ValueError, match=r"argument `prompt_ids`. Expected token ids in "
                                             rf"\[0, 16\). Received: ids from {min(bad, 2)}"):
            make().generate(np.array([[2, bad]]), 3)


def test_generate_rejects_a_prompt_without_steps():
    with pytest.raises(ValueError, match=r"argument `prompt_ids`. Expected a \[batch, steps\]"):
        make().generate(np.zeros((2, 0), np.int32), 3)


def test_padding_is_never_drawn_at_a_tiny_temperature_below_every_logit():
    """Every logit at about -5000 and a temperature of 1e-6 scale them to about -5e9, below
    the -1e9 floor that padding was masked with, so padding was drawn at every step."""
    model = make()
    model.ensure_built()
    kernel, bias = model.head.get_weights()
    bias[:] = -5000.0
    bias[4] = -4990.0
    model.head.set_weights([np.zeros_like(kernel), bias])
    for kwargs in (dict(temperature=0.0), dict(temperature=1e-6, seed=0),
                   dict(temperature=1e-6, top_k=3, seed=0)):
        tokens = model.generate(PROMPT, length=4, **kwargs).numpy()
        np.testing.assert_array_equal(tokens, np.full_like(tokens, 4), err_msg=str(kwargs))

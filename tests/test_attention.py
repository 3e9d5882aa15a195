"""BahdanauAttention and LuongAttention against NumPy references and keras.layers.Attention."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_seq.layers.attention import BahdanauAttention, LuongAttention

B, TQ, TV, DQ, DV, UNITS = 2, 3, 5, 4, 6, 7

# name -> (factory, query_dim); dot needs query_dim == values_dim.
CONFIGS = {
    "bahdanau": (lambda: BahdanauAttention(UNITS), DQ),
    "bahdanau_normalize": (lambda: BahdanauAttention(UNITS, normalize=True), DQ),
    "luong_dot": (lambda: LuongAttention("dot"), DV),
    "luong_dot_scale": (lambda: LuongAttention("dot", scale=True), DV),
    "luong_general": (lambda: LuongAttention("general"), DQ),
    "luong_general_scale": (lambda: LuongAttention("general", scale=True), DQ),
    "luong_concat": (lambda: LuongAttention("concat", units=UNITS), DQ),
    "luong_concat_scale": (lambda: LuongAttention("concat", units=UNITS, scale=True), DQ),
}


def _inputs(query_dim: int, seed: int = 0, tq: int | None = TQ):
    rng = np.random.default_rng(seed)
    q_shape = (B, query_dim) if tq is None else (B, tq, query_dim)
    query = rng.normal(size=q_shape).astype("float32")
    values = rng.normal(size=(B, TV, DV)).astype("float32")
    mask = np.ones((B, TV), bool)
    mask[0, 3:] = False
    mask[1, 0] = False
    return query, values, mask


def _built(name: str, seed: int = 1):
    """Build the layer and give every weight random values (so no weight is a no-op 0/1)."""
    factory, query_dim = CONFIGS[name]
    layer = factory()
    layer.build((None, None, query_dim), (None, None, DV))
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
    return layer, query_dim


def _weights(layer) -> dict[str, np.ndarray]:
    return {w.name: np.asarray(w.numpy(), np.float64) for w in layer.weights}


# ---------------------------------------------------------------- NumPy references
def _np_softmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if mask is not None:
        scores = np.where(mask[:, None, :], scores, -np.inf)
    with np.errstate(invalid="ignore"):  # all-masked rows become NaN; callers skip them
        e = np.exp(scores - scores.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)


def _np_scores(name: str, w: dict, q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Scores [B, Tq, Tv] written directly from the papers' formulas, pair by pair."""
    out = np.zeros((q.shape[0], q.shape[1], v.shape[1]))
    for b in range(q.shape[0]):
        for i in range(q.shape[1]):
            for j in range(v.shape[1]):
                qi, kj = q[b, i], v[b, j]
                if name.startswith("bahdanau"):
                    hidden = w["values_kernel"].T @ kj + w["query_kernel"].T @ qi
                    vec = w["v"]
                    if name == "bahdanau_normalize":
                        hidden = hidden + w["b"]
                        vec = w["g"] * vec / np.linalg.norm(vec)
                    s = vec @ np.tanh(hidden)
                elif name.startswith("luong_dot"):
                    s = qi @ kj
                elif name.startswith("luong_general"):
                    s = qi @ w["kernel"].T @ kj  # q^T W k with W = kernel^T [Dq, Dv]
                else:
                    s = w["v"] @ np.tanh(np.concatenate([qi, kj]) @ w["kernel"])
                if name.endswith("_scale"):
                    s = s * w["scale"]
                out[b, i, j] = s
    return out


def _np_attention(name, layer, query, values, mask):
    q = query[:, None] if query.ndim == 2 else query
    q, v = q.astype(np.float64), values.astype(np.float64)
    weights = _np_softmax(_np_scores(name, _weights(layer), q, v), mask)
    context = weights @ v
    if query.ndim == 2:
        return context[:, 0], weights[:, 0]
    return context, weights


@pytest.mark.parametrize("with_mask", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_numpy_reference(name, query_rank, with_mask):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim, tq=TQ if query_rank == 3 else None)
    mask = mask if with_mask else None
    context, weights = layer(query, values, mask=mask)
    ref_context, ref_weights = _np_attention(name, layer, query, values, mask)
    expect_q = (B, TQ) if query_rank == 3 else (B,)
    assert tuple(context.shape) == (*expect_q, DV)
    assert tuple(weights.shape) == (*expect_q, TV)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(context, ref_context, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize("name", list(CONFIGS))
def test_masked_positions_get_exact_zero_and_rows_sum_to_one(name):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim)
    # Large values make the masked positions the would-be winners of the softmax.
    values[~mask] = 50.0
    _, weights = layer(query, values, mask=mask)
    weights = weights.numpy()
    assert np.all(weights[np.broadcast_to(~mask[:, None, :], weights.shape)] == 0.0)
    assert np.all(weights[np.broadcast_to(mask[:, None, :], weights.shape)] > 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", CONFIGS)
def test_nan_at_masked_values_reaches_no_output_or_gradient(name):
    """Masked values hold anything (here NaN): the outputs and every gradient equal those
    with zeros there. (keras.layers.Attention's are NaN.)"""
    layer, query_dim = _built(name)
    query, clean, mask = _inputs(query_dim)
    clean[~mask] = 0.0
    dirty = np.where(mask[:, :, None], clean, np.nan).astype("float32")

    def run(values):
        values = tf.constant(values)
        with tf.GradientTape() as tape:
            tape.watch(values)
            context, weights = layer(query, values, mask=mask)
            loss = tf.reduce_sum(context**2) + tf.reduce_sum(weights * np.arange(TV))
        grads = tape.gradient(loss, [values, *layer.trainable_weights])
        return [context, weights, tf.where(mask[:, :, None], grads[0], 0.0), *grads[1:]]

    for got, want in zip(run(dirty), run(clean), strict=True):
        assert np.isfinite(got).all()
        np.testing.assert_allclose(got, want, atol=1e-6)


def test_numeric_mask_is_accepted_as_bool():
    layer, query_dim = _built("luong_general")
    query, values, mask = _inputs(query_dim)
    expected = layer(query, values, mask=mask)[1]
    np.testing.assert_array_equal(layer(query, values, mask=mask.astype("int32"))[1], expected)


@pytest.mark.parametrize("name", ["bahdanau", "luong_dot", "luong_concat"])
def test_all_false_row_raises_eagerly(name):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim)
    mask[1] = False
    with pytest.raises(ValueError, match=r"all-False rows at batch indices \[1\]"):
        layer(query, values, mask=mask)


@pytest.mark.parametrize("query_rank", [2, 3])
def test_all_false_row_in_graph_gives_zero_weights_and_context(query_rank):
    layer, query_dim = _built("bahdanau_normalize")
    query, values, mask = _inputs(query_dim, tq=TQ if query_rank == 3 else None)
    mask[1] = False

    @tf.function
    def attend(q, v, m):
        return layer(q, v, mask=m)

    context, weights = attend(query, values, mask)
    context, weights = context.numpy(), weights.numpy()
    assert np.all(weights[1] == 0.0) and np.all(context[1] == 0.0)
    assert np.all(np.isfinite(weights)) and np.all(np.isfinite(context))
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-6)
    ref_context, ref_weights = _np_attention("bahdanau_normalize", layer, query, values, mask)
    np.testing.assert_allclose(weights[0], ref_weights[0], rtol=1e-5, atol=1e-6)


def test_all_false_row_has_finite_gradients_in_graph():
    layer, query_dim = _built("luong_concat_scale")
    query, values, mask = _inputs(query_dim)
    mask[0] = False

    @tf.function
    def grads(q, v, m):
        with tf.GradientTape() as tape:
            context, _ = layer(q, v, mask=m)
            loss = tf.reduce_sum(context**2)
        return tape.gradient(loss, layer.trainable_weights)

    for g in grads(query, values, mask):
        assert np.all(np.isfinite(g.numpy()))


def test_xla_compiled_call_matches_eager():
    layer, query_dim = _built("bahdanau_normalize")
    query, values, mask = _inputs(query_dim)

    @tf.function(jit_compile=True)
    def attend(q, v, m):
        return layer(q, v, mask=m)

    for a, b in zip(attend(query, values, mask), layer(query, values, mask=mask), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bahdanau", "luong_general"])
def test_mixed_float16_keeps_exact_zeros(name):
    factory, query_dim = CONFIGS[name]
    layer = factory()
    layer = type(layer).from_config({**layer.get_config(), "dtype": "mixed_float16"})
    query, values, mask = _inputs(query_dim)
    context, weights = layer(query * 20, values * 20, mask=mask)
    assert weights.dtype == "float16" and context.dtype == "float16"
    weights = weights.numpy().astype(np.float32)
    assert np.all(weights[np.broadcast_to(~mask[:, None, :], weights.shape)] == 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=2e-3)


# ---------------------------------------------------------------- keras.layers.Attention
@pytest.mark.parametrize("scale", [False, True])
@pytest.mark.parametrize("with_mask", [False, True])
def test_luong_dot_equals_keras_attention(scale, with_mask):
    query, values, mask = _inputs(DV)
    ours = LuongAttention("dot", scale=scale)
    theirs = keras.layers.Attention(use_scale=scale)
    kwargs = {"mask": [None, mask]} if with_mask else {}
    ref_context, ref_weights = theirs([query, values], return_attention_scores=True, **kwargs)
    if scale:
        ours.build(query.shape, values.shape)
        ours.set_weights([np.float32(1.7)])
        theirs.set_weights([np.float32(1.7)])
        ref_context, ref_weights = theirs([query, values], return_attention_scores=True, **kwargs)
    context, weights = ours(query, values, mask=mask if with_mask else None)
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(context, ref_context, rtol=1e-6, atol=1e-6)


def test_keras_style_mask_list_matches_keras_attention():
    query, values, mask = _inputs(DV)
    query_mask = np.array([[True, True, False], [True, False, True]])
    ref_context, ref_weights = keras.layers.Attention()(
        [query, values], mask=[query_mask, mask], return_attention_scores=True
    )
    context, weights = LuongAttention("dot")(query, values, mask=[query_mask, mask])
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(context, ref_context, rtol=1e-6, atol=1e-6)
    assert np.all(context.numpy()[~query_mask] == 0.0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_one_step_query_takes_a_batch_query_mask(name):
    """A ``[B, Dq]`` query's mask is ``[B]``: a masked row's context is zero, its weights and
    the other rows are those without the query mask (as keras.layers.Attention's query mask
    acts on the outputs only)."""
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim, tq=None)
    query_mask = np.array([True, False])
    context, weights = layer(query, values, mask=[query_mask, mask])
    ref_context, ref_weights = layer(query, values, mask=mask)
    assert context.shape == (B, DV) and weights.shape == (B, TV)
    np.testing.assert_array_equal(weights, ref_weights)
    np.testing.assert_array_equal(context[0], ref_context[0])
    assert np.any(ref_context[1] != 0.0) and np.all(context[1] == 0.0)


def test_keras_masks_of_embedded_inputs_are_used_like_keras_attention():
    """Without `mask`, the Keras masks of query and values (Embedding(mask_zero=True)) mask
    as keras.layers.Attention does; they were ignored and padding was attended."""
    q_ids = keras.Input((TQ,), dtype="int32")
    v_ids = keras.Input((TV,), dtype="int32")
    embed = keras.layers.Embedding(10, DV, mask_zero=True)
    query, values = embed(q_ids), embed(v_ids)
    ours = LuongAttention("dot")(query, values)
    theirs = keras.layers.Attention()([query, values], return_attention_scores=True)
    model = keras.Model([q_ids, v_ids], [*ours, *theirs])
    rng = np.random.default_rng(3)
    q = rng.integers(1, 10, size=(B, TQ))
    v = rng.integers(1, 10, size=(B, TV))
    q[0, -1], v[0, 2:], v[1, -1] = 0, 0, 0
    context, weights, ref_context, ref_weights = model.predict([q, v], verbose=0)
    assert np.all(weights[0][:, 2:] == 0.0) and np.all(weights[1][:, -1] == 0.0)
    assert np.all(context[0, -1] == 0.0)  # a padded query position
    np.testing.assert_allclose(weights, ref_weights, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(context, ref_context, rtol=1e-6, atol=1e-6)
    # An explicit mask still wins over the Keras masks.
    explicit = LuongAttention("dot")(embed(q), embed(v), mask=np.ones((B, TV), bool))[1]
    assert np.all(explicit.numpy()[0][:, 2:] > 0.0)


def test_an_empty_row_under_keras_masks_gets_zero_weights_eagerly():
    """Ordinary padded text can hold an all-padding row: under Keras's masks it gets a
    graph's zero weights eagerly too (the eager refusal is for an explicit `mask`)."""
    embed = keras.layers.Embedding(10, DV, mask_zero=True)
    query, values = embed(np.array([[1, 2], [3, 4]])), embed(np.array([[5, 6, 0], [0, 0, 0]]))
    context, weights = LuongAttention("dot")(query, values)
    assert np.all(weights.numpy()[1] == 0.0) and np.all(context.numpy()[1] == 0.0)
    np.testing.assert_allclose(weights.numpy()[0].sum(-1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"all-False rows at batch indices \[1\]"):
        LuongAttention("dot")(query, values, mask=np.array([[1, 1, 0], [0, 0, 0]], bool))


def test_a_symbolic_call_checks_its_inputs_when_the_model_is_built():
    """With compute_output_shape defined, Keras would take shapes from it and skip `call`'s
    checks until the first batch ran."""
    layer = BahdanauAttention(UNITS)
    layer.build((None, TQ, DQ), (None, TV, DV))
    with pytest.raises(ValueError, match=r"Invalid `query`.*the weights were built for"):
        layer(keras.Input((TQ, DQ + 2)), keras.Input((TV, DV)))
    with pytest.raises(ValueError, match=r"Invalid `mask`.*mask.shape=\(None, 9\)"):
        layer(keras.Input((TQ, DQ)), keras.Input((TV, DV)), mask=keras.Input((9,), dtype="bool"))


@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_compute_output_shape_is_the_outputs_shape(name, query_rank):
    layer, query_dim = _built(name)
    query, values, _ = _inputs(query_dim, tq=TQ if query_rank == 3 else None)
    context, weights = layer(query, values)
    shapes = layer.compute_output_shape((None, *query.shape[1:]), (None, *values.shape[1:]))
    assert shapes == ((None, *context.shape[1:]), (None, *weights.shape[1:]))


# ---------------------------------------------------------------- decode-loop support
@pytest.mark.parametrize("query_rank", [2, 3])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_precomputed_keys_give_identical_results(name, query_rank):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim, tq=TQ if query_rank == 3 else None)
    keys = layer.precompute(values)
    plain = layer(query, values, mask=mask)
    cached = layer(query, values, mask=mask, keys=keys)
    for a, b in zip(plain, cached, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("first_rank", [2, 3])
@pytest.mark.parametrize("name", ["bahdanau_normalize", "luong_general", "luong_concat"])
def test_builds_from_either_query_rank_and_step_equals_sequence(name, first_rank):
    factory, query_dim = CONFIGS[name]
    layer = factory()
    query, values, mask = _inputs(query_dim)
    if first_rank == 2:
        layer(query[:, 0], values, mask=mask)
    else:
        layer(query, values, mask=mask)
    shapes = [tuple(w.shape) for w in layer.weights]
    seq_context, seq_weights = layer(query, values, mask=mask)
    for t in range(TQ):
        step_context, step_weights = layer(query[:, t], values, mask=mask)
        np.testing.assert_allclose(step_weights, seq_weights[:, t], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(step_context, seq_context[:, t], rtol=1e-6, atol=1e-6)
    assert [tuple(w.shape) for w in layer.weights] == shapes


@pytest.mark.parametrize("name", ["bahdanau_normalize", "luong_general_scale", "luong_concat"])
def test_while_loop_decode_in_tf_function_with_unknown_batch_and_tv(name):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim)
    recurrent = np.random.default_rng(3).normal(size=(DV, query_dim)).astype("float32")

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, query_dim], tf.float32),
            tf.TensorSpec([None, None, DV], tf.float32),
            tf.TensorSpec([None, None], tf.bool),
        ]
    )
    def decode(q0, v, m):
        keys = layer.precompute(v)  # once, outside the loop

        def body(t, q, acc):
            context, weights = layer(q, v, mask=m, keys=keys)
            return t + 1, tf.tanh(context @ recurrent), acc.write(t, weights)

        acc = tf.TensorArray(tf.float32, size=TQ)
        _, _, acc = tf.while_loop(lambda t, *_: t < TQ, body, (0, q0, acc))
        return tf.transpose(acc.stack(), [1, 0, 2])  # (B, T, Tv)

    got = decode(query[:, 0], values, mask).numpy()
    q, expected = query[:, 0], []
    for _ in range(TQ):
        context, weights = layer(q, values, mask=mask)
        expected.append(weights.numpy())
        q = np.tanh(context.numpy() @ recurrent)
    np.testing.assert_allclose(got, np.stack(expected, 1), rtol=1e-5, atol=1e-6)
    # Same graph, other batch size and source length.
    other_q, other_v = query[:1, 0], values[:1, :4]
    assert decode(other_q, other_v, mask[:1, :4]).shape == (1, TQ, 4)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("name", [n for n in CONFIGS if n != "luong_dot"])
def test_gradients_reach_every_trainable_weight(name):
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim)
    rng = np.random.default_rng(7)
    # Random projections: sum(weights) is constant (rows sum to 1) and would give zero grads.
    proj_c = rng.normal(size=(B, TQ, DV)).astype("float32")
    proj_w = rng.normal(size=(B, TQ, TV)).astype("float32")
    with tf.GradientTape() as tape:
        context, weights = layer(query, values, mask=mask)
        loss = tf.reduce_sum(context * proj_c) + tf.reduce_sum(weights * proj_w)
    names = [w.name for w in layer.trainable_weights]
    grads = tape.gradient(loss, layer.trainable_weights)
    assert names, "expected trainable weights"
    for weight_name, grad in zip(names, grads, strict=True):
        assert grad is not None, weight_name
        assert np.any(np.abs(grad.numpy()) > 0), weight_name


# ---------------------------------------------------------------- masks do not leak, config
def test_outputs_carry_no_keras_mask():
    seen = {}

    class Probe(keras.layers.Layer):
        def __init__(self, key, **kwargs):
            super().__init__(**kwargs)
            self.key = key
            self.supports_masking = True

        def call(self, x, mask=None):
            seen[self.key] = mask
            return x

    q_ids = keras.Input((TQ,), dtype="int32")
    v_ids = keras.Input((TV,), dtype="int32")
    query = keras.layers.Embedding(10, DV, mask_zero=True)(q_ids)
    values = keras.layers.Embedding(10, DV, mask_zero=True)(v_ids)
    layer = LuongAttention("dot")
    context, weights = layer(query, values, mask=keras.ops.not_equal(v_ids, 0))
    keras.Model([q_ids, v_ids], [Probe("context")(context), Probe("weights")(weights)])
    assert seen == {"context": None, "weights": None}
    assert layer.compute_mask(query, None) is None


@pytest.mark.parametrize("name", list(CONFIGS))
def test_serialize_round_trip(name):
    layer, query_dim = _built(name)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()
    assert clone.built  # build config travels with the serialized object
    query, values, mask = _inputs(query_dim)
    clone.set_weights(layer.get_weights())
    for a, b in zip(layer(query, values, mask=mask), clone(query, values, mask=mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_functional_model_saves_and_reloads_in_safe_mode(tmp_path):
    query_in = keras.Input((TQ, DV))
    values_in = keras.Input((TV, DV))
    mask_in = keras.Input((TV,), dtype="bool")
    layers = [
        BahdanauAttention(UNITS, normalize=True),
        LuongAttention("dot", scale=True),
        LuongAttention("general"),
        LuongAttention("concat", units=UNITS, scale=True),
    ]
    outputs = []
    for layer in layers:
        outputs.extend(layer(query_in, values_in, mask=mask_in))
    outputs.extend(layers[0](query_in[:, 0], values_in, mask=mask_in))  # 2-D query, same layer
    model = keras.Model([query_in, values_in, mask_in], outputs)
    rng = np.random.default_rng(5)
    for w in model.weights:
        w.assign(rng.normal(scale=0.5, size=w.shape).astype("float32"))
    query, values, mask = _inputs(DV)
    before = model([query, values, mask])
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    after = loaded([query, values, mask])
    assert [type(layer).__name__ for layer in loaded.layers[3:]][:4] == [
        type(layer).__name__ for layer in layers
    ]
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- bad arguments
@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: BahdanauAttention(0),
            r"argument `units`\. Expected a positive integer\. "
            r"Received: units=0",
        ),
        (lambda: BahdanauAttention("8"), r"Received: units='8'"),
        (lambda: BahdanauAttention(True), r"Received: units=True"),
        (
            lambda: BahdanauAttention(4, normalize="yes"),
            r"argument `normalize`\. Expected a "
            r"bool\. Received: normalize='yes'",
        ),
        (
            lambda: LuongAttention("x"),
            r"argument `score`\. Expected one of \{'dot', 'general', "
            r"'concat'\}\. Received: score='x'",
        ),
        (
            lambda: LuongAttention("concat"),
            r"`units` is required when score='concat'.*"
            r"Received: units=None",
        ),
        (lambda: LuongAttention("concat", units=-2), r"Received: units=-2"),
        (
            lambda: LuongAttention("general", units=8),
            r"only used when score='concat'.*"
            r"Received: units=8 with score='general'",
        ),
        (
            lambda: LuongAttention("dot", scale=1),
            r"argument `scale`\. Expected a bool\. "
            r"Received: scale=1",
        ),
    ],
)
def test_bad_constructor_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_dot_with_different_dims_raises():
    query, values, _ = _inputs(DQ)
    with pytest.raises(
        ValueError,
        match=r"score='dot'.*Received: query\.shape\[-1\]=4, "
        r"values\.shape\[-1\]=6",
    ):
        LuongAttention("dot")(query, values)


def test_bad_call_arguments_raise():
    layer, query_dim = _built("luong_general")
    query, values, mask = _inputs(query_dim)
    with pytest.raises(
        ValueError,
        match=r"Invalid `query` rank.*Received: query\.shape="
        r"\(2, 3, 1, 4\)",
    ):
        layer(query[:, :, None], values)
    with pytest.raises(
        ValueError,
        match=r"Invalid `values` rank.*Received: values\.shape="
        r"\(2, 6\)",
    ):
        layer(query, values[:, 0])
    with pytest.raises(
        ValueError,
        match=r"built for values with last dimension 6\. "
        r"Received: values\.shape=\(2, 5, 3\)",
    ):
        layer(query, values[..., :3])
    with pytest.raises(ValueError, match=r"Invalid `mask`.*Received: mask\.shape=\(2, 4\)"):
        layer(query, values, mask=mask[:, :4])
    with pytest.raises(
        ValueError,
        match=r"list \[query_mask, values_mask\]\. "
        r"Received: a list of length 3",
    ):
        layer(query, values, mask=[None, mask, mask])
    with pytest.raises(
        ValueError,
        match=r"Invalid `keys`.*\[2, 5, 4\]\. "
        r"Received: keys\.shape=\(2, 5, 6\)",
    ):
        layer(query, values, keys=values)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_an_input_of_another_batch_is_refused_not_broadcast(name):
    """A batch-1 mask, query or keys broadcast silently over the batch (row 1 attended with
    row 0's mask); another query width failed later inside a matmul."""
    layer, query_dim = _built(name)
    query, values, mask = _inputs(query_dim, tq=None)
    keys = layer.precompute(values)
    with pytest.raises(ValueError, match=r"Invalid `mask`.*Received: mask\.shape=\(1, 5\)"):
        layer(query, values, mask=mask[:1])
    with pytest.raises(ValueError, match=r"Invalid `query`.*Received: query\.shape=\(1, "):
        layer(query[:1], values)
    with pytest.raises(ValueError, match=r"Invalid `query`.*last dimension"):
        layer(np.concatenate([query, query], -1), values)
    with pytest.raises(ValueError, match=r"Invalid `keys`.*Received: keys\.shape=\(1, 5, "):
        layer(query, values, keys=keys[:1])
    with pytest.raises(ValueError, match=r"Invalid `keys`.*Received: keys\.shape=\(2, 4, "):
        layer(query, values, keys=keys[:, :4])
    # Unknown sizes still pass: a traced call with a dynamic batch gives the eager answer.
    traced = tf.function(
        lambda q, v, m: layer(q, v, mask=m),
        input_signature=[tf.TensorSpec((None, query_dim)), tf.TensorSpec((None, None, DV)),
                         tf.TensorSpec((None, None), tf.bool)],
    )
    for got, want in zip(traced(query, values, mask), layer(query, values, mask=mask),
                         strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_unbuilt_and_unknown_dims_raise():
    with pytest.raises(ValueError, match=r"must be built before `precompute\(\)`"):
        BahdanauAttention(3).precompute(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"last dimension of `query` and `values` to be known"):
        BahdanauAttention(3).build((None, None), (None, 2, 3))
    with pytest.raises(
        ValueError,
        match=r"Invalid `values` rank.*Received: values\.shape="
        r"\(2, 3\)",
    ):
        BahdanauAttention(3).build((None, 4), (2, 3))

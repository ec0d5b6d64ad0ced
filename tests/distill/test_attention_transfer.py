"""AttentionTransfer against a float64 NumPy port of the authors' code (szagoruyko/attention-transfer `utils.py`,
commit 893df54), on NCHW features as there:

    def at(x): return F.normalize(x.pow(2).mean(1).view(x.size(0), -1))
    def at_loss(x, y): return (at(x) - at(y)).pow(2).mean()

with `x.pow(2)` read as the paper's `|x|^p` for other `p`; tfopt averages `at_loss` over the pairs (the authors sum).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.distill.attention_transfer import AttentionTransfer

RNG = np.random.default_rng(0)
PAIRS = [("t_block1", "s_block1"), ("t_block2", "s_block2")]
TEACHER = [RNG.normal(size=(4, 6, 6, 8)).astype("float32"), RNG.normal(size=(4, 3, 3, 16)).astype("float32")]
STUDENT = [RNG.normal(size=(4, 6, 6, 2)).astype("float32"), RNG.normal(size=(4, 3, 3, 4)).astype("float32")]


def at(x, p):
    """x: NCHW. F.normalize: divide by max(L2 norm, 1e-12) over dim 1."""
    a = (np.abs(x) ** p).mean(1).reshape(x.shape[0], -1)
    return a / np.maximum(np.sqrt((a**2).sum(1, keepdims=True)), 1e-12)


def at_loss(x, y, p=2, axis=None):
    return ((at(x, p) - at(y, p)) ** 2).mean(axis=axis)


def nchw(feature):
    return np.transpose(np.asarray(feature, "float64"), (0, 3, 1, 2))


def loss_of(p, teacher=TEACHER, student=STUDENT, sample_weight=None):
    loss = AttentionTransfer(PAIRS, p=p)
    loss.build([t.shape for t in teacher], [s.shape for s in student])
    return float(loss.compute_loss(teacher, student, sample_weight=sample_weight))


@pytest.mark.parametrize("p", [2, 1, 3.0])
def test_equals_the_authors_at_loss_averaged_over_pairs(p):
    expected = np.mean([at_loss(nchw(s), nchw(t), p) for s, t in zip(STUDENT, TEACHER)])
    np.testing.assert_allclose(loss_of(p), expected, rtol=1e-6)


def test_sample_weight_gives_the_weighted_mean():
    weights = np.array([1.0, 0.0, 3.0, 0.5], "float32")
    per_sample = np.mean([at_loss(nchw(s), nchw(t), 2, axis=1) for s, t in zip(STUDENT, TEACHER)], axis=0)
    np.testing.assert_allclose(loss_of(2, sample_weight=weights), (weights * per_sample).sum() / weights.sum(),
                               rtol=1e-6)


def test_zero_features_give_finite_values_and_gradients():
    student = [tf.Variable(np.zeros_like(STUDENT[0])), tf.Variable(np.maximum(STUDENT[1], 0.0))]
    loss = AttentionTransfer(PAIRS)
    loss.build([t.shape for t in TEACHER], [s.shape for s in STUDENT])
    with tf.GradientTape() as tape:
        value = loss.compute_loss(TEACHER, student)
    assert np.isfinite(float(value))
    assert all(np.all(np.isfinite(g.numpy())) for g in tape.gradient(value, student))
    expected = np.mean([at_loss(nchw(s.numpy()), nchw(t), 2) for s, t in zip(student, TEACHER)])
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_traces_under_jit_and_mirrored_strategy(mirrored_strategy):
    loss = AttentionTransfer(PAIRS)
    expected = np.mean([at_loss(nchw(s), nchw(t)) for s, t in zip(STUDENT, TEACHER)])
    np.testing.assert_allclose(float(tf.function(loss.compute_loss, jit_compile=True)(TEACHER, STUDENT)), expected,
                               rtol=1e-6)
    per_replica = mirrored_strategy.run(tf.function(loss.compute_loss), args=(TEACHER, STUDENT))
    np.testing.assert_allclose(float(mirrored_strategy.reduce("MEAN", per_replica, axis=None)), expected, rtol=1e-6)


def test_config_round_trip_and_layer_names():
    loss = AttentionTransfer(PAIRS, p=3)
    assert loss.get_config() == {"pairs": [["t_block1", "s_block1"], ["t_block2", "s_block2"]], "p": 3.0}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is AttentionTransfer and again.get_config() == loss.get_config()
    assert again.pairs == tuple(PAIRS) and again.name == "attention_transfer"
    assert again.teacher_layers == ("t_block1", "t_block2") and again.student_layers == ("s_block1", "s_block2")


def test_spatial_sizes_must_match():
    message = (r"AttentionTransfer: the features' spatial sizes must be equal. Received: teacher `t_block2` "
               r"\(None, 3, 3, 16\), student `s_block2` \(None, 4, 4, 4\)")
    with pytest.raises(ValueError, match=message):
        AttentionTransfer(PAIRS).build([(None, 6, 6, 8), (None, 3, 3, 16)], [(None, 6, 6, 2), (None, 4, 4, 4)])


def test_features_must_have_a_spatial_axis():
    with pytest.raises(ValueError, match=r"AttentionTransfer: features must have rank >= 3"):
        AttentionTransfer([("t", "s")]).build([(None, 8)], [(None, 8)])


def test_pairs_must_not_be_empty():
    message = (r"AttentionTransfer: argument `pairs` must be a non-empty list of \(teacher_layer, student_layer\) "
               r"pairs of layer names. Received: pairs=\[\]")
    with pytest.raises(ValueError, match=message):
        AttentionTransfer([])


@pytest.mark.parametrize("pairs", ["t_block1", [("t", "s", "u")], [["t"]]])
def test_pairs_must_be_a_list_of_pairs(pairs):
    with pytest.raises(TypeError, match="AttentionTransfer: argument `pairs` must be a non-empty list of"):
        AttentionTransfer(pairs)


def test_pair_names_must_be_layer_names():
    with pytest.raises(TypeError, match="AttentionTransfer: argument `pairs` must be a layer name"):
        AttentionTransfer([("t", 1)])


def test_pair_names_must_not_be_empty():
    with pytest.raises(ValueError, match="AttentionTransfer: argument `pairs` must be a non-empty layer name"):
        AttentionTransfer([("t", "")])


@pytest.mark.parametrize("p", [0, -2.0, 0.5])
def test_p_must_be_at_least_one(p):
    with pytest.raises(ValueError, match=f"AttentionTransfer: argument `p` must be >= 1. Received: p={float(p)!r}"):
        AttentionTransfer(PAIRS, p=p)

"""RelationalKD against a float64 NumPy port of the authors' code (lenscloth/RKD commit 0a6c3c0: `pdist` in
metric/utils.py, `RkdDistance` and `RKdAngle` in metric/loss.py), in its structure:

    pdist: (|e_i|^2 + |e_j|^2 - 2 e_i.e_j).clamp(min=1e-12).sqrt(), diagonal set to 0
    distance: d / d[d > 0].mean(), F.smooth_l1_loss(student, teacher) (mean over all N*N entries)
    angle: F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2), bmm with its transpose, view(-1), smooth_l1_loss
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.distill.relational_kd import RelationalKD

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(size=(6, 5)).astype("float32")
STUDENT = RNG.normal(size=(6, 3)).astype("float32")


def pdist(e, eps=1e-12):
    e_square = (e**2).sum(1)
    res = np.sqrt(np.maximum(e_square[:, None] + e_square[None, :] - 2 * e @ e.T, eps))
    res[range(len(e)), range(len(e))] = 0
    return res


def smooth_l1_loss(a, b):
    diff = np.abs(a - b)
    return np.where(diff < 1, 0.5 * diff**2, diff - 0.5).mean()


def rkd_distance(student, teacher):
    t_d = pdist(teacher)
    t_d = t_d / t_d[t_d > 0].mean()
    d = pdist(student)
    d = d / d[d > 0].mean()
    return smooth_l1_loss(d, t_d)


def angle(e):
    diff = e[None, :, :] - e[:, None, :]
    norm = diff / np.maximum(np.sqrt((diff**2).sum(2, keepdims=True)), 1e-12)
    return np.matmul(norm, norm.transpose(0, 2, 1)).reshape(-1)


def rkd_angle(student, teacher):
    return smooth_l1_loss(angle(student), angle(teacher))


def rkd(student, teacher, distance_weight=25.0, angle_weight=50.0):
    student, teacher = (np.asarray(a, "float64").reshape(len(a), -1) for a in (student, teacher))
    return distance_weight * rkd_distance(student, teacher) + angle_weight * rkd_angle(student, teacher)


def test_terms_equal_the_authors_rkd_distance_and_angle():
    distance = RelationalKD(distance_weight=1.0, angle_weight=0.0).compute_loss(TEACHER, STUDENT)
    angle_term = RelationalKD(distance_weight=0.0, angle_weight=1.0).compute_loss(TEACHER, STUDENT)
    np.testing.assert_allclose(float(distance), rkd_distance(STUDENT.astype("float64"), TEACHER.astype("float64")),
                               rtol=1e-6)
    np.testing.assert_allclose(float(angle_term), rkd_angle(STUDENT.astype("float64"), TEACHER.astype("float64")),
                               rtol=1e-6)


def test_weighted_sum_equals_numpy_and_smooth_l1_takes_both_branches():
    far = 4.0 * STUDENT  # distances are normalised, so scaling alone changes nothing: shift one sample far away
    far[0] += 30.0
    for student in (STUDENT, far):
        np.testing.assert_allclose(float(RelationalKD().compute_loss(TEACHER, student)), rkd(student, TEACHER),
                                   rtol=1e-6)
    np.testing.assert_allclose(float(RelationalKD(2.0, 3.0).compute_loss(TEACHER, STUDENT)),
                               rkd(STUDENT, TEACHER, 2.0, 3.0), rtol=1e-6)


def test_sample_weight_is_ignored():
    weights = np.array([1.0, 0.0, 0.0, 2.0, 1.0, 1.0], "float32")
    with_weights = RelationalKD().compute_loss(TEACHER, STUDENT, y=np.zeros(6), sample_weight=weights)
    assert float(with_weights) == float(RelationalKD().compute_loss(TEACHER, STUDENT))


def test_layer_features_are_flattened_per_sample():
    teacher = RNG.normal(size=(6, 2, 2, 3)).astype("float32")
    loss = RelationalKD(teacher_layer="t_pool")
    assert (loss.teacher_layers, loss.student_layers) == (("t_pool",), ())
    np.testing.assert_allclose(float(loss.compute_loss([teacher], STUDENT)), rkd(STUDENT, teacher), rtol=1e-6)
    both = RelationalKD(teacher_layer="t_pool", student_layer="s_pool")
    np.testing.assert_allclose(float(both.compute_loss([teacher], [STUDENT])), rkd(STUDENT, teacher), rtol=1e-6)


def test_duplicate_samples_give_finite_values_and_gradients():
    student = tf.Variable(np.concatenate([STUDENT[:3], STUDENT[:3]]))
    with tf.GradientTape() as tape:
        value = RelationalKD().compute_loss(TEACHER, student)
    assert np.isfinite(float(value)) and np.all(np.isfinite(tape.gradient(value, student).numpy()))
    single = RelationalKD().compute_loss(TEACHER[:1], STUDENT[:1])
    assert float(single) == 0.0


def test_traces_under_jit_and_mirrored_strategy(mirrored_strategy):
    loss = RelationalKD()
    expected = rkd(STUDENT, TEACHER)
    np.testing.assert_allclose(float(tf.function(loss.compute_loss, jit_compile=True)(TEACHER, STUDENT)), expected,
                               rtol=1e-6)
    per_replica = mirrored_strategy.run(tf.function(loss.compute_loss), args=(TEACHER, STUDENT))
    np.testing.assert_allclose(float(mirrored_strategy.reduce("MEAN", per_replica, axis=None)), expected, rtol=1e-6)


def test_config_round_trip():
    loss = RelationalKD(distance_weight=1.0, angle_weight=2.0, teacher_layer="t_pool", student_layer="s_pool")
    assert loss.get_config() == {"distance_weight": 1.0, "angle_weight": 2.0, "teacher_layer": "t_pool",
                                 "student_layer": "s_pool"}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is RelationalKD and again.get_config() == loss.get_config()
    assert (again.name, again.teacher_layers, again.student_layers) == ("relational_kd", ("t_pool",), ("s_pool",))


@pytest.mark.parametrize("argument", ["distance_weight", "angle_weight"])
def test_weights_must_not_be_negative(argument):
    message = f"RelationalKD: argument `{argument}` must be >= 0. Received: {argument}=-1.0"
    with pytest.raises(ValueError, match=message):
        RelationalKD(**{argument: -1.0})


@pytest.mark.parametrize("argument", ["teacher_layer", "student_layer"])
def test_layer_names_must_be_strings(argument):
    with pytest.raises(TypeError, match=f"RelationalKD: argument `{argument}` must be a layer name"):
        RelationalKD(**{argument: 0})


@pytest.mark.parametrize("argument", ["teacher_layer", "student_layer"])
def test_layer_names_must_not_be_empty(argument):
    with pytest.raises(ValueError, match=f"RelationalKD: argument `{argument}` must be a non-empty layer name"):
        RelationalKD(**{argument: ""})

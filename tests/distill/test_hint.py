"""HintDistillation against NumPy: FitNets' hint loss as mdistiller's `FitNet` computes it (mdistiller/distillers/
FitNet.py, commit a08d46f): `F.mse_loss(regressor(student_feature), teacher_feature)`, the mean over every element,
with the regressor a linear 1x1 convolution (a matrix product over the channels plus a bias).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.distill.hint import HintDistillation

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(size=(4, 5, 5, 6)).astype("float32")
STUDENT = RNG.normal(size=(4, 5, 5, 3)).astype("float32")


def randomise(layer, rng):
    """Gives the projection random weights (its kernel starts random, its bias at zero)."""
    layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return [w.astype("float64") for w in layer.get_weights()]


def mse_per_sample(teacher, guided):
    return ((np.asarray(teacher, "float64") - guided) ** 2).reshape(len(teacher), -1).mean(axis=1)


def test_conv_projection_equals_numpy():
    loss = HintDistillation("t_conv", "s_conv")
    loss.build([(None, 5, 5, 6)], [(None, 5, 5, 3)])
    (projection,) = loss.trainable_layers
    assert isinstance(projection, keras.layers.Conv2D) and projection.kernel_size == (1, 1)
    kernel, bias = randomise(projection, np.random.default_rng(1))
    guided = np.einsum("nhwc,cd->nhwd", STUDENT.astype("float64"), kernel[0, 0]) + bias
    value = loss.compute_loss([TEACHER], [STUDENT])
    np.testing.assert_allclose(float(value), mse_per_sample(TEACHER, guided).mean(), rtol=1e-6)


def test_dense_projection_for_vectors_and_sample_weight():
    teacher, student = RNG.normal(size=(6, 8)).astype("float32"), RNG.normal(size=(6, 4)).astype("float32")
    loss = HintDistillation("t_dense", "s_dense")
    loss.build((None, 8), (None, 4))
    (projection,) = loss.trainable_layers
    assert isinstance(projection, keras.layers.Dense)
    kernel, bias = randomise(projection, np.random.default_rng(2))
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5, 1.0], "float32")
    value = loss.compute_loss([teacher], [student], sample_weight=weights)
    per_sample = mse_per_sample(teacher, student.astype("float64") @ kernel + bias)
    np.testing.assert_allclose(float(value), (weights * per_sample).sum() / weights.sum(), rtol=1e-6)


def test_equal_shapes_need_no_projection():
    student = RNG.normal(size=TEACHER.shape).astype("float32")
    for projection in ("auto", None):
        loss = HintDistillation("t", "s", projection=projection)
        loss.build([TEACHER.shape], [student.shape])
        assert loss.trainable_layers == []
        np.testing.assert_allclose(float(loss.compute_loss([TEACHER], [student])),
                                   mse_per_sample(TEACHER, student.astype("float64")).mean(), rtol=1e-6)


def test_gradients_reach_the_projection_and_the_student_under_jit():
    loss = HintDistillation("t", "s")
    loss.build([TEACHER.shape], [STUDENT.shape])
    student = tf.Variable(STUDENT)
    projection = loss.trainable_layers[0]

    @tf.function(jit_compile=True)
    def gradients():
        with tf.GradientTape() as tape:
            value = loss.compute_loss([TEACHER], [student])
        return value, tape.gradient(value, [student, *projection.trainable_variables])

    value, grads = gradients()
    assert np.isfinite(float(value)) and all(np.all(np.isfinite(g.numpy())) and np.any(g.numpy()) for g in grads)


def describe(layers):
    return [(type(layer), layer.name, [tuple(w.shape) for w in layer.weights]) for layer in layers]


def test_rebuilt_from_config_has_the_same_layers():
    loss = HintDistillation("teacher/block_2", "student/block 1", projection="auto")
    loss.build([(None, 5, 5, 6)], [(None, 5, 5, 3)])
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is HintDistillation and again.get_config() == loss.get_config() == {
        "teacher_layer": "teacher/block_2", "student_layer": "student/block 1", "projection": "auto"}
    assert (again.name, again.teacher_layers, again.student_layers) == (
        "hint_distillation", ("teacher/block_2",), ("student/block 1",))
    again.build([(None, 5, 5, 6)], [(None, 5, 5, 3)])
    assert describe(again.trainable_layers) == describe(loss.trainable_layers)
    assert loss.trainable_layers[0].name == "hint_projection_student_block_1"


def test_projection_none_needs_equal_shapes():
    loss = HintDistillation("t_conv", "s_conv", projection=None)
    message = (r"HintDistillation: with `projection=None` the features' shapes must be equal .*Received: "
               r"teacher `t_conv` \(None, 5, 5, 6\), student `s_conv` \(None, 5, 5, 3\)")
    with pytest.raises(ValueError, match=message):
        loss.build([(None, 5, 5, 6)], [(None, 5, 5, 3)])


def test_spatial_sizes_must_match():
    message = (r"HintDistillation: the features' spatial sizes must be equal. Received: teacher `t` \(None, 4, 4, 6\), "
               r"student `s` \(None, 8, 8, 3\)")
    with pytest.raises(ValueError, match=message):
        HintDistillation("t", "s").build([(None, 4, 4, 6)], [(None, 8, 8, 3)])


def test_ranks_must_match():
    with pytest.raises(ValueError, match=r"HintDistillation: the features must have the same rank \(>= 2\)"):
        HintDistillation("t", "s").build([(None, 4, 4, 6)], [(None, 16)])


def test_compute_loss_needs_build():
    with pytest.raises(RuntimeError, match=r"HintDistillation: call `build\(teacher_shapes, student_shapes\)`"):
        HintDistillation("t", "s").compute_loss([TEACHER], [STUDENT])


def test_unknown_projection_is_refused():
    with pytest.raises(ValueError, match="HintDistillation: argument `projection` must be one of 'auto', None. "
                                         "Received: projection='conv'"):
        HintDistillation("t", "s", projection="conv")


@pytest.mark.parametrize("argument", ["teacher_layer", "student_layer"])
def test_layer_names_must_be_strings(argument):
    names = {"teacher_layer": "t", "student_layer": "s", argument: 3}
    with pytest.raises(TypeError, match=f"HintDistillation: argument `{argument}` must be a layer name"):
        HintDistillation(**names)


@pytest.mark.parametrize("argument", ["teacher_layer", "student_layer"])
def test_layer_names_must_not_be_empty(argument):
    names = {"teacher_layer": "t", "student_layer": "s", argument: ""}
    with pytest.raises(ValueError, match=f"HintDistillation: argument `{argument}` must be a non-empty layer name"):
        HintDistillation(**names)

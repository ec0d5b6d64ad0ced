"""SoftTargets against a NumPy reference of mdistiller's `kd_loss` (mdistiller/distillers/KD.py, commit a08d46f):

    log_pred_student = F.log_softmax(logits_student / T, dim=1)
    pred_teacher = F.softmax(logits_teacher / T, dim=1)
    loss = F.kl_div(log_pred_student, pred_teacher, reduction="none").sum(1).mean() * T**2
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.distill.soft_targets import SoftTargets

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(scale=3.0, size=(8, 10)).astype("float32")
STUDENT = RNG.normal(scale=3.0, size=(8, 10)).astype("float32")


def log_softmax(x):
    x = np.asarray(x, "float64")
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def kd_loss_per_sample(student, teacher, temperature):
    """Per sample: sum over classes of F.kl_div(log q, p) = p * (log p - log q) (0 where p == 0), times T**2."""
    log_q = log_softmax(np.asarray(student, "float64") / temperature)
    p = np.exp(log_softmax(np.asarray(teacher, "float64") / temperature))
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - log_q), 0.0)
    return terms.sum(axis=1) * temperature**2


@pytest.mark.parametrize("temperature", [1.0, 4.0, 10.0])
def test_equals_mdistiller_kd_loss(temperature):
    value = SoftTargets(temperature=temperature).compute_loss(TEACHER, STUDENT)
    np.testing.assert_allclose(float(value), kd_loss_per_sample(STUDENT, TEACHER, temperature).mean(), rtol=1e-6)


def test_sample_weight_gives_the_weighted_mean():
    weights = np.array([0.0, 1.0, 2.0, 0.5, 0.0, 3.0, 1.0, 1.0], "float32")
    value = SoftTargets(temperature=2.0).compute_loss(TEACHER, STUDENT, sample_weight=weights)
    per_sample = kd_loss_per_sample(STUDENT, TEACHER, 2.0)
    np.testing.assert_allclose(float(value), (weights * per_sample).sum() / weights.sum(), rtol=1e-6)
    zero = SoftTargets().compute_loss(TEACHER, STUDENT, sample_weight=np.zeros(8, "float32"))
    assert float(zero) == 0.0


def test_probabilities_use_the_log_of_the_clipped_probabilities():
    """from_logits=False: log(clip(p, 1e-7, 1)) stands for the logits, then the temperature."""
    teacher_p = np.exp(log_softmax(TEACHER)).astype("float32")
    student_p = np.exp(log_softmax(STUDENT)).astype("float32")
    value = SoftTargets(temperature=3.0, from_logits=False).compute_loss(teacher_p, student_p)
    logits = [np.log(np.clip(p.astype("float64"), 1e-7, 1.0)) for p in (student_p, teacher_p)]
    np.testing.assert_allclose(float(value), kd_loss_per_sample(*logits, 3.0).mean(), rtol=1e-6)


def test_keras_default_goes_negative_where_soft_targets_does_not():
    teacher = np.array([[4.0, 1.0, -2.0]], "float32")
    student = 10.0 * teacher
    keras_value = float(keras.distillation.LogitsDistillation(temperature=2.0).compute_loss(teacher, student))
    # kl_divergence clips the scaled logits to [1e-7, 1]: y_true = [1, 0.5, 1e-7], y_pred = [1, 1, 1e-7]
    np.testing.assert_allclose(keras_value, 0.5 * np.log(0.5), rtol=1e-6)
    assert round(keras_value, 2) == -0.35
    ours = float(SoftTargets(temperature=2.0).compute_loss(teacher, student))
    np.testing.assert_allclose(ours, kd_loss_per_sample(student, teacher, 2.0)[0], rtol=1e-6)
    assert ours >= 0.0
    np.testing.assert_allclose(ours, 12.724594, rtol=1e-6)


def test_large_logits_give_finite_values_and_gradients():
    teacher = tf.constant([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]])
    student = tf.Variable([[-1e4, 1e4, 0.0], [3e3, -3e3, 0.0]])
    with tf.GradientTape() as tape:
        value = SoftTargets(temperature=1.0).compute_loss(teacher, student)
    gradient = tape.gradient(value, student)
    assert np.isfinite(float(value)) and np.all(np.isfinite(gradient.numpy()))
    np.testing.assert_allclose(float(value), kd_loss_per_sample(student.numpy(), teacher.numpy(), 1.0).mean(),
                               rtol=1e-6)


def test_identical_outputs_give_zero():
    assert float(SoftTargets().compute_loss(TEACHER, TEACHER)) == 0.0


def test_traces_under_jit_and_mirrored_strategy(mirrored_strategy):
    loss = SoftTargets(temperature=4.0)
    expected = kd_loss_per_sample(STUDENT, TEACHER, 4.0).mean()
    jitted = tf.function(loss.compute_loss, jit_compile=True)
    np.testing.assert_allclose(float(jitted(TEACHER, STUDENT)), expected, rtol=1e-6)
    per_replica = mirrored_strategy.run(tf.function(loss.compute_loss), args=(TEACHER, STUDENT))
    value = mirrored_strategy.reduce("MEAN", per_replica, axis=None)
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


def test_works_in_keras_own_distiller():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    teacher = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    distiller = keras.distillation.Distiller(teacher, student, SoftTargets(temperature=2.0), student_loss_weight=0.5)
    distiller.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = distiller.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert all(value >= 0.0 for value in history.history["distillation_loss"])


def test_config_round_trip():
    loss = SoftTargets(temperature=2.5, from_logits=False)
    assert loss.get_config() == {"temperature": 2.5, "from_logits": False}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is SoftTargets and again.get_config() == loss.get_config()
    assert (again.name, again.teacher_layers, again.student_layers, again.trainable_layers) == ("soft_targets", (),
                                                                                                (), [])


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_temperature_must_be_positive(temperature):
    message = f"SoftTargets: argument `temperature` must be > 0. Received: temperature={float(temperature)!r}"
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SoftTargets(temperature=temperature)


def test_temperature_must_be_a_number():
    with pytest.raises(TypeError, match="SoftTargets: argument `temperature` must be a number"):
        SoftTargets(temperature="4")


def test_from_logits_must_be_a_bool():
    with pytest.raises(TypeError, match="SoftTargets: argument `from_logits` must be True or False"):
        SoftTargets(from_logits=1)

"""DecoupledKD against a float64 NumPy port of mdistiller's `dkd_loss` (mdistiller/distillers/DKD.py, commit a08d46f),
kept in its structure: masks, `cat_mask`, `log` of the binary probabilities, the `-1000 * gt_mask` trick, and
`F.kl_div(size_average=False) * T**2 / batch`; warm-up `min(epoch / warmup, 1)` with epochs counted from 1.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.distill.decoupled_kd import DecoupledKD

RNG = np.random.default_rng(0)
TEACHER = RNG.normal(scale=3.0, size=(8, 10)).astype("float32")
STUDENT = RNG.normal(scale=3.0, size=(8, 10)).astype("float32")
LABELS = RNG.integers(0, 10, size=8)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def kl_div_terms(log_input, target):
    """F.kl_div's elementwise terms: target * (log target - input), 0 where target == 0."""
    return np.where(target > 0, target * (np.log(np.where(target > 0, target, 1.0)) - log_input), 0.0)


def cat_mask(t, mask1, mask2):
    return np.concatenate([(t * mask1).sum(1, keepdims=True), (t * mask2).sum(1, keepdims=True)], axis=1)


def dkd_loss_per_sample(logits_student, logits_teacher, target, alpha, beta, temperature):
    """mdistiller's dkd_loss before its sum over the batch / batch size (which is the mean over samples)."""
    logits_student, logits_teacher = (np.asarray(a, "float64") for a in (logits_student, logits_teacher))
    gt_mask = np.zeros_like(logits_student)
    gt_mask[np.arange(len(target)), target] = 1.0
    other_mask = 1.0 - gt_mask
    pred_student = cat_mask(softmax(logits_student / temperature), gt_mask, other_mask)
    pred_teacher = cat_mask(softmax(logits_teacher / temperature), gt_mask, other_mask)
    tckd = kl_div_terms(np.log(pred_student), pred_teacher).sum(1) * temperature**2
    pred_teacher_part2 = softmax(logits_teacher / temperature - 1000.0 * gt_mask)
    shifted = logits_student / temperature - 1000.0 * gt_mask
    shifted = shifted - shifted.max(1, keepdims=True)
    log_pred_student_part2 = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))  # F.log_softmax
    nckd = kl_div_terms(log_pred_student_part2, pred_teacher_part2).sum(1) * temperature**2
    return alpha * tckd + beta * nckd


# T**2 = 100 scales float32's rounding of the log-probabilities (~1e-7) up to ~1e-5: an atol for that case only.
@pytest.mark.parametrize("alpha, beta, temperature, atol", [(1.0, 8.0, 4.0, 0), (0.5, 2.0, 1.0, 0),
                                                            (2.0, 0.5, 10.0, 1e-5)])
def test_equals_mdistiller_dkd_loss(alpha, beta, temperature, atol):
    loss = DecoupledKD(alpha=alpha, beta=beta, temperature=temperature)
    value = loss.compute_loss(TEACHER, STUDENT, y=LABELS)
    expected = dkd_loss_per_sample(STUDENT, TEACHER, LABELS, alpha, beta, temperature).mean()
    np.testing.assert_allclose(float(value), expected, rtol=1e-6, atol=atol)


def test_unlabeled_samples_take_the_teachers_argmax():
    labels = LABELS.copy()
    labels[[1, 4, 6]] = -1
    targets = np.where(labels < 0, TEACHER.argmax(axis=1), labels)
    value = DecoupledKD().compute_loss(TEACHER, STUDENT, y=labels)
    np.testing.assert_allclose(float(value), dkd_loss_per_sample(STUDENT, TEACHER, targets, 1.0, 8.0, 4.0).mean(),
                               rtol=1e-6)
    column = DecoupledKD().compute_loss(TEACHER, STUDENT, y=labels[:, None].astype("float32"))
    np.testing.assert_allclose(float(column), float(value), rtol=1e-6)


def test_without_labels_the_teachers_argmax_is_every_target():
    value = DecoupledKD().compute_loss(TEACHER, STUDENT)
    expected = dkd_loss_per_sample(STUDENT, TEACHER, TEACHER.argmax(axis=1), 1.0, 8.0, 4.0).mean()
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)


@pytest.mark.parametrize("step", [0, 3, 9, 10, 500])
def test_warmup_factor_counts_the_step_being_trained_from_one(step):
    """mdistiller: min(epoch / warmup, 1) with epoch = 1 during the first; Keras's iterations are 0 then."""
    value = DecoupledKD(warmup_steps=10).compute_loss(TEACHER, STUDENT, y=LABELS, step=tf.constant(step, "int64"))
    expected = min((step + 1) / 10, 1.0) * dkd_loss_per_sample(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0).mean()
    np.testing.assert_allclose(float(value), expected, rtol=1e-6)
    no_step = DecoupledKD(warmup_steps=10).compute_loss(TEACHER, STUDENT, y=LABELS)
    np.testing.assert_allclose(float(no_step), dkd_loss_per_sample(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0).mean(),
                               rtol=1e-6)


def test_sample_weight_gives_the_weighted_mean():
    weights = np.array([1.0, 0.0, 2.0, 0.5, 1.0, 3.0, 0.0, 1.0], "float32")
    value = DecoupledKD().compute_loss(TEACHER, STUDENT, y=LABELS, sample_weight=weights)
    per_sample = dkd_loss_per_sample(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0)
    np.testing.assert_allclose(float(value), (weights * per_sample).sum() / weights.sum(), rtol=1e-6)


def test_large_logits_give_finite_values_and_gradients():
    teacher = tf.constant([[1e4, 0.0, -1e4], [0.0, 5e3, 0.0]])
    student = tf.Variable([[-1e4, 1e4, 0.0], [3e3, -3e3, 0.0]])
    with tf.GradientTape() as tape:
        value = DecoupledKD(temperature=1.0).compute_loss(teacher, student, y=np.array([0, -1]))
    assert np.isfinite(float(value)) and np.all(np.isfinite(tape.gradient(value, student).numpy()))
    assert float(DecoupledKD().compute_loss(TEACHER, TEACHER, y=LABELS)) == 0.0


def test_traces_under_jit_and_mirrored_strategy(mirrored_strategy):
    loss = DecoupledKD(warmup_steps=4)
    labels = LABELS.astype("int32")
    step = tf.constant(1, "int64")
    expected = 0.5 * dkd_loss_per_sample(STUDENT, TEACHER, LABELS, 1.0, 8.0, 4.0).mean()

    def compute(teacher, student, y, step):
        return loss.compute_loss(teacher, student, y=y, step=step)

    np.testing.assert_allclose(float(tf.function(compute, jit_compile=True)(TEACHER, STUDENT, labels, step)),
                               expected, rtol=1e-6)
    per_replica = mirrored_strategy.run(tf.function(compute), args=(TEACHER, STUDENT, labels, step))
    np.testing.assert_allclose(float(mirrored_strategy.reduce("MEAN", per_replica, axis=None)), expected, rtol=1e-6)


def test_config_round_trip():
    loss = DecoupledKD(alpha=0.5, beta=2.0, temperature=3.0, warmup_steps=100)
    assert loss.get_config() == {"alpha": 0.5, "beta": 2.0, "temperature": 3.0, "warmup_steps": 100}
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is DecoupledKD and again.get_config() == loss.get_config()
    assert (again.name, again.teacher_layers, again.student_layers) == ("decoupled_kd", (), ())


@pytest.mark.parametrize("argument", ["alpha", "beta"])
def test_weights_must_not_be_negative(argument):
    with pytest.raises(ValueError, match=f"DecoupledKD: argument `{argument}` must be >= 0. Received: {argument}=-1.0"):
        DecoupledKD(**{argument: -1.0})


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="DecoupledKD: argument `temperature` must be > 0. Received: temperature=0.0"):
        DecoupledKD(temperature=0)


def test_warmup_steps_must_not_be_negative():
    message = "DecoupledKD: argument `warmup_steps` must be >= 0. Received: warmup_steps=-1"
    with pytest.raises(ValueError, match=message):
        DecoupledKD(warmup_steps=-1)


def test_warmup_steps_must_be_an_integer():
    with pytest.raises(TypeError, match="DecoupledKD: argument `warmup_steps` must be an integer"):
        DecoupledKD(warmup_steps=2.5)


def test_one_hot_labels_are_refused():
    with pytest.raises(ValueError, match=r"DecoupledKD: `y` must hold integer class labels of shape \(batch,\)"):
        DecoupledKD().compute_loss(TEACHER, STUDENT, y=np.eye(10, dtype="float32")[LABELS])

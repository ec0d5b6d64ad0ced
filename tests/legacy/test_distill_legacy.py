"""`tfopt.distill.Distiller` on tf_keras models (TF_USE_LEGACY_KERAS=1): SoftTargets and DecoupledKD, labels -1,
a frozen teacher, and tfmot-pruned or tfmot-QAT students distilled in the same fit."""

import keras
import numpy as np
import pytest
import tf_keras

import tfopt
from tfopt.distill import DecoupledKD, Distiller, HintDistillation, SoftTargets

pytestmark = pytest.mark.legacy
CE = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(width, seed):
    tf_keras.utils.set_random_seed(seed)
    return tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(width, activation="relu"),
                                tf_keras.layers.Dense(3)])


def data(n=64):
    x = np.random.default_rng(0).normal(size=(n, 6)).astype("float32")
    return x, np.argmax(x[:, :3], axis=1).astype("int32")


def test_distils_tf_keras_models_with_unlabeled_samples():
    teacher, student = mlp(32, 0), mlp(8, 1)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    distiller = Distiller(teacher, student, [SoftTargets(2.0), DecoupledKD()], [0.5, 0.5])
    assert isinstance(distiller, tf_keras.Model)
    distiller.compile(tf_keras.optimizers.Adam(1e-2), loss=CE, metrics=["accuracy"])
    x, y = data()
    y[::2] = -1
    history = distiller.fit(x, y, epochs=3, verbose=0)
    assert {"loss", "student_loss", "soft_targets_loss", "decoupled_kd_loss", "accuracy"} <= set(history.history)
    assert min(history.history["soft_targets_loss"]) >= 0 and min(history.history["decoupled_kd_loss"]) >= 0
    logs = distiller.evaluate(x, y, verbose=0, return_dict=True)
    logits = student.predict(x, verbose=0)
    labeled = y >= 0
    assert logs["student_loss"] == pytest.approx(float(np.mean(CE.call(y[labeled], logits[labeled]))), rel=1e-5)
    for before, after in zip(teacher_weights, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_tfmot_pruned_student_is_distilled_and_pruned_in_one_fit():
    schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=1)
    student = tfopt.prune.prune_low_magnitude(mlp(8, 1), schedule)
    distiller = Distiller(mlp(32, 0), student, SoftTargets(2.0))
    distiller.compile(tf_keras.optimizers.Adam(1e-2), loss=CE)
    distiller.fit(*data(), epochs=2, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    stripped = tfopt.prune.strip_pruning(distiller.student)
    assert [round(row.sparsity, 2) for row in tfopt.prune.sparsity(stripped)] == [0.5, 0.5]


def test_a_tfmot_qat_student_exports_to_int8():
    student = tfopt.quantize.quantize_model(mlp(8, 1))
    distiller = Distiller(mlp(32, 0), student, DecoupledKD())
    distiller.compile(tf_keras.optimizers.Adam(1e-2), loss=CE)
    distiller.fit(*data(), epochs=1, verbose=0)
    summary = tfopt.export.inspect(tfopt.export.to_tflite(distiller.student, "int8"))
    assert all(op.outputs == ("int8",) for op in summary.ops_of("FULLY_CONNECTED"))


def test_feature_losses_name_what_tf_keras_models_support():
    with pytest.raises(TypeError, match=r"Distiller: argument `distillation_losses` must be losses reading the "
                                        r"models' outputs \(SoftTargets, DecoupledKD\) for tf_keras models: feature "
                                        r"losses .* need Keras 3 models; carry both models across with "
                                        r"`tfopt.compat.to_keras3`. "
                                        r"Received: distillation_losses=\['HintDistillation'\]"):
        Distiller(mlp(32, 0), mlp(8, 1), [SoftTargets(), HintDistillation("dense", "dense_1")])
    with pytest.raises(TypeError, match=r"Distiller: argument `student` must be a tf_keras model"):
        Distiller(mlp(32, 0), "student.keras", SoftTargets())
    with pytest.raises(TypeError, match=r"argument `distillation_losses` must be given: a tfopt.distill loss"):
        Distiller(mlp(32, 0), mlp(8, 1))


@pytest.mark.parametrize("legacy_teacher", [True, False], ids=["tf_keras teacher", "Keras 3 teacher"])
def test_models_of_different_kerases_are_named_as_such(legacy_teacher):
    legacy, keras3 = mlp(8, 1), keras.Sequential([keras.Input((6,)), keras.layers.Dense(3)])
    teacher, student = (legacy, keras3) if legacy_teacher else (keras3, legacy)
    generations = ("tf_keras", "Keras 3") if legacy_teacher else ("Keras 3", "tf_keras")
    with pytest.raises(TypeError, match=rf"Distiller: argument `student` must be a model of the teacher's Keras: the "
                                        rf"teacher is a {generations[0]} model, the student a {generations[1]} one; "
                                        r"carry one across with `tfopt.compat.to_keras3` or "
                                        r"`tfopt.compat.to_tf_keras`"):
        Distiller(teacher, student, SoftTargets())


def test_compiling_without_a_loss_names_the_task_loss():
    distiller = Distiller(mlp(32, 0), mlp(8, 1), SoftTargets())
    distiller.compile(tf_keras.optimizers.Adam(1e-2))  # tf_keras stores the missing loss as {}
    with pytest.raises(ValueError, match=r"Distiller: compile it with the student's task loss"):
        distiller.fit(*data(8), verbose=0)


def test_fit_without_labels_logs_the_losses_with_metrics_compiled():
    distiller = Distiller(mlp(32, 0), mlp(8, 1), SoftTargets())
    distiller.compile(tf_keras.optimizers.Adam(1e-2), loss=CE, metrics=["accuracy"])
    history = distiller.fit(data(16)[0], epochs=1, verbose=0)
    assert sorted(history.history) == ["loss", "soft_targets_loss", "student_loss"]
    assert history.history["student_loss"] == [0.0]


def test_a_softmax_output_is_refused_by_a_loss_reading_logits():
    tf_keras.utils.set_random_seed(2)
    softmax = tf_keras.Sequential([tf_keras.Input((6,)), tf_keras.layers.Dense(3, activation="softmax", name="head")])
    with pytest.raises(ValueError, match=r"Distiller: argument `teacher` must be a model that outputs logits for "
                                         r"decoupled_kd \(it reads logits\); its output comes from the softmax of "
                                         r"layer 'head'"):
        Distiller(softmax, mlp(8, 1), DecoupledKD())

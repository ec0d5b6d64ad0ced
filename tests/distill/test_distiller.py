"""`Distiller`: labels where there are some, every loss logged, a frozen teacher, features by layer name, `.keras`,
cached teacher outputs, one device == two replicas, and compression of the student in the same fit."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfopt
from tfopt.distill import DistillationLoss, Distiller, SoftTargets, cache_teacher_outputs

L = keras.layers
CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def teacher_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = L.Dense(16, activation="relu", name="t_hidden")(inputs)
    x = L.BatchNormalization(name="t_bn")(x)
    x = L.Dropout(0.5, name="t_drop")(x)
    return keras.Model(inputs, L.Dense(3, name="t_logits")(x), name="teacher")


def student_model(seed=1):
    keras.utils.set_random_seed(seed)
    inner = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu", name="s_hidden")], name="body")
    inputs = keras.Input((6,))
    return keras.Model(inputs, L.Dense(3, name="s_logits")(inner(inputs)), name="student")


def data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    y = np.argmax(x[:, :3], axis=1).astype("int32")
    return x, y


@keras.saving.register_keras_serializable(package="tfopt_tests")
class FeatureMatch(DistillationLoss):
    """Mean squared difference of one teacher and one student feature of the same width (a test loss)."""

    name = "feature_match"

    def __init__(self, teacher_layer, student_layer):
        self.teacher_layers, self.student_layers = (teacher_layer,), (student_layer,)

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None):
        return keras.ops.mean(keras.ops.square(teacher_outputs[0][:, :8] - student_outputs[0]))

    def get_config(self):
        return {"teacher_layer": self.teacher_layers[0], "student_layer": self.student_layers[0]}


class Recorder(DistillationLoss):
    """Records what the Distiller hands a loss (run eagerly)."""

    name = "recorder"

    def __init__(self):
        self.calls = []

    def compute_loss(self, teacher_outputs, student_outputs, y=None, sample_weight=None, step=None):
        self.calls.append((np.asarray(y), None if sample_weight is None else np.asarray(sample_weight), int(step)))
        return keras.ops.zeros(())


def distiller(losses=None, weights=None, student_loss_weight=0.5, **compile_kwargs):
    model = Distiller(teacher_model(), student_model(), losses or SoftTargets(2.0), weights, student_loss_weight)
    model.compile(keras.optimizers.SGD(0.05), loss=CE, **compile_kwargs)
    return model


def test_losses_receive_labels_sample_weights_and_the_step():
    recorder = Recorder()
    model = distiller([SoftTargets(), recorder], run_eagerly=True)
    x, y = data(8)
    y[:4] = -1
    weights = np.linspace(0.5, 1.0, 8).astype("float32")
    model.fit(x, y, sample_weight=weights, batch_size=8, epochs=2, verbose=0, shuffle=False)
    (y0, w0, step0), (_, _, step1) = recorder.calls
    np.testing.assert_array_equal(y0, y)
    np.testing.assert_allclose(w0, weights)
    assert (step0, step1) == (0, 1)


def test_the_task_loss_averages_over_labeled_samples_only_and_every_loss_is_logged():
    model = distiller([SoftTargets(2.0), FeatureMatch("t_hidden", "s_hidden")], weights=[0.7, 0.2],
                      student_loss_weight=0.4, metrics=["accuracy"])
    x, y = data(16)
    y[::2] = -1
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    logits = model.student.predict(x, verbose=0)
    labeled = y >= 0
    expected_task = float(np.mean(CE.call(y[labeled], logits[labeled])))
    assert logs["student_loss"] == pytest.approx(expected_task, rel=1e-5)
    assert logs["accuracy"] == pytest.approx(np.mean(logits[labeled].argmax(1) == y[labeled]))
    total = 0.4 * logs["student_loss"] + 0.6 * (0.7 * logs["soft_targets_loss"] + 0.2 * logs["feature_match_loss"])
    assert logs["loss"] == pytest.approx(total, rel=1e-5)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert sorted(history.history) == ["accuracy", "feature_match_loss", "loss", "soft_targets_loss", "student_loss"]


def test_a_batch_without_labels_trains_on_the_teacher_alone():
    model = distiller(student_loss_weight=0.5, metrics=["accuracy"])
    x, _ = data(8)
    logs = model.evaluate(x, np.full(8, -1, "int32"), verbose=0, return_dict=True)
    assert logs["student_loss"] == 0.0
    assert logs["accuracy"] == 0.0  # no sample scored: what a Keras metric reads then (the docstring says so)
    assert logs["loss"] == pytest.approx(0.5 * logs["soft_targets_loss"], rel=1e-6)
    before = [np.asarray(w).copy() for w in model.student.weights]
    model.fit(x, np.full(8, -1, "int32"), epochs=1, verbose=0)
    assert any(not np.array_equal(b, np.asarray(w)) for b, w in zip(before, model.student.weights))


def test_the_teacher_stays_bit_identical_and_runs_in_inference_mode():
    model = distiller()
    x, y = data(32)
    teacher_weights = [np.asarray(w).copy() for w in model.teacher.weights]
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    for before, after in zip(teacher_weights, model.teacher.weights):
        np.testing.assert_array_equal(before, np.asarray(after))
    assert not model.teacher.trainable
    assert {id(v) for v in model.trainable_weights} == {id(v) for v in model.student.trainable_weights}


def test_keras_file_round_trip_and_a_student_that_loads_without_tfopt(tmp_path):
    model = distiller([SoftTargets(3.0), FeatureMatch("t_hidden", "s_hidden")], weights=[0.5, 1.0])
    x, y = data(16)
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "distiller.keras")
    loaded = keras.saving.load_model(tmp_path / "distiller.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
    assert [loss.name for loss in loaded.distillation_losses] == ["soft_targets", "feature_match"]
    assert loaded.distillation_loss_weights == [0.5, 1.0] and loaded.distillation_losses[0].temperature == 3.0
    model.student.save(tmp_path / "student.keras")
    assert "tfopt" not in str(model.student.get_config())
    plain = keras.saving.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(plain.predict(x, verbose=0), model.student.predict(x, verbose=0), rtol=1e-6)


def test_cached_teacher_outputs_train_the_student_as_the_teacher_itself():
    x, y = data(32)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    live = distiller([SoftTargets(2.0), FeatureMatch("t_hidden", "s_hidden")])
    live.fit(dataset, epochs=2, verbose=0, shuffle=False)
    cached = distiller([SoftTargets(2.0), FeatureMatch("t_hidden", "s_hidden")])
    with pytest.raises(ValueError, match=r"the cached teacher outputs lack \['t_hidden'\]: pass "
                                         r"`layers=\['t_hidden'\]` to `cache_teacher_outputs`"):
        cached.fit(cache_teacher_outputs(cached.teacher, dataset), epochs=1, verbose=0, shuffle=False)
    cached = distiller([SoftTargets(2.0), FeatureMatch("t_hidden", "s_hidden")])
    cached.fit(cache_teacher_outputs(cached.teacher, dataset, layers=["t_hidden"]), epochs=2, verbose=0,
               shuffle=False)
    for a, b in zip(live.student.weights, cached.student.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_jit_compile_equals_eager():
    x, y = data(32)
    y[::3] = -1
    eager, compiled = distiller(run_eagerly=True), distiller(jit_compile=True)
    for model in (eager, compiled):
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(eager.student.weights, compiled.student.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_two_replicas_equal_one_device_with_unevenly_labeled_halves(mirrored_strategy):
    x, y = data(32)
    y[:12] = -1  # the two halves of the first batch of 16 hold 0 and 4 labels
    one = distiller()
    one.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    with mirrored_strategy.scope():
        two = distiller()
    history = two.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)
    for a, b in zip(one.student.weights, two.student.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    logs = one.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    assert np.isfinite(history.history["student_loss"]).all() and logs["student_loss"] > 0


def test_two_replicas_equal_one_device_with_uneven_sample_weights(mirrored_strategy):
    x, y = data(16)
    weights = np.r_[np.full(8, 0.1), np.full(8, 2.0)].astype("float32")  # replica 0 light, replica 1 heavy
    losses = [SoftTargets(2.0), tfopt.distill.DecoupledKD()]
    one = distiller(losses, student_loss_weight=0.3)
    with mirrored_strategy.scope():
        two = distiller([SoftTargets(2.0), tfopt.distill.DecoupledKD()], student_loss_weight=0.3)
    logs = [model.evaluate(x, y, sample_weight=weights, batch_size=16, verbose=0, return_dict=True)
            for model in (one, two)]
    expected = SoftTargets(2.0).compute_loss(one.teacher(x), one.student(x), sample_weight=weights)  # sum(wl)/sum(w)
    for name in ("loss", "student_loss", "soft_targets_loss", "decoupled_kd_loss"):
        assert logs[1][name] == pytest.approx(logs[0][name], rel=1e-5), name
    assert logs[1]["soft_targets_loss"] == pytest.approx(float(expected), rel=1e-5)
    for model in (one, two):
        model.fit(x, y, sample_weight=weights, batch_size=16, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(one.student.weights, two.student.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_float_class_indices_are_the_integer_labels():
    x, y = data(16)
    y[::4] = -1

    def logs(labels):  # a fresh (identical) distiller per label form: one trace each
        model = distiller([SoftTargets(2.0), tfopt.distill.DecoupledKD()], metrics=["accuracy"])
        return model.evaluate(x, labels, verbose=0, return_dict=True)

    as_int = logs(y)
    assert logs(y.astype("float32")) == pytest.approx(as_int, rel=1e-6)
    assert logs(y.astype("float32")[:, None]) == pytest.approx(as_int, rel=1e-6)
    assert logs(None)["decoupled_kd_loss"] != pytest.approx(as_int["decoupled_kd_loss"], rel=1e-3)  # labels matter


def test_fit_without_labels_logs_the_losses_with_metrics_compiled():
    model = distiller(metrics=["accuracy"])
    x, y = data(16)
    history = model.fit(x, epochs=1, batch_size=8, verbose=0)
    assert sorted(history.history) == ["loss", "soft_targets_loss", "student_loss"]
    assert history.history["student_loss"] == [0.0] and history.history["soft_targets_loss"][0] > 0
    assert sorted(model.evaluate(x, y, verbose=0, return_dict=True)) == [
        "accuracy", "loss", "soft_targets_loss", "student_loss"]  # labels later: the metrics come back


def test_a_distillation_loss_weight_above_one_scales_its_loss():
    model = distiller([SoftTargets(2.0)], weights=[1000.0], student_loss_weight=0.4)
    assert model.distillation_loss_weights == [1000.0]
    logs = model.evaluate(*data(16), verbose=0, return_dict=True)
    total = 0.4 * logs["student_loss"] + 0.6 * 1000.0 * logs["soft_targets_loss"]
    assert logs["loss"] == pytest.approx(total, rel=1e-5)


def test_a_pruned_student_is_distilled_and_pruned_in_one_fit():
    x, y = data(64)
    schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=1)
    student = tfopt.prune.prune_low_magnitude(student_model(), schedule)
    model = Distiller(teacher_model(), student, SoftTargets(2.0))
    model.compile("adam", loss=CE)
    model.fit(x, y, epochs=2, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    stripped = tfopt.prune.strip_pruning(model.student)
    assert [round(row.sparsity, 2) for row in tfopt.prune.sparsity(stripped)] == [0.5, 0.5]


def test_a_qat_student_exports_to_int8():
    x, y = data(64)
    keras.utils.set_random_seed(1)
    flat = keras.Sequential([keras.Input((6,)), L.Dense(8, activation="relu"), L.Dense(3)])
    model = Distiller(teacher_model(), tfopt.quantize.quantize_model(flat), SoftTargets(2.0))
    model.compile("adam", loss=CE)
    model.fit(x, y, epochs=1, verbose=0)
    summary = tfopt.export.inspect(tfopt.export.to_tflite(model.student, "int8"))
    assert all(op.outputs == ("int8",) for op in summary.ops_of("FULLY_CONNECTED"))


def test_errors_name_the_argument():
    teacher, student = teacher_model(), student_model()
    with pytest.raises(ValueError, match=r"Distiller: argument `student` must be a model other than the teacher"):
        Distiller(teacher, teacher, SoftTargets())
    with pytest.raises(ValueError, match=r"Distiller: argument `student_loss_weight` must be in \[0, 1\]. "
                                         r"Received: student_loss_weight=1.5"):
        Distiller(teacher, student, SoftTargets(), student_loss_weight=1.5)
    with pytest.raises(ValueError, match=r"argument `distillation_loss_weights` must be >= 0. "
                                         r"Received: distillation_loss_weights=-0.1"):
        Distiller(teacher, student, SoftTargets(), [-0.1])
    with pytest.raises(ValueError, match=r"argument `distillation_loss_weights` must be one weight per distillation"):
        Distiller(teacher, student, SoftTargets(), [0.5, 0.5])
    with pytest.raises(ValueError, match=r"Distiller: argument `student_layers` must be names of layers of 'student' "
                                         r"\(body, s_hidden, s_logits\); unknown: \['nope'\]"):
        Distiller(teacher, student, FeatureMatch("t_hidden", "nope"))
    with pytest.raises(TypeError, match=r"argument `distillation_losses` must be tfopt.distill losses"):
        Distiller(teacher, student, keras.losses.KLDivergence())
    with pytest.raises(ValueError, match=r"argument `distillation_losses` must be losses with distinct names"):
        Distiller(teacher, student, [SoftTargets(), SoftTargets(2.0)])
    with pytest.raises(TypeError, match=r"Distiller: argument `teacher` must be a Keras 3 model"):
        Distiller("teacher.keras", student, SoftTargets())
    with pytest.raises(TypeError, match=r"Distiller: argument `distillation_losses` must be given: a tfopt.distill "
                                        r"loss, e.g. `tfopt.distill.SoftTargets\(\)`"):
        Distiller(teacher, student)
    uncompiled = Distiller(teacher, student, SoftTargets())
    uncompiled.compile("adam")
    with pytest.raises(ValueError, match=r"compile it with the student's task loss"):
        uncompiled.fit(*data(8), verbose=0)


def test_a_hint_projection_trains_with_the_student_and_stays_out_of_it(tmp_path):
    model = distiller([SoftTargets(2.0), tfopt.distill.HintDistillation("t_hidden", "s_hidden")])
    (projection,) = model.projections
    assert tuple(projection.kernel.shape) == (8, 16)  # student width 8 -> teacher width 16
    trained = {id(v) for v in model.trainable_weights}
    assert {id(v) for v in projection.weights} <= trained
    assert not {id(v) for v in projection.weights} & {id(v) for v in model.student.weights}
    before = np.asarray(projection.kernel).copy()
    x, y = data(32)
    model.fit(x, y, epochs=1, verbose=0)
    assert not np.array_equal(before, np.asarray(projection.kernel))
    model.save(tmp_path / "hint.keras")
    loaded = keras.saving.load_model(tmp_path / "hint.keras")
    np.testing.assert_array_equal(np.asarray(loaded.projections[0].kernel), np.asarray(projection.kernel))


@pytest.mark.parametrize("loss", [SoftTargets(), tfopt.distill.DecoupledKD()], ids=["SoftTargets", "DecoupledKD"])
def test_outputs_that_cannot_be_matched_are_named(loss):
    keras.utils.set_random_seed(0)
    five_classes = keras.Sequential([keras.Input((6,)), L.Dense(5)])
    with pytest.raises(ValueError, match=rf"{type(loss).__name__}: the teacher's and the student's outputs must have "
                                         r"the same number of classes \(last axis\). Received: teacher output shape "
                                         r"\(None, 3\), student output shape \(None, 5\)"):
        Distiller(teacher_model(), five_classes, loss)


class SubclassedStudent(keras.Model):
    def __init__(self):
        super().__init__()
        self.hidden, self.logits = L.Dense(8, activation="relu"), L.Dense(3)

    def call(self, inputs):
        return self.logits(self.hidden(inputs))


def test_a_subclassed_student_is_distilled_on_its_outputs():
    student = SubclassedStudent()
    student(np.zeros((1, 6), "float32"))
    model = Distiller(teacher_model(), student, [SoftTargets(2.0), tfopt.distill.DecoupledKD()])
    model.compile("adam", loss=CE)
    history = model.fit(*data(32), epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def softmax_model(kind, seed=2):
    """A 3-class model ending in a softmax, written the three ways Keras has (the layer with a softmax activation,
    a `Softmax` layer, `keras.ops.softmax`), inside a nested Sequential for "nested"."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    if kind == "activation":
        return keras.Model(inputs, L.Dense(3, activation="softmax", name="head")(inputs))
    if kind == "Softmax layer":
        return keras.Model(inputs, L.Softmax(name="head")(L.Dense(3)(inputs)))
    if kind == "ops.softmax":
        return keras.Model(inputs, keras.ops.softmax(L.Dense(3, name="head")(inputs)))
    inner = keras.Sequential([keras.Input((6,)), L.Dense(3, activation="softmax", name="head")], name="inner")
    return keras.Model(inputs, inner(inputs))


@pytest.mark.parametrize("kind", ["activation", "Softmax layer", "ops.softmax", "nested"])
@pytest.mark.parametrize("loss", [SoftTargets(), tfopt.distill.DecoupledKD()], ids=["SoftTargets", "DecoupledKD"])
def test_a_softmax_output_is_refused_by_a_loss_reading_logits(kind, loss):
    remedy = "pass `from_logits=False` to SoftTargets" if isinstance(loss, SoftTargets) else "without its softmax"
    layer = "softmax" if kind == "ops.softmax" else "head"
    with pytest.raises(ValueError, match=rf"Distiller: argument `teacher` must be a model that outputs logits for "
                                         rf"{loss.name} \(it reads logits\); its output comes from the softmax of "
                                         rf"layer '{layer}\w*':.*{remedy}"):
        Distiller(softmax_model(kind), student_model(), loss)
    with pytest.raises(ValueError, match=r"Distiller: argument `student` must be a model that outputs logits"):
        Distiller(teacher_model(), softmax_model(kind), loss)


def test_probabilities_are_read_from_softmax_outputs_only():
    with pytest.raises(ValueError, match=r"Distiller: argument `teacher` must be a model ending in a softmax for "
                                         r"soft_targets \(it reads probabilities\); its output comes from layer "
                                         r"'t_logits' with activation 'linear': pass `from_logits=True`"):
        Distiller(teacher_model(), softmax_model("activation"), SoftTargets(from_logits=False))
    model = Distiller(softmax_model("activation", seed=3), softmax_model("Softmax layer"),
                      SoftTargets(2.0, from_logits=False))
    model.compile(keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy())
    history = model.fit(*data(32), epochs=1, verbose=0)
    assert np.isfinite(history.history["soft_targets_loss"][0]) and history.history["soft_targets_loss"][0] > 0

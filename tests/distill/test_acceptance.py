"""Acceptance of issue 10 on the digits (Keras 3): a student 14x smaller than the demo CNN distilled with labels for
10% of the training set, the losses against the student alone and Keras's own default on fully labeled digits, and
distillation through 80% pruning and QAT down to an int8 TFLite file. Per-seed figures are printed (`pytest -s`);
the assertions hold on the means over the `digits_seeds`.

Every student fit uses Adam, batches of 32 reshuffled each epoch from the seed, and the same seed for the student's
initial weights, so the variants of one seed differ only in what they learn from."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfopt
from tfopt.distill import DecoupledKD, Distiller, SoftTargets

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
RATE = 3e-3
EPOCHS = 30  # every fit on the whole training set (45 steps an epoch)
# The student alone on the 10% with labels: 144 samples, 5 steps an epoch; 300 epochs give it as many steps as the
# distilled student gets (1350), and it has long stopped improving (100 and 200 epochs measured the same means).
FEW_LABEL_EPOCHS = 300
LABELED_FRACTION = 0.1
# Tried (3 seeds, a 32-unit student, 20 epochs): T=4 with student_loss_weight 0.5 and 0.2, T=2 with 0.5 at 1e-2: the
# distilled student led by 5.0-5.4 points each time (0.963-0.965 vs 0.911-0.915), so the defaults are kept.
# Measured with the settings below (seeds 0, 1, 2): alone on its 144 labels 0.9361, 0.9028, 0.9361; distilled on all
# 1437 inputs 0.9667, 0.9694, 0.9722: the means 0.9250 and 0.9694, 4.4 points apart (2.4 over the 2-point bound).
TEMPERATURE, STUDENT_LOSS_WEIGHT = 4.0, 0.5
# Fully labeled, tried (3 seeds, means against the student alone): a 32-unit student for 20 epochs: DecoupledKD -1.1
# points (-0.37 with warmup_steps of 5 epochs, -0.65 with beta=2), SoftTargets -0.28, Keras's default
# LogitsDistillation -2.2; for 30 epochs DecoupledKD -0.83, SoftTargets -0.65. The 64-unit student for 30 epochs (the
# one below, 14x smaller than the teacher): SoftTargets -0.19, DecoupledKD -0.28 (+0.0 with the 5-epoch warm-up),
# Keras's default -0.19. The losses keep their defaults (DecoupledKD alpha 1, beta 8, T 4, no warm-up).
# Measured (seeds 0, 1, 2): alone 0.9722, 0.9750, 0.9722; Keras 0.9722, 0.9722, 0.9694; SoftTargets 0.9667, 0.9722,
# 0.9750; DecoupledKD 0.9722, 0.9639, 0.9750: SoftTargets 0.81 and DecoupledKD 0.72 points inside the 1-point bound.
HIDDEN_UNITS = 64
# Pruning: sparsity 0 -> 80% over the first 15 epochs (masks every 5 steps), then QAT_EPOCHS at a low rate, as the
# QAT acceptance test does (tests/quantize/test_acceptance.py). Measured (seeds 0, 1, 2): pruned float 0.9722,
# 0.9694, 0.9611 and int8 TFLite the same (every test argmax kept), kernels 80.0% zeros in the file.
PRUNING_EPOCHS, QAT_EPOCHS, QAT_RATE = 15, 3, 1e-4


def student_mlp(seed):
    """Flatten -> Dense(64, relu) -> Dense(10): 4,810 weights, layers `quantize_model` and pruning both support."""
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential(
        [keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(HIDDEN_UNITS, activation="relu"), layers.Dense(10)],
        name="student",
    )


def dataset(x, y, seed):
    """Batches of 32, reshuffled each epoch in an order drawn from `seed`."""
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(32).prefetch(tf.data.AUTOTUNE)


def accuracy(model, digits):
    return float(np.mean(model.predict(digits.x_test, verbose=0).argmax(1) == digits.y_test))


def train_alone(x, y, seed, epochs):
    student = student_mlp(seed)
    student.compile(keras.optimizers.Adam(RATE), loss=CE)
    student.fit(dataset(x, y, seed), epochs=epochs, verbose=0, shuffle=False)
    return student


def distil(distiller, x, y, seed, epochs=EPOCHS, rate=RATE, callbacks=()):
    """Fits `distiller` (tfopt's or Keras's) on (x, y); returns its History's dict."""
    distiller.compile(keras.optimizers.Adam(rate), loss=CE)
    return distiller.fit(dataset(x, y, seed), epochs=epochs, verbose=0, shuffle=False,
                         callbacks=list(callbacks)).history


def few_labels(y, seed):
    """`y` with a random LABELED_FRACTION of its labels kept (drawn from `seed`), the rest -1."""
    keep = np.random.default_rng(seed).permutation(len(y))[: round(LABELED_FRACTION * len(y))]
    masked = np.full_like(y, -1)
    masked[keep] = y[keep]
    return masked


def summary(values):
    return f"{np.round(values, 4).tolist()}: {np.mean(values):.4f} ± {np.std(values):.4f}"


@pytest.fixture(scope="module")
def teacher_of(digits_model_of):
    """`teacher_of(seed)`: a copy of the session's digits CNN of `seed` (a distiller freezes its teacher, which
    must not leak into the session's shared model)."""

    @functools.cache
    def copy(seed):
        trained = digits_model_of(seed)
        teacher = keras.models.clone_model(trained)
        teacher.set_weights(trained.get_weights())
        return teacher

    return copy


@pytest.mark.slow
def test_soft_targets_on_all_inputs_beat_the_student_on_its_10_percent_of_labels(teacher_of, digits, digits_seeds):
    alone, distilled = [], []
    for seed in digits_seeds:
        teacher = teacher_of(seed)
        teacher_accuracy = accuracy(teacher, digits)
        assert teacher_accuracy >= 0.97
        y = few_labels(digits.y_train, seed)
        labeled = y >= 0
        alone.append(accuracy(train_alone(digits.x_train[labeled], y[labeled], seed, FEW_LABEL_EPOCHS), digits))
        distiller = Distiller(teacher, student_mlp(seed), SoftTargets(TEMPERATURE),
                              student_loss_weight=STUDENT_LOSS_WEIGHT)
        history = distil(distiller, digits.x_train, y, seed)
        distilled.append(accuracy(distiller.student, digits))
        sizes = teacher.count_params(), distiller.student.count_params()
        print(f"\nseed {seed}: teacher {teacher_accuracy:.4f} ({sizes[0]} weights), student {sizes[1]} weights "
              f"({sizes[0] / sizes[1]:.1f}x fewer); {labeled.sum()} of {len(y)} labeled; student alone on them "
              f"{alone[-1]:.4f}, distilled on all {distilled[-1]:.4f} (last soft_targets_loss "
              f"{history['soft_targets_loss'][-1]:.4f})")
        assert sizes[0] >= 10 * sizes[1]
        assert 0.09 * len(y) <= labeled.sum() <= 0.11 * len(y)
    print(f"student alone on 10% {summary(alone)}; distilled {summary(distilled)}")
    assert np.mean(distilled) >= np.mean(alone) + 0.02


@pytest.mark.slow
def test_fully_labeled_tfopt_losses_stay_positive_and_within_a_point_of_the_student_alone(teacher_of, digits,
                                                                                          digits_seeds):
    variants = {
        "keras LogitsDistillation()": lambda teacher, student: keras.distillation.Distiller(
            teacher, student, keras.distillation.LogitsDistillation()),
        "tfopt SoftTargets": lambda teacher, student: Distiller(
            teacher, student, SoftTargets(TEMPERATURE), student_loss_weight=STUDENT_LOSS_WEIGHT),
        "tfopt DecoupledKD": lambda teacher, student: Distiller(
            teacher, student, DecoupledKD(), student_loss_weight=STUDENT_LOSS_WEIGHT),
    }
    accuracies = {"student alone": [], **{name: [] for name in variants}}
    for seed in digits_seeds:
        teacher = teacher_of(seed)
        accuracies["student alone"].append(accuracy(train_alone(digits.x_train, digits.y_train, seed, EPOCHS), digits))
        lowest = {}
        for name, make in variants.items():
            distiller = make(teacher, student_mlp(seed))
            history = distil(distiller, digits.x_train, digits.y_train, seed)
            accuracies[name].append(accuracy(distiller.student, digits))
            lowest[name] = {key: round(min(values), 4) for key, values in history.items()}
            if name.startswith("tfopt"):
                negative = {key: [v for v in values if v < 0] for key, values in history.items()}
                assert not any(negative.values()), f"{name} logged negative values: {negative}"
        print(f"\nseed {seed}: " + ", ".join(f"{name} {values[-1]:.4f}" for name, values in accuracies.items()))
        print(f"seed {seed}: lowest logged value of each History key: {lowest}")
    for name, values in accuracies.items():
        print(f"{name:>28}: {summary(values)}")
    alone = np.mean(accuracies["student alone"])
    assert np.mean(accuracies["tfopt SoftTargets"]) >= alone - 0.01
    assert np.mean(accuracies["tfopt DecoupledKD"]) >= alone - 0.01


def weighted_zeros(flatbuffer):
    ops = [op for op in tfopt.export.inspect(flatbuffer).ops if op.name in ("CONV_2D", "FULLY_CONNECTED")]
    return [op.weight_zeros for op in ops]


@pytest.mark.slow
def test_distilled_while_pruned_then_during_qat_ends_as_sparse_int8_tflite_near_float(teacher_of, digits,
                                                                                       digits_seeds):
    floats, int8s = [], []
    steps = -(-len(digits.x_train) // 32)
    for seed in digits_seeds:
        teacher = teacher_of(seed)
        schedule = tfopt.prune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=PRUNING_EPOCHS * steps, frequency=5)
        pruning = Distiller(teacher, tfopt.prune.prune_low_magnitude(student_mlp(seed), schedule),
                            SoftTargets(TEMPERATURE), student_loss_weight=STUDENT_LOSS_WEIGHT)
        distil(pruning, digits.x_train, digits.y_train, seed, callbacks=[tfopt.prune.UpdatePruningStep()])
        stripped = tfopt.prune.strip_pruning(pruning.student)
        sparsities = [row.sparsity for row in tfopt.prune.sparsity(stripped)]
        floats.append(accuracy(stripped, digits))
        qat = Distiller(teacher, tfopt.quantize.quantize_model(stripped, preserve_sparsity=True),
                        SoftTargets(TEMPERATURE), student_loss_weight=STUDENT_LOSS_WEIGHT)
        distil(qat, digits.x_train, digits.y_train, seed, epochs=QAT_EPOCHS, rate=QAT_RATE)
        flatbuffer = tfopt.export.to_tflite(qat.student, "int8")
        int8s.append(tfopt.export.evaluate(flatbuffer, digits.x_test, digits.y_test)["accuracy"])
        zeros = weighted_zeros(flatbuffer)
        print(f"\nseed {seed}: pruned float distilled {floats[-1]:.4f} (sparsity {np.round(sparsities, 4).tolist()}),"
              f" QAT Keras {accuracy(qat.student, digits):.4f}, int8 TFLite {int8s[-1]:.4f} ({len(flatbuffer)} "
              f"bytes; kernel zeros {np.round(zeros, 4).tolist()})")
        assert len(sparsities) == 2 and min(sparsities) >= 0.79
        assert len(zeros) == 2 and min(zeros) >= 0.79
    print(f"pruned float distilled {summary(floats)}; int8 TFLite {summary(int8s)}")
    assert np.mean(int8s) >= np.mean(floats) - 0.015

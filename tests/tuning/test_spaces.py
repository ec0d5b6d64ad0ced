"""tfopt.tuning's search spaces: what each registers on `hp`, what it returns for each choice, and its errors."""

import keras
import keras_tuner
import numpy as np
import pytest

import tfopt
import tfopt.tuning
from tfopt.tuning import spaces

Fatal = keras_tuner.errors.FatalValueError
FatalType = keras_tuner.errors.FatalTypeError


def fixed(**values):
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def rate(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


# optimizer


def test_optimizer_defaults():
    hp = keras_tuner.HyperParameters()
    opt = tfopt.tuning.optimizer(hp)
    assert hp.values == {"learning_rate": 1e-3, "optimizer": "adam"}
    assert type(opt) is keras.optimizers.Adam
    assert rate(opt) == pytest.approx(1e-3)
    assert opt.weight_decay is None
    assert [p.name for p in hp.space] == ["learning_rate", "optimizer"]
    assert hp.space[0].sampling == "log" and (hp.space[0].min_value, hp.space[0].max_value) == (1e-4, 1e-1)
    assert hp.space[1].values == ["adam", "adamw", "radam", "adan", "lookahead_adam"]


@pytest.mark.parametrize("name", [*spaces.OPTIMIZERS, *(f"lookahead_{n}" for n in ("adam", "sgd", "radam", "prodigy"))])
def test_optimizer_builds_each_choice_with_the_values_on_hp(name):
    hp = fixed(optimizer=name, learning_rate=0.02, weight_decay=0.001)
    opt = tfopt.tuning.optimizer(hp, choices=[name], weight_decay=(1e-5, 1e-2))
    inner = opt.inner_optimizer if name.startswith("lookahead_") else opt
    if name.startswith("lookahead_"):
        assert type(opt) is tfopt.optimizers.Lookahead
    expected = spaces._optimizer_class(name.removeprefix("lookahead_"))
    assert type(inner) is expected
    assert rate(inner) == pytest.approx(0.02)
    assert inner.weight_decay == pytest.approx(0.001)
    assert hp.values == {"optimizer": name, "learning_rate": 0.02, "weight_decay": 0.001}


def test_optimizer_takes_fixed_numbers_and_a_schedule_without_registering_them():
    hp = keras_tuner.HyperParameters()
    opt = tfopt.tuning.optimizer(hp, choices=["sgd"], learning_rate=0.05, weight_decay=0.0)
    assert hp.values == {"optimizer": "sgd"} and rate(opt) == pytest.approx(0.05) and opt.weight_decay == 0.0
    cosine = keras.optimizers.schedules.CosineDecay(0.1, 10)
    hp = keras_tuner.HyperParameters()
    opt = tfopt.tuning.optimizer(hp, learning_rate=cosine)
    assert hp.values == {"optimizer": "adam"}
    assert opt.get_config()["learning_rate"]["class_name"] == "CosineDecay" and rate(opt) == pytest.approx(0.1)


def test_schedule_then_optimizer_share_one_learning_rate():
    hp = fixed(schedule="one_cycle", optimizer="lookahead_adan", learning_rate=0.03)
    one_cycle = tfopt.tuning.schedule(hp, total_steps=100)
    opt = tfopt.tuning.optimizer(hp, learning_rate=one_cycle)
    assert [p.name for p in hp.space].count("learning_rate") == 1
    assert isinstance(opt.inner_optimizer, tfopt.optimizers.Adan)
    assert isinstance(one_cycle, tfopt.schedules.OneCycle) and one_cycle.max_lr == pytest.approx(0.03)
    assert rate(opt.inner_optimizer) == pytest.approx(0.03 / 25)  # OneCycle's start, max_lr / div_factor
    assert hp.values == {"learning_rate": 0.03, "schedule": "one_cycle", "schedule_pct_start": 0.3,
                         "optimizer": "lookahead_adan"}


def test_schedule_reads_the_rate_optimizer_registered_first():
    hp = keras_tuner.HyperParameters()
    tfopt.tuning.optimizer(hp, learning_rate=(0.01, 0.5))
    hp.values["learning_rate"] = 0.2
    hp.Fixed("schedule", "cosine")
    cosine = tfopt.tuning.schedule(hp, total_steps=10)
    assert cosine.initial_learning_rate == pytest.approx(0.2)


@pytest.mark.parametrize("kwargs, argument, kind", [
    ({"choices": ["adam", "adamz"]}, "choices", Fatal),
    ({"choices": []}, "choices", Fatal),
    ({"choices": ["adam", "adam"]}, "choices", Fatal),
    ({"choices": "adam"}, "choices", Fatal),
    ({"choices": ["lookahead_lookahead_adam"]}, "choices", Fatal),
    ({"learning_rate": (0.1, 0.01)}, "learning_rate", Fatal),
    ({"learning_rate": (0.0, 0.01)}, "learning_rate", Fatal),
    ({"learning_rate": (1e-3,)}, "learning_rate", Fatal),
    ({"learning_rate": "fast"}, "learning_rate", FatalType),
    ({"weight_decay": (0.0, 0.1)}, "weight_decay", Fatal),
    ({"weight_decay": -1.0}, "weight_decay", Fatal),
])
def test_optimizer_errors_name_the_argument(kwargs, argument, kind):
    with pytest.raises(kind, match=f"tuning.optimizer: argument `{argument}` must be .* Received: {argument}="):
        tfopt.tuning.optimizer(keras_tuner.HyperParameters(), **kwargs)


def test_optimizer_unknown_choice_lists_the_valid_ones_and_is_a_value_error():
    with pytest.raises(ValueError, match="one of 'adabelief', 'adabound', 'adadelta'.*'yogi' or 'lookahead_' .*adamz"):
        tfopt.tuning.optimizer(keras_tuner.HyperParameters(), choices=["adamz"])
    with pytest.raises(Fatal, match="argument `optimizer` .* Received: optimizer='nope'"):
        tfopt.tuning.optimizer(fixed(optimizer="nope"))


# schedule


def test_schedule_defaults():
    hp = keras_tuner.HyperParameters()
    assert tfopt.tuning.schedule(hp, 100) == pytest.approx(1e-3)
    assert hp.values == {"learning_rate": 1e-3, "schedule": "constant"}
    assert hp.space[1].values == ["constant", "cosine", "one_cycle", "warmup_cosine", "wsd"]


def test_schedule_builds_each_choice_with_the_values_on_hp():
    hp = fixed(schedule="cosine")
    cosine = tfopt.tuning.schedule(hp, 200, learning_rate=0.1)
    assert type(cosine) is keras.optimizers.schedules.CosineDecay
    assert (cosine.initial_learning_rate, cosine.decay_steps) == (0.1, 200) and hp.values == {"schedule": "cosine"}

    hp = fixed(schedule="one_cycle", schedule_pct_start=0.25)
    one_cycle = tfopt.tuning.schedule(hp, 200, learning_rate=0.1)
    assert (one_cycle.max_lr, one_cycle.total_steps, one_cycle.pct_start) == (0.1, 200, 0.25)

    hp = fixed(schedule="warmup_cosine", schedule_warmup_fraction=0.1)
    warm = tfopt.tuning.schedule(hp, 200, learning_rate=0.1)
    assert type(warm) is tfopt.schedules.WarmUp and warm.warmup_steps == 20
    assert warm.after.initial_learning_rate == 0.1 and warm.after.decay_steps == 180
    assert hp.values == {"schedule": "warmup_cosine", "schedule_warmup_fraction": 0.1}

    hp = fixed(schedule="wsd", schedule_warmup_fraction=0.1, schedule_decay_fraction=0.25)
    wsd = tfopt.tuning.schedule(hp, 200, learning_rate=0.1)
    assert type(wsd) is tfopt.schedules.WarmupStableDecay
    assert (wsd.peak_lr, wsd.warmup_steps, wsd.stable_steps, wsd.decay_steps) == (0.1, 20, 130, 50)
    values = tfopt.schedules.values(wsd, 200)
    assert max(values) == pytest.approx(0.1) and values[-1] < 0.01


def test_schedule_knobs_are_active_only_under_their_choice():
    hp = keras_tuner.HyperParameters()
    for kind in ("wsd", "one_cycle", "constant"):
        hp.values["schedule"] = kind
        tfopt.tuning.schedule(hp, 100, learning_rate=0.1)
    active = {p.name for p in hp.space if hp.is_active(p)}
    assert active == {"schedule"}  # "constant" is the current value


@pytest.mark.parametrize("kwargs, argument, kind", [
    ({"total_steps": 1}, "total_steps", Fatal),
    ({"total_steps": 10.0}, "total_steps", FatalType),
    ({"total_steps": 10, "choices": ["cosine", "linear"]}, "choices", Fatal),
    ({"total_steps": 10, "learning_rate": 0.0}, "learning_rate", Fatal),
    ({"total_steps": 10, "learning_rate": "1e-3"}, "learning_rate", FatalType),
])
def test_schedule_errors_name_the_argument(kwargs, argument, kind):
    with pytest.raises(kind, match=f"tuning.schedule: argument `{argument}` must be .* Received: {argument}="):
        tfopt.tuning.schedule(keras_tuner.HyperParameters(), **kwargs)


def test_schedule_unknown_choice_lists_the_valid_ones():
    with pytest.raises(Fatal, match="one of 'constant', 'cosine', 'one_cycle', 'warmup_cosine', 'wsd'"):
        tfopt.tuning.schedule(keras_tuner.HyperParameters(), 10, choices=["step"])


# distillation


def test_distillation_defaults():
    hp = keras_tuner.HyperParameters()
    arguments = tfopt.tuning.distillation(hp)
    assert hp.values == {"distillation_loss": "soft_targets", "distillation_temperature": 4.0,
                         "distillation_student_loss_weight": 0.5}
    assert type(arguments["distillation_losses"]) is tfopt.distill.SoftTargets
    assert arguments["distillation_losses"].temperature == 4.0 and arguments["student_loss_weight"] == 0.5


def test_distillation_decoupled_kd_and_the_distiller_takes_the_arguments():
    hp = fixed(distillation_loss="decoupled_kd", distillation_temperature=2.0, distillation_student_loss_weight=0.3,
               distillation_dkd_beta=6.0)
    arguments = tfopt.tuning.distillation(hp)
    loss = arguments["distillation_losses"]
    assert type(loss) is tfopt.distill.DecoupledKD and (loss.temperature, loss.beta) == (2.0, 6.0)
    assert arguments["student_loss_weight"] == 0.3
    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    distiller = tfopt.distill.Distiller(teacher, student, **arguments)
    assert distiller.student_loss_weight == 0.3


def test_distillation_fixed_numbers_register_nothing_but_the_loss():
    hp = keras_tuner.HyperParameters()
    arguments = tfopt.tuning.distillation(hp, choices=["soft_targets"], temperature=3, student_loss_weight=1)
    assert hp.values == {"distillation_loss": "soft_targets"}
    assert arguments["distillation_losses"].temperature == 3.0 and arguments["student_loss_weight"] == 1.0


@pytest.mark.parametrize("kwargs, argument", [
    ({"choices": ["hint"]}, "choices"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": (4.0, 2.0)}, "temperature"),
    ({"student_loss_weight": (0.0, 1.5)}, "student_loss_weight"),
])
def test_distillation_errors_name_the_argument(kwargs, argument):
    with pytest.raises(Fatal, match=f"tuning.distillation: argument `{argument}` must be .* Received: {argument}="):
        tfopt.tuning.distillation(keras_tuner.HyperParameters(), **kwargs)


# compression


def test_compression_defaults():
    hp = keras_tuner.HyperParameters()
    assert tfopt.tuning.compression(hp) == {"sparsity": 0.0, "structure": None, "qat": False, "scheme": None}
    assert hp.values == {"compression_structure": "none", "compression_qat": False}


@pytest.mark.parametrize("structure, expected", [
    ("none", (0.0, None)), ("unstructured", (0.5, None)), ("channel", (0.5, "channel")), ("2:4", (0.5, "2:4")),
    ("1:4", (0.25, "1:4")),
])
@pytest.mark.parametrize("scheme", [None, "int8", "16x8"])
def test_compression_each_choice(structure, expected, scheme):
    hp = fixed(compression_structure=structure, compression_qat=scheme is not None)
    result = tfopt.tuning.compression(hp, structures=["none", "unstructured", "channel", "2:4", "1:4"],
                                      schemes=[scheme or "int8"])
    assert result == {"sparsity": expected[0], "structure": expected[1], "qat": scheme is not None, "scheme": scheme}
    knobs = {"compression_structure": structure, "compression_qat": scheme is not None}
    if structure in ("unstructured", "channel"):
        knobs["compression_sparsity"] = 0.5
    if scheme:
        knobs["compression_scheme"] = scheme
    assert hp.values == knobs


def test_compression_knobs_are_active_only_under_their_choice():
    hp = keras_tuner.HyperParameters()
    tfopt.tuning.compression(hp)
    for structure, qat in (("channel", True), ("2:4", False)):
        hp.values.update(compression_structure=structure, compression_qat=qat)
        result = tfopt.tuning.compression(hp)
        assert result["qat"] == qat and result["scheme"] == ("int8" if qat else None)
    assert {p.name for p in hp.space} == {"compression_structure", "compression_qat", "compression_sparsity",
                                          "compression_scheme"}
    assert {p.name for p in hp.space if hp.is_active(p)} == {"compression_structure", "compression_qat"}


def test_compression_result_feeds_prune_and_quantize():
    hp = fixed(compression_structure="channel", compression_sparsity=0.5, compression_qat=True)
    result = tfopt.tuning.compression(hp, schemes=["16x8"])
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="hidden"), keras.layers.Dense(2)])
    schedule = tfopt.prune.PolynomialDecay(0.0, result["sparsity"], begin_step=0, end_step=10)
    pruned = tfopt.prune.prune_low_magnitude(model, schedule, structure=result["structure"])
    quantized = tfopt.quantize.quantize_model(tfopt.prune.strip_pruning(pruned), scheme=result["scheme"])
    assert quantized.predict(np.zeros((1, 8), "float32"), verbose=0).shape == (1, 2)


def test_compression_fixed_qat_and_sparsity():
    hp = fixed(compression_structure="unstructured")
    result = tfopt.tuning.compression(hp, sparsity=0.8, qat=True)
    assert result == {"sparsity": 0.8, "structure": None, "qat": True, "scheme": "int8"}
    assert hp.values == {"compression_structure": "unstructured", "compression_qat": True,
                         "compression_scheme": "int8"}


@pytest.mark.parametrize("kwargs, argument", [
    ({"structures": ["2:2"]}, "structures"),
    ({"structures": ["block"]}, "structures"),
    ({"sparsity": 1.0}, "sparsity"),
    ({"sparsity": (0.5, 1.0)}, "sparsity"),
    ({"sparsity": (0.0, 0.5)}, "sparsity"),
    ({"qat": 1}, "qat"),
    ({"qat": (True, True)}, "qat"),
    ({"schemes": ["int4"]}, "schemes"),
])
def test_compression_errors_name_the_argument(kwargs, argument):
    with pytest.raises(Fatal, match=f"tuning.compression: argument `{argument}` must be .* Received: {argument}="):
        tfopt.tuning.compression(keras_tuner.HyperParameters(), **kwargs)


# a search


def test_import_does_not_import_keras_tuner_tfmot_or_tf_keras():
    import os
    import subprocess
    import sys

    names = "('keras_tuner', 'tensorflow_model_optimization', 'tf_keras')"
    code = f"import sys, tfopt.tuning; print(sorted(m for m in {names} if m in sys.modules))"
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}  # tfmot's, if here
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_random_search_tries_different_optimizers_and_rates(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int32")
    built = []

    def build(hp):
        learning_rate = tfopt.tuning.schedule(hp, total_steps=4)
        optimizer = tfopt.tuning.optimizer(hp, learning_rate=learning_rate)
        built.append((type(optimizer).__name__, dict(hp.values)))
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
        return model

    tuner = keras_tuner.RandomSearch(build, objective="val_accuracy", max_trials=2, seed=3,
                                     directory=str(tmp_path), project_name="spaces")
    tuner.search(x, y, epochs=1, batch_size=16, validation_split=0.25, verbose=0)
    trials = tuner.oracle.get_best_trials(2)
    assert len(trials) == 2 and all(trial.status == "COMPLETED" for trial in trials)
    values = [trial.hyperparameters.values for trial in trials]
    assert values[0]["optimizer"] != values[1]["optimizer"]
    assert values[0]["learning_rate"] != values[1]["learning_rate"]
    trial_builds = built[-2:]  # the first build, with the defaults, registers the space
    assert sorted(hp_values["optimizer"] for _, hp_values in trial_builds) == sorted(v["optimizer"] for v in values)
    for name, hp_values in trial_builds:
        kind = hp_values["optimizer"]
        expected = "Lookahead" if kind.startswith("lookahead_") else spaces._optimizer_class(kind).__name__
        assert name == expected


@pytest.mark.parametrize("kind", spaces.SCHEDULES)
def test_schedule_fits_the_shortest_run(kind):
    rate = tfopt.tuning.schedule(fixed(schedule=kind), total_steps=2, learning_rate=0.1)
    values = [0.1, 0.1] if kind == "constant" else tfopt.schedules.values(rate, 2)
    assert all(0 <= value <= 0.1 + 1e-7 for value in values)

"""`DeploymentTuner`: trials scored on their exported TFLite file, budgets, resume, oracles, strategies, errors."""

import contextlib
import io
import os

import keras
import keras_tuner
import numpy as np
import pytest
from example_modules import load_example

import tfopt
from tfopt.tuning.deployment import DeploymentTuner

# Each test runs KerasTuner searches that train and export models: `make test-fast` skips them.
pytestmark = pytest.mark.slow

RNG = np.random.default_rng(0)
X = RNG.random((96, 8)).astype("float32")
Y = (X[:, :3].argmax(axis=1)).astype("int32")  # learnable: the largest of the first three inputs


def classifier(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Choice("units", [4, 64]), activation="relu"),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def tuner_of(tmp_path, build=classifier, trials=3, seed=1, oracle=None, **kwargs):
    oracle = oracle or keras_tuner.oracles.RandomSearchOracle(max_trials=trials, seed=seed)
    return DeploymentTuner(build, oracle, directory=str(tmp_path), project_name="search", **kwargs)


def search(tuner, verbose=0, **kwargs):
    tuner.search(X, Y, validation_data=(X, Y), epochs=kwargs.pop("epochs", 2), verbose=verbose, **kwargs)
    return tuner


def completed(tuner):
    return [trial for trial in tuner.oracle.trials.values() if trial.status == "COMPLETED"]


def dominated(point, points):
    return any(q[0] <= point[0] and q[1] >= point[1] and q != point for q in points)


@pytest.mark.slow
def test_digits_search_ranks_only_trials_within_the_size_budget(tmp_path, digits):
    """The acceptance search: 6 random trials on digits, int8, a 20 KiB budget that the widest networks exceed.
    Seed 12 draws one trial of width 32 (over the budget) and five of width 8 or 16 (KerasTuner reads seed=0 as
    "draw a random seed", which made the trials, and whether the best within budget passed 0.9, change per run)."""
    example = load_example("tune_for_deployment")
    x_train, y_train, x_val, y_val = example.validation_split(digits)
    tuner = DeploymentTuner(example.hypermodel(steps_per_epoch=36, epochs=10),
                            keras_tuner.oracles.RandomSearchOracle(max_trials=6, seed=12), max_size_kb=20,
                            directory=str(tmp_path), project_name="digits")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=10, batch_size=32, verbose=0)
    trials = completed(tuner)
    assert len(trials) == 6
    within = [t for t in trials if t.metrics.get_last_value("tflite_size_kb") <= 20]
    over = [t for t in trials if t not in within]
    assert within and over  # the seed gives both kinds, so the ranking below is tested
    best = tuner.best_trials()[0]
    assert best in within
    assert best.score == max(t.metrics.get_last_value("tflite_accuracy") for t in within) > 0.9
    ranked = tuner.oracle.get_best_trials(6)
    assert ranked[:len(within)] == sorted(within, key=lambda t: -t.score)
    assert all(tuner.oracle.get_trial(t.trial_id).score == -np.inf for t in over)
    points = [(t.metrics.get_last_value("tflite_size_kb"), t.metrics.get_last_value("tflite_accuracy"))
              for t in trials]
    front = {(p.x, p.y) for p in tfopt.tuning.pareto(tuner).front}
    assert front == {p for p in points if not dominated(p, points)}


@pytest.fixture(scope="module")
def seed_7_searches(tmp_path_factory):
    """{verbosity: (tuner, what it printed)}: two searches of 2 trials with seed 7 (KerasTuner draws a random seed
    for seed=0), at verbose=1 ("loud") and 0 ("quiet"), shared by the tests that only read them."""
    searches = {}
    for name, verbose in (("loud", 1), ("quiet", 0)):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            tuner = search(tuner_of(tmp_path_factory.mktemp(name), trials=2, seed=7), verbose=verbose)
        searches[name] = tuner, out.getvalue()
    return searches


def test_each_trial_records_the_metrics_of_its_exported_file(seed_7_searches):
    tuner, _ = seed_7_searches["quiet"]
    for trial in completed(tuner):
        path = tuner.tflite_path(trial.trial_id)
        assert os.path.dirname(path) == tuner.get_trial_dir(trial.trial_id)
        scores = tfopt.export.evaluate(path, X, Y, task="classification")
        for name in ("accuracy", "precision", "recall", "f1"):
            assert trial.metrics.get_last_value(f"tflite_{name}") == pytest.approx(scores[name])
        assert trial.metrics.get_last_value("tflite_size_kb") == pytest.approx(os.path.getsize(path) / 1024)
        assert trial.metrics.get_last_value("tflite_latency_ms") > 0
        assert all(op.outputs[0] == "int8" for op in tfopt.export.inspect(path).ops
                   if op.name in ("FULLY_CONNECTED",))
        assert trial.metrics.exists("val_accuracy") and trial.metrics.exists("loss")
        assert trial.score == trial.metrics.get_last_value("tflite_accuracy")


def test_tflite_path_takes_a_trial_or_its_id_and_refuses_an_unknown_id(seed_7_searches):
    tuner, _ = seed_7_searches["quiet"]
    best = tuner.best_trials()[0]
    assert tuner.tflite_path(best) == tuner.tflite_path(best.trial_id)
    assert os.path.isfile(tuner.tflite_path(best))
    with pytest.raises(ValueError, match=r"argument `trial_id` must be a trial of this search or its id: '0', '1'\. "
                                         r"Received: trial_id='99'"):
        tuner.tflite_path("99")


def test_a_trial_over_budget_is_recorded_but_never_best(tmp_path):
    # The int8 files measure 4.8 KiB with 64 units, 2.5 KiB with 4 units: the budget sits between.
    oracle = keras_tuner.oracles.GridSearchOracle(max_trials=2, seed=1)
    tuner = tuner_of(tmp_path, build=grid_classifier, oracle=oracle, max_size_kb=3.5)
    search(tuner, epochs=20)
    trials = {trial.hyperparameters.values["units"]: trial for trial in completed(tuner)}
    wide, narrow = trials[64], trials[4]
    assert wide.metrics.get_last_value("tflite_size_kb") > 3.5 > narrow.metrics.get_last_value("tflite_size_kb")
    assert wide.metrics.get_last_value("tflite_accuracy") > narrow.metrics.get_last_value("tflite_accuracy")
    assert wide.metrics.get_last_value("tflite_within_budget") == 0.0 and wide.score == -np.inf
    assert tuner.oracle.get_best_trials(2)[0] is narrow
    assert [trial.trial_id for trial in tuner.best_trials(2)] == [narrow.trial_id]
    assert tuner.get_best_hyperparameters(2)[0].values["units"] == 4
    best_model = tuner.get_best_models()[0]
    assert best_model.layers[0].units == 4
    np.testing.assert_allclose(tfopt.export.evaluate(best_model, X, Y)["accuracy"],
                               narrow.metrics.get_last_value("val_accuracy"))
    assert {p.trial_id for p in tfopt.tuning.pareto(tuner).points} == {wide.trial_id, narrow.trial_id}


def grid_classifier(hp):
    hp.Fixed("learning_rate", 0.02)
    return classifier(hp)


def test_no_trial_within_budget_is_a_clear_error(tmp_path):
    tuner = search(tuner_of(tmp_path, trials=1, max_size_kb=0.01))
    with pytest.raises(ValueError, match="no completed trial met the budget"):
        tuner.get_best_models()


class FailingFit(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise RuntimeError("boom in fit")


def test_no_completed_trial_is_reported_with_the_first_failure(tmp_path):
    tuner = search(tuner_of(tmp_path, trials=1), callbacks=[FailingFit()])
    with pytest.raises(ValueError, match="no trial completed among 1 trials: the first failure was: .*boom in fit"):
        tuner.get_best_models()


def distiller(hp):
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(3)])
    student = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Choice("units", [2, 8]), activation="relu"),
                                keras.layers.Dense(3)])
    model = tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets(2.0))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def test_a_distiller_search_exports_and_returns_the_students(tmp_path):
    tuner = search(tuner_of(tmp_path, build=distiller, trials=2, quantization=None), epochs=1)
    assert len(completed(tuner)) == 2
    best = tuner.get_best_models()[0]
    assert isinstance(best, tfopt.distill.Distiller)
    shipped = tfopt.export.predict(tuner.tflite_path(tuner.best_trials()[0].trial_id), X)
    np.testing.assert_allclose(shipped, best.student.predict(X, verbose=0), atol=1e-5)


class Interrupt(keras.callbacks.Callback):
    """Stops the whole process's search (KeyboardInterrupt, as Ctrl-C or a kill would) in the `at`-th fit."""

    fits = 0

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_train_begin(self, logs=None):
        type(self).fits += 1
        if type(self).fits == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_search_resumes_without_repeating_or_losing_trials(tmp_path):
    Interrupt.fits = 0
    with pytest.raises(KeyboardInterrupt):
        search(tuner_of(tmp_path, trials=3), callbacks=[Interrupt(at=2)])
    first = tuner_of(tmp_path, trials=3, overwrite=False)
    done = {trial.trial_id: trial.metrics.get_last_value("tflite_accuracy") for trial in completed(first)}
    assert len(done) == 1
    files = {trial_id: os.path.getmtime(first.tflite_path(trial_id)) for trial_id in done}

    Interrupt.fits = 0
    resumed = search(tuner_of(tmp_path, trials=3, overwrite=False), callbacks=[Interrupt(at=0)])
    assert Interrupt.fits == 2  # the interrupted trial and the last one; the finished one is not re-run
    trials = resumed.oracle.trials.values()
    assert sorted(trial.trial_id for trial in trials) == ["0", "1", "2"]
    assert all(trial.status == "COMPLETED" for trial in trials)
    for trial_id, accuracy in done.items():
        assert resumed.oracle.trials[trial_id].metrics.get_last_value("tflite_accuracy") == accuracy
        assert os.path.getmtime(resumed.tflite_path(trial_id)) == files[trial_id]


def test_the_same_seed_gives_the_same_trials(seed_7_searches):
    values = [[(t.hyperparameters.values, t.metrics.get_last_value("tflite_accuracy"))
               for t in sorted(completed(tuner), key=lambda t: t.trial_id)] for tuner, _ in seed_7_searches.values()]
    assert len(values[0]) == 2 and values[0] == values[1]


def test_one_progress_line_per_trial_and_silence_at_verbose_0(seed_7_searches):
    lines = [line for line in seed_7_searches["loud"][1].splitlines() if line.strip()]
    assert len(lines) == 2 and all(line.startswith("trial ") for line in lines)
    assert "units=" in lines[0] and "tflite_accuracy" in lines[0] and "within budget" in lines[0]
    assert seed_7_searches["quiet"][1] == ""


def test_callbacks_reach_each_trial_fit(tmp_path):
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)  # stops after 2 epochs
    tuner = search(tuner_of(tmp_path, trials=1), epochs=10, callbacks=[stop])
    assert len(completed(tuner)[0].metrics.get_history("loss")) == 1  # the last epoch's value, recorded once
    assert stop.stopped_epoch == 0  # the search's callbacks are copied for each trial
    assert tuner.get_best_models()[0].optimizer.iterations.numpy() == 2 * 3  # 2 epochs of 3 batches


class Replicas(keras.callbacks.Callback):
    seen = []

    def on_train_begin(self, logs=None):
        type(self).seen.append(self.model.distribute_strategy.num_replicas_in_sync)


def test_runs_under_a_distribution_strategy(tmp_path, mirrored_strategy):
    Replicas.seen = []
    tuner = search(tuner_of(tmp_path, trials=1, distribution_strategy=mirrored_strategy), callbacks=[Replicas()])
    assert Replicas.seen == [2]
    assert completed(tuner)[0].metrics.exists("tflite_accuracy")
    assert tuner.get_best_models()[0].distribute_strategy is mirrored_strategy


def regressor(hp):
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 2, 16)), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def test_a_regression_objective_with_a_bayesian_oracle(tmp_path):
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(max_trials=3, num_initial_points=2, seed=1)
    tuner = tuner_of(tmp_path, build=regressor, oracle=oracle, objective="tflite_mse", quantization="float16")
    tuner.search(X, X[:, :1], validation_data=(X, X[:, :1]), epochs=2, verbose=0)
    trials = completed(tuner)
    assert len(trials) == 3 and tuner.oracle.objective.direction == "min"
    for trial in trials:
        assert trial.metrics.exists("tflite_rmse") and not trial.metrics.exists("tflite_accuracy")
        mse = tfopt.export.evaluate(tuner.tflite_path(trial.trial_id), X, X[:, :1], task="regression")["mse"]
        assert trial.score == pytest.approx(mse)


def test_a_hyperband_oracle_continues_its_models(tmp_path):
    oracle = keras_tuner.oracles.HyperbandOracle(max_epochs=2, factor=2, seed=1)  # 5 trials, 1 continued
    tuner = search(tuner_of(tmp_path, oracle=oracle))
    continued = [trial for trial in completed(tuner) if "tuner/trial_id" in trial.hyperparameters.values]
    assert continued and all(trial.metrics.exists("tflite_accuracy") for trial in continued)


def pruned_classifier(hp):
    model = classifier(hp)
    pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile(model.optimizer, model.loss, metrics=["accuracy"])
    return pruned


def tensor_names(tflite):
    return " ".join(detail["name"] for detail in tfopt.export.litert.interpreter(tflite, "test").get_tensor_details())


def test_a_pruned_model_is_exported_stripped(tmp_path):
    tuner = search(tuner_of(tmp_path, build=pruned_classifier, trials=1),
                   callbacks=[tfopt.prune.UpdatePruningStep()])
    path = tuner.tflite_path(completed(tuner)[0].trial_id)
    assert "prune_low_magnitude" not in tensor_names(path)
    assert "prune_low_magnitude" in tensor_names(tfopt.export.to_tflite(tuner.get_best_models()[0]))  # unstripped
    assert tfopt.export.inspect(path).ops_of("FULLY_CONNECTED")[0].weight_zeros >= 0.5


def head_pruned_classifier(hp):
    tokens = keras.Input((4, 2))
    attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=2, name="attention")(tokens, tokens)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(attended))
    schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=1)
    pruned = tfopt.prune.prune_low_magnitude(keras.Model(tokens, outputs), schedule, structure="head")
    pruned.compile(keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 1e-1, sampling="log")),
                   "sparse_categorical_crossentropy", metrics=["accuracy"])
    return pruned


def test_a_head_pruned_model_is_exported_stripped(tmp_path):
    tuner = tuner_of(tmp_path, build=head_pruned_classifier, trials=1)
    tuner.search(X.reshape(-1, 4, 2), Y, validation_data=(X.reshape(-1, 4, 2), Y), epochs=1, verbose=0,
                 callbacks=[tfopt.prune.UpdatePruningStep()])
    assert "prune_low_magnitude" not in tensor_names(tuner.tflite_path(completed(tuner)[0].trial_id))


def qat_classifier(hp):
    model = tfopt.quantize.quantize_model(classifier(hp))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_a_quantization_aware_model_is_exported_as_qat(tmp_path):
    tuner = search(tuner_of(tmp_path, build=qat_classifier, trials=1, representative_data=np.full((4, 8), np.nan)))
    summary = tfopt.export.inspect(tuner.tflite_path(completed(tuner)[0].trial_id))
    assert {op.outputs[0] for op in summary.ops if op.name == "FULLY_CONNECTED"} == {"int8"}


@pytest.mark.parametrize("kwargs, match", [
    ({"quantization": "int4"}, "quantization"),
    ({"max_size_kb": -1}, "max_size_kb"),
    ({"max_latency_ms": "fast"}, "max_latency_ms"),
    ({"objective": "tflite_smile"}, "objective"),
    ({"task": "ranking"}, "task"),
    ({"executions_per_trial": 2}, "executions_per_trial"),
    ({"max_model_size": 1000}, "max_model_size"),
    ({"loss": "mse"}, "loss"),
])
def test_bad_arguments_name_themselves(tmp_path, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        tuner_of(tmp_path, **kwargs)


def test_an_oracle_with_another_objective_is_refused(tmp_path):
    oracle = keras_tuner.oracles.RandomSearchOracle(objective="val_loss", max_trials=1)
    with pytest.raises(ValueError, match="give the objective to DeploymentTuner"):
        tuner_of(tmp_path, oracle=oracle)


def test_a_budget_with_a_minimised_objective_and_a_gaussian_process_is_refused(tmp_path):
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(max_trials=2)
    with pytest.raises(ValueError, match="BayesianOptimizationOracle and a budget"):
        tuner_of(tmp_path, build=regressor, oracle=oracle, objective="tflite_mse", max_size_kb=10)


def test_search_without_validation_data_is_refused_before_any_trial(tmp_path):
    tuner = tuner_of(tmp_path, trials=1)
    with pytest.raises(ValueError, match="validation_data"):
        tuner.search(X, Y, epochs=1, verbose=0)
    assert not tuner.oracle.trials


def test_a_build_that_returns_no_model_stops_the_search(tmp_path):
    tuner = tuner_of(tmp_path, build=lambda hp: "not a model", trials=1)
    with pytest.raises(keras_tuner.errors.FatalTypeError, match="hypermodel"):
        search(tuner)

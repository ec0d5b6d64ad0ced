"""`DeploymentTuner` on tf_keras hypermodels (legacy mode), with tfmot pruning and tfmot QAT inside the trials."""

import keras_tuner
import numpy as np
import pytest
import tf_keras

import tfopt
from tfopt.tuning.deployment import DeploymentTuner

RNG = np.random.default_rng(0)
X = RNG.random((96, 8)).astype("float32")
Y = X[:, :3].argmax(axis=1).astype("int32")


def plain(hp):
    return tf_keras.Sequential([tf_keras.Input((8,)),
                                tf_keras.layers.Dense(hp.Choice("units", [8, 32]), activation="relu"),
                                tf_keras.layers.Dense(3, activation="softmax")])


def compiled(model, hp):
    model.compile(tf_keras.optimizers.Adam(hp.Float("learning_rate", 1e-3, 3e-2, sampling="log")),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def pruned(hp):
    schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=1)
    return compiled(tfopt.prune.prune_low_magnitude(plain(hp), schedule), hp)


def quantization_aware(hp):
    return compiled(tfopt.quantize.quantize_model(plain(hp)), hp)


def search(tmp_path, build, **fit_kwargs):
    tuner = DeploymentTuner(build, keras_tuner.oracles.RandomSearchOracle(max_trials=2, seed=3), max_size_kb=100,
                            directory=str(tmp_path), project_name="legacy")
    tuner.search(X, Y, validation_data=(X, Y), epochs=3, verbose=0, **fit_kwargs)
    trials = [trial for trial in tuner.oracle.trials.values() if trial.status == "COMPLETED"]
    assert len(trials) == 2, [trial.message for trial in tuner.oracle.trials.values()]
    return tuner, trials


def tensor_names(tflite):
    return " ".join(detail["name"] for detail in tfopt.export.litert.interpreter(tflite, "test").get_tensor_details())


def test_a_tfmot_pruned_hypermodel_is_searched_and_exported_stripped(tmp_path):
    tuner, trials = search(tmp_path, pruned, callbacks=[tfopt.prune.UpdatePruningStep()])
    for trial in trials:
        path = tuner.tflite_path(trial.trial_id)
        scores = tfopt.export.evaluate(path, X, Y)
        assert trial.metrics.get_last_value("tflite_accuracy") == pytest.approx(scores["accuracy"])
        assert "prune_low_magnitude" not in tensor_names(path)
        assert tfopt.export.inspect(path).ops_of("FULLY_CONNECTED")[0].weight_zeros >= 0.5
    best = tuner.get_best_models()[0]
    assert isinstance(best, tf_keras.Model)
    best_trial = tuner.best_trials()[0]
    assert tfopt.export.evaluate(best, X, Y)["accuracy"] == pytest.approx(
        best_trial.metrics.get_last_value("val_accuracy"))


def test_a_tfmot_quantization_aware_hypermodel_is_exported_as_qat(tmp_path):
    tuner, trials = search(tmp_path, quantization_aware)
    for trial in trials:
        summary = tfopt.export.inspect(tuner.tflite_path(trial.trial_id))
        assert {op.outputs[0] for op in summary.ops_of("FULLY_CONNECTED")} == {"int8"}
        assert trial.metrics.get_last_value("tflite_accuracy") > 0

"""`DeploymentTuner`: a KerasTuner tuner that scores each trial by the TFLite model it ships, within a budget.

After a trial's `fit`, the trained model (a `tfopt.distill.Distiller`'s student; pruning wrappers stripped) is
exported with `tfopt.export.to_tflite`, the file kept in the trial's folder, scored with the LiteRT interpreter on the
validation data and timed. The trial records these next to its Keras metrics:

| metric                                  | what                                                                 |
| --------------------------------------- | -------------------------------------------------------------------- |
| `tflite_accuracy`, `_precision`,        | classification (`tfopt.export.evaluate`; precision, recall and F1    |
| `_recall`, `_f1`                        | are macro averages)                                                  |
| `tflite_mse`, `tflite_rmse`, `tflite_mae` | regression                                                         |
| `tflite_size_kb`                        | the file's size in KiB                                               |
| `tflite_latency_ms`                     | median single-sample `invoke`, one thread (`tfopt.export.benchmark`) |
| `tflite_within_budget`                  | 1.0 if the file meets `max_size_kb` and `max_latency_ms`, else 0.0   |

A trial over budget stays COMPLETED with its real metrics (`tfopt.tuning.pareto` draws it) but its score is the
worst possible (-inf for a maximised objective, +inf for a minimised one): every oracle ranks it last, and
`get_best_models` / `get_best_hyperparameters` never return it. The budget scoring is installed on the oracle's
`score_trial`, KerasTuner's hook for scoring a trial. KerasTuner's `BayesianOptimizationOracle` turns infinite scores
into 0 before fitting its Gaussian process: right for a maximised objective (accuracy 0 is the worst), wrong for a
minimised one, so that pairing with a budget is refused.
"""

import copy
import math
import os

import keras
import keras_tuner
from keras_tuner.engine.tuner import maybe_distribute

from tfopt import _checks, _compat, _surgery, distill, export, prune
from tfopt.tuning import _fit_data

_OWNER = "DeploymentTuner"
WITHIN_BUDGET = "tflite_within_budget"
_CLASSIFICATION = {"accuracy": "max", "precision": "max", "recall": "max", "f1": "max"}
_REGRESSION = {"mse": "min", "rmse": "min", "mae": "min"}
_DIRECTIONS = {f"tflite_{name}": direction for name, direction in
               {**_CLASSIFICATION, **_REGRESSION, "size_kb": "min", "latency_ms": "min"}.items()}
_UNSUPPORTED = {"executions_per_trial": "1 (each trial's file is one trained model)",
                "max_model_size": "None (give `max_size_kb`: a budget on the exported file's size in KiB)",
                "optimizer": "None (compile the model in the hypermodel)",
                "loss": "None (compile the model in the hypermodel)",
                "metrics": "None (compile the model in the hypermodel)"}


def _objective(objective):
    if isinstance(objective, keras_tuner.Objective):
        return objective
    _checks.instance(_OWNER, "objective", objective, str, "a metric name or a keras_tuner.Objective")
    if objective in _DIRECTIONS:
        return keras_tuner.Objective(objective, _DIRECTIONS[objective])
    direction = keras_tuner.engine.metrics_tracking.infer_metric_direction(objective)
    _checks.satisfies(_OWNER, "objective", objective, direction is not None,
                      "one of " + ", ".join(map(repr, _DIRECTIONS)) + ", a Keras metric such as 'val_accuracy', "
                      "or a keras_tuner.Objective(name, direction)")
    return keras_tuner.Objective(objective, direction)


def _budget(name, value):
    if value is not None:
        _checks.number(_OWNER, name, value, low=0, closed="neither", expected="a number or None")
    return value


def _rank_over_budget_last(oracle):
    """Wraps the oracle's `score_trial` so that a trial over budget scores the worst possible value."""
    score_trial = oracle.score_trial
    worst = -math.inf if oracle.objective.direction == "max" else math.inf

    def score_within_budget(trial):
        score_trial(trial)
        if _over_budget(trial):
            trial.score = worst

    oracle.score_trial = score_within_budget


def _over_budget(trial):
    return trial.metrics.exists(WITHIN_BUDGET) and trial.metrics.get_last_value(WITHIN_BUDGET) < 0.5


def _is_pruned(model):
    """True if `model` holds pruning wrappers: tfopt's on Keras 3 (`PruneHeads`, `PruneAttention` included),
    tfmot's `PruneLowMagnitude` on tf_keras."""
    if _compat.is_legacy(model):
        return any(type(layer).__name__ == "PruneLowMagnitude" for layer in _surgery.layers(model))
    return bool(prune.wrapper.pruned_layers(model))


def _student(model):
    """The model a trial ships: a tfopt `Distiller`'s student, else `model`."""
    if _compat.is_legacy(model):
        from tfopt.distill import legacy

        return model.student if isinstance(model, legacy.distiller_class()) else model
    return model.student if isinstance(model, distill.Distiller) else model


def _format(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class DeploymentTuner(keras_tuner.Tuner):
    """A KerasTuner tuner whose trials are scored on their exported TFLite model, with size and latency budgets.

    Use it like any KerasTuner tuner: `search(x, y, validation_data=(x_val, y_val), epochs=..., callbacks=...)`
    (validation data is required: the exported model is scored on it), then `get_best_models()`,
    `get_best_hyperparameters()`, `results_summary()`, and `tfopt.tuning.pareto(tuner)`. The hypermodel builds and
    compiles a Keras 3 model, or a tf_keras one (with tfmot pruning or QAT) in a process run with
    `TF_USE_LEGACY_KERAS=1`; a quantization-aware model is exported as QAT, a pruned one stripped first (its
    `UpdatePruningStep` callback goes in `search`'s callbacks), a `tfopt.distill.Distiller` as its student (the
    best models are the trained Distillers: take their `student`). Resuming (`overwrite=False`), `distribution_strategy`
    and callbacks work as in KerasTuner; with the oracle's `seed` each trial also seeds Keras (seed + trial number),
    so the same seed gives the same trials (a seed other than 0: KerasTuner reads `seed=0` as none and draws one
    at random). `search(..., verbose=1)` prints one line per finished trial;
    `verbose=0` nothing; `verbose=2` adds KerasTuner's and Keras's own progress.

    Args:
        hypermodel: a `keras_tuner.HyperModel` or a function of `hp` returning a compiled model.
        oracle: any KerasTuner oracle (`RandomSearchOracle`, `BayesianOptimizationOracle`, `HyperbandOracle`, ...),
            with its objective left unset (or equal to `objective`).
        quantization: "int8", "float16", "dynamic" or None, as `tfopt.export.to_tflite` takes. Defaults to "int8".
        representative_data: inputs that calibrate a post-training "int8" export. Defaults to None: the training
            inputs given to `search` (up to 200 samples are used). Unused for a QAT model.
        objective: a metric of the table above, a Keras metric name (`"val_accuracy"`) or a
            `keras_tuner.Objective`. Defaults to "tflite_accuracy".
        max_size_kb: budget on `tflite_size_kb`, or None. Defaults to None.
        max_latency_ms: budget on `tflite_latency_ms`, or None. Defaults to None.
        task: "classification" or "regression": the TFLite metrics recorded. Defaults to None: "regression" for an
            objective `tflite_mse`, `tflite_rmse` or `tflite_mae`, else "classification".
        **tuner_kwargs: `keras_tuner.Tuner`'s (`directory`, `project_name`, `overwrite`, `distribution_strategy`,
            ...), except `optimizer`, `loss`, `metrics`, `max_model_size` and `executions_per_trial` other than 1.

    Example:
    >>> import keras, keras_tuner, numpy as np, tempfile, tfopt
    >>> def build(hp):
    ...     model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(hp.Int("units", 4, 16, step=4)),
    ...                               keras.layers.Dense(3, activation="softmax")])
    ...     model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    ...     return model
    >>> x, y = np.random.rand(64, 8).astype("float32"), np.random.randint(0, 3, 64)
    >>> tuner = tfopt.tuning.DeploymentTuner(
    ...     build, keras_tuner.oracles.RandomSearchOracle(max_trials=2, seed=1), max_size_kb=100,
    ...     directory=tempfile.mkdtemp(), project_name="example")
    >>> tuner.search(x, y, validation_data=(x, y), epochs=1, verbose=0)
    >>> best = tuner.oracle.get_best_trials()[0]
    >>> sorted(name for name in best.metrics.metrics if name.startswith("tflite_"))[:3]
    ['tflite_accuracy', 'tflite_f1', 'tflite_latency_ms']
    """

    def __init__(self, hypermodel, oracle, quantization="int8", representative_data=None,
                 objective="tflite_accuracy", max_size_kb=None, max_latency_ms=None, task=None, **tuner_kwargs):
        _checks.instance(_OWNER, "oracle", oracle, keras_tuner.Oracle, "a KerasTuner oracle")
        _checks.choice(_OWNER, "quantization", quantization, export.QUANTIZATIONS)
        for name, valid in _UNSUPPORTED.items():
            default = 1 if name == "executions_per_trial" else None
            _checks.satisfies(_OWNER, name, tuner_kwargs.get(name, default), tuner_kwargs.get(name, default) ==
                              default, valid)
        objective = _objective(objective)
        given = oracle.objective
        same = given.name in ("default_objective", objective.name)  # KerasTuner's name for an unset objective
        _checks.satisfies(_OWNER, "oracle", f"<oracle with objective {given.name!r}>", same,
                          f"an oracle with its objective unset or {objective.name!r}: give the objective to "
                          "DeploymentTuner(objective=...)")
        if task is None:
            task = "regression" if objective.name in ("tflite_mse", "tflite_rmse", "tflite_mae") else "classification"
        self.task = _checks.choice(_OWNER, "task", task, ("classification", "regression"))
        self.quantization = quantization
        self.representative_data = representative_data
        self.max_size_kb = _budget("max_size_kb", max_size_kb)
        self.max_latency_ms = _budget("max_latency_ms", max_latency_ms)
        self.verbose = 1
        budgeted = max_size_kb is not None or max_latency_ms is not None
        gaussian = isinstance(oracle, keras_tuner.oracles.BayesianOptimizationOracle)
        _checks.satisfies(_OWNER, "objective", objective.name, not (budgeted and gaussian and
                                                                    objective.direction == "min"),
                          "maximised with a BayesianOptimizationOracle and a budget: its Gaussian process reads "
                          "the +inf score of a trial over budget as 0, the best value of a minimised objective")
        oracle.objective = objective
        _rank_over_budget_last(oracle)
        super().__init__(oracle, hypermodel, **tuner_kwargs)

    def search(self, *fit_args, verbose=1, **fit_kwargs):
        """Runs the search: `fit_args`/`fit_kwargs` go to each trial's `fit`; `validation_data` is required."""
        self.verbose = _checks.choice(_OWNER, "verbose", verbose, (0, 1, 2))
        _fit_data.validation_arrays(fit_kwargs)
        super().search(*fit_args, verbose=verbose if verbose == 2 else 0, **fit_kwargs)

    def run_trial(self, trial, *fit_args, **fit_kwargs):
        """Builds, fits, saves and exports the trial's model; returns its Keras and TFLite metrics."""
        hp = trial.hyperparameters
        if "tuner/epochs" in hp.values:  # a Hyperband oracle's budget for this trial
            fit_kwargs.update(epochs=hp.values["tuner/epochs"], initial_epoch=hp.values["tuner/initial_epoch"])
        keras.backend.clear_session()
        keras.utils.set_random_seed(self.oracle.seed + int(trial.trial_id))
        model = self._build_trial_model(hp)
        fit_kwargs["callbacks"] = self._trial_callbacks(fit_kwargs.get("callbacks"), trial)
        history = self.hypermodel.fit(hp, model, *fit_args, **fit_kwargs)
        model.save_weights(self._weights_path(trial.trial_id, model))
        keras_metrics = {name: float(values[-1]) for name, values in history.history.items() if values}
        deployable = _student(model)
        deployable = prune.strip_pruning(deployable) if _is_pruned(deployable) else deployable
        return {**keras_metrics, **self._tflite_metrics(trial, deployable, fit_args, fit_kwargs)}

    def _build_trial_model(self, hp):
        with maybe_distribute(self.distribution_strategy):
            model = self.hypermodel.build(hp)
            if "tuner/trial_id" in hp.values:  # Hyperband continues an earlier trial's model
                self._load_weights(model, hp.values["tuner/trial_id"])
        is_model = isinstance(model, keras.Model) or (_compat.is_legacy(model) and
                                                      isinstance(model, _compat.keras_of(model).Model))
        _checks.satisfies(_OWNER, "hypermodel", f"<build returned {type(model).__name__}>", is_model,
                          "a function or HyperModel whose build(hp) returns a Keras 3 or tf_keras model",
                          keras_tuner.errors.FatalTypeError)
        return model

    def _trial_callbacks(self, callbacks, trial):
        try:
            callbacks = copy.deepcopy(list(callbacks or []))
        except Exception as error:
            raise keras_tuner.errors.FatalValueError(
                f"{_OWNER}: the callbacks of `search` must be deep-copyable (each trial gets its own copy): {error}"
            ) from error
        for callback in callbacks:
            if type(callback).__name__ == "TensorBoard":  # one log folder per trial, as KerasTuner does
                callback.log_dir = os.path.join(str(callback.log_dir), str(trial.trial_id))
        return callbacks

    def _tflite_metrics(self, trial, model, fit_args, fit_kwargs):
        x_val, y_val = _fit_data.validation_arrays(fit_kwargs)
        calibration = None
        if self.quantization == "int8" and not export.is_quantization_aware(model):
            calibration = self.representative_data
            if calibration is None:
                calibration = _fit_data.training_inputs(fit_args, fit_kwargs)
        path = self._tflite_file(trial.trial_id)
        flatbuffer = export.to_tflite(model, self.quantization, calibration, path=path, overwrite=True)
        scores = export.evaluate(flatbuffer, x_val, y_val, task=self.task)
        size_kb = len(flatbuffer) / 1024
        latency_ms = export.benchmark(flatbuffer, runs=50, threads=1).p50_ms
        within = ((self.max_size_kb is None or size_kb <= self.max_size_kb) and
                  (self.max_latency_ms is None or latency_ms <= self.max_latency_ms))
        return {**{f"tflite_{name}": float(value) for name, value in scores.items()}, "tflite_size_kb": size_kb,
                "tflite_latency_ms": latency_ms, WITHIN_BUDGET: float(within)}

    def tflite_path(self, trial_id):
        """The exported file of a trial (a KerasTuner `Trial` or its id), in its folder: `model_<quantization>.tflite`;
        a ValueError for an id the oracle doesn't know."""
        if isinstance(trial_id, keras_tuner.engine.trial.Trial):
            trial_id = trial_id.trial_id
        known = self.oracle.trials
        _checks.satisfies(_OWNER, "trial_id", trial_id, isinstance(trial_id, str) and trial_id in known,
                          "a trial of this search or its id: " + (", ".join(map(repr, known)) or "none yet"))
        return self._tflite_file(trial_id)

    def _tflite_file(self, trial_id):
        return os.path.join(self.get_trial_dir(trial_id), f"model_{self.quantization or 'float32'}.tflite")

    def _weights_path(self, trial_id, model):
        name = "checkpoint.h5" if _compat.is_legacy(model) else "checkpoint.weights.h5"
        return os.path.join(self.get_trial_dir(trial_id), name)

    def load_model(self, trial):
        """The model of a finished trial: built from its hyper-parameters, with the weights it was exported with."""
        model = self._build_trial_model(trial.hyperparameters)
        with maybe_distribute(self.distribution_strategy):
            self._load_weights(model, trial.trial_id)
        return model

    def _load_weights(self, model, trial_id):
        """The weights and optimizer state saved by trial `trial_id` (the optimizer is built first to take them)."""
        if model.optimizer is not None:
            _compat.build_optimizer(model)
        model.load_weights(self._weights_path(trial_id, model))

    def best_trials(self, num_trials=1):
        """The best completed trials within budget, best first (fewer if fewer met it); a ValueError if none did."""
        _checks.integer(_OWNER, "num_trials", num_trials, low=1)
        ranked = self.oracle.get_best_trials(len(self.oracle.trials))
        completed = [trial for trial in ranked if trial.status == "COMPLETED"]
        if not completed:
            failed = [trial for trial in self.oracle.trials.values() if (trial.message or "").strip()]
            first = f": the first failure was: {failed[0].message.strip().splitlines()[-1]}" if failed else ""
            raise ValueError(f"{_OWNER}: no trial completed among {len(self.oracle.trials)} trials{first}")
        feasible = [trial for trial in completed if not _over_budget(trial)]
        if not feasible:
            raise ValueError(f"{_OWNER}: no completed trial met the budget (max_size_kb={self.max_size_kb}, "
                             f"max_latency_ms={self.max_latency_ms}) among {len(self.oracle.trials)} trials")
        return feasible[:num_trials]

    def get_best_models(self, num_models=1):
        """The models of `best_trials(num_models)`: trials over budget are never returned."""
        return [self.load_model(trial) for trial in self.best_trials(num_models)]

    def get_best_hyperparameters(self, num_trials=1):
        """The hyper-parameters of `best_trials(num_trials)`: trials over budget are never returned."""
        return [trial.hyperparameters for trial in self.best_trials(num_trials)]

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.verbose:
            print(self._progress_line(self.oracle.get_trial(trial.trial_id)), flush=True)

    def _progress_line(self, trial):
        values = ", ".join(f"{name}={_format(value)}" for name, value in trial.hyperparameters.values.items()
                           if not name.startswith("tuner/"))
        head = f"trial {trial.trial_id} [{values}]"
        if trial.status != "COMPLETED":
            reason = (trial.message or "").strip().splitlines()
            return f"{head} {trial.status}: {reason[-1] if reason else 'no message'}"
        metrics = {name: trial.metrics.get_last_value(name) for name in sorted(trial.metrics.metrics)}
        keras_part = " ".join(f"{name} {_format(value)}" for name, value in metrics.items()
                              if name.startswith("val_"))
        tflite_part = " ".join(f"{name} {_format(value)}" for name, value in metrics.items()
                               if name.startswith("tflite_") and name != WITHIN_BUDGET)
        verdict = "OVER BUDGET" if _over_budget(trial) else "within budget"
        return f"{head} {keras_part} | {tflite_part} | {verdict}"

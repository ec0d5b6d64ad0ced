"""Short trainings of Keras and tfopt features, each run under a worker's strategy and in one plain process.

Every feature is a function `feature(scope) -> {name: array}`: it builds its model inside `scope` (a strategy's
`scope()`, or a null context for the single-process reference), fits it on the same 64 samples in global batches of
16 without shuffling, and returns what the tests compare (weights, predictions, masks, ranges). Each model starts
from the same weights (`keras.utils.set_random_seed`), so the two runs see the same global batches from the same
point and must end equal within float32 tolerance.
"""

import keras
import numpy as np

import tfopt

BATCH = 16
EPOCHS = 3
STEPS = EPOCHS * 64 // BATCH


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * rng.normal(size=(64, 1))).astype("float32")
    return x, y


def labels():
    x, y = data()
    return np.digitize(y[:, 0], [-1.0, 1.0]).astype("int32")  # 3 classes


def mlp(outputs=1, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(outputs)])


def _fit(model, optimizer, callbacks=(), y=None, **compile_kwargs):
    x, target = data()
    model.compile(optimizer=optimizer, loss=compile_kwargs.pop("loss", "mse"), **compile_kwargs)
    model.fit(x, target if y is None else y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0,
              callbacks=list(callbacks))
    return model


def weights(model):
    return {f"w{i}": np.asarray(w) for i, w in enumerate(model.weights)}


def keras_adam(scope):
    """Plain Keras: Adam `fit`, then `evaluate` and `predict`."""
    with scope:
        model = _fit(mlp(), keras.optimizers.Adam(1e-2))
    x, y = data()
    loss = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    return {**weights(model), "evaluate": np.asarray(loss), "predict": model.predict(x, batch_size=BATCH, verbose=0)}


def radam_warmup(scope):
    """A tfopt optimizer reading a tfopt schedule."""
    with scope:
        schedule = tfopt.schedules.WarmUp(after=1e-2, warmup_steps=4)
        return weights(_fit(mlp(), tfopt.optimizers.RAdam(schedule)))


def lookahead_lr_scheduler(scope):
    """A tfopt optimizer wrapper whose rate `LRScheduler` sets each batch from a Keras schedule."""
    with scope:
        optimizer = tfopt.optimizers.Lookahead(keras.optimizers.Adam(1e-2), sync_period=3)
        callback = tfopt.callbacks.LRScheduler(keras.optimizers.schedules.CosineDecay(1e-2, STEPS))
        return weights(_fit(mlp(), optimizer, [callback]))


def one_cycle(scope):
    """`OneCyclePolicy` cycling SGD's rate and momentum."""
    with scope:
        callback = tfopt.callbacks.OneCyclePolicy(max_lr=0.05, total_steps=STEPS)
        return weights(_fit(mlp(), keras.optimizers.SGD(0.05, momentum=0.9), [callback]))


def reduce_lr_on_plateau(scope):
    """tfopt's `ReduceLROnPlateau` scaling Adam's schedule: every worker must read the same loss and halve the rate
    at the same epoch. The loss runs 17.78, 16.91, 16.03: epoch 1 ends less than `min_delta=1` below the best, a
    plateau, so the last epoch trains at half the rate; epoch 2 does not. Also returns the final rate."""
    with scope:
        optimizer = keras.optimizers.Adam(tfopt.schedules.WarmUp(after=1e-2, warmup_steps=4))
        callback = tfopt.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1.0)
        model = _fit(mlp(), optimizer, [callback])
    return {**weights(model), "learning_rate": np.asarray(optimizer.learning_rate)}


# Each tfopt optimizer as the optimizer contract makes it (tests/optimizers/test_contract.py): wrappers around Adam,
# the learning-rate-free ones at their own rate, Shampoo with an epsilon above float32's rounding of its statistics.
_WRAPPERS = ("Cautious", "GradientCentralization", "Lookahead")
_ARGUMENTS = {
    "Prodigy": {},
    "DAdaptAdam": dict(d0=1e-3, growth_rate=1.1),
    "Shampoo": dict(learning_rate=1e-2, epsilon=1e-2),
    "SOAP": dict(learning_rate=1e-2, precondition_frequency=3),
    "LARS": dict(learning_rate=0.5),
}


def _optimizer(name):
    cls = getattr(tfopt.optimizers, name)
    if name in _WRAPPERS:
        return cls(keras.optimizers.Adam(1e-2))
    return cls(**_ARGUMENTS.get(name, dict(learning_rate=1e-2)))


def every_optimizer(scope):
    """Every tfopt optimizer and wrapper, each training its own copy of the model: `<name>/w<i>`."""
    trained = {}
    with scope:
        for name in tfopt.optimizers.__all__:
            trained.update({f"{name}/{key}": value for key, value in weights(_fit(mlp(), _optimizer(name))).items()})
    return trained


def sharpness_aware(scope):
    with scope:
        return weights(_fit(tfopt.models.SharpnessAware(mlp(), rho=0.05), keras.optimizers.SGD(0.05)))


def swa(scope):
    with scope:
        callback = tfopt.callbacks.SWA(start_epoch=1, swa_lr=0.01, update_bn=False)
        return weights(_fit(mlp(), keras.optimizers.SGD(0.05), [callback]))


def distiller(scope):
    with scope:
        teacher, student = mlp(3, seed=1), mlp(3, seed=2)
        model = tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets(temperature=2.0))
        _fit(model, keras.optimizers.Adam(1e-2), y=labels(),
             loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        return weights(student)


def prune(scope):
    """`prune_low_magnitude` + `UpdatePruningStep`: the masks chosen in the step."""
    with scope:
        schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=2)
        model = _fit(tfopt.prune.prune_low_magnitude(mlp(), schedule), keras.optimizers.Adam(1e-2),
                     [tfopt.prune.UpdatePruningStep()])
        return weights(model)


def quantize(scope):
    """`quantize_model`: weights and the activation ranges learned in training."""
    with scope:
        return weights(_fit(tfopt.quantize.quantize_model(mlp()), keras.optimizers.Adam(1e-2)))


def resumable(scope, epochs, callbacks=()):
    """A pruned model trained by Adam under `OneCyclePolicy` (rate and `beta_1`) and `UpdatePruningStep`: what a
    resumed run must carry over (slots, step, momentum, masks and pruning step) for its weights to stay equal.

    `callbacks` come first: `BackupAndRestore` must restore the optimizer's step before `OneCyclePolicy` reads it in
    `on_train_begin`."""
    with scope:
        model = tfopt.prune.prune_low_magnitude(mlp(), tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=3))
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    x, y = data()
    cycle = tfopt.callbacks.OneCyclePolicy(max_lr=0.02, total_steps=epochs * 64 // BATCH)
    model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[*callbacks, cycle, tfopt.prune.UpdatePruningStep()])
    return model


FEATURES = {feature.__name__: feature for feature in (
    keras_adam, radam_warmup, lookahead_lr_scheduler, one_cycle, reduce_lr_on_plateau, every_optimizer,
    sharpness_aware, swa, distiller, prune, quantize,
)}


def legacy_mlp(outputs=1, seed=0):
    """`mlp` in tf_keras, from seeded (stateless) initializers: the same weights in every process."""
    import tf_keras

    def dense(units, offset, **kwargs):
        return tf_keras.layers.Dense(units, kernel_initializer=tf_keras.initializers.GlorotUniform(seed + offset),
                                     **kwargs)

    return tf_keras.Sequential([tf_keras.Input((4,)), dense(8, 0, activation="relu"), dense(outputs, 1)])


def _legacy_fit(scope, build, callbacks=()):
    """A tf_keras model built by `build()`, compiled with Adam in `scope` and fit outside it."""
    import tf_keras

    with scope:
        model = build()
        model.compile(optimizer=tf_keras.optimizers.Adam(1e-2), loss="mse")
    x, y = data()
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0, callbacks=list(callbacks))
    return model


def legacy_adam(scope):
    """Plain tf_keras: Adam `fit`, then `evaluate` and `predict`."""
    model = _legacy_fit(scope, legacy_mlp)
    x, y = data()
    loss = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    return {**weights(model), "evaluate": np.asarray(loss), "predict": model.predict(x, batch_size=BATCH, verbose=0)}


def legacy_prune(scope):
    """`prune_low_magnitude` (tfmot) + `UpdatePruningStep` on a tf_keras model: the masks chosen in the step."""
    schedule = tfopt.prune.ConstantSparsity(0.5, begin_step=0, frequency=2)
    return weights(_legacy_fit(scope, lambda: tfopt.prune.prune_low_magnitude(legacy_mlp(), schedule),
                               [tfopt.prune.UpdatePruningStep()]))


def legacy_quantize(scope):
    """`quantize_model` (tfmot QAT) on a tf_keras model: weights and the activation ranges learned in training."""
    return weights(_legacy_fit(scope, lambda: tfopt.quantize.quantize_model(legacy_mlp())))


def _weights_and_rate(model):
    return {**weights(model), "learning_rate": np.asarray(model.optimizer.learning_rate.numpy())}


def legacy_lr_scheduler(scope):
    """tfopt's `LRScheduler` setting tf_keras Adam's rate each batch from a schedule."""
    import tf_keras

    callback = tfopt.callbacks.LRScheduler(tf_keras.optimizers.schedules.CosineDecay(1e-2, STEPS))
    return _weights_and_rate(_legacy_fit(scope, legacy_mlp, [callback]))


def legacy_reduce_lr_on_plateau(scope):
    """tfopt's `ReduceLROnPlateau` on tf_keras Adam (as `reduce_lr_on_plateau`, with a constant rate)."""
    callback = tfopt.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1.0)
    return _weights_and_rate(_legacy_fit(scope, legacy_mlp, [callback]))


LEGACY_FEATURES = {feature.__name__: feature for feature in (
    legacy_adam, legacy_prune, legacy_quantize, legacy_lr_scheduler, legacy_reduce_lr_on_plateau,
)}

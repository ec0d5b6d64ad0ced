"""The tf_keras side of `tfopt.prune`: tfopt's pruning arguments handed to tensorflow_model_optimization (tfmot).

`tfopt.prune.prune_low_magnitude`, `UpdatePruningStep` and `strip_pruning` call these functions for tf_keras models.
tfmot is imported inside them, never by `import tfopt`: importing it sets `TF_USE_LEGACY_KERAS=1` for the process.

How tfopt's arguments map onto tfmot 0.8.1's `prune_low_magnitude`:

```python
ConstantSparsity(target, begin_step, end_step, frequency)
    -> pruning_schedule=tfmot ConstantSparsity(target_sparsity=target, begin_step, end_step, frequency)
PolynomialDecay(initial, final, begin_step, end_step, power, frequency)
    -> pruning_schedule=tfmot PolynomialDecay(initial_sparsity=initial, final_sparsity=final, begin_step, ...)
structure=None      -> unstructured magnitude pruning
structure="N:M"     -> sparsity_m_by_n=(N, M). Both mean N zeros in every M consecutive weights along the kernel's
                       input axis (-2: Dense (in, out) groups inputs, Conv (kh, kw, in, out) input channels), so
                       "1:4" zeros 1 weight of 4. tfmot computes this mask once, in the first training batch
                       (pruning step 1), and keeps it: the schedule's steps and sparsity are not used.
structure="channel" -> ValueError: tfmot has no channel pruning
layers=...          -> tf_keras.models.clone_model(model, clone_function=...) wrapping the chosen layers, as tfmot's
                       guide does; the other layers are reused as they are
```
The pruned model is built on a copy of `model`, which keeps its weights (tfmot alone would share them).

Example:
    >>> import tf_keras, tfopt
    >>> from tfopt.prune import tfmot as adapter
    >>> model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4, name="out")])
    >>> pruned = adapter.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0), "2:4")
    >>> [layer.name for layer in pruned.layers]
    ['prune_low_magnitude_out']
"""

from tfopt import _checks
from tfopt.prune import masks
from tfopt.prune.prune import _entries, _matches

_OWNER = "prune_low_magnitude"


def _sparsity_api():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras


def pruning_schedule(schedule):
    """The tfmot `PruningSchedule` equal to a tfopt `ConstantSparsity` or `PolynomialDecay`."""
    kind = type(schedule).__name__
    if kind not in ("ConstantSparsity", "PolynomialDecay"):
        raise TypeError(f"{_OWNER}: argument `schedule` must be a ConstantSparsity or PolynomialDecay. "
                        f"Received: schedule={schedule!r}")
    api = _sparsity_api()
    steps = {"begin_step": schedule.begin_step, "end_step": schedule.end_step, "frequency": schedule.frequency}
    if kind == "ConstantSparsity":
        return api.ConstantSparsity(target_sparsity=schedule.target, **steps)
    return api.PolynomialDecay(
        initial_sparsity=schedule.initial, final_sparsity=schedule.final, power=schedule.power, **steps
    )


def _m_by_n(structure):
    pattern = masks.parse(_OWNER, structure)
    if pattern == "channel":
        raise ValueError(f"{_OWNER}: argument `structure` must be None or \"N:M\" for a tf_keras model, which tfmot "
                         "prunes: tfmot has no channel pruning. Received: structure='channel'. Carry the model to "
                         "Keras 3 (tfopt.compat.to_keras3) to prune whole channels.")
    return pattern


def _clone_function(model, layers, wrap):
    """A `clone_model` clone_function that wraps the layers `layers` chooses and reuses the others."""
    import tf_keras

    entries = _entries(layers)
    candidates = [layer for layer in model.layers if not isinstance(layer, tf_keras.layers.InputLayer)]
    missing = {entry for entry in entries if isinstance(entry, str)} - {layer.name for layer in candidates}
    rule = f"names of layers of the model; not one: {sorted(missing)}"
    _checks.satisfies(_OWNER, "layers", layers, not missing, rule)
    chosen = {id(layer) for layer in candidates if any(_matches(layer, entry) for entry in entries)}
    _checks.satisfies(_OWNER, "layers", layers, chosen, "a choice of at least one layer of the model")
    return lambda layer: wrap(layer) if id(layer) in chosen else layer


def prune_low_magnitude(model, schedule, structure=None, layers=None):
    """A copy of the tf_keras `model` whose chosen layers tfmot prunes while it trains (see the module docstring).

    `model` itself is not changed.

    Args:
        model: a tf_keras Sequential or functional model.
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: None or "N:M" (N zeros in every M weights along the input axis). Defaults to `None`.
        layers: None for every layer tfmot can prune (it raises for a layer it can't), or a layer class, a layer
            name, a function `layer -> bool`, or a list of them: the layers matching any are pruned.
            Defaults to `None`.

    Returns:
        The model with tfmot's `PruneLowMagnitude` wrappers; compile and fit it with `update_pruning_step()`.

    Example:
        >>> import tf_keras, tfopt
        >>> from tfopt.prune import tfmot as adapter
        >>> model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(4), tf_keras.layers.Dense(1)])
        >>> schedule = tfopt.prune.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100)
        >>> pruned = adapter.prune_low_magnitude(model, schedule, layers=lambda layer: layer.units == 4)
        >>> [type(layer).__name__ for layer in pruned.layers]
        ['PruneLowMagnitude', 'Dense']
    """
    import tf_keras

    api = _sparsity_api()
    params = {"pruning_schedule": pruning_schedule(schedule), "sparsity_m_by_n": _m_by_n(structure)}
    copy = tf_keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    if layers is None:
        return api.prune_low_magnitude(copy, **params)
    wrap = _clone_function(copy, layers, lambda layer: api.prune_low_magnitude(layer, **params))
    return tf_keras.models.clone_model(copy, clone_function=wrap)


def update_pruning_step():
    """tfmot's `UpdatePruningStep` callback, which a tfmot-pruned model needs in `fit`."""
    return _sparsity_api().UpdatePruningStep()


def strip_pruning(model):
    """The tf_keras `model` without tfmot's pruning wrappers, keeping the pruned (sparse) weights."""
    return _sparsity_api().strip_pruning(model)

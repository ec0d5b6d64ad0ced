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
                       (pruning step 1), and keeps it: the schedule's steps and sparsity are not used. tfmot
                       groups 2D and 4D kernels only: Conv1D, Conv3D and SeparableConv1D are left out of the
                       default choice, and a ValueError names one chosen in `layers` (Keras 3's tfopt pruning,
                       after `tfopt.compat.to_keras3`, groups them).
structure="channel" -> ValueError: tfmot has no channel pruning
layers=None         -> the layers tfopt prunes in a Keras 3 model, with the same kernels (`tfopt.prune._layers`):
                       Dense, Conv1D/2D/3D, SeparableConv1D/2D (pointwise kernel), DepthwiseConv1D/2D (under
                       "N:M": Dense, Conv2D and SeparableConv2D only). tfmot's registry prunes no depthwise
                       kernel: a chosen DepthwiseConv1D/2D is copied as its subclass
                       `tfopt>PrunableDepthwiseConv1D/2D`, which tells tfmot to prune its `depthwise_kernel`;
                       `strip_pruning` turns it back into the plain layer.
layers=...          -> the layers chosen (any layer tfmot can prune, such as Embedding); tfmot wraps each
```
The pruned model is a copy of `model` (nested models included), which keeps its weights (tfmot alone would share
them). To load a saved pruned model that holds a depthwise layer, call `prunable_depthwise_classes()` first: its
classes are registered with tf_keras when they are made.

Example:
    >>> import tf_keras, tfopt
    >>> from tfopt.prune import tfmot as adapter
    >>> model = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4, name="out")])
    >>> pruned = adapter.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, begin_step=0), "2:4")
    >>> [layer.name for layer in pruned.layers]
    ['prune_low_magnitude_out']
"""

import dataclasses
import functools

from tfopt import _checks, _surgery
from tfopt.prune import _layers, masks

_OWNER = "prune_low_magnitude"


def _sparsity_api():
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras


@functools.cache
def prunable_depthwise_classes():
    """{tf_keras DepthwiseConv1D/2D: its subclass whose `depthwise_kernel` tfmot prunes}, made on the first call.

    The subclasses are registered with tf_keras as `tfopt>PrunableDepthwiseConv1D` and `...2D`, so call this before
    loading a saved pruned model that holds one (in `tfmot.sparsity.keras.prune_scope()`).

    Example:
        >>> import tf_keras
        >>> from tfopt.prune import tfmot as adapter
        >>> adapter.prunable_depthwise_classes()[tf_keras.layers.DepthwiseConv2D].__name__
        'PrunableDepthwiseConv2D'
    """
    import tf_keras

    register = tf_keras.saving.register_keras_serializable(package="tfopt")

    class DepthwiseKernel(_sparsity_api().PrunableLayer):
        def get_prunable_weights(self):
            return [self.depthwise_kernel]

    @register
    class PrunableDepthwiseConv1D(DepthwiseKernel, tf_keras.layers.DepthwiseConv1D):
        """A tf_keras DepthwiseConv1D whose depthwise kernel tfmot prunes."""

    @register
    class PrunableDepthwiseConv2D(DepthwiseKernel, tf_keras.layers.DepthwiseConv2D):
        """A tf_keras DepthwiseConv2D whose depthwise kernel tfmot prunes."""

    return {
        tf_keras.layers.DepthwiseConv1D: PrunableDepthwiseConv1D,
        tf_keras.layers.DepthwiseConv2D: PrunableDepthwiseConv2D,
    }


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
    if pattern in ("channel", "head"):
        raise ValueError(f"{_OWNER}: argument `structure` must be None or \"N:M\" for a tf_keras model, which tfmot "
                         f"prunes: tfmot has no {pattern} pruning. Received: structure={structure!r}. Carry the "
                         f"model to Keras 3 (tfopt.compat.to_keras3) to prune whole {pattern}s.")
    return pattern


def _kernel_of(layer):
    import tf_keras

    return _layers.kernel_of(layer, tf_keras.layers)


def _rank_tfmot_cannot_group(layer):
    """The rank of `layer`'s kernel if Keras 3 groups it under "N:M" but tfmot can't, else None: tfmot's N:M masks
    take 2D (Dense) and 4D (Conv2D) kernels only, not Conv1D's, Conv3D's or SeparableConv1D's."""
    kernel = _kernel_of(layer)
    if kernel is None or not kernel.groupable:
        return None
    rank = len(getattr(layer, kernel.attribute).shape)
    return None if rank in (2, 4) else rank


def _default_kernel_of(layer):
    """`_kernel_of`, not groupable for a kernel tfmot can't group: what the default choice under "N:M" reads."""
    kernel = _kernel_of(layer)
    return dataclasses.replace(kernel, groupable=False) if _rank_tfmot_cannot_group(layer) else kernel


def _choose(model, structure, layers):
    """The ids of the layers of `model` to prune (see the module docstring); raises for a choice that can't be."""
    import tf_keras

    candidates = [layer for layer in _surgery.layers(model) if not isinstance(layer, tf_keras.layers.InputLayer)]
    kernel_of = _default_kernel_of if layers is None else _kernel_of
    chosen = _layers.choose_layers(candidates, structure, layers, kernel_of, described="layers of the model")
    if isinstance(masks.parse(_OWNER, structure), tuple):
        for layer in chosen:
            rank = _rank_tfmot_cannot_group(layer)
            _checks.satisfies(
                _OWNER, "structure", structure, rank is None,
                f"None for layer '{layer.name}' ({type(layer).__name__}) of a tf_keras model: tfmot's \"N:M\" takes "
                f"2D (Dense) and 4D (Conv2D) kernels only, not its {rank}D kernel. Leave it out of `layers`, or carry "
                "the model to Keras 3 (tfopt.compat.to_keras3), whose tfopt pruning groups Conv1D, Conv3D and "
                "SeparableConv1D kernels too",
            )
    return {id(layer) for layer in chosen}


def prune_low_magnitude(model, schedule, structure=None, layers=None):
    """A copy of the tf_keras `model` whose chosen layers tfmot prunes while it trains (see the module docstring).

    `model` itself is not changed.

    Args:
        model: a tf_keras Sequential or functional model.
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: None or "N:M" (N zeros in every M weights along the input axis). Defaults to `None`.
        layers: which layers to prune: a layer class, a layer name, a function `layer -> bool`, or a list of them
            (a layer matching any is pruned; tfmot raises for one it can't prune). Defaults to `None`: the layers
            tfopt prunes in a Keras 3 model (Dense, Conv, SeparableConv and DepthwiseConv; under "N:M" Dense,
            Conv2D and SeparableConv2D only, the kernels tfmot groups).

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
    api = _sparsity_api()
    params = {"pruning_schedule": pruning_schedule(schedule), "sparsity_m_by_n": _m_by_n(structure)}
    chosen = _choose(model, structure, layers)

    def replace(layer):
        if id(layer) not in chosen:
            return None
        inner = prunable_depthwise_classes().get(type(layer), type(layer)).from_config(layer.get_config())
        return api.prune_low_magnitude(inner, **params), inner, layer.get_weights()

    return _surgery.clone_with(model, replace)


def update_pruning_step():
    """tfmot's `UpdatePruningStep` callback, which a tfmot-pruned model needs in `fit`."""
    return _sparsity_api().UpdatePruningStep()


def strip_pruning(model):
    """The tf_keras `model` without tfmot's pruning wrappers, keeping the pruned (sparse) weights.

    A `PrunableDepthwiseConv1D/2D` becomes the plain tf_keras layer again, so no tfopt class is left.
    """
    plain = {prunable: base for base, prunable in prunable_depthwise_classes().items()}

    def replace(layer):
        if type(layer) not in plain:
            return layer, None, None
        new_layer = plain[type(layer)].from_config(layer.get_config())
        return new_layer, new_layer, layer.get_weights()

    return _surgery.clone_with(_sparsity_api().strip_pruning(model), replace)

"""`PruneLowMagnitude`: the wrapper around each pruned layer of a Keras 3 model; it holds the mask and the step."""

import keras
import numpy as np
from keras import ops

from tfopt import _checks, _surgery
from tfopt.prune import _layers, masks
from tfopt.prune.schedules import PruningSchedule

_OWNER = "PruneLowMagnitude"


@keras.saving.register_keras_serializable(package="tfopt")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Prunes the kernel of the layer it wraps by magnitude, on a schedule, inside the training step.

    `tfopt.prune.prune_low_magnitude` puts it around the layers it prunes; it is public for `isinstance` checks
    and for loading saved models. It carries Keras masks on as the layer it wraps does. It owns two non-trainable
    variables, saved with the model: `mask` (0. or 1., shaped as the kernel) and `pruning_step` (its training calls
    so far: one per batch in `fit`, as `prune_low_magnitude` refuses a layer the model calls more than once). In
    each of them:

    ```python
    pruning_step += 1                                  # 1 in the first training batch, as tfmot
    if schedule.should_update(pruning_step):
        mask = masks.mask(kernel, structure, schedule.sparsity(pruning_step))
    kernel = kernel * mask                             # before the forward pass
    ...                                                # the optimizer step, then its constraint:
    kernel = kernel * mask                             # pruned weights stay exactly 0 under any optimizer
    ```

    All of it runs in the compiled training step, so updating a mask never retraces it. Without the
    `tfopt.prune.UpdatePruningStep` callback in `fit`, the first training step raises a `ValueError` as it is traced.

    Args:
        layer: the Keras 3 layer to prune (see `tfopt.prune.prune_low_magnitude` for the classes).
        schedule: a `tfopt.prune.ConstantSparsity` or `tfopt.prune.PolynomialDecay`.
        structure: None, "channel" or "N:M" (see `tfopt.prune.prune_low_magnitude`; "head": `PruneHeads`).
            Defaults to `None`.
        **kwargs: base layer keywords; `name` defaults to `"prune_low_magnitude_" + layer.name`.
    """

    def __init__(self, layer, schedule, structure=None, **kwargs):
        kernel = self._describe(layer)
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, autocast=False, **kwargs)  # reads and writes the float32 kernel in any policy
        self.supports_masking = layer.supports_masking
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        self.schedule = _checks.instance(_OWNER, "schedule", schedule, PruningSchedule, "a tfopt.prune schedule")
        self.structure = structure
        self._pattern = masks.parse(_OWNER, structure)
        self._kernel = kernel
        self.updates_enabled = False  # set by UpdatePruningStep while `fit` runs

    @staticmethod
    def _describe(layer):
        """The `Kernel` description of `layer`; raises for a layer this wrapper can't prune."""
        kernel = _layers.kernel_of(layer)
        _checks.satisfies(_OWNER, "layer", layer, kernel is not None and kernel is not _layers.ATTENTION,
                          f"a layer of class {_layers.PRUNABLE} (a MultiHeadAttention: PruneAttention, PruneHeads)")
        return kernel

    @property
    def pruned_kernel(self):
        """The wrapped layer's variable this wrapper prunes."""
        return getattr(self.layer, self._kernel.attribute)

    def build(self, input_shape=None):
        super().build(input_shape)
        kernel = self.pruned_kernel
        self.mask = self.add_weight(
            name="mask", shape=kernel.shape, initializer="ones", dtype=kernel.dtype, trainable=False
        )
        self.pruning_step = self.add_weight(
            name="pruning_step", shape=(), initializer="zeros", dtype="int64", trainable=False
        )
        kernel.constraint = _surgery.masked_constraint(self.mask, kernel.constraint)

    def _mask_variables(self):
        """The mask variable, or a tuple of them, whose values `_mask_at` computes (in the same structure)."""
        return self.mask

    def _mask_at(self, sparsity):
        """The mask for `sparsity`, from the current weights."""
        kernel = self._kernel
        return masks.mask(self.pruned_kernel, self._pattern, sparsity, kernel.filter_axes, kernel.transposed)

    def _apply_mask(self):
        """Zeroes the pruned weights."""
        self.pruned_kernel.assign(self.pruned_kernel * self.mask)

    def masked_weights(self):
        """The wrapped layer's weights as NumPy arrays (in `layer.weights` order), the pruned ones zeroed."""
        kernel, mask = self.pruned_kernel, np.asarray(self.mask)
        return [np.asarray(weight) * mask if weight is kernel else np.asarray(weight) for weight in self.layer.weights]

    def _advance(self, training):
        """In training: counts a step, recomputes the mask when the schedule says so, and zeroes the pruned weights."""
        if not training:
            return
        if not self.updates_enabled:
            raise ValueError(
                f"{_OWNER}: layer '{self.name}' is trained without the UpdatePruningStep callback, so its "
                "pruning schedule cannot advance. Compile the model again (Keras cannot retrace a training "
                "step whose first trace failed) and pass `callbacks=[tfopt.prune.UpdatePruningStep()]` to `fit`."
            )
        step = self.pruning_step + 1
        self.pruning_step.assign(step)
        variables = self._mask_variables()
        values = ops.cond(
            self.schedule.should_update(step),
            lambda: self._mask_at(self.schedule.sparsity(step)),
            lambda: keras.tree.map_structure(ops.convert_to_tensor, variables),
        )
        keras.tree.map_structure(lambda variable, value: variable.assign(value), variables, values)
        self._apply_mask()

    def call(self, inputs, training=None):
        self._advance(training)
        return self.layer(inputs)

    def compute_mask(self, inputs, previous_mask=None):
        return self.layer.compute_mask(inputs, previous_mask)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        schedule = keras.saving.serialize_keras_object(self.schedule)
        return {**super().get_config(), "schedule": schedule, "structure": self.structure}


def pruned_layers(model):
    """The `PruneLowMagnitude` layers of a Keras 3 model, nested models included."""
    return [layer for layer in _surgery.layers(model) if isinstance(layer, PruneLowMagnitude)]

"""Fake quantization of weights and activations, in the TensorFlow ops the TFLite converter turns into int kernels.

`keras.quantizers.fake_quant_with_min_max_vars` lowers to `tf.quantization.fake_quant_with_min_max_vars(_per_channel)`
on the TensorFlow backend; the converter reads the ranges of those ops as the int8/int16 quantization parameters.
Both pass gradients straight through inside the range (the straight-through estimator).
"""

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks, _surgery
from tfopt.quantize import schemes

_TINY = 1e-8  # keeps a range of all-zero weights or activations from being empty


def fake_quant_weights(kernel, axis=None, bits=8):
    """`kernel` rounded to `bits`-bit symmetric levels (zero point 0, narrow range), per channel along `axis`.

    ```python
    a = max(|kernel|)                      # over everything but `axis`; treated as a constant for gradients
    kernel_q = round(kernel / s) * s       # s = a / (2 ** (bits - 1) - 1); levels -127..127 for 8 bits
    ```

    Args:
        kernel: the (folded) kernel.
        axis: the output-channel axis for per-channel ranges, or None for one range. Defaults to `None`.
        bits: the weight bit width. Defaults to `8`.

    Example:
    >>> import numpy as np
    >>> from tfopt.quantize.quantizers import fake_quant_weights
    >>> np.asarray(fake_quant_weights(np.array([1.27, -0.5, 0.003], "float32"))).astype("float64").round(4).tolist()
    [1.27, -0.5, 0.0]
    """
    _checks.integer("fake_quant_weights", "bits", bits, low=2, high=16)
    reduce_axes = None if axis is None else [a for a in range(len(kernel.shape)) if a != axis % len(kernel.shape)]
    bound = ops.maximum(ops.stop_gradient(ops.max(ops.abs(kernel), axis=reduce_axes)), _TINY)
    return keras.quantizers.fake_quant_with_min_max_vars(
        kernel, -bound, bound, num_bits=bits, narrow_range=True, axis=axis
    )


class QuantizationAware:
    """Marks tfopt's QAT layers; `tfopt.quantize.scheme_of` reads their `scheme` attribute. They carry Keras masks
    (`Embedding(mask_zero=True)`'s) on as the layer they wrap does: a wrapper sets `supports_masking` from it."""

    def compute_mask(self, inputs, previous_mask=None):
        layer = getattr(self, "layer", None)
        return previous_mask if layer is None else layer.compute_mask(inputs, previous_mask)


class QuantizeWrapper(QuantizationAware, keras.layers.Wrapper):
    """The base of the QAT wrappers that recompute a layer: named `"quantize_" + layer.name` unless given a name,
    computing in float32 under any policy, with `scheme` in their config and its `Scheme` as `_scheme`.

    With `preserve_sparsity=True`, the zeros of the kernels `_sparse_kernels()` names stay exactly zero through
    training: `_keep_sparsity()` (a subclass calls it at the end of `build`) gives each a `sparsity_mask` held by a
    constraint, as a pruning mask is, and `keep_current_zeros()` sets the masks from the kernels' zeros."""

    def __init__(self, layer, scheme="int8", preserve_sparsity=False, **kwargs):
        kwargs.setdefault("name", f"quantize_{layer.name}")
        super().__init__(layer, autocast=False, **kwargs)
        self.supports_masking = layer.supports_masking
        self.scheme = scheme
        self._scheme = schemes.get(type(self).__name__, scheme)
        self.preserve_sparsity = _checks.boolean(type(self).__name__, "preserve_sparsity", preserve_sparsity)
        self.sparsity_masks = []

    def _sparse_kernels(self):
        """The wrapped layer's kernels whose zeros `preserve_sparsity` keeps (none unless a subclass names some)."""
        return []

    def _keep_sparsity(self):
        if not self.preserve_sparsity:
            return
        for index, kernel in enumerate(self._sparse_kernels()):
            mask = self.add_weight(name=f"sparsity_mask_{index}", shape=kernel.shape, initializer="ones",
                                   dtype=kernel.dtype, trainable=False)
            kernel.constraint = _surgery.masked_constraint(mask, kernel.constraint)
            self.sparsity_masks.append(mask)

    def keep_current_zeros(self):
        """Sets each `sparsity_mask` from its kernel's current zeros (`quantize_model` calls it once weights are
        in)."""
        for kernel, mask in zip(self._sparse_kernels(), self.sparsity_masks, strict=True):
            mask.assign(ops.cast(ops.not_equal(kernel, 0.0), mask.dtype))

    def get_config(self):
        return {**super().get_config(), "scheme": self.scheme, "preserve_sparsity": self.preserve_sparsity}


def _global_range(low, high):
    """(min of the replicas' `low`, max of their `high`) under a `tf.distribute` strategy; (low, high) without.

    Each replica sees its share of the global batch: averaging their ranges would learn a narrower range than one
    device on the same batch. One collective a step: each replica writes `[low, -high]` into its own row of zeros and
    the rows are summed (adding zeros is exact), where an `all_gather` costs two. Every replica gets the same
    values, so the variables keep the first replica's ("only_first_replica" aggregation: no more collectives).
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return low, high
    replicas = context.num_replicas_in_sync
    own_row = ops.one_hot(context.replica_id_in_sync_group, replicas, dtype="float32")
    rows = context.all_reduce(tf.distribute.ReduceOp.SUM, own_row[:, None] * ops.stack([low, -high])[None, :])
    lowest = ops.min(rows, axis=0)
    return lowest[0], -lowest[1]


@keras.saving.register_keras_serializable(package="tfopt")
class QuantizeActivation(QuantizationAware, keras.layers.Layer):
    """Fake-quantizes a tensor to the range it takes in training, tracked by a moving average.

    ```python
    if training:                                       # per batch
        low, high = min(min(x), 0), max(max(x), 0)     # the range always holds 0 (it must be exact)
        min_var = low if first batch else decay * min_var + (1 - decay) * low
        max_var = ... the same with high
    x = fake_quant(x, min_var, max_var, bits)          # int8: asymmetric; 16x8: [-a, a], a = max(|min|, |max|)
    ```

    The variables are saved with the model; the TFLite converter reads them as the tensor's quantization range.

    Args:
        scheme: "int8" or "16x8" (see `tfopt.quantize.quantize_model`). Defaults to `"int8"`.
        decay: the moving average's decay per batch. Defaults to `0.99`.
        **kwargs: base layer keywords.

    Example:
    >>> import numpy as np
    >>> from tfopt.quantize import QuantizeActivation
    >>> quantizer = QuantizeActivation()
    >>> _ = quantizer(np.array([[0.0, 1.0, 2.0]], "float32"), training=True)
    >>> float(quantizer.max_value.numpy())
    2.0
    """

    def __init__(self, scheme="int8", decay=0.99, **kwargs):
        super().__init__(autocast=False, **kwargs)  # its float32 ranges stay float32 under mixed precision
        self.scheme = scheme
        self._scheme = schemes.get(type(self).__name__, scheme)
        self.decay = _checks.fraction(type(self).__name__, "decay", decay)

    def build(self, input_shape=None):
        def state(name):
            return self.add_weight(
                name=name, shape=(), initializer="zeros", dtype="float32", trainable=False,
                aggregation="only_first_replica",
            )

        self.min_value = state("min_value")
        self.max_value = state("max_value")
        self.batches_seen = state("batches_seen")

    def _track(self, inputs):
        """Moves the range toward this batch's and returns it as (low, high) tensors, which the fake quant takes
        instead of reading the variables again. The batch's range carries no gradient to `inputs`."""
        inputs = ops.stop_gradient(ops.cast(inputs, "float32"))
        low, high = _global_range(ops.minimum(ops.min(inputs), 0.0), ops.maximum(ops.max(inputs), 0.0))
        seen = ops.convert_to_tensor(self.batches_seen)
        first = ops.equal(seen, 0.0)
        low = ops.where(first, low, self.decay * ops.convert_to_tensor(self.min_value) + (1.0 - self.decay) * low)
        high = ops.where(first, high, self.decay * ops.convert_to_tensor(self.max_value) + (1.0 - self.decay) * high)
        self.min_value.assign(low)
        self.max_value.assign(high)
        self.batches_seen.assign(seen + 1.0)
        return low, high

    def call(self, inputs, training=None):
        low, high = self._track(inputs) if training else (self.min_value, self.max_value)
        return self._fake_quant(inputs, low, high)

    def _fake_quant(self, inputs, low, high):
        """`inputs` fake-quantized to [low, high], made symmetric around 0 for the 16x8 scheme."""
        if self._scheme.symmetric_activations:
            high = ops.maximum(ops.maximum(-low, high), _TINY)
            low = -high
        else:
            high = ops.maximum(high, low + _TINY)
        return keras.quantizers.fake_quant_with_min_max_vars(
            inputs, low, high, num_bits=self._scheme.activation_bits, narrow_range=self._scheme.symmetric_activations
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scheme": self.scheme, "decay": self.decay}

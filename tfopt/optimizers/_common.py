"""What several tfopt optimizers share: gradient preparation, Adam's and RAdam's step-size terms, the decay mixin and
the base of the wrapper optimizers. No optimizer module imports another; they all import from here (and the
step over all variables at once from `_fused`).

Example:
    >>> import numpy as np
    >>> from tfopt.optimizers import _common
    >>> round(float(_common.adam_bias_correction(0.9, 0.999, np.float32(1.0))), 4)  # sqrt(0.001) / 0.1
    0.3162
"""

import math

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks, _compat


def dense_gradient(gradient, dtype):
    """`gradient` as a dense tensor of `dtype`, the form every element-wise update rule needs.

    Two kinds of gradient reach `update_step` in another form (measured with Keras 3.15, TensorFlow backend):

    - an `Embedding` (any `gather`) yields a `tf.IndexedSlices`, which Keras hands over as it is; `ops.square`,
      norms and `ops.where` need the dense tensor it stands for. (`LazyAdam` keeps the slices on purpose.)
    - a gradient given to `apply_gradients` directly keeps its own dtype: a NumPy array is float64, a user may pass
      float16; the moments are the variable's dtype, and TensorFlow refuses to mix them.

    Mixed precision is not a reason: under `mixed_float16` a float32 variable's gradient already arrives in float32.

    Example:
        >>> import tensorflow as tf
        >>> from tfopt.optimizers._common import dense_gradient
        >>> rows = tf.IndexedSlices(tf.constant([[1.0, 2.0]]), tf.constant([1]), tf.constant([3, 2]))
        >>> dense_gradient(rows, "float64").numpy().tolist()
        [[0.0, 0.0], [1.0, 2.0], [0.0, 0.0]]
    """
    return ops.cast(tf.convert_to_tensor(gradient), dtype)


def is_sparse(gradient):
    """True for the `tf.IndexedSlices` gradient of an `Embedding` (any `gather`), which reaches `update_step` as is."""
    return isinstance(gradient, tf.IndexedSlices)


def replica_sum(tensors):
    """`tensors` summed over the replicas of a `tf.distribute` strategy, as Keras sums gradients before a step.

    A wrapper's `apply` runs in each replica with that replica's gradients; the inner optimizer sums them itself, so a
    wrapper that reads the gradients (`Cautious`) must sum them too, or each replica would decide on its own part.
    On one device (or outside a replica context) `tensors` are returned as they are.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return list(tensors)
    return context.all_reduce(tf.distribute.ReduceOp.SUM, list(tensors))


def adam_bias_correction(beta_1, beta_2, step):
    """Adam's correction of the step size at the 1-based `step`: `sqrt(1 - beta_2**step) / (1 - beta_1**step)`.

    `step` is a float tensor; the result has its dtype. LazyAdam, Yogi and Prodigy correct their steps this way.
    """
    return ops.sqrt(1 - ops.power(beta_2, step)) / (1 - ops.power(beta_1, step))


def debias(beta, step):
    """`1 - beta**step` for a Python float `beta` and a float tensor `step`, accurate in float32.

    Written as `-expm1(step * log(beta))` with the logarithm taken in Python: float32's own `1 - 0.999**1` is off by
    1.3e-5 relative (1.7e-4 for 0.9999: the betas are not exact in float32), enough to fail a float64 reference; this
    form errs by ~1e-7. No float64 enters the step.

    Example:
        >>> import numpy as np
        >>> from tfopt.optimizers._common import debias
        >>> abs(float(debias(0.999, np.float32(1.0))) / 0.001 - 1) < 1e-6  # float32's 1 - 0.999: 1.3e-5 off
        True
    """
    if beta == 0:
        return ops.ones_like(step)
    return -ops.expm1(step * math.log(beta))


def sma_length(beta_2, step):
    """RAdam's SMA length `rho_t = rho_inf - 2 t beta_2**t / (1 - beta_2**t)` in float32, accurate to ~1e-7 relative.

    Both terms are near `2 / (1 - beta_2)` early on (float32 misplaces their difference by ~1e-2 for 0.999, enough to
    take the wrong branch), so the difference is taken analytically: with `u = -log(beta_2)` and `x = t u`,
    `rho_t = [2 / (1 - beta_2) - 1 - 2 / u] + (2 / u) * (1 - x / expm1(x))`, the bracket in Python's float64 (a
    constant), `1 - x / expm1(x)` by its series below x = 0.5.

    Example:
        >>> import numpy as np
        >>> from tfopt.optimizers._common import sma_length
        >>> round(float(sma_length(0.999, np.float32(6.0))), 5)  # 1999 - 12 * 0.999**6 / (1 - 0.999**6) = 5.99416
        5.99416
    """
    u = -math.log(beta_2)
    constant = 2 / (1 - beta_2) - 1 - 2 / u
    x = step * u
    series = x / 2 - x**2 / 12 + x**4 / 720 - x**6 / 30240
    direct = 1 - x / ops.expm1(ops.maximum(x, 0.5))
    return constant + (2 / u) * ops.where(x < 0.5, series, direct)


def rectification(beta_2, step):
    """RAdam's SMA length `rho_t` and rectified step factor `r_t * sqrt(1 - beta_2**t)` at the 1-based float32 `step`.

    Both in float32 without float64 (TPUs have none), to ~1e-7 relative: `rho_t` from `sma_length`, `1 - beta_2**t`
    from `debias`. The rectified step is `learning_rate * m_hat * factor / (sqrt(v) + epsilon)`, with `v` not
    bias-corrected. RAdam and AdaBelief's `rectify` use it, each with its own threshold.

    Example:
        >>> import numpy as np
        >>> from tfopt.optimizers._common import rectification
        >>> rho, factor = rectification(0.999, np.float32(6.0))
        >>> round(float(rho), 5), round(float(factor), 7)  # float64: 5.99416, 0.0019976
        (5.99416, 0.0019976)
    """
    rho_inf = 2 / (1 - beta_2) - 1
    rho = sma_length(beta_2, step)
    ratio = (rho - 4) * (rho - 2) * (rho_inf / ((rho_inf - 4) * (rho_inf - 2))) / rho
    # Below the threshold the ratio may be negative; callers select the un-rectified step there.
    return rho, ops.sqrt(ops.maximum(ratio, 0.0) * debias(beta_2, step))


class DecayInUpdateRule:
    """A mixin for optimizers whose update rule applies `weight_decay` itself (LARS, NovoGrad, Prodigy, Adan).

    Keras's base class shrinks every variable by `learning_rate * weight_decay` before the step; these rules decay
    elsewhere (inside the gradient, or scaled by their own step size), so the base's decay is turned off and the
    rule asks `_decay_for(variable)`, which honours `exclude_from_weight_decay`.
    """

    def _apply_weight_decay(self, variables):
        """Does nothing: the update rule applies the decay (overrides a private hook of Keras's base optimizer)."""

    def _decay_for(self, variable):
        """`weight_decay` for `variable`, or 0.0 if it is unset or `variable` is excluded from weight decay."""
        if self.weight_decay and _compat.optimizer_decays(self, variable):
            return self.weight_decay
        return 0.0


class SwitchableDecay:
    """A mixin for optimizers with a `decoupled_weight_decay` switch (RAdam, ADOPT, QHAdam, AdaBound): True keeps
    Keras's decoupled (AdamW) decay; False turns it off, and the update rule starts from `_with_l2(gradient,
    variable)`, the gradient plus `weight_decay * variable` (coupled L2), honouring `exclude_from_weight_decay`.
    """

    def _apply_weight_decay(self, variables):
        """Keras's decoupled decay, only with `decoupled_weight_decay=True` (overrides a private hook of Keras's base
        optimizer)."""
        if self.decoupled_weight_decay:
            super()._apply_weight_decay(variables)

    def _with_l2(self, gradient, variable):
        if self.weight_decay and not self.decoupled_weight_decay and _compat.optimizer_decays(self, variable):
            return gradient + ops.cast(self.weight_decay, gradient.dtype) * variable
        return gradient


class OptimizerWrapper(keras.optimizers.Optimizer):
    """The base of tfopt's wrapper optimizers: a Keras 3 optimizer that hands every step to `inner_optimizer`.

    It follows Keras's `LossScaleOptimizer`: the wrapper owns only its own slots, while the learning rate, the step
    counter, loss scaling and EMA finalisation stay the inner optimizer's. So `optimizer.learning_rate = x` (what
    `tfopt.callbacks.LRScheduler` and Keras's `ReduceLROnPlateau` do) sets the inner rate, schedules count the inner
    steps, and wrappers nest: `Lookahead(GradientCentralization(Adam()))`. A `LossScaleOptimizer` goes outside:
    `LossScaleOptimizer(Lookahead(Adam()))`, which is what `compile` builds from `Lookahead(Adam())` under
    `mixed_float16` (Keras scales the loss with the outermost optimizer only; one inside would unscale the
    gradients a second time, and is refused). Subclasses implement `_wrapped_apply`.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` that takes the steps.
        name: the optimizer's name. Defaults to the class name.

    Example:
        >>> import keras
        >>> from tfopt.optimizers._common import OptimizerWrapper
        >>> class Halve(OptimizerWrapper):
        ...     def _wrapped_apply(self, grads, trainable_variables):
        ...         self.inner_optimizer.apply([g / 2 for g in grads], trainable_variables)
        >>> float(Halve(keras.optimizers.SGD(0.5)).learning_rate)
        0.5
    """

    def __init__(self, inner_optimizer, name=None):
        super().__init__(learning_rate=0.0, name=name)
        owner = type(self).__name__
        self.inner_optimizer = _checks.instance(
            owner, "inner_optimizer", inner_optimizer, keras.optimizers.Optimizer,
            "a Keras 3 optimizer (`keras.optimizers.Optimizer`)",
        )
        _checks.satisfies(
            owner, "inner_optimizer", inner_optimizer, not _holds_loss_scaling(inner_optimizer),
            f"an optimizer without a LossScaleOptimizer inside: put that outside, `LossScaleOptimizer({owner}(...))` "
            f"(what `compile` builds from `{owner}(...)` under mixed_float16; inside, the gradients are unscaled "
            "twice)",
        )

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}: the optimizer is not built, so `apply(grads)` needs "
                    "`trainable_variables`. Pass them, or call `optimizer.build(variables)` first."
                )
            trainable_variables = _compat.optimizer_trainable_variables(self)
        else:
            trainable_variables = list(trainable_variables)
            if not self.built:
                self.build(trainable_variables)
        self._wrapped_apply(list(grads), trainable_variables)

    def _wrapped_apply(self, grads, trainable_variables):
        """One step: the subclass's work around `self.inner_optimizer.apply(grads, trainable_variables)`."""
        raise NotImplementedError

    @property
    def variables(self):
        return super().variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self):
        # Not `super().get_config()`: the base keywords (learning rate, clipping, EMA) are the inner optimizer's.
        return {"name": self.name, "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner_optimizer = keras.saving.deserialize_keras_object(
            config.pop("inner_optimizer"), custom_objects=custom_objects
        )
        return cls(inner_optimizer, **config)


def _holds_loss_scaling(optimizer):
    """Whether `optimizer` is or wraps (at any depth) a Keras `LossScaleOptimizer`."""
    while optimizer is not None:
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            return True
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return False


def channel_sums(x):
    """The sums of `x` over all axes but the last (the output channel), kept as size-1 axes.

    Taken as a matrix-vector product: on CPU, `ops.sum(x, axis=(0, ...))` over the leading axes of a 1024 x 1024
    kernel took ~5x as long (one thread, TensorFlow 2.21).

    Example:
        >>> import numpy as np
        >>> from tfopt.optimizers._common import channel_sums
        >>> channel_sums(np.ones((2, 3, 4), "float32")).numpy().tolist()
        [[[6.0, 6.0, 6.0, 6.0]]]
    """
    x = ops.convert_to_tensor(x)
    rows = ops.reshape(x, (-1, x.shape[-1]))
    sums = ops.matmul(ops.ones((1, rows.shape[0]), x.dtype), rows)
    return ops.reshape(sums, (1,) * (len(x.shape) - 1) + (x.shape[-1],))


def radial_projection(variable, gradient, update, delta, epsilon):
    """AdamP's and SGDP's projection (Heo et al., 2021): `update` without its radial part, where `variable` looks
    scale-invariant. Returns `(update, projected)`, `projected` a scalar bool tensor; rank < 2 returns `update` as is.

    As the authors' `_projection`: per output channel first, if the largest |cosine| of a channel's gradient and
    weights is below `delta / sqrt(channel size)`; else over the whole variable, if its |cosine| is below
    `delta / sqrt(size)`. The output channel is Keras's last axis (PyTorch's first).
    """
    if len(variable.shape) < 2:
        return update, ops.zeros((), "bool")
    w = ops.convert_to_tensor(variable)
    size, channels = ops.size(w), variable.shape[-1]

    def cosine(dot, g_squares, w_squares):
        return ops.abs(dot / (ops.maximum(ops.sqrt(g_squares), epsilon) * ops.maximum(ops.sqrt(w_squares), epsilon)))

    w_squares = channel_sums(ops.square(w))
    g_squares = channel_sums(ops.square(gradient))
    dot = channel_sums(gradient * w)
    per_channel = ops.max(cosine(dot, g_squares, w_squares)) < delta * ops.sqrt(channels / ops.cast(size, w.dtype))
    whole = cosine(ops.sum(dot), ops.sum(g_squares), ops.sum(w_squares)) < delta / ops.sqrt(ops.cast(size, w.dtype))
    projected = ops.logical_or(per_channel, whole)

    def project():  # only when needed: most steps of most weights are not projected
        norm = ops.where(per_channel, ops.sqrt(w_squares), ops.sqrt(ops.sum(w_squares))) + epsilon
        unit = w / norm
        radial = channel_sums(unit * update)
        return update - unit * ops.where(per_channel, radial, ops.sum(radial))

    return ops.cond(projected, project, lambda: update), projected

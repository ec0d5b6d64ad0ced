"""`Lookahead`: k steps forward with any optimizer, then one step back towards slow weights (Zhang et al., 2019)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import OptimizerWrapper


@keras.saving.register_keras_serializable(package="tfopt")
class Lookahead(OptimizerWrapper):
    """Wraps any Keras 3 optimizer with Lookahead's slow weights.

    The inner optimizer takes every step on the model's weights (the "fast weights"). Every `sync_period` of its
    steps, the slow weights move a fraction `slow_step_size` of the way towards the fast weights, and the fast weights
    restart from there. The inner optimizer keeps its own state (momentum, moments) across the restarts, as in the
    paper's experiments.

    ```python
    slow = variable                                        # before the first step
    t = inner_optimizer.iterations after each step
    variable = inner_optimizer.step(variable, gradient)    # the fast weights
    if t % sync_period == 0:
        slow = slow + slow_step_size * (variable - slow)
        variable = slow
    ```

    The slow weights are optimizer variables, saved with the optimizer. As in `LossScaleOptimizer`, the learning
    rate and `iterations` are the inner optimizer's: setting `optimizer.learning_rate` sets the inner rate, so LR
    callbacks and schedules work through the wrapper. The sync is a `cond` on the step counter, so the optimizer runs
    eagerly, traced, under `jit_compile=True` and under `tf.distribute` strategies.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` taking the fast steps: any of Keras's, tfopt's, or
            another wrapper such as `GradientCentralization` (a `LossScaleOptimizer` goes outside:
            `LossScaleOptimizer(Lookahead(...))`).
        sync_period: the number `k` of inner steps between two syncs, an integer >= 1. Defaults to 5.
        slow_step_size: the fraction `alpha` of the way the slow weights move at a sync, in (0, 1]. 1 makes
            Lookahead the plain inner optimizer. Defaults to 0.5.
        name: the optimizer's name. Defaults to "lookahead".

    Example:
        >>> import keras
        >>> from tfopt.optimizers.lookahead import Lookahead
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        >>> model.compile(Lookahead(keras.optimizers.Adam(1e-3), sync_period=6, slow_step_size=0.5), "mse")

    References:
        Zhang, Lucas, Hinton and Ba, "Lookahead Optimizer: k steps forward, 1 step back", NeurIPS 2019.
        https://arxiv.org/abs/1907.08610
    """

    def __init__(self, inner_optimizer, sync_period=5, slow_step_size=0.5, name=None):
        super().__init__(inner_optimizer, name=name)
        self.sync_period = _checks.integer("Lookahead", "sync_period", sync_period, low=1)
        self.slow_step_size = _checks.number(
            "Lookahead", "slow_step_size", slow_step_size, low=0, high=1, closed="high"
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._slow_weights = self.add_optimizer_variables(var_list, "slow")

    def _wrapped_apply(self, grads, trainable_variables):
        pairs = [(self._slow_weights[_compat.optimizer_variable_index(self, v)], v) for v in trainable_variables]
        pairs = [(slow, fast) for slow, fast in pairs if slow is not None]
        ops.cond(ops.equal(self.iterations, 0), lambda: self._start(pairs), lambda: None)
        self.inner_optimizer.apply(grads, trainable_variables)
        ops.cond(ops.equal(self.iterations % self.sync_period, 0), lambda: self._sync(pairs), lambda: None)

    def _start(self, pairs):
        # At the first step, not in `build`: a build traced inside a tf.function would copy at every call, and the
        # model's weights may still be loaded or set between `build` and the first step.
        for slow, fast in pairs:
            self.assign(slow, fast)

    def _sync(self, pairs):
        for slow, fast in pairs:
            slow_step_size = ops.cast(self.slow_step_size, slow.dtype)
            moved = slow + slow_step_size * (ops.cast(fast, slow.dtype) - slow)
            self.assign(slow, moved)
            self.assign(fast, moved)

    def get_config(self):
        config = super().get_config()
        config.update({"sync_period": self.sync_period, "slow_step_size": self.slow_step_size})
        return config

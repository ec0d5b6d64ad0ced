"""Schedule-free RAdam: RAdam's rectified steps with schedule-free averaging, no warm-up (Defazio et al., 2024)."""

import keras
from keras import ops

from tfopt import _checks
from tfopt.optimizers._common import debias, dense_gradient, sma_length
from tfopt.optimizers._schedule_free import ScheduleFree


@keras.saving.register_keras_serializable(package="tfopt")
class ScheduleFreeRAdam(ScheduleFree, keras.optimizers.Optimizer):
    """Schedule-free RAdam: no schedule and no warm-up to set; RAdam's rectification warms the steps up itself.

    Three sequences per variable, as in `ScheduleFreeSGD`: `z` takes the steps, `x` averages `z`, and the gradient
    is taken at `y`, between them. At step `t` (from 1), with the learning rate `lr_t`:

    ```python
    v = beta_2 * v + (1 - beta_2) * g * g
    rho_inf = 2 / (1 - beta_2) - 1
    rho = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
    if rho > 4:
        lr = lr_t * sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        d = g / (sqrt(v / (1 - beta_2**t)) + epsilon)
    else:
        lr = 0 if silent_sgd_phase else lr_t     # the first 4 steps (beta_2 = 0.999) only fill v
        d = g
    d = d + weight_decay * y                     # the decay at y, after the normalisation
    lr_max = max(lr_max, lr); weight = t**r * lr_max**weight_lr_power; weight_sum += weight
    c = weight / weight_sum                      # 0 while weight_sum is 0
    y = (1 - c) * y + c * z + lr * (beta_1 * (1 - c) - 1) * d
    z = z - lr * d
    ```

    The model's variables hold `y` during training. At the end of `fit` (Keras calls `finalize_variable_values`)
    they are set to `x = (y - (1 - beta_1) * z) / beta_1`, so `evaluate`, `predict`, saving and export see the
    averaged weights; the next training step puts `y` back. Validation during `fit` sees `y`. This is the authors'
    `RAdamScheduleFree` (facebookresearch/schedule_free) as pytorch-optimizer 4.1.0's `ScheduleFreeRAdam` writes
    it, with their defaults. With `silent_sgd_phase=False`, pytorch-optimizer's early steps use a rate of 1.0
    whatever `learning_rate` is; the authors' (and here) use `learning_rate`. The authors' `radam_schedulefree.py`
    (at 51ee0b9) subtracts the `y` step (`y.sub_(grad, alpha=adaptive_y_lr)`), the opposite sign of their SGD and
    AdamW and of `y = (1 - beta_1) * z + beta_1 * x` after the step; pytorch-optimizer and tfopt add it. `rho` is
    computed in float32 in a form accurate to ~1e-7 (`_common.sma_length`), without float64. The decay is taken
    at `y` into the step, as in both, and skips the variables excluded with `exclude_from_weight_decay`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.0025`.
        beta_1: A float in (0, 1), the interpolation between `z` and `x`. Defaults to `0.9`.
        beta_2: A float in (0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to the denominator. Defaults to `1e-8`.
        r: A float >= 0, the power of `t` in the averaging weights. Defaults to `0.0`.
        weight_lr_power: A float >= 0, the power of the largest rate in the averaging weights. Defaults to `2.0`.
        silent_sgd_phase: A bool. If `True`, the steps before the rectification starts don't move the weights.
            Defaults to `True`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.ScheduleFreeRAdam(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([1.0, -1.0]), w)])
    >>> [round(float(x), 3) for x in w.numpy()]  # rho_1 = 1: the silent phase
    [1.0, 2.0]

    References:
        - [Defazio et al., 2024](https://arxiv.org/abs/2405.15682): The Road Less Scheduled.
        - [Authors' implementation](https://github.com/facebookresearch/schedule_free);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `ScheduleFreeRAdam`.
    """

    def __init__(
        self,
        learning_rate=0.0025,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        r=0.0,
        weight_lr_power=2.0,
        silent_sgd_phase=True,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "ScheduleFreeRAdam"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.number(owner, "beta_1", beta_1, low=0, high=1, closed="neither")
        self.beta_2 = _checks.number(owner, "beta_2", beta_2, low=0, high=1, closed="neither")
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.r = _checks.number(owner, "r", r, low=0)
        self.weight_lr_power = _checks.number(owner, "weight_lr_power", weight_lr_power, low=0)
        self.silent_sgd_phase = _checks.boolean(owner, "silent_sgd_phase", silent_sgd_phase)

    @property
    def _interpolation(self):
        return self.beta_1

    def build(self, var_list):
        """Creates `z` and the second moment of each variable, and the averaging state."""
        if self.built:
            return
        super().build(var_list)
        self._build_schedule_free(var_list)
        self._velocities = self.add_optimizer_variables(var_list, "velocity")

    def _directions(self, grads, variables, indices, learning_rate):
        """The step's rectified rate and each variable's direction, after updating its second moment."""
        step = ops.cast(self.iterations + 1, "float32")
        rho, rho_inf = sma_length(self.beta_2, step), 2 / (1 - self.beta_2) - 1
        rectified = rho > 4
        ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        rate = ops.cast(learning_rate, "float32")
        early = 0.0 if self.silent_sgd_phase else rate
        rate = ops.where(rectified, rate * ops.sqrt(ops.maximum(ratio, 0.0)), early)
        correction = ops.sqrt(debias(self.beta_2, step))
        grads = [dense_gradient(gradient, variable.dtype) for gradient, variable in zip(grads, variables)]
        velocities = [self._velocities[index] for index in indices]
        for gradient, v in zip(grads, velocities):
            self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))

        def normalized():
            return [
                gradient / (ops.sqrt(v) / ops.cast(correction, v.dtype) + self.epsilon)
                for gradient, v in zip(grads, velocities)
            ]

        # one cond per step rather than a `where` over every element of every variable
        grads = ops.cond(rectified, normalized, lambda: grads)
        return rate, [self._decayed(gradient, variable) for gradient, variable in zip(grads, variables)]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "r": self.r,
                "weight_lr_power": self.weight_lr_power,
                "silent_sgd_phase": self.silent_sgd_phase,
            }
        )
        return config

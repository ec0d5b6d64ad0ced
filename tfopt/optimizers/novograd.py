"""NovoGrad: SGD with momentum on gradients normalized by a per-layer second moment (Ginsburg et al., 2019)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, dense_gradient


@keras.saving.register_keras_serializable(package="tfopt")
class NovoGrad(DecayInUpdateRule, keras.optimizers.Optimizer):
    """NovoGrad: momentum on gradients normalized by a moving average of each layer's squared gradient norm.

    The second moment is one scalar per variable (layer), not one per weight as in Adam, which halves the memory
    of Adam's moments. The update rule of tensorflow-addons' `NovoGrad` for a variable `w` with gradient `g` at
    step `t` (from 1):

    ```python
    if t == 1:
        v = norm(g)**2
    else:
        v = beta_2 * v + (1 - beta_2) * norm(g)**2
    if amsgrad:
        v_max = maximum(v_max, v)
    g = g / (sqrt(v_max if amsgrad else v) + epsilon) + weight_decay * w
    if grad_averaging and t > 1:
        g = (1 - beta_1) * g
    m = beta_1 * m + learning_rate * g
    w = w - m
    ```

    The weight decay is coupled, as in the paper and tensorflow-addons: it enters the normalized gradient and
    skips the variables excluded with `exclude_from_weight_decay`. Implementations differ on the first step and on
    where the rate enters; this follows tensorflow-addons 0.23. The first step sets `v = norm(g)**2` and
    `m = learning_rate * g / norm(g)` (the paper's Algorithm 1 starts the moments from the first gradient the same
    way). The learning rate scales the momentum's input (Keras's momentum form); the paper writes
    `w = w - learning_rate_t * m_t`, the same rule at a constant rate but not under a schedule, where a rate change
    here reaches only the new gradients, there also the momentum already accumulated. pytorch-optimizer 3.9
    initialises `m` with the first normalized gradient and then adds it again (`m_1 = (1 + beta_1) * g_1 /
    norm(g_1)`) and scales the step by Adam's `sqrt(1 - beta_2**t) / (1 - beta_1**t)`; no argument reproduces
    either. The `grad_averaging` and `amsgrad` options, which the paper's algorithm lacks, are tensorflow-addons'.
    A `tf.IndexedSlices` gradient is applied as the dense gradient it stands for.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the momentum. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-7`.
        grad_averaging: A bool. If `True`, the momentum's input is scaled by `1 - beta_1` from step 2, an
            exponential moving average as in Adam. Defaults to `False`.
        amsgrad: A bool. If `True`, normalizes by the running maximum of `v` (AMSGrad). Defaults to `False`.
        weight_decay: `None` or a float >= 0, the coupled weight decay. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.NovoGrad(learning_rate=0.1)
    >>> w = keras.Variable([1.0, 2.0])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([3.0, -4.0]), w)])
    >>> w.numpy().astype("float64").round(4).tolist()  # the first step moves along g / ||g||
    [0.94, 2.08]

    References:
        - [Ginsburg et al., 2019](https://arxiv.org/abs/1905.11286): Stochastic Gradient Methods with Layer-wise
          Adaptive Moments for Training of Deep Networks.
        - [tensorflow-addons `NovoGrad`](https://www.tensorflow.org/addons/api_docs/python/tfa/optimizers/NovoGrad)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        grad_averaging=False,
        amsgrad=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "NovoGrad"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.grad_averaging = _checks.boolean(owner, "grad_averaging", grad_averaging)
        self.amsgrad = _checks.boolean(owner, "amsgrad", amsgrad)

    def build(self, var_list):
        """Creates the momentum of each variable and its scalar second moment (and running maximum)."""
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._second_moments = self._layer_scalars(var_list, "second_moment")
        if self.amsgrad:
            self._max_second_moments = self._layer_scalars(var_list, "max_second_moment")

    def _layer_scalars(self, var_list, name):
        """One scalar optimizer variable per model variable, named like `add_optimizer_variables` names slots."""
        scalars = []
        for variable in var_list:
            prefix = str(getattr(variable, "path", variable.name)).replace("/", "_").replace(":", "_")
            scalars.append(self.add_variable((), dtype=variable.dtype, name=f"{prefix}_{name}"))
        return scalars

    def update_step(self, gradient, variable, learning_rate):
        """Applies one NovoGrad step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._second_moments[index]
        first = ops.equal(self.iterations, 0)
        squared_norm = ops.sum(ops.square(gradient))
        self.assign(v, ops.where(first, squared_norm, self.beta_2 * v + (1 - self.beta_2) * squared_norm))
        if self.amsgrad:
            v_max = self._max_second_moments[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        gradient = gradient / (ops.sqrt(v) + self.epsilon)
        decay = self._decay_for(variable)
        if decay:
            gradient = gradient + decay * variable
        if self.grad_averaging:
            gradient = ops.where(first, gradient, (1 - self.beta_1) * gradient)
        self.assign(m, self.beta_1 * m + ops.cast(learning_rate, dtype) * gradient)
        self.assign_sub(variable, m)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "grad_averaging": self.grad_averaging,
                "amsgrad": self.amsgrad,
            }
        )
        return config

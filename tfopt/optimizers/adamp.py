"""AdamP: Adam that removes the radial part of the step of scale-invariant weights (Heo et al., 2021)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient, radial_projection


@keras.saving.register_keras_serializable(package="tfopt")
class AdamP(DecayInUpdateRule, keras.optimizers.Optimizer):
    """AdamP: Adam whose step on a scale-invariant weight (one followed by a normalisation) keeps its norm.

    The update rule for a variable `w` with gradient `g` at step `t` (from 1):

    ```python
    m = beta_1 * m + (1 - beta_1) * g
    v = beta_2 * v + (1 - beta_2) * g * g
    numerator = beta_1 * m + (1 - beta_1) * g if nesterov else m
    update = numerator / (sqrt(v) / sqrt(1 - beta_2**t) + epsilon)
    ratio = 1
    if rank(w) > 1:                                       # per output channel (Keras's last axis), else whole
        if max |cosine(g_c, w_c)| < delta / sqrt(size of a channel):  unit = w_c / (|w_c| + epsilon) per channel
        elif |cosine(g, w)| < delta / sqrt(size of w):                 unit = w / (|w| + epsilon)
        if either:
            update = update - unit * sum(unit * update)   # per channel or whole, as chosen
            ratio = wd_ratio
    w = w - learning_rate * weight_decay * ratio * w      # with the weights before the step
    w = w - learning_rate / (1 - beta_1**t) * update
    ```

    This is the authors' `adamp.py` (clovaai/AdamP at 146287b), whose defaults pytorch-optimizer 4.1.0 shares.
    The two place `epsilon` differently: the authors (and here) add it to the bias-corrected `sqrt(v_hat)`,
    pytorch-optimizer to `sqrt(v)` before the correction multiplies it; no argument reproduces that. The weight
    decay is decoupled, applied in the step with the projection's ratio (pytorch-optimizer's coupled
    `weight_decouple=False` reaches the gradient after it is used, so it has no effect there, and is left out); it
    skips the variables excluded with `exclude_from_weight_decay`. PyTorch keeps output channels first; they are
    Keras's last axis here, so a Dense or Conv kernel is projected per output unit as in PyTorch.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to the denominator, the norms and the cosines'. Defaults to `1e-8`.
        delta: A float > 0, the cosine threshold (times `sqrt` of the size) below which a weight counts as
            scale-invariant. Defaults to `0.1`.
        wd_ratio: A float >= 0 scaling the weight decay of projected weights. Defaults to `0.1`.
        nesterov: A bool. If `True`, the step uses Nesterov's momentum. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.AdamP(learning_rate=0.1)
    >>> w = keras.Variable([[3.0], [4.0]])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([[4.0], [-3.0]]), w)])  # orthogonal to w
    >>> [round(float(x), 3) for x in w.numpy().ravel()]  # the sign step less its radial part: |w| stays ~5
    [2.888, 4.084]

    References:
        - [Heo et al., 2021](https://arxiv.org/abs/2006.08217): AdamP: Slowing Down the Slowdown for Momentum
          Optimizers on Scale-invariant Weights.
        - [Authors' implementation](https://github.com/clovaai/AdamP);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `AdamP`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        delta=0.1,
        wd_ratio=0.1,
        nesterov=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "AdamP"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.delta = _checks.number(owner, "delta", delta, low=0, closed="neither")
        self.wd_ratio = _checks.number(owner, "wd_ratio", wd_ratio, low=0)
        self.nesterov = _checks.boolean(owner, "nesterov", nesterov)

    def build(self, var_list):
        """Creates the first and second moment of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])

    def update_step(self, gradient, variable, learning_rate):
        """Applies one AdamP step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        m, v = self._momentums[index], self._velocities[index]
        step = ops.cast(self.iterations + 1, dtype)
        self.assign_add(m, (gradient - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
        numerator = self.beta_1 * m + (1 - self.beta_1) * gradient if self.nesterov else m
        update = numerator / (ops.sqrt(v) / ops.sqrt(debias(self.beta_2, step)) + self.epsilon)
        update, projected = radial_projection(variable, gradient, update, self.delta, self.epsilon)
        rate = ops.cast(learning_rate, dtype)
        step_size = rate / debias(self.beta_1, step)
        decay = self._decay_for(variable)
        if decay:
            ratio = ops.where(projected, ops.cast(self.wd_ratio, dtype), ops.ones((), dtype))
            self.assign(variable, variable * (1 - rate * decay * ratio) - step_size * update)
        else:
            self.assign_sub(variable, step_size * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "delta": self.delta,
                "wd_ratio": self.wd_ratio,
                "nesterov": self.nesterov,
            }
        )
        return config

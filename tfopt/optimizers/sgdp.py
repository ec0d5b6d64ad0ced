"""SGDP: SGD with momentum that removes the radial part of the step of scale-invariant weights (Heo et al., 2021)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, dense_gradient, radial_projection


@keras.saving.register_keras_serializable(package="tfopt")
class SGDP(DecayInUpdateRule, keras.optimizers.Optimizer):
    """SGDP: SGD with momentum whose step on a scale-invariant weight (one followed by a normalisation) keeps its norm.

    The update rule for a variable `w` with gradient `g`:

    ```python
    buffer = momentum * buffer + (1 - dampening) * g
    update = g + momentum * buffer if nesterov else buffer
    ratio = 1
    if rank(w) > 1:                                       # per output channel (Keras's last axis), else whole
        if max |cosine(g_c, w_c)| < delta / sqrt(size of a channel):  unit = w_c / (|w_c| + epsilon) per channel
        elif |cosine(g, w)| < delta / sqrt(size of w):                 unit = w / (|w| + epsilon)
        if either:
            update = update - unit * sum(unit * update)   # per channel or whole, as chosen
            ratio = wd_ratio
    w = w - learning_rate * weight_decay * ratio / (1 - momentum) * w
    w = w - learning_rate * update
    ```

    This is the authors' `sgdp.py` (clovaai/AdamP at 146287b) with pytorch-optimizer 4.1.0's `SGDP` defaults
    (the authors have no default learning rate). The momentum buffer starts at zero, so the first step is
    `(1 - dampening) * g` (PyTorch's `SGD` starts it at `g`). The weight decay is decoupled, scaled by
    `1 / (1 - momentum)` and the projection's ratio, as in both (pytorch-optimizer's coupled `weight_decouple=False`
    reaches the gradient after it is used and has no effect there, and is left out); it skips the variables
    excluded with `exclude_from_weight_decay`. PyTorch keeps output channels first; they are Keras's last axis
    here, so a Dense or Conv kernel is projected per output unit as in PyTorch.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        momentum: A float in [0, 1). Defaults to `0.0`.
        dampening: A float in [0, 1], the part of the gradient left out of the momentum buffer. Defaults to `0.0`.
        epsilon: A float >= 0 added to the norms and the cosines' denominators. Defaults to `1e-8`.
        delta: A float > 0, the cosine threshold (times `sqrt` of the size) below which a weight counts as
            scale-invariant. Defaults to `0.1`.
        wd_ratio: A float >= 0 scaling the weight decay of projected weights. Defaults to `0.1`.
        nesterov: A bool. If `True`, the step uses Nesterov's momentum. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.SGD`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.SGDP(learning_rate=0.1)
    >>> w = keras.Variable([[3.0], [4.0]])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([[0.8], [-0.6]]), w)])  # orthogonal to w
    >>> [round(float(x), 3) for x in w.numpy().ravel()]  # an orthogonal step is already tangent: kept whole
    [2.92, 4.06]

    References:
        - [Heo et al., 2021](https://arxiv.org/abs/2006.08217): AdamP: Slowing Down the Slowdown for Momentum
          Optimizers on Scale-invariant Weights.
        - [Authors' implementation](https://github.com/clovaai/AdamP);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `SGDP`.
    """

    def __init__(
        self,
        learning_rate=0.001,
        momentum=0.0,
        dampening=0.0,
        epsilon=1e-8,
        delta=0.1,
        wd_ratio=0.1,
        nesterov=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "SGDP"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.momentum = _checks.fraction(owner, "momentum", momentum)
        self.dampening = _checks.number(owner, "dampening", dampening, low=0, high=1)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.delta = _checks.number(owner, "delta", delta, low=0, closed="neither")
        self.wd_ratio = _checks.number(owner, "wd_ratio", wd_ratio, low=0)
        self.nesterov = _checks.boolean(owner, "nesterov", nesterov)

    def build(self, var_list):
        """Creates the momentum buffer of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def update_step(self, gradient, variable, learning_rate):
        """Applies one SGDP step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        buffer = self._momentums[_compat.optimizer_variable_index(self, variable)]
        self.assign(buffer, self.momentum * buffer + (1 - self.dampening) * gradient)
        update = gradient + self.momentum * buffer if self.nesterov else ops.convert_to_tensor(buffer)
        update, projected = radial_projection(variable, gradient, update, self.delta, self.epsilon)
        rate = ops.cast(learning_rate, dtype)
        updated = variable
        decay = self._decay_for(variable)
        if decay:
            ratio = ops.where(projected, ops.cast(self.wd_ratio, dtype), ops.ones((), dtype))
            updated = updated * (1 - rate * (decay / (1 - self.momentum)) * ratio)
        self.assign(variable, updated - rate * update)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "dampening": self.dampening,
                "epsilon": self.epsilon,
                "delta": self.delta,
                "wd_ratio": self.wd_ratio,
                "nesterov": self.nesterov,
            }
        )
        return config

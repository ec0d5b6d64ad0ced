"""LARS: SGD with momentum and a per-layer trust ratio (You et al., 2017)."""

import re

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, dense_gradient


@keras.saving.register_keras_serializable(package="tfopt")
class LARS(DecayInUpdateRule, keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling: SGD with momentum whose rate each layer scales by its own trust ratio.

    Each variable's step is `learning_rate` times a local rate that keeps `||step|| / ||w||` near `eta`, so large
    batches can train with large learning rates. The update rule of the paper's Algorithm 1, with `epsilon`, a local
    rate of 1 where a norm is 0 and optional Nesterov momentum, for a variable `w` with gradient `g`:

    ```python
    wd = weight_decay if decayed(w) else 0.0
    local_lr = 1.0
    if adapted(w) and norm(w) > 0 and norm(g) > 0:
        local_lr = eta * norm(w) / (norm(g) + wd * norm(w) + epsilon)
    g = g + wd * w                                   # coupled weight decay
    v = momentum * v + learning_rate * local_lr * g
    w = w - (momentum * v + learning_rate * local_lr * g if nesterov else v)
    ```

    `norm` is the L2 norm of the whole variable. Implementations differ on the trust ratio's denominator; this
    follows the paper, `norm(g) + wd * norm(w)`. TF Model Garden's LARS (`classic_momentum=True`) divides by the
    norm of the decayed gradient, `norm(g + wd * w)`, which is smaller or equal (the triangle inequality) and so
    gives larger local rates; pytorch-optimizer 3.9 divides by `norm(g)` alone and applies the learning rate after
    the momentum. All three agree without weight decay (pytorch-optimizer's momentum form then differs only when the
    rate changes); no argument reproduces the other two. As in the usual LARS setups (SimCLR, BYOL: the exclusion
    lists of TF Model Garden's LARS, optax's masks), variables of rank 0 or 1 — biases and normalization scales and
    offsets — are neither decayed nor adapted by default (`exclude_rank_1`); they take plain momentum steps. Further
    variables leave the decay with `exclude_from_weight_decay(...)` and the adaptation with
    `exclude_from_layer_adaptation(...)`, both called before the optimizer is built; like Keras's, these exclusions
    are not part of the config. An adapted layer steps by about `learning_rate * eta` of its norm, an excluded one
    by `learning_rate` times its gradient: LARS is normally run with a warm-up and a rate scaled to the batch size
    (SimCLR: `0.3 * batch_size / 256`). A `tf.IndexedSlices` gradient is applied as the dense gradient it stands
    for.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.01`.
        momentum: A float in [0, 1). Defaults to `0.9`.
        eta: A float > 0, the trust coefficient. Defaults to `0.001`.
        epsilon: A float >= 0 added to the trust ratio's denominator. Defaults to `0.0`.
        nesterov: A bool. If `True`, applies Nesterov momentum. Defaults to `False`.
        exclude_rank_1: A bool. If `True`, variables of rank 0 or 1 are neither decayed nor adapted.
            Defaults to `True`.
        weight_decay: `None` or a float >= 0, the coupled weight decay added to the gradient. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.SGD`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.LARS(learning_rate=1.0, eta=0.01)
    >>> kernel = keras.Variable([[3.0, 4.0]])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([[100.0, 0.0]]), kernel)])
    >>> kernel.numpy().astype("float64").round(4).tolist()  # a step of eta * ||w|| = 0.05 along g, whatever ||g||
    [[2.95, 4.0]]

    References:
        - [You et al., 2017](https://arxiv.org/abs/1708.03888): Large Batch Training of Convolutional Networks.
        - [TF Model Garden `LARS`](
          https://github.com/tensorflow/models/blob/master/official/modeling/optimization/lars.py)
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.9,
        eta=0.001,
        epsilon=0.0,
        nesterov=False,
        exclude_rank_1=True,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "LARS"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.momentum = _checks.fraction(owner, "momentum", momentum)
        self.eta = _checks.number(owner, "eta", eta, low=0, closed="neither")
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.nesterov = _checks.boolean(owner, "nesterov", nesterov)
        self.exclude_rank_1 = _checks.boolean(owner, "exclude_rank_1", exclude_rank_1)
        self._unadapted_keys, self._unadapted_names = set(), None

    def exclude_from_layer_adaptation(self, var_list=None, var_names=None):
        """Gives variables a local rate of 1: plain momentum steps, still decayed unless excluded from that too.

        Args:
            var_list: A list of variables to exclude.
            var_names: A list of regular expressions; a variable whose name contains a match is excluded.
        """
        if self.built:
            raise ValueError("LARS: `exclude_from_layer_adaptation()` must be called before the optimizer is built.")
        self._unadapted_keys = {_compat.optimizer_variable_key(self, variable) for variable in var_list or ()}
        self._unadapted_names = re.compile("|".join(var_names)) if var_names else None

    def build(self, var_list):
        """Creates the momentum of each variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums = self.add_optimizer_variables(var_list, "momentum")

    def _adapted(self, variable):
        if _compat.optimizer_variable_key(self, variable) in self._unadapted_keys:
            return False
        return self._unadapted_names is None or self._unadapted_names.search(variable.name) is None

    def _trust_ratio(self, gradient, variable, decay):
        """`local_lr` of the update rule for an adapted variable."""
        w_norm = ops.sqrt(ops.sum(ops.square(variable)))
        g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
        ratio = self.eta * w_norm / (g_norm + decay * w_norm + self.epsilon)
        return ops.where(ops.logical_and(w_norm > 0, g_norm > 0), ratio, 1.0)

    def update_step(self, gradient, variable, learning_rate):
        """Applies one LARS step to `variable`."""
        dtype = variable.dtype
        gradient = dense_gradient(gradient, dtype)
        plain = self.exclude_rank_1 and len(variable.shape) <= 1
        decay = 0.0 if plain else self._decay_for(variable)
        rate = ops.cast(learning_rate, dtype)
        if not plain and self._adapted(variable):
            rate = rate * self._trust_ratio(gradient, variable, decay)
        if decay:
            gradient = gradient + decay * variable
        step = rate * gradient
        v = self._momentums[_compat.optimizer_variable_index(self, variable)]
        self.assign(v, self.momentum * v + step)
        self.assign_sub(variable, self.momentum * v + step if self.nesterov else v)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "eta": self.eta,
                "epsilon": self.epsilon,
                "nesterov": self.nesterov,
                "exclude_rank_1": self.exclude_rank_1,
            }
        )
        return config

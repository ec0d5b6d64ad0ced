"""Shampoo: a Kronecker-factored preconditioner per axis of each variable, inverse roots every few steps."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, dense_gradient, is_sparse


@keras.saving.register_keras_serializable(package="tfopt")
class Shampoo(DecayInUpdateRule, keras.optimizers.Optimizer):
    """Shampoo: the gradient multiplied along each axis `i` by `L_i ** (-1 / (2 * rank))` (Gupta et al., 2018).

    For a variable `w` of rank `k` with gradient `g` at step `t` (from 1); `L_i` starts as `epsilon * I`:

    ```python
    if momentum:
        g = g + momentum * (buffer - g) if t > 1 else g         # buffer: the previous preconditioned step
    if weight_decay and decoupled_weight_decay:
        w = w - learning_rate * weight_decay * w
    elif weight_decay:
        g = g + weight_decay * w
    for each axis i:
        L_i = L_i + G_i(g)                                      # G_i(g): g's outer product over all axes but i
        if t % preconditioning_compute_steps == 0:
            P_i = L_i ** (-1 / (2 * k))                         # by SVD (0 until first computed)
    step = g multiplied along each axis i by P_i
    buffer = step
    w = w - learning_rate * step
    ```

    This is the `Shampoo` of pytorch-optimizer 4.1.0 (after moskomule/shampoo.pytorch, the common PyTorch port of
    the paper's Algorithm 2 with momentum), with its defaults: inverse roots at every step
    (`preconditioning_compute_steps=1`) and `epsilon=1e-6` (its `matrix_eps`). As there, the steps before the first
    inverse roots are computed don't move the weights (set `preconditioning_compute_steps` to 1, or accept that
    warm-up), and the momentum mixes the gradient with the previous preconditioned step. The inverse root is taken
    from the eigendecomposition `L = V diag(lam) V^T` as `V diag(maximum(lam, epsilon)**p) V^T` (the SVD's for a
    symmetric matrix whose eigenvalues are >= epsilon, their true floor; float32 rounding can put them below it).
    In float32, a statistic's near-null directions (an axis longer than the gradients' rank, as with small batches)
    get eigenvalues at rounding level, near `epsilon=1e-6`, and their roots then depend on the eigensolver: XLA,
    TensorFlow's kernels and 2 replicas differ by up to ~1e-3 after a few steps. An `epsilon` well above the
    statistics' rounding (1e-2 for unit-scale gradients) makes them agree to ~1e-5. The paper's Algorithm 1 has no
    momentum and no epsilon schedule; `momentum=0` (the default) is it. The weight decay is an L2 penalty by default
    (pytorch-optimizer's `weight_decouple=False`), decoupled with `decoupled_weight_decay=True`; both skip the
    variables excluded with `exclude_from_weight_decay`. A variable with sparse gradients (an `Embedding`'s) is
    not preconditioned along its rows, so the rows a batch doesn't touch keep their values (pytorch-optimizer
    refuses sparse gradients); its vocab x vocab statistic is still allocated unless `max_precondition_dim` is
    below the vocabulary size.

    Every axis is preconditioned whatever its size, as in the reference, unless `max_precondition_dim` is given
    (as SOAP's): a longer axis then gets no preconditioner (the identity), and no statistic is allocated for it.
    Each preconditioned axis costs a d x d statistic and root, two
    products of the axis's size per step and an eigendecomposition per computation of the roots. On one CPU core
    a 1024-wide axis takes ~0.2 s per eigendecomposition (~20 ms per 1024^3 product): on a 1M-parameter MLP of
    1024-wide layers a step at the default costs ~145x Adam's (four such decompositions), and still ~13x with the
    roots computed every 100 steps or more (the products). Under XLA (`jit_compile=True`) on CPU one takes ~10 s;
    Keras leaves XLA off on CPU-only machines.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        momentum: A float in [0, 1). Defaults to `0.0`.
        preconditioning_compute_steps: An int >= 1, the steps between two computations of the inverse roots.
            Defaults to `1`.
        epsilon: A float >= 0, the statistics' start `epsilon * I`. Defaults to `1e-6`.
        max_precondition_dim: `None` or an int >= 1; longer axes get no preconditioner. Defaults to `None`
            (every axis, as the reference).
        decoupled_weight_decay: A bool. If `True`, `weight_decay` shrinks the variables before the step as in
            AdamW; if `False`, it is an L2 penalty added to the gradient. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.SGD`.

    Example:

    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.Shampoo(learning_rate=0.1)
    >>> w = keras.Variable([[1.0, 2.0]])
    >>> _ = optimizer.apply_gradients([(keras.ops.convert_to_tensor([[3.0, 4.0]]), w)])
    >>> [round(float(x), 3) for x in w.numpy().ravel()]  # (g g^T)^(-1/4) g (g^T g)^(-1/4) = g / |g|
    [0.94, 1.92]

    References:
        - [Gupta et al., 2018](https://arxiv.org/abs/1802.09568): Shampoo: Preconditioned Stochastic Tensor
          Optimization.
        - [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `Shampoo`;
          [shampoo.pytorch](https://github.com/moskomule/shampoo.pytorch).
    """

    def __init__(
        self,
        learning_rate=0.001,
        momentum=0.0,
        preconditioning_compute_steps=1,
        epsilon=1e-6,
        max_precondition_dim=None,
        decoupled_weight_decay=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "Shampoo"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.momentum = _checks.fraction(owner, "momentum", momentum)
        self.preconditioning_compute_steps = _checks.integer(
            owner, "preconditioning_compute_steps", preconditioning_compute_steps, low=1
        )
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.max_precondition_dim = None if max_precondition_dim is None else _checks.integer(
            owner, "max_precondition_dim", max_precondition_dim, low=1)
        self.decoupled_weight_decay = _checks.boolean(owner, "decoupled_weight_decay", decoupled_weight_decay)

    def build(self, var_list):
        """Creates, per variable, the momentum buffer and, per preconditioned axis, the statistic and its inverse
        root (None for an axis longer than `max_precondition_dim`)."""
        if self.built:
            return
        super().build(var_list)
        if self.momentum:
            self._buffers = self.add_optimizer_variables(var_list, "momentum")
        start = keras.initializers.Identity(gain=self.epsilon)
        self._preconditioners = [
            [
                (
                    self.add_variable((size, size), start, variable.dtype, name=f"statistic_{i}_{axis}"),
                    self.add_variable((size, size), "zeros", variable.dtype, name=f"inverse_root_{i}_{axis}"),
                )
                if self.max_precondition_dim is None or size <= self.max_precondition_dim else None
                for axis, size in enumerate(variable.shape)
            ]
            for i, variable in enumerate(var_list)
        ]

    def update_step(self, gradient, variable, learning_rate):
        """Applies one Shampoo step, and its weight decay, to `variable`."""
        dtype = variable.dtype
        axes = list(self._preconditioners[_compat.optimizer_variable_index(self, variable)])
        if is_sparse(gradient):  # an Embedding's: its rows are not mixed, so untouched rows stay as they are
            axes[0] = None
        gradient = dense_gradient(gradient, dtype)
        index = _compat.optimizer_variable_index(self, variable)
        if self.momentum:
            buffer = self._buffers[index]
            weight = ops.where(ops.equal(self.iterations, 0), 0.0, self.momentum)
            gradient = gradient + ops.cast(weight, dtype) * (buffer - gradient)
        rate = ops.cast(learning_rate, dtype)
        decay = self._decay_for(variable)
        start = variable * (1 - rate * decay) if decay and self.decoupled_weight_decay else variable
        if decay and not self.decoupled_weight_decay:
            gradient = gradient + ops.cast(decay, dtype) * variable
        rank = len(variable.shape)
        for axis, pair in enumerate(axes):
            if pair is not None:
                others = [a for a in range(rank) if a != axis]
                self.assign_add(pair[0], ops.tensordot(gradient, gradient, axes=[others, others]))
        due = ops.equal((self.iterations + 1) % self.preconditioning_compute_steps, 0)
        ops.cond(due, lambda: self._compute_roots(axes, rank), lambda: None)
        step = gradient
        for pair in axes:
            step = ops.moveaxis(step, 0, -1) if pair is None else ops.tensordot(step, pair[1], axes=[[0], [0]])
        if self.momentum:
            self.assign(buffer, step)
        self.assign(variable, start - rate * step)

    def _compute_roots(self, axes, rank):
        for pair in axes:
            if pair is not None:
                values, vectors = ops.eigh(pair[0])
                powered = ops.power(ops.maximum(values, self.epsilon), -1 / (2 * rank))
                self.assign(pair[1], ops.matmul(vectors * powered[None, :], ops.transpose(vectors)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "preconditioning_compute_steps": self.preconditioning_compute_steps,
                "epsilon": self.epsilon,
                "max_precondition_dim": self.max_precondition_dim,
                "decoupled_weight_decay": self.decoupled_weight_decay,
            }
        )
        return config

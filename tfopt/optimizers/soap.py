"""SOAP: Adam run in the eigenbasis of Shampoo's preconditioner, refreshed every few steps (Vyas et al., 2024)."""

import keras
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import DecayInUpdateRule, debias, dense_gradient, is_sparse


@keras.saving.register_keras_serializable(package="tfopt")
class SOAP(DecayInUpdateRule, keras.optimizers.Optimizer):
    """SOAP: ShampoO with Adam in the Preconditioner's eigenbasis.

    Each axis `i` of a variable (of size <= `max_precondition_dim`; rank-1 variables only with `precondition_1d`)
    keeps Shampoo's statistic `L_i` (the gradient's second moment over the other axes) and an orthogonal basis `Q_i`
    of its eigenvectors. `rotate(x)` multiplies each such axis of `x` by `Q_i^T`, `unrotate` by `Q_i`; axes without a
    preconditioner stay as they are (Adam). At step `t` (from 1):

    ```python
    if t == 1:                                        # the first gradient only starts the statistics
        L_i = (1 - shampoo_beta) * G_i(g)             # G_i(g): g's outer product over all axes but i
        Q_i = eigenvectors(L_i)                       # by decreasing eigenvalue
    else:
        k = t - 1
        m = beta_1 * m + (1 - beta_1) * g            # in the weights' basis (stored rotated: see below)
        v = beta_2 * v + (1 - beta_2) * rotate(g) ** 2                  # in the eigenbasis
        step = unrotate(rotate(m) / (sqrt(v) + epsilon))
        if normalize_gradient: step = step / (sqrt(mean(step ** 2)) + epsilon)
        w = w - learning_rate * sqrt(1 - beta_2**k) / (1 - beta_1**k) * step   # without correct_bias: lr only
        w = w - learning_rate * weight_decay * w     # decoupled, after the step
        L_i = shampoo_beta * L_i + (1 - shampoo_beta) * G_i(g)
        if k % precondition_frequency == 0:          # one power iteration and a QR decomposition
            order = argsort(-diag(Q_i^T L_i Q_i)); v = v sorted by `order` on axis i
            Q_i = qr((L_i @ Q_i)[:, order]).Q
    ```

    This is the authors' `soap.py` (nikhilvyas/SOAP) as pytorch-optimizer 4.1.0's `SOAP` writes it, with its
    defaults (`learning_rate=3e-3`, betas `(0.95, 0.95)`, `shampoo_beta=None` meaning `beta_2`,
    `weight_decay=0.01`, every 10 steps, axes up to 10000). Its `merge_dims` (reshaping small axes together) and
    `data_format` are left out: each axis of a Keras kernel gets its own preconditioner, which is the same rule
    whatever the axes' order, so Keras's channels-last kernels need no permutation. Where the first statistic is
    rank-deficient (an axis longer than the gradients' rank), the reference keeps the eigensolver's (or QR's)
    arbitrary basis of its null space; here that basis is made canonical (`_canonical`), so XLA, TensorFlow's kernels
    and replicas agree. The weight decay skips the variables excluded with `exclude_from_weight_decay`.

    `m` is kept in the eigenbasis (`rotate` is linear, so `rotate(m)` follows from `rotate(g)`) and carried to the
    new basis at each refresh: the same rule with 6 matrix products of the axes' sizes per step instead of 8. They
    and the refreshes' decompositions (per axis, a QR and, for the canonical null space, an eigendecomposition) are
    the cost: on one CPU core a 1024 x 1024 kernel takes ~130 ms a step (~20 ms per 1024^3 product) plus ~1 s per
    refresh, ~35x Adam's step on a 1M-parameter MLP of 1024-wide layers. Use SOAP where the model's own compute is
    large against that, or lower `max_precondition_dim` (at 1000 that MLP's step costs as much as Adam's: its
    1024-wide axes fall back to Adam). Under XLA (`jit_compile=True`) on CPU an eigendecomposition of 1024 x 1024
    takes ~10 s (TensorFlow's kernel: 0.2 s); Keras leaves XLA off on CPU-only machines.

    A variable with sparse gradients (an `Embedding`'s) is not preconditioned along its rows (the reference has no
    sparse form), so the rows a batch doesn't touch keep their values; its row statistic is then unused (set
    `max_precondition_dim` below the vocabulary size not to allocate it).

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `3e-3`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.95`.
        beta_2: A float in [0, 1), the decay of the second moment in the eigenbasis. Defaults to `0.95`.
        shampoo_beta: `None` or a float in [0, 1), the decay of the statistics `L_i`; `None` means `beta_2`.
            Defaults to `None`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-8`.
        precondition_frequency: An int >= 1, the steps between two refreshes of the eigenbases. Defaults to `10`.
        max_precondition_dim: An int >= 1; longer axes get no preconditioner. Defaults to `10000`.
        precondition_1d: A bool. If `True`, rank-1 variables are preconditioned too. Defaults to `False`.
        correct_bias: A bool. If `True`, Adam's bias correction scales the step. Defaults to `True`.
        normalize_gradient: A bool. If `True`, each step is divided by its RMS. Defaults to `False`.
        weight_decay: `None` or a float >= 0. Defaults to `0.01`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tfopt
    >>> keras.utils.set_random_seed(0)
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer=tfopt.optimizers.SOAP(learning_rate=0.05), loss="mse")
    >>> x = keras.random.normal((256, 8), seed=0)
    >>> history = model.fit(x, x[:, :4] - x[:, 4:], batch_size=32, epochs=5, verbose=0)
    >>> history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    True

    References:
        - [Vyas et al., 2024](https://arxiv.org/abs/2409.11321): SOAP: Improving and Stabilizing Shampoo using
          Adam.
        - [Authors' implementation](https://github.com/nikhilvyas/SOAP);
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 `SOAP`.
    """

    def __init__(
        self,
        learning_rate=3e-3,
        beta_1=0.95,
        beta_2=0.95,
        shampoo_beta=None,
        epsilon=1e-8,
        precondition_frequency=10,
        max_precondition_dim=10000,
        precondition_1d=False,
        correct_bias=True,
        normalize_gradient=False,
        weight_decay=0.01,
        name=None,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=weight_decay, **kwargs)
        owner = "SOAP"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.shampoo_beta = None if shampoo_beta is None else _checks.fraction(owner, "shampoo_beta", shampoo_beta)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.precondition_frequency = _checks.integer(owner, "precondition_frequency", precondition_frequency, low=1)
        self.max_precondition_dim = _checks.integer(owner, "max_precondition_dim", max_precondition_dim, low=1)
        self.precondition_1d = _checks.boolean(owner, "precondition_1d", precondition_1d)
        self.correct_bias = _checks.boolean(owner, "correct_bias", correct_bias)
        self.normalize_gradient = _checks.boolean(owner, "normalize_gradient", normalize_gradient)

    def build(self, var_list):
        """Creates the moments of each variable and, per preconditioned axis, its statistic and eigenbasis."""
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(var_list, ["momentum", "velocity"])
        self._preconditioners = []
        for i, variable in enumerate(var_list):
            axes = []
            for axis, size in enumerate(variable.shape):
                if size <= self.max_precondition_dim and (len(variable.shape) > 1 or self.precondition_1d):
                    statistic = self.add_variable((size, size), "zeros", variable.dtype, name=f"statistic_{i}_{axis}")
                    basis = self.add_variable((size, size), "zeros", variable.dtype, name=f"basis_{i}_{axis}")
                    axes.append((statistic, basis))
                else:
                    axes.append(None)
            self._preconditioners.append(axes)

    def update_step(self, gradient, variable, learning_rate):
        """Starts the preconditioners at the first step; applies one SOAP step, and its decay, at the others."""
        axes = list(self._preconditioners[_compat.optimizer_variable_index(self, variable)])
        if is_sparse(gradient):  # an Embedding's: its rows are not mixed, so untouched rows stay as they are
            axes[0] = None
        gradient = dense_gradient(gradient, variable.dtype)
        index = _compat.optimizer_variable_index(self, variable)
        ops.cond(
            ops.equal(self.iterations, 0),
            lambda: self._start(gradient, axes),
            lambda: self._step(gradient, variable, index, axes, learning_rate),
        )

    def _start(self, gradient, axes):
        self._accumulate(gradient, axes)
        for axis in axes:
            if axis is not None:
                self.assign(axis[1], self._eigenbasis(axis[0]))

    @staticmethod
    def _eigenbasis(statistic):
        """The eigenvectors of `statistic` by decreasing eigenvalue, the null space's in a canonical basis."""
        size, dtype = statistic.shape[0], statistic.dtype
        values, vectors = ops.eigh(statistic + 1e-30 * ops.eye(size, dtype=dtype))
        return ops.flip(_canonical(vectors, values <= 1e-5 * ops.max(ops.abs(values)) + 1e-30), axis=1)

    def _step(self, gradient, variable, index, axes, learning_rate):
        dtype = variable.dtype
        m, v = self._momentums[index], self._velocities[index]  # both in the eigenbasis
        bases = _bases(axes)
        rotated = self._rotate(gradient, bases, forward=True)
        self.assign_add(m, (rotated - m) * (1 - self.beta_1))
        self.assign_add(v, (ops.square(rotated) - v) * (1 - self.beta_2))
        step = self._rotate(m / (ops.sqrt(v) + self.epsilon), bases, forward=False)
        if self.normalize_gradient:
            step = step / (ops.sqrt(ops.mean(ops.square(step))) + self.epsilon)
        rate = ops.cast(learning_rate, dtype)
        size = rate
        if self.correct_bias:
            k = ops.cast(self.iterations, dtype)
            size = rate * ops.sqrt(debias(self.beta_2, k)) / debias(self.beta_1, k)
        updated = variable - size * step
        decay = self._decay_for(variable)
        if decay:
            updated = updated * (1 - rate * decay)
        self.assign(variable, updated)
        self._accumulate(gradient, axes)
        ops.cond(ops.equal(self.iterations % self.precondition_frequency, 0), lambda: self._refresh(index, axes),
                 lambda: None)

    def _accumulate(self, gradient, axes):
        """`L_i = shampoo_beta * L_i + (1 - shampoo_beta) * G_i(g)` for each preconditioned axis."""
        beta = self.beta_2 if self.shampoo_beta is None else self.shampoo_beta
        rank = len(gradient.shape)
        for axis, pair in enumerate(axes):
            if pair is not None:
                others = [a for a in range(rank) if a != axis]
                outer = ops.tensordot(gradient, gradient, axes=[others, others])
                self.assign_add(pair[0], (outer - pair[0]) * (1 - beta))

    @staticmethod
    def _rotate(x, bases, forward):
        """Multiplies each preconditioned axis of `x` by `Q^T` (forward) or `Q`; the others are cycled through."""
        for basis in bases:
            if basis is None:
                x = ops.moveaxis(x, 0, -1)
            else:
                x = ops.tensordot(x, basis, axes=[[0], [0 if forward else 1]])
        return x

    def _refresh(self, index, axes):
        """One power iteration and a QR decomposition per axis; `v` follows its eigenbasis's new order, `m` is
        carried from the old eigenbasis to the new one."""
        m, v = self._momentums[index], ops.convert_to_tensor(self._velocities[index])
        plain = self._rotate(m, _bases(axes), forward=False)
        bases = []
        for axis, pair in enumerate(axes):
            if pair is None:
                bases.append(None)
                continue
            statistic, basis = pair
            product = ops.matmul(statistic, basis)
            estimates = ops.sum(basis * product, axis=0)
            order = ops.argsort(-estimates)
            v = ops.take(v, order, axis=axis)
            q, r = ops.qr(ops.take(product, order, axis=1))
            diagonal = ops.abs(ops.diagonal(r))
            bases.append(_canonical(q, diagonal <= 1e-5 * ops.max(diagonal) + 1e-30))
            self.assign(basis, bases[-1])
        self.assign(self._velocities[index], v)
        self.assign(m, self._rotate(plain, bases, forward=True))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "shampoo_beta": self.shampoo_beta,
                "epsilon": self.epsilon,
                "precondition_frequency": self.precondition_frequency,
                "max_precondition_dim": self.max_precondition_dim,
                "precondition_1d": self.precondition_1d,
                "correct_bias": self.correct_bias,
                "normalize_gradient": self.normalize_gradient,
            }
        )
        return config


def _canonical(vectors, null):
    """`vectors` (orthonormal columns) with the columns flagged `null` replaced by a canonical basis of their span.

    The reference code keeps whatever basis of a statistic's null space the eigensolver or QR returns; it differs
    between XLA and TensorFlow's kernels, and with the gradients' rounding (two replicas against one device). The
    canonical basis is the eigenvectors of `diag(1, ..., n)` compressed onto that span, so every run agrees; the
    other columns are left as they are.
    """
    count = ops.sum(ops.cast(null, "int32"))
    return ops.cond(count > 0, lambda: _canonical_null_space(vectors, null, count), lambda: vectors)


def _canonical_null_space(vectors, null, count):
    """`_canonical` where `null` flags `count` > 0 columns."""
    size, dtype = vectors.shape[0], vectors.dtype
    mask = ops.cast(null, dtype)
    columns = vectors * mask[None, :]
    ranks = ops.arange(1, size + 1, dtype=dtype)
    compressed = ops.matmul(ops.transpose(columns) * ranks[None, :], columns) - ops.diag(1 - mask)
    _, rotation = ops.eigh(compressed)  # ascending: the other columns (-1) first, then the null block's vectors
    sources = ops.where(null, size - count + ops.cumsum(ops.cast(null, "int32")) - 1, ops.arange(size, dtype="int32"))
    return ops.where(null[None, :], ops.matmul(vectors, ops.take(rotation, sources, axis=1)), vectors)


def _bases(axes):
    """The eigenbasis `Q_i` of each preconditioned axis, `None` for the others."""
    return [None if pair is None else pair[1] for pair in axes]

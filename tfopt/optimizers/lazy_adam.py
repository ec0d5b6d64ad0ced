"""LazyAdam: Adam that updates only the rows a sparse gradient touches (tensorflow-addons' `LazyAdam`)."""

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks, _compat
from tfopt.optimizers._common import adam_bias_correction


@keras.saving.register_keras_serializable(package="tfopt")
class LazyAdam(keras.optimizers.Adam):
    """Adam that, for a sparse gradient, updates the moments and the variable only at the rows the gradient touches.

    An `Embedding` lookup yields a `tf.IndexedSlices` gradient that names the rows of the batch. Adam would decay the
    moments of every row and move rows whose gradient is zero; LazyAdam leaves the untouched rows as they are, which
    saves time for large vocabularies at the price of semantics that differ from Adam's, as tensorflow-addons'
    `LazyAdam` does. For a `tf.IndexedSlices` gradient at step `t` (from 1):

    ```python
    rows = unique(g.indices)
    g = sum of g.values over equal indices      # one summed gradient per row
    m[rows] = m[rows] + (g - m[rows]) * (1 - beta_1)
    v[rows] = v[rows] + (g * g - v[rows]) * (1 - beta_2)
    if amsgrad:
        v_hat[rows] = maximum(v_hat[rows], v[rows])
    w[rows] = w[rows] - learning_rate * sqrt(1 - beta_2**t) / (1 - beta_1**t) * m[rows] / (
        sqrt(v_hat[rows] if amsgrad else v[rows]) + epsilon)
    ```

    A dense gradient gets exactly `keras.optimizers.Adam`'s update, which is the same with `rows` all rows. `t`
    counts the optimizer's steps, not the steps a row was touched in, as in tensorflow-addons.

    Conventions differ on the rows a step does not touch; this follows tensorflow-addons 0.23 (and
    `torch.optim.SparseAdam`): their moments are not decayed and they do not move. Adam on the dense gradient the
    slices stand for decays every row's moments at every step, so a row keeps moving for a while after its last
    touch; `keras.optimizers.Adam` fed dense gradients gives that convention. `amsgrad`, which tensorflow-addons'
    sparse path lacks, keeps the running maximum of `v` of the touched rows only.

    Keras 3's TensorFlow backend hands the `tf.IndexedSlices` of an `Embedding` to `update_step` as it is (after
    summing it across replicas under a `tf.distribute` strategy, which may repeat indices), and its optimizer
    writes a `tf.IndexedSlices` value with `scatter_update` / `scatter_sub`; LazyAdam uses both. `weight_decay`
    is Keras's decoupled decay, which shrinks every row at every step, as in `keras.optimizers.AdamW`.

    Args:
        learning_rate: A float >= 0, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable taking no
            arguments. Defaults to `0.001`.
        beta_1: A float in [0, 1), the decay of the first moment. Defaults to `0.9`.
        beta_2: A float in [0, 1), the decay of the second moment. Defaults to `0.999`.
        epsilon: A float >= 0 added to `sqrt(v)`. Defaults to `1e-7`.
        amsgrad: A bool. If `True`, divides by the running maximum of `v` (AMSGrad). Defaults to `False`.
        weight_decay: `None` or a float >= 0, Keras's decoupled weight decay. Defaults to `None`.
        **kwargs: The base optimizer's keywords (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`, `gradient_accumulation_steps`,
            `name`), as in `keras.optimizers.Adam`.

    Example:

    >>> import keras, tensorflow as tf, tfopt
    >>> optimizer = tfopt.optimizers.LazyAdam(learning_rate=0.1)
    >>> table = keras.Variable([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    >>> rows_1_and_1 = tf.IndexedSlices(tf.constant([[1.0, -1.0], [1.0, -1.0]]), tf.constant([1, 1]))
    >>> _ = optimizer.apply_gradients([(rows_1_and_1, table)])
    >>> table.numpy().astype("float64").round(4).tolist()  # only row 1 moves, by Adam's first step
    [[1.0, 1.0], [1.9, 2.1], [3.0, 3.0]]

    References:
        - [Kingma & Ba, 2014](https://arxiv.org/abs/1412.6980): Adam: A Method for Stochastic Optimization.
        - [tensorflow-addons `LazyAdam`](https://www.tensorflow.org/addons/api_docs/python/tfa/optimizers/LazyAdam)
    """

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        weight_decay=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            amsgrad=amsgrad,
            name=name,
            weight_decay=weight_decay,
            **kwargs,
        )
        owner = "LazyAdam"
        _checks.optimizer_rates(owner, learning_rate, weight_decay)
        self.beta_1 = _checks.fraction(owner, "beta_1", beta_1)
        self.beta_2 = _checks.fraction(owner, "beta_2", beta_2)
        self.epsilon = _checks.number(owner, "epsilon", epsilon, low=0)
        self.amsgrad = _checks.boolean(owner, "amsgrad", amsgrad)

    def update_step(self, gradient, variable, learning_rate):
        """Applies Adam to the touched rows of a `tf.IndexedSlices` gradient, or Keras's Adam to a dense one."""
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, positions = ops.unique(gradient.indices, sorted=False, return_inverse=True)
        gradient = ops.segment_sum(ops.cast(gradient.values, dtype), positions, num_segments=ops.shape(rows)[0])
        m_slot, v_slot, v_hat_slot = _compat.adam_slots(self, variable)
        m = ops.take(m_slot, rows, axis=0)
        v = ops.take(v_slot, rows, axis=0)
        m = m + (gradient - m) * (1 - self.beta_1)
        v = v + (ops.square(gradient) - v) * (1 - self.beta_2)
        self.assign(m_slot, tf.IndexedSlices(m, rows))
        self.assign(v_slot, tf.IndexedSlices(v, rows))
        if self.amsgrad:
            v = ops.maximum(ops.take(v_hat_slot, rows, axis=0), v)
            self.assign(v_hat_slot, tf.IndexedSlices(v, rows))
        step = ops.cast(self.iterations + 1, dtype)
        alpha = ops.cast(learning_rate, dtype) * adam_bias_correction(self.beta_1, self.beta_2, step)
        self.assign_sub(variable, tf.IndexedSlices(alpha * m / (ops.sqrt(v) + self.epsilon), rows))

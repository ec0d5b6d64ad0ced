"""`SharpnessAware`: trains any Keras model with the two-pass step of SAM or ASAM, inside an unchanged `fit`."""

import keras
import tensorflow as tf
from keras import ops

from tfopt import _checks

_EPSILON = 1e-12


def _sum_over_replicas(gradients):
    """The (dense) gradients summed over the replicas of the running `tf.distribute` strategy.

    Keras scales each replica's loss by 1 / replicas, so the sum is the gradient of the global batch's loss: the
    gradient one device would compute on the same batch.
    """
    gradients = [None if g is None else tf.convert_to_tensor(g) for g in gradients]
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM, [g for g in gradients if g is not None]))
    return [None if g is None else next(summed) for g in gradients]


@keras.saving.register_keras_serializable(package="tfopt")
class SharpnessAware(keras.Model):
    """Wraps a model so that `fit` minimises its sharpness-aware loss (SAM, or ASAM with `adaptive=True`).

    Each training step takes the gradient at the weights `w`, moves to the nearby point `w + e` where the loss rises
    fastest, takes the gradient there and hands it to the compiled optimizer, which updates `w`:

    ```python
    g = gradient of loss(w)                        # summed over tf.distribute replicas: the global batch's gradient
    T = abs(w) + eta if adaptive else 1            # ASAM's element-wise operator, for every trainable variable
    e = rho * T * (T * g) / (norm(T * g) + 1e-12)  # norm over all trainable variables together
    optimizer.apply_gradients(gradient of loss(w + e), w)
    ```

    ASAM's element-wise operator `T` follows the paper, for all trainable variables; the authors' code leaves
    parameters not named "weight" (biases) at `T = 1`.

    The second pass evaluates the model at `w + e` inside a `keras.StatelessScope`: `w + e` is never written into
    the variables, so nothing needs restoring, and that pass leaves no state behind. BatchNormalization statistics,
    metrics and random seeds advance in the first pass only (the usual choice for SAM's BatchNorm statistics). The
    logged loss and metrics are the first pass's, at `w`, as Keras's own `train_step` reports them. Under a
    `tf.distribute` strategy the perturbation uses the gradient all-reduced over the replicas (one more all-reduce
    per step), so a distributed step equals a one-device step on the same global batch, unless BatchNormalization
    layers normalise each replica's share of the batch.

    `call`, `evaluate` and `predict` are the wrapped model's. The wrapped model stays available as `.model`, to save
    or export on its own after training.

    Args:
        model: the `keras.Model` to train.
        rho: the radius of the neighbourhood, > 0. SAM's authors use 0.05; ASAM's code defaults to 0.5.
            Defaults to 0.05.
        adaptive: True for ASAM's scale-invariant neighbourhood. Defaults to False.
        eta: ASAM's offset added to `abs(w)`, >= 0, so that zero weights are perturbed too (used when `adaptive`).
            Defaults to 0.01, as in ASAM's experiments.
        **kwargs: `keras.Model` keywords such as `name`.

    Example:
        >>> import keras, numpy as np
        >>> from tfopt.models.sharpness_aware import SharpnessAware
        >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(1)])
        >>> model = SharpnessAware(inner, rho=0.05)
        >>> model.compile(keras.optimizers.SGD(0.01, momentum=0.9), "mse")
        >>> history = model.fit(np.ones((32, 4)), np.ones((32, 1)), epochs=2, verbose=0)
        >>> trained = model.model  # the plain model, to save or export without the training wrapper

    References:
        Foret, Kleiner, Mobahi and Neyshabur, "Sharpness-Aware Minimization for Efficiently Improving
        Generalization", ICLR 2021. https://arxiv.org/abs/2010.01412
        Kwon, Kim, Park and Choi, "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant Learning of Deep
        Neural Networks", ICML 2021. https://arxiv.org/abs/2102.11600
    """

    def __init__(self, model, rho=0.05, adaptive=False, eta=0.01, **kwargs):
        super().__init__(**kwargs)
        self.model = _checks.instance("SharpnessAware", "model", model, keras.Model, "a Keras 3 model (`keras.Model`)")
        self.rho = _checks.number("SharpnessAware", "rho", rho, low=0, closed="neither")
        self.adaptive = _checks.boolean("SharpnessAware", "adaptive", adaptive)
        self.eta = _checks.number("SharpnessAware", "eta", eta, low=0)

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            scaled_loss = self.optimizer.scale_loss(loss)
        self._track_loss(loss, x)
        variables = self.trainable_variables  # after the first call, which builds a subclassed model's variables
        perturbed = self._perturbed(variables, _sum_over_replicas(tape.gradient(scaled_loss, variables)))
        gradients = self._gradients_at(perturbed, x, y, sample_weight)
        self.optimizer.apply_gradients(zip(gradients, variables))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def _track_loss(self, loss, x):
        """Updates the loss mean as Keras's `train_step` does: per sample, undoing the 1 / replicas scaling."""
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        batch_size = tf.shape(next(i for i in keras.tree.flatten(x) if i is not None))[0]
        loss_tracker = self.metrics[0]  # a compiled Keras model lists its loss mean first
        loss_tracker.update_state(loss * ops.cast(replicas, loss.dtype), sample_weight=batch_size)

    def _perturbed(self, variables, gradients):
        """The values `w + e` of the variables for the second pass, as tensors; a variable without a gradient (one
        the loss doesn't use) keeps its value, as does every variable when none has a gradient."""
        weights = [tf.identity(v.value) for v in variables]  # tensors: tape.watch rejects a Keras Variable
        scales = [ops.abs(w) + ops.cast(self.eta, w.dtype) if self.adaptive else 1.0 for w in weights]
        scaled = [None if g is None else g * s for g, s in zip(gradients, scales)]
        squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in scaled if g is not None]
        if not squares:
            return weights
        norm = ops.sqrt(ops.sum(ops.stack(squares)))
        factor = self.rho / (norm + _EPSILON)
        return [
            w if g is None else w + ops.cast(factor, w.dtype) * s * ops.cast(g, w.dtype)
            for w, g, s in zip(weights, scaled, scales)
        ]

    def _gradients_at(self, values, x, y, sample_weight):
        """The gradients of the loss with the trainable variables read as `values`; the pass's state updates are
        dropped with its `StatelessScope`."""
        with tf.GradientTape() as tape:
            tape.watch(values)
            with keras.StatelessScope(list(zip(self.trainable_variables, values)), collect_losses=True):
                y_pred = self(x, training=True)
                loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
            loss = self.optimizer.scale_loss(loss)
        return tape.gradient(loss, values)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.model),
                "rho": self.rho,
                "adaptive": self.adaptive,
                "eta": self.eta,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"), custom_objects=custom_objects)
        return cls(model, **config)

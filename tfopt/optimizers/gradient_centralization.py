"""`GradientCentralization`: zero-mean kernel gradients before any optimizer's step (Yong et al., 2020)."""

import keras
import tensorflow as tf
from keras import ops

from tfopt.optimizers._common import OptimizerWrapper


def _centralize(gradient):
    """A dense gradient of rank > 1 minus its mean over every axis but the last (the output axis); others as given."""
    if gradient is None or isinstance(gradient, tf.IndexedSlices) or len(gradient.shape) < 2:
        return gradient
    axes = tuple(range(len(gradient.shape) - 1))
    return gradient - ops.mean(gradient, axis=axes, keepdims=True)


@keras.saving.register_keras_serializable(package="tfopt")
class GradientCentralization(OptimizerWrapper):
    """Wraps any Keras 3 optimizer so that it steps with centralised kernel gradients.

    Keras kernels keep their output axis last (Dense `(in, out)`, Conv2D `(h, w, in, out)`), so each output unit's
    gradient is centred over the remaining axes. Rank-1 variables (biases, normalisation scales) are left as they
    are, and so are sparse gradients (`tf.IndexedSlices`, from `Embedding` lookups): a table's rows are not the
    inputs of an output unit, and centring them would move rows the batch never touched. Centring is linear, so
    under `tf.distribute` it commutes with the inner optimizer's cross-replica sum. The inner optimizer's clipping
    (`clipnorm`, `global_clipnorm`, `clipvalue`) applies to the centralised gradients it receives.

    ```python
    for gradient, variable in zip(gradients, variables):
        if rank(gradient) > 1 and gradient is dense:
            gradient = gradient - mean(gradient, axis=all but the last, keepdims=True)
    inner_optimizer.apply(gradients, variables)
    ```

    As in `LossScaleOptimizer`, the learning rate and `iterations` are the inner optimizer's: setting
    `optimizer.learning_rate` sets the inner rate, so LR callbacks and schedules work through the wrapper.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` taking the steps: any of Keras's, tfopt's, or another
            wrapper such as `Lookahead` (a `LossScaleOptimizer` goes outside:
            `LossScaleOptimizer(GradientCentralization(...))`).
        name: the optimizer's name. Defaults to "gradient_centralization".

    Example:
        >>> import keras
        >>> from tfopt.optimizers.gradient_centralization import GradientCentralization
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
        >>> model.compile(GradientCentralization(keras.optimizers.SGD(0.01, momentum=0.9)), "mse")

    References:
        Yong, Huang, Hua and Zhang, "Gradient Centralization: A New Optimization Technique for Deep Neural
        Networks", ECCV 2020. https://arxiv.org/abs/2004.01461
    """

    def _wrapped_apply(self, grads, trainable_variables):
        grads = [
            grad if getattr(variable, "overwrite_with_gradient", False) else _centralize(grad)
            for grad, variable in zip(grads, trainable_variables)
        ]
        self.inner_optimizer.apply(grads, trainable_variables)

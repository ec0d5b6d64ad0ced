"""`Cautious`: any optimizer's step, masked where it disagrees with the gradient's sign (Liang et al., 2024)."""

import keras
from keras import ops

from tfopt import _compat
from tfopt.optimizers._common import OptimizerWrapper, dense_gradient, replica_sum


@keras.saving.register_keras_serializable(package="tfopt")
class Cautious(OptimizerWrapper):
    """Wraps any Keras 3 optimizer so that it only moves a weight the way its current gradient descends.

    The inner optimizer takes its step; then, for each variable `w` with gradient `g` (the step before it is `w0`),
    the elements whose step would climb along `g` are put back, and the rest are rescaled so that the step keeps its
    size on average (`n` is the number of elements of `w`):

    ```python
    w0 = w
    w = inner_optimizer.step(w, g)          # the inner update, u = w0 - w
    mask = (w0 - w) * g > 0                 # u and g agree
    w = w0 - (w0 - w) * mask * n / (sum(mask) + 1)
    ```

    This is the mask and scale of pytorch-optimizer 4.1.0's `BaseOptimizer.apply_cautious` (`cautious=True`) and of
    the authors' `c_lion.py` and `c_adafactor.py` (kyleliang919/C-Optim at 2c0517c). Without weight decay,
    `Cautious(keras.optimizers.Lion(...))` is their C-Lion. Where they differ:

    - Weight decay. C-Optim (all of its optimizers) and pytorch-optimizer shrink `w` by `learning_rate *
      weight_decay` first and mask only the update, the mask decided by the update alone. This wrapper sees only
      the inner optimizer's whole step, decay included: the mask is decided by `update + decay` and, where it is 0,
      the weight is not decayed that step (where it is 1, the decay is rescaled with the update). Separating the
      two would mean knowing, for every inner optimizer, whether and how it decayed this step (Keras's decay before
      the step, tfopt's `DAdaptAdam` or `MARS` decaying inside their rules by their own rates, the L2 form through
      the gradient, `gradient_accumulation_steps` decaying every k-th call, a `LossScaleOptimizer` skipping a
      step), so no argument reproduces their convention; an inner optimizer with coupled (L2) decay is masked the
      same way in both.
    - The scale. C-Optim's `c_adamw.py` and `c_muon.py` now divide the mask by `max(mean(mask), 1e-3)` (its
      comment keeps `n / (sum(mask) + 1)` as "original implementation"); the two differ by a factor
      `(sum(mask) + 1) / sum(mask)`, large only for small variables (a bias of a few elements).
    - Where to mask. `c_muon.py` masks the momentum before orthogonalising it; this wrapper masks the step that
      comes out of the inner optimizer (for element-wise rules such as Adam or Lion, the same).

    The mask is taken against the gradient handed to the wrapper, summed over the replicas under a `tf.distribute`
    strategy as the inner optimizer sums it (clipping in the inner optimizer keeps its signs).
    With the inner optimizer's `gradient_accumulation_steps`, the mask of an accumulated step compares it with the
    accumulated gradient, the one the inner optimizer steps with. The learning rate, `iterations` and the variables
    are the inner optimizer's, as in `LossScaleOptimizer`; the wrapper has no state of its own.

    Args:
        inner_optimizer: the `keras.optimizers.Optimizer` taking the steps: any of Keras's, tfopt's, or another
            wrapper.
        name: the optimizer's name. Defaults to "cautious".

    Example:
        >>> import keras
        >>> from tfopt.optimizers.cautious import Cautious
        >>> optimizer = Cautious(keras.optimizers.SGD(0.1, momentum=0.9))
        >>> w = keras.Variable([1.0, 1.0])
        >>> _ = optimizer.apply([keras.ops.convert_to_tensor([1.0, 1.0])], [w])
        >>> _ = optimizer.apply([keras.ops.convert_to_tensor([1.0, -0.5])], [w])
        >>> [round(float(x), 4) for x in w.numpy()]  # 2nd step: momentum would climb along w[1]'s gradient
        [0.7433, 0.9333]

    References:
        - [Liang et al., 2024](https://arxiv.org/abs/2411.16085): Cautious Optimizers: Improving Training with One
          Line of Code.
        - [C-Optim](https://github.com/kyleliang919/C-Optim), the authors' code, and
          [pytorch-optimizer](https://github.com/kozistr/pytorch_optimizer) 4.1.0 (`cautious=True`).
    """

    def _wrapped_apply(self, grads, trainable_variables):
        pairs = [(g, v) for g, v in zip(grads, trainable_variables) if g is not None]
        signs = replica_sum([self._stepped_gradient(g, v) for g, v in pairs])  # as the inner optimizer sums them
        before = [ops.copy(ops.convert_to_tensor(v)) for _, v in pairs]
        self.inner_optimizer.apply(grads, trainable_variables)
        for start, gradient, (_, variable) in zip(before, signs, pairs):
            step = ops.convert_to_tensor(variable) - start
            mask = ops.cast(step * gradient < 0, variable.dtype)
            scale = ops.cast(ops.size(mask), variable.dtype) / (ops.sum(mask) + 1)
            self.assign(variable, start + step * mask * scale)

    def _stepped_gradient(self, gradient, variable):
        """`gradient` dense, plus what the inner optimizer has accumulated for `variable` (its sign is the sign of
        the accumulated step's gradient; between those steps the inner optimizer does not move `variable`)."""
        gradient = dense_gradient(gradient, variable.dtype)
        inner = self.inner_optimizer
        if not getattr(inner, "gradient_accumulation_steps", None):
            return gradient
        return gradient + _compat.accumulated_gradient(inner, variable)

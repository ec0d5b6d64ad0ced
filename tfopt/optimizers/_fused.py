"""One optimizer step over all variables at once, compiled by XLA: for optimizers whose step couples the variables
(Prodigy, DAdaptAdam, the schedule-free ones) and, through `FusedUpdateStep`, for per-variable rules that run faster
fused.

Example:
    >>> import keras, numpy as np, tfopt
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> optimizer = tfopt.optimizers.Adan(1e-2)  # a FusedUpdateStep
    >>> model.compile(optimizer, "mse")
    >>> _ = model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    >>> len(optimizer._fused_steps)  # one compiled step: one device, one set of variables
    1
"""

import tensorflow as tf

from tfopt.optimizers._common import is_sparse


class FusedUpdateStep:
    """A mixin that runs the optimizer's per-variable `update_step`s of a step as one XLA-compiled function
    (`update_all_variables_at_once`, TensorFlow backend): XLA fuses the element-wise passes each rule makes over a
    variable into one loop. The update rule and its numbers are those of `update_step`.

    Measured with `benchmarks/optimizers.py` (step time ÷ Adam's on the 1M-weight MLP, two runs): Adan 1.36-1.38
    unfused, 1.08-1.12 fused; RAdam 1.11-1.12 -> 0.83-0.84; DAdaptAdam (through `update_all_variables_at_once`)
    1.29-1.35 -> 1.21-1.22. The optimizers that ran slower fused keep Keras's
    per-variable step: AdamP and SGDP (2.7-3.0), MARS (1.22), LARS and NovoGrad.
    """

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        """One `_update_each` over all variables (overrides a hook of Keras's TF optimizer)."""
        update_all_variables_at_once(distribution, self._iterations, grads_and_vars, learning_rate, self._update_each)

    def _update_each(self, grads, variables, learning_rate):
        for gradient, variable in zip(grads, variables, strict=True):
            self.update_step(gradient, variable, learning_rate)


def update_all_variables_at_once(distribution, anchor, grads_and_vars, learning_rate, step):
    """Runs `step(grads, variables, learning_rate)` over all variables at once: the body of the TF backend's
    `_distributed_tf_update_step` hook (called with the gradients summed over replicas) for optimizers whose step
    couples the variables (Prodigy, DAdaptAdam, the schedule-free ones) and for `FusedUpdateStep`'s.

    `extended.update` on `anchor` (one of the optimizer's own variables) runs `step` once on each replica's device;
    in there, reading or assigning any mirrored variable addresses that replica's copy, so every replica computes the
    same step. `step` runs compiled by XLA (`_fused_step`).
    """
    variables = [variable for _, variable in grads_and_vars]
    # An Embedding's IndexedSlices made dense out here, where its shape is known: passed in, it would be unknown
    grads = [tf.reshape(tf.convert_to_tensor(gradient), variable.shape) if is_sparse(gradient) else gradient
             for gradient, variable in grads_and_vars]
    distribution.extended.update(
        anchor.value,
        lambda anchor_on_device, grads, rate: _fused_step(step, variables, anchor_on_device)(
            grads, tf.convert_to_tensor(rate)),
        args=(grads, learning_rate),
        group=False,
    )


def _fused_step(step, variables, anchor_on_device):
    """`step` over `variables` as one XLA-compiled function, traced once per device (`anchor_on_device` is the
    anchor's copy there) and set of variables, and kept by the optimizer. Inside a model compiled with
    `jit_compile=True` it is inlined.
    """
    optimizer = step.__self__
    compiled = optimizer.__dict__.setdefault("_fused_steps", {})  # not a Keras-tracked attribute
    key = (anchor_on_device.device, tuple(id(variable) for variable in variables))
    if key not in compiled:
        compiled[key] = tf.function(
            lambda grads, rate: step(grads, variables, rate), jit_compile=True, autograph=False, reduce_retracing=True
        )
    return compiled[key]

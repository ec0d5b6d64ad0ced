"""The in-graph half of `GradientMonitor`: per-layer norms computed inside the compiled train step.

`GradientProbe.install(optimizer)` wraps the optimizer's gradient-application entry point on that instance (Keras 3:
`apply`, which `apply_gradients` calls; tf_keras: `apply_gradients`), so the train function traced afterwards runs,
around the optimizer's own step:

```python
record = step % every == 0                               # a tf.cond: nothing else runs on the other steps
before the step, if record:  g = sum over replicas of the gradients / loss scale   # the gradient that is applied
                             values[0] = per layer ||g||,  values[1] = per layer ||w||,  snapshot = w
optimizer step
after the step, if record:   values[2] = per layer ||w - snapshot|| / ||w_before||
step += 1
```

Both halves run in cross-replica context (`merge_call`), where a `tf.cond` may hold the cross-replica sum; the
values stay on the device until the callback reads them on a recorded step.
"""

import numpy as np
import tensorflow as tf

from tfopt import _compat

QUANTITIES = ("gradient_norm", "weight_norm", "update_ratio")


def layer_groups(model):
    """{layer path: [trainable variables]} of `model`: each variable grouped under the layer that holds it, nested
    models looked into (`"block/dense"`), weights a model holds itself under the model's path."""
    groups, claimed = {}, set()

    def claim(path, variables):
        fresh = [v for v in variables if id(v) not in claimed]
        claimed.update(id(v) for v in fresh)
        if fresh:
            groups.setdefault(path, []).extend(fresh)

    def visit(container, prefix):
        for layer in container.layers:
            path = prefix + layer.name
            if hasattr(layer, "layers"):  # a nested model: its layers are the rows
                visit(layer, path + "/")
                claim(path, layer.trainable_weights)
            else:
                claim(path, layer.trainable_weights)

    visit(model, "")
    claim(model.name, model.trainable_weights)
    return groups


def _dense(gradient):
    gradient = tf.convert_to_tensor(gradient) if isinstance(gradient, tf.IndexedSlices) else gradient
    return tf.cast(gradient, "float32")


def _squares(tensors, rows, size):
    """Per-row sums of squares: `tensors[i]` adds to row `rows[i]` of a vector of `size`."""
    sums = [tf.reduce_sum(tf.square(tensor)) for tensor in tensors]
    return tf.math.unsorted_segment_sum(tf.stack(sums), tf.constant(rows, "int32"), size)


class GradientProbe:
    """The variables a `GradientMonitor` records into, and the wrapper that fills them in the train step."""

    def __init__(self, groups, every, legacy):
        self.names = list(groups)
        self.every = every
        self.legacy = legacy
        self.row_of = {id(v): row for row, group in enumerate(groups.values()) for v in group}
        self.step = tf.Variable(0, dtype="int64", trainable=False, name="gradient_monitor_step")
        self.values = tf.Variable(tf.zeros((len(QUANTITIES), len(self.names))), trainable=False,
                                  name="gradient_monitor_values")
        self.snapshots = {id(v): tf.Variable(tf.zeros(v.shape, "float32"), trainable=False,
                                             name="gradient_monitor_snapshot")
                          for group in groups.values() for v in group}
        self.optimizer = None
        self.attribute = None

    # --- the traced part -------------------------------------------------------------------------------------------

    def _record(self):
        return tf.equal(tf.math.floormod(self.step, self.every), 0)

    def _before(self, strategy, gradients, variables, scale):
        """Cross-replica: on recorded steps, the applied gradients' and the weights' norms, and a snapshot."""

        def record():
            reduced = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None)
                       if isinstance(g, tf.distribute.DistributedValues) else g for g in gradients]
            factor = tf.cast(scale(), "float32")
            reduced = [_dense(g) / factor for g in reduced]
            weights = [tf.cast(tf.convert_to_tensor(v), "float32") for v in variables]
            rows = [self.row_of[id(v)] for v in variables]
            for v, weight in zip(variables, weights):
                self.snapshots[id(v)].assign(weight)
            size = len(self.names)
            norms = [tf.sqrt(_squares(reduced, rows, size)), tf.sqrt(_squares(weights, rows, size)), tf.zeros(size)]
            self.values.assign(tf.stack(norms))

        tf.cond(self._record(), record, lambda: None)

    def _after(self, strategy, variables):
        """Cross-replica: on recorded steps, the update ratio; then the step count."""

        def record():
            changes = [tf.cast(tf.convert_to_tensor(v), "float32") - self.snapshots[id(v)] for v in variables]
            rows = [self.row_of[id(v)] for v in variables]
            change = tf.sqrt(_squares(changes, rows, len(self.names)))
            self.values.assign(tf.stack([self.values[0], self.values[1], change / self.values[1]]))

        tf.cond(self._record(), record, lambda: None)
        self.step.assign_add(1)

    def around(self, apply, gradients, variables, scale):
        """Runs `apply()` (the optimizer's own step) between the two recording halves."""
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None and id(v) in self.row_of]
        monitored = [v for _, v in pairs]
        # Only the gradients travel as `merge_call` arguments (per replica); the rest is the same on every replica.
        _cross_replica(lambda strategy, grads: self._before(strategy, grads, monitored, scale), [g for g, _ in pairs])
        result = apply()
        _cross_replica(lambda strategy: self._after(strategy, monitored))
        return result

    # --- installing on an optimizer --------------------------------------------------------------------------------

    def install(self, optimizer):
        """Wraps `optimizer`'s entry point on this instance; `remove()` puts the class's method back."""
        self.optimizer = optimizer
        if self.legacy:
            self.attribute = "apply_gradients"
            original = optimizer.apply_gradients

            def apply_gradients(grads_and_vars, *args, **kwargs):
                pairs = list(grads_and_vars)
                return self.around(lambda: original(pairs, *args, **kwargs), [g for g, _ in pairs],
                                   [v for _, v in pairs], lambda: 1.0)  # tf_keras unscales before this call

            wrapper = apply_gradients
        else:
            self.attribute = "apply"
            original = optimizer.apply

            def apply(grads, trainable_variables=None):
                grads = list(grads)
                variables = (_compat.optimizer_trainable_variables(optimizer) if trainable_variables is None
                             else list(trainable_variables))
                return self.around(lambda: original(grads, trainable_variables), grads, variables,
                                   lambda: optimizer.scale_loss(tf.constant(1.0)))

            wrapper = apply
        wrapper.gradient_probe = self
        setattr(optimizer, self.attribute, wrapper)

    def remove(self):
        """Restores the optimizer's own method (if this probe's wrapper is still in place)."""
        optimizer, self.optimizer = self.optimizer, None
        if optimizer is not None and getattr(vars(optimizer).get(self.attribute), "gradient_probe", None) is self:
            delattr(optimizer, self.attribute)

    def read(self):
        """The last recorded values as a float64 array (quantity, layer): one host read."""
        return np.asarray(self.values.numpy(), "float64")


def _cross_replica(function, *args):
    """Calls `function(strategy, *args)` in cross-replica context (via `merge_call` from a replica): the arguments
    arrive as per-replica values; the function called is the first replica's."""
    context = tf.distribute.get_replica_context()
    if context is None:
        return function(tf.distribute.get_strategy(), *args)
    return context.merge_call(function, args=args)


def remove_stale_probe(optimizer):
    """Takes off a probe a failed `fit` left on `optimizer` (its callback never reached `on_train_end`)."""
    for attribute in ("apply", "apply_gradients"):
        probe = getattr(vars(optimizer).get(attribute), "gradient_probe", None)
        if probe is not None:
            probe.remove()

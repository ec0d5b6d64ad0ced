"""The two fixes Keras 3.15's TensorFlow trainer needs to run `fit`/`evaluate` under a multi-worker strategy.

Both change Keras's behaviour only when the model's strategy is a `MultiWorkerMirroredStrategy` with more than one
worker (Keras's own test, `_collective_all_reduce_multi_worker`); everywhere else the original code runs.
`tests/distributed/test_keras_fixes.py` shows plain Keras still failing without each fix.
"""

import sys

import keras


def _trainer_class():
    """Keras's `TensorFlowTrainer`, the base of `keras.Model` that defines `_maybe_symbolic_build`."""
    return next(cls for cls in keras.Model.__mro__ if "_maybe_symbolic_build" in vars(cls))


def _trainer_module():
    return sys.modules[_trainer_class().__module__]


def _multi_worker(strategy):
    return _trainer_module()._collective_all_reduce_multi_worker(strategy)


def _symbolic_build_on_local_batch(original):
    """Keras asks `strategy.reduce("MEAN", first_batch, axis=None)` only for the batch's shapes, which the collective
    strategy refuses (`Attempt to convert a value (PerReplica:...)`): give it this worker's first replica's batch."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or strategy is None or not _multi_worker(strategy):
            return original(self, iterator=iterator, data_batch=data_batch)
        for _, _, batches in iterator:
            data_batch = keras.tree.map_structure(
                lambda value: strategy.experimental_local_results(value)[0], next(batches)
            )
            break
        return original(self, data_batch=data_batch)

    _maybe_symbolic_build.tfopt_fix = True
    return _maybe_symbolic_build


def _mean_over_replicas(original):
    """Keras means each logged value with `strategy.reduce("MEAN", value, axis=0)`, which fails on scalars (`Invalid
    reduction dimension 0 for input with 0 dimensions`, tensorflow issue 72388): mean over the replicas only
    (`axis=None`), as Keras does on one worker (`reduce_mean` of the local results over the replica axis)."""

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and _multi_worker(strategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica.tfopt_fix = True
    return reduce_per_replica


def fix_symbolic_build():
    """Patches `TensorFlowTrainer._maybe_symbolic_build` (once)."""
    trainer = _trainer_class()
    if not getattr(trainer._maybe_symbolic_build, "tfopt_fix", False):
        trainer._maybe_symbolic_build = _symbolic_build_on_local_batch(trainer._maybe_symbolic_build)


def fix_mean_reduction():
    """Patches the trainer module's `reduce_per_replica` (once), which the train and test steps call."""
    module = _trainer_module()
    if not getattr(module.reduce_per_replica, "tfopt_fix", False):
        module.reduce_per_replica = _mean_over_replicas(module.reduce_per_replica)

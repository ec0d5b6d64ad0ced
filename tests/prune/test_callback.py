"""UpdatePruningStep: mask updates inside the one traced training step, the error without it, deep copies."""

import copy

import keras
import numpy as np
import pytest

import tfopt.prune as tprune


class TraceCounter(keras.layers.Layer):
    """An identity layer counting how often its `call` runs in Python: once per trace of a compiled function."""

    traces = 0

    def call(self, inputs):
        TraceCounter.traces += 1
        return inputs


def counted_mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), TraceCounter(), keras.layers.Dense(16, name="hidden"),
                             keras.layers.Dense(4, name="out")])


def test_mask_updates_do_not_retrace_the_train_function(mlp_data, fit_pruned):
    schedule = tprune.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=24, frequency=2)
    pruned = tprune.prune_low_magnitude(counted_mlp(), schedule)
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    fit_pruned(pruned, mlp_data)
    train_function, traces = pruned.train_function, TraceCounter.traces
    sparsities = [[row.sparsity for row in tprune.sparsity(pruned)]]
    for _ in range(2):
        fit_pruned(pruned, mlp_data)
        sparsities.append([row.sparsity for row in tprune.sparsity(pruned)])
    for before, after in zip(sparsities, sparsities[1:]):  # 8 mask updates in these 16 steps
        assert all(a < b for a, b in zip(before, after))
    assert traces > 0 and TraceCounter.traces == traces
    assert pruned.train_function is train_function


def test_fit_without_the_callback_raises_at_the_first_training_step(mlp, mlp_data, fit_pruned):
    pruned = tprune.prune_low_magnitude(mlp(), tprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    with pytest.raises(ValueError, match="trained without the UpdatePruningStep callback"):
        pruned.fit(*mlp_data, verbose=0)
    assert [int(np.asarray(layer.pruning_step)) for layer in tprune.wrapper.pruned_layers(pruned)] == [0, 0]
    pruned.compile(keras.optimizers.Adam(0.05), "mse")  # as the message says
    fit_pruned(pruned, mlp_data)
    assert [row.sparsity for row in tprune.sparsity(pruned)] == [0.5, 0.5]


def test_the_callback_needs_a_pruned_model(mlp, mlp_data):
    model = mlp()
    model.compile("adam", "mse")
    with pytest.raises(ValueError, match="UpdatePruningStep: the model has no pruned layer"):
        model.fit(*mlp_data, verbose=0, callbacks=[tprune.UpdatePruningStep()])


def test_deep_copies_before_and_after_fit(mlp, mlp_data, fit_pruned):
    callback = tprune.UpdatePruningStep()
    pruned = tprune.prune_low_magnitude(mlp(), tprune.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    pruned.fit(*mlp_data, verbose=0, callbacks=[copy.deepcopy(callback)])
    assert isinstance(copy.deepcopy(callback), tprune.UpdatePruningStep)
    pruned.fit(*mlp_data, verbose=0, callbacks=[callback])
    assert callback._layers == [] and copy.deepcopy(callback)._layers == []

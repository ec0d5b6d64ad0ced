"""`TracedHyperparameter`: compares as its float, is read by traced code as a variable, and is unhashable because
its value changes (a hash must agree with `==` for as long as the object lives)."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfopt.callbacks._traced_hyperparameter import TracedHyperparameter, make_traced


def test_compares_as_its_current_float():
    momentum = TracedHyperparameter(0.9, "momentum")
    assert momentum == 0.9 and momentum != 0.85 and 0.8 < momentum <= 0.9
    assert momentum == TracedHyperparameter(0.9, "other")
    momentum.assign(0.85)
    assert momentum == 0.85 and float(momentum) == 0.85


def test_is_unhashable_since_equality_follows_a_changing_value():
    momentum = TracedHyperparameter(0.9, "momentum")
    with pytest.raises(TypeError, match="unhashable type: 'TracedHyperparameter'"):
        hash(momentum)
    with pytest.raises(TypeError, match="unhashable"):
        {momentum: "a dict key equal to 0.9 would not be found under 0.9, nor after assign(0.85)"}


def test_deepcopy_is_an_independent_equal_copy():
    momentum = TracedHyperparameter(0.9, "momentum")
    copied = copy.deepcopy({"momentum": momentum, "again": momentum})
    assert copied["momentum"] is copied["again"] and copied["momentum"] is not momentum
    assert copied["momentum"] == momentum
    copied["momentum"].assign(0.5)
    assert momentum == 0.9 and float(momentum.variable.numpy()) == pytest.approx(0.9)


def test_a_traced_function_reads_the_assigned_value_and_keras_sees_floats():
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    momentum = make_traced(optimizer, "momentum", tf.distribute.get_strategy())
    assert make_traced(optimizer, "momentum", tf.distribute.get_strategy()) is momentum

    @tf.function
    def scaled(x):
        return x * optimizer.momentum

    assert float(scaled(tf.constant(2.0))) == pytest.approx(1.8)
    momentum.assign(0.5)
    assert float(scaled(tf.constant(2.0))) == pytest.approx(1.0)  # not retraced: the variable is read
    config = optimizer.get_config()
    assert type(config["momentum"]) is float and config["momentum"] == 0.5
    restored = keras.optimizers.SGD.from_config(copy.deepcopy(config))
    assert restored.momentum == 0.5 and np.isclose(float(restored.momentum), 0.5)

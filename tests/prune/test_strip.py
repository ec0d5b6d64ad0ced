"""strip_pruning (same outputs, no tfopt class left) and the sparsity table of pruned, stripped and plain models."""

import json
import zipfile

import keras
import numpy as np
import pytest

import tfopt.prune as tprune
from tfopt.prune import LayerSparsity


def test_stripped_model_computes_the_pruned_outputs_without_tfopt(convnet, convnet_data, fit_pruned, tmp_path):
    pruned = tprune.prune_low_magnitude(convnet(), tprune.ConstantSparsity(0.6, begin_step=0, frequency=2))
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    fit_pruned(pruned, convnet_data)
    stripped = tprune.strip_pruning(pruned)
    assert [layer.name for layer in stripped.layers] == [getattr(layer, "layer", layer).name for layer in pruned.layers]
    assert not any(isinstance(layer, tprune.PruneLowMagnitude) for layer in stripped.layers)
    x = convnet_data[0]
    np.testing.assert_array_equal(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0))
    assert tprune.sparsity(stripped) == tprune.sparsity(pruned)
    stripped.save(tmp_path / "stripped.keras")
    with zipfile.ZipFile(tmp_path / "stripped.keras") as archive:
        config = archive.read("config.json").decode()
    assert "tfopt" not in config and "tfopt" not in stripped.to_json()
    assert "PruneLowMagnitude" in json.dumps(json.loads(pruned.to_json()))


def test_stripping_a_plain_model_copies_it(mlp, mlp_data):
    model = mlp()
    copied = tprune.strip_pruning(model)
    assert copied is not model
    np.testing.assert_array_equal(copied.predict(mlp_data[0], verbose=0), model.predict(mlp_data[0], verbose=0))


def test_sparsity_table(mlp, mlp_data, fit_pruned):
    model = mlp()
    kernel, bias = model.layers[1].get_weights()
    kernel[:, :2] = 0.0
    model.layers[1].set_weights([kernel, bias])
    assert tprune.sparsity(model) == [
        LayerSparsity("hidden/kernel", (8, 16), 0, 0.0),
        LayerSparsity("out/kernel", (16, 4), 32, 0.5),
    ]
    schedule = tprune.ConstantSparsity(0.75, begin_step=0, frequency=1)
    pruned = tprune.prune_low_magnitude(model, schedule, layers="hidden")
    pruned.compile(keras.optimizers.Adam(0.05), "mse")
    fit_pruned(pruned, mlp_data)
    table = tprune.sparsity(pruned)
    assert table[0] == LayerSparsity("hidden/kernel", (8, 16), 96, 0.75)
    assert table[1].name == "out/kernel" and table[1].zeros < 32  # not pruned: training revives its zeros
    assert tprune.sparsity(tprune.strip_pruning(pruned)) == table


def test_separable_and_depthwise_kernels_are_listed(convnet):
    names = [row.name for row in tprune.sparsity(convnet())]
    assert names == ["conv/kernel", "depthwise/kernel", "separable/depthwise_kernel", "separable/pointwise_kernel",
                     "out/kernel"]


@pytest.mark.parametrize("function", [tprune.strip_pruning, tprune.sparsity])
def test_a_model_is_required(function):
    with pytest.raises(TypeError, match=f"{function.__name__}: argument `model` must be a Keras 3 or tf_keras Model"):
        function(keras.layers.Dense(2))

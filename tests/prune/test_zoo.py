"""keras.applications models pruned to 50% on every chosen kernel (issue 13's zoo), `keras.ops` calls included
(MobileNetV3's hard-swish once crashed pruning)."""

import keras
import pytest
from zoo_models import ZOO, random_images, zoo_model

import tfopt

# Kernels tfmot 0.8.1 prunes on the same tf_keras.applications models (measured); tfopt must prune as many.
TFMOT_KERNELS = {"MobileNetV3Small": 54, "EfficientNetB0": 82, "ConvNeXtTiny": 59, "DenseNet121": 121}
KERNEL_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def kernel_layers(model):
    """Every Conv2D (grouped ones and depthwise included) and Dense of `model`, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += kernel_layers(layer)
        elif isinstance(layer, KERNEL_LAYERS):
            found.append(layer)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_application_prunes_every_kernel_to_half(name):
    model = zoo_model(name)
    pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.ConstantSparsity(0.5, 0, frequency=1))
    x, y = random_images(8)
    pruned.compile("adam", "sparse_categorical_crossentropy", run_eagerly=True)
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[tfopt.prune.UpdatePruningStep()])
    rows = tfopt.prune.sparsity(tfopt.prune.strip_pruning(pruned))
    assert len(tfopt.prune.wrapper.pruned_layers(pruned)) == len(rows) == len(kernel_layers(model))
    assert len(rows) == TFMOT_KERNELS.get(name, len(rows))
    assert all(abs(row.sparsity - 0.5) < 0.01 for row in rows)

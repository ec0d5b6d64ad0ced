"""Copies of a Keras 3 Sequential or Functional model with some layers replaced, weights included.

`keras.models.clone_model` rebuilds the layer graph with fresh weights; `clone_with` then fills every new layer
with its source's weights, so the copy starts where the source is and the source is left untouched.
"""

import keras

from tfopt import _checks


def check_model(owner, model):
    """Raises a TypeError unless `model` is a Keras 3 Sequential or Functional model (what can be copied)."""
    _checks.instance(owner, "model", model, keras.Model, "a Keras 3 or tf_keras Model")
    _checks.satisfies(
        owner, "model", model, isinstance(model, keras.Sequential) or hasattr(model, "outputs"),
        "a Sequential or Functional model (a subclassed model cannot be copied layer by layer)", TypeError,
    )


def copy_layer(layer):
    """A new, unbuilt layer with `layer`'s configuration."""
    return type(layer).from_config(layer.get_config())


def clone_with(model, replace):
    """A copy of `model` in which `replace(layer)` may stand in for a layer.

    `replace` returns None to copy the layer as it is, or `(new_layer, target, weights)`: the layer to put in the
    copy, the (sub)layer of it to fill, and the list of arrays to fill it with (in `target.weights` order).
    """
    fills = []

    def clone_function(layer):
        replacement = replace(layer)
        if replacement is None:
            new_layer = copy_layer(layer)
            replacement = new_layer, new_layer, layer.get_weights()
        fills.append(replacement[1:])
        return replacement[0]

    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    for target, weights in fills:
        target.set_weights(weights)
    return clone

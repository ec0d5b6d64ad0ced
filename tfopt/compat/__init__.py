"""Carry a model between Keras 3 and tf_keras (Keras 2) in one process, with its weights.

Some tools exist for one generation only: tensorflow_model_optimization (tfmot) clusters, prunes and quantizes
tf_keras models only. `to_tf_keras` rebuilds a Keras 3 Sequential or functional model in tf_keras, `to_keras3`
brings it back; both rebuild every layer from its config and copy its weights, so the new model computes the same
function. The new model is not compiled, and the source model is left as it was.

Only the built-in layers in `LAYERS` cross (nested Sequential and functional models of them too). Custom layers,
`Lambda`, layers that exist in one generation only, wrappers (tfmot's, tfopt's) and the `keras.ops` calls a Keras 3
functional model records (`keras.ops.relu(x)`) can't: the call raises a ValueError naming every one of them, before
anything is built. The mask Keras 3 records for an `Embedding(mask_zero=True)` and passes to the layer called on its
output is left out, as tf_keras propagates it by itself. A layer whose activation the generations compute
differently (`hard_sigmoid`) raises a ValueError naming it. tf_keras is imported on the first `to_tf_keras` call,
never by `import tfopt.compat`.

Example:
    >>> import keras
    >>> from tfopt.compat import to_keras3, to_tf_keras
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> legacy = to_tf_keras(model)          # a tf_keras model: hand it to tfmot
    >>> type(legacy).__module__.split(".")[0]
    'tf_keras'
    >>> back = to_keras3(legacy)             # a Keras 3 model again, same weights
    >>> [w.shape for w in back.get_weights()]
    [(4, 2), (2,)]
"""

import keras

from tfopt import _compat, _surgery
from tfopt.compat import _models
from tfopt.compat._layers import LAYERS

__all__ = ["LAYERS", "to_keras3", "to_tf_keras"]


def to_tf_keras(model):
    """Rebuilds a Keras 3 Sequential or functional `model` in tf_keras, with its weights.

    Args:
        model: a Keras 3 `Sequential` or functional `Model` made of layers in `tfopt.compat.LAYERS`.

    Returns:
        An uncompiled tf_keras model with the same layer names, configs and weights.

    Raises:
        TypeError: if `model` is not a Keras 3 Sequential or functional model (a tf_keras one, say).
        ValueError: naming every layer and `keras.ops` call that can't cross, or a layer whose activation tf_keras
            computes differently.

    Example:
        >>> import keras
        >>> from tfopt.compat import to_tf_keras
        >>> legacy = to_tf_keras(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="out")]))
        >>> legacy.get_layer("out").units
        1
    """
    _check("to_tf_keras", model, legacy=False)
    return _models.convert(model, to_legacy=True)


def to_keras3(model):
    """Rebuilds a tf_keras Sequential or functional `model` in Keras 3, with its weights.

    Args:
        model: a tf_keras `Sequential` or functional `Model` made of layers in `tfopt.compat.LAYERS`.

    Returns:
        An uncompiled Keras 3 model with the same layer names, configs and weights.

    Raises:
        TypeError: if `model` is not a tf_keras Sequential or functional model (a Keras 3 one, say).
        ValueError: naming every layer that can't cross, or a layer whose activation Keras 3 computes differently.

    Example:
        >>> import tf_keras
        >>> from tfopt.compat import to_keras3
        >>> model = to_keras3(tf_keras.Sequential([tf_keras.Input((3,)), tf_keras.layers.Dense(1, name="out")]))
        >>> type(model).__module__.split(".")[0]
        'keras'
    """
    _check("to_keras3", model, legacy=True)
    return _models.convert(model, to_legacy=False)


def _check(owner, model, legacy):
    expected, other = ("tf_keras", "Keras 3") if legacy else ("Keras 3", "tf_keras")
    if not _surgery.graph_kind(model) or _compat.is_legacy(model) != legacy:
        reverse = "to_tf_keras" if legacy else "to_keras3"
        hint = f", which {reverse} carries to {expected}" if _surgery.graph_kind(model) else ""
        raise TypeError(f"{owner}: argument `model` must be a {expected} Sequential or functional model. "
                        f"Received: {_describe(model)}{hint}")
    names = _models.unsupported(model)
    if names:
        raise ValueError(f"{owner}: {len(names)} layer(s) can't cross to {other}: {', '.join(names)}. Only the "
                         "built-in layers in tfopt.compat.LAYERS can (custom layers, Lambda, wrappers and keras.ops "
                         "calls can't).")


def _describe(obj):
    if _compat.is_legacy(obj) or isinstance(obj, keras.layers.Layer):
        return f"a {_compat.generation(obj)} {type(obj).__name__}"
    return f"an object of type {type(obj).__name__}"

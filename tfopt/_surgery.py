"""Model surgery: walk a model's layers, copy a Sequential/Functional model with layers replaced, carry weights.

Every area that rewrites a model goes through here: pruning wraps layers, quantization rewrites the layer graph,
compat rebuilds a model in the other Keras, distillation taps features by layer name. Both Kerases are served;
which one a model belongs to is asked of `tfopt._compat`.

Example:
    >>> import keras
    >>> from tfopt import _surgery
    >>> inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="a")], name="inner")
    >>> model = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1, name="b")], name="outer")
    >>> [layer.name for layer in _surgery.layers(model)]
    ['a', 'b']
    >>> [layer.name for layer in _surgery.layers(model, containers=True)]
    ['outer', 'inner', 'a', 'b']
"""

import dataclasses
import tempfile

import keras

from tfopt import _checks, _compat


def graph_kind(obj):
    """'Sequential' or 'Functional' for a built-in model of either Keras (what can be copied layer by layer), else
    None (a layer, a subclassed model, anything else)."""
    kind = type(obj).__name__
    built_in = type(obj).__module__.split(".")[0] in ("keras", "tf_keras")
    return kind if built_in and kind in ("Sequential", "Functional") else None


def layers(model, containers=False, sublayers=False):
    """Every layer of `model` in order, looking into nested models.

    Args:
        model: a model of either Keras (or a layer: it yields itself).
        containers: also yield `model` and each nested model, before their layers. Defaults to `False`.
        sublayers: also look into the layers a layer holds itself (a wrapper's `layer`, a QAT layer's folded
            BatchNormalization), nested models included. Defaults to `False`.
    """
    is_container = hasattr(model, "layers")
    if containers or not is_container:
        yield model
    children = _compat.sublayers(model) if sublayers else getattr(model, "layers", ())
    for child in children:
        yield from layers(child, containers, sublayers)


def check_copyable(owner, model):
    """Raises a TypeError unless `model` is a Keras 3 Sequential or Functional model (what `clone_with` copies)."""
    _checks.instance(owner, "model", model, keras.Model, "a Keras 3 or tf_keras Model")
    _checks.satisfies(
        owner, "model", model, isinstance(model, keras.Sequential) or hasattr(model, "outputs"),
        "a Sequential or Functional model (a subclassed model cannot be copied layer by layer)", TypeError,
    )


def is_operation(node):
    """True for a `keras.ops` call of a Keras 3 functional graph (`ops.add`, slicing, ...): an `Operation` that is no
    layer, so it holds no weights and can be called again as it is."""
    return isinstance(node, keras.Operation) and not isinstance(node, keras.layers.Layer)


def copy_layer(layer):
    """A new, unbuilt layer with `layer`'s class and configuration (either Keras); a `keras.ops` operation, which
    holds no state, is returned as it is."""
    if is_operation(layer):
        return layer
    return type(layer).from_config(layer.get_config())


def masked_constraint(mask, constraint, shape=None):
    """A kernel constraint that applies `constraint` (if any), then zeroes what `mask` zeroes: optimizers apply it
    after each step, so masked weights stay exactly 0 under any optimizer. `shape`: the shape to view `mask` in
    before it multiplies (a per-head mask over a kernel's head axis, say); None keeps the mask's own."""

    def apply(kernel):
        if constraint is not None:
            kernel = constraint(kernel)
        return kernel * (mask if shape is None else keras.ops.reshape(mask, shape))

    return apply


def carry_state(source, target):
    """Puts into `target`, a built copy of `source` (either Keras), the state `source` keeps beside its weights, the
    way `.keras` saving carries it: `save_own_variables` (an adapted Normalization's mean and variance, which
    `set_weights` leaves unused until `finalize_state()`; a tf-idf lookup's idf weights), then `save_assets` (an
    adapted lookup's or TextVectorization's vocabulary)."""
    store = {}
    source.save_own_variables(store)
    target.load_own_variables(store)
    if hasattr(source, "save_assets"):
        with tempfile.TemporaryDirectory() as folder:
            source.save_assets(folder)
            target.load_assets(folder)


class WeightFills:
    """Weights to put into the layers of a copy once it is built: `fills.apply()` after the copy exists."""

    def __init__(self):
        self._pending = []

    def add(self, target, weights):
        """Fills `target` with the arrays `weights` (in `target.weights` order) on `apply`."""
        self._pending.append((target, weights, None))

    def copy(self, layer):
        """A copy of `layer` that will receive `layer`'s weights and the rest of its state (`carry_state`) on
        `apply` (a `keras.ops` operation: itself)."""
        duplicate = copy_layer(layer)
        if duplicate is not layer:
            self._pending.append((duplicate, layer.get_weights(), layer))
        return duplicate

    def apply(self):
        for target, weights, source in self._pending:
            target.set_weights(weights)
            if source is not None:
                carry_state(source, target)


def clone_with(model, replace):
    """A copy of `model` (Keras 3 or tf_keras, nested models included) in which `replace(layer)` may stand in for a
    layer; `model` itself is left untouched.

    `replace(layer)` returns None to copy the layer with its weights, or `(new_layer, target, weights)`: the layer to
    put in the copy, the (sub)layer of it to fill, and the arrays to fill it with (`target` None: fill nothing).
    """
    fills = WeightFills()

    def clone_function(layer):
        replacement = replace(layer)
        if replacement is None:
            return fills.copy(layer)
        new_layer, target, weights = replacement
        if target is not None:
            fills.add(target, weights)
        return new_layer

    if _compat.is_legacy(model):
        legacy = _compat.keras_of(model)

        def legacy_clone_function(layer):
            if isinstance(layer, legacy.Model):
                return legacy.models.clone_model(layer, clone_function=legacy_clone_function)
            return clone_function(layer)

        clone = legacy.models.clone_model(model, clone_function=legacy_clone_function)
    else:
        clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    fills.apply()
    return clone


def as_functional(model):
    """`model` itself if it is Functional; a Functional over the same layers for a Keras 3 Sequential."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def rewire(functional, call_function):
    """A copy of a Keras 3 Functional model in which `call_function(layer, *args, **kwargs)` makes each layer call.

    Keras's public hook on every call (`keras.models.clone_model(call_function=...)`): the function may call another
    layer, several, or none (returning its input). It receives the model's own layers; copy them (`WeightFills`)
    rather than calling them, or the model gains call nodes.
    """
    return keras.models.clone_model(functional, clone_function=lambda layer: layer, call_function=call_function)


def layer_names(model):
    """The names of every layer of `model` but its inputs, nested models and their layers included (what `tap`
    can reach)."""
    return [layer.name for layer in list(layers(model, containers=True))[1:]
            if not isinstance(layer, keras.layers.InputLayer)]


def output_activation(model):
    """`(layer, activation name)` for what makes the single output of a Sequential or Functional `model` of either
    Keras (looking into a nested model last in line), e.g. `(dense, "softmax")`; the activation is None where it
    can't be read: a subclassed model, several outputs, a layer with no `activation`. A `Softmax` layer or a
    `keras.ops.softmax` call counts as "softmax".

    Example:
        >>> import keras
        >>> from tfopt import _surgery
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax", name="head")])
        >>> layer, activation = _surgery.output_activation(model)
        >>> layer.name, activation
        ('head', 'softmax')
    """
    outputs = getattr(model, "outputs", None) if graph_kind(model) else None
    if not outputs or len(outputs) != 1:
        return model, None
    producer = outputs[0]._keras_history[0]
    if graph_kind(producer):
        return output_activation(producer)
    if type(producer).__name__ == "Softmax":
        return producer, "softmax"
    activation = getattr(producer, "activation", None)
    return producer, activation if isinstance(activation, str) or activation is None else getattr(
        activation, "__name__", None)


def tap(owner, argument, model, names):
    """A Functional model over `model`'s own layers (so its weights) returning `[model's output, *features]`, the
    features being the outputs of the layers called `names`, nested models' layers included.

    Raises a ValueError naming `owner`'s `argument` for an unknown layer, and a TypeError for a model that is not
    Sequential or Functional (a subclassed model has no layer graph to tap).

    Example:
        >>> import keras
        >>> from tfopt import _surgery
        >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2)])
        >>> [tuple(t.shape) for t in _surgery.tap("Distiller", "student_layers", model, ["hidden"]).outputs]
        [(None, 2), (None, 4)]
    """
    check_copyable(owner, model)
    known = layer_names(model)
    unknown = [name for name in names if name not in known]
    _checks.satisfies(owner, argument, list(names), not unknown,
                      f"names of layers of '{model.name}' ({', '.join(known)}); unknown: {unknown}")
    features = {}

    def call(layer, *args, **kwargs):
        inside = [name for name in names if graph_kind(layer) and name in layer_names(layer)]
        if inside:
            output, *tapped = tap(owner, argument, layer, inside)(*args, **kwargs)
            features.update(zip(inside, tapped))
        else:
            output = layer(*args, **kwargs)
        if layer.name in names:
            features[layer.name] = output
        return output

    rewired = rewire(as_functional(model), call)
    return keras.Model(rewired.inputs, [rewired.outputs[0], *[features[name] for name in names]],
                       name=f"{model.name}_features")


@dataclasses.dataclass
class Graph:
    """Who feeds whom in a Functional model.

    Attributes:
        calls: each layer call in order, as (layer, the layers producing its inputs; None for a model input).
        readers: for each layer (by id), the layers that read its output, once per read; a model output counts
            as one read by None.
    """

    calls: list
    readers: dict

    def sole_reader(self, layer):
        """The only layer reading `layer`'s output, or None if there are several, none, or it is a model output."""
        readers = self.readers.get(id(layer), [])
        return readers[0] if len(readers) == 1 else None

    def call_count(self, layer):
        return sum(called is layer for called, _ in self.calls)


def trace(functional):
    """The `Graph` of a Keras 3 Functional model, found by rewiring copies of its layers (it gains no call nodes)."""
    produced_by, copies, calls = {}, {}, []

    def call(layer, *args, **kwargs):
        if id(layer) not in copies:  # a shared layer stays one (named) layer
            copies[id(layer)] = copy_layer(layer)
        duplicate = copies[id(layer)]
        outputs = duplicate(*args, **kwargs)
        sources = [produced_by.get(id(t)) for t in keras.tree.flatten(args) if isinstance(t, keras.KerasTensor)]
        calls.append((layer, sources))
        for tensor in keras.tree.flatten(outputs):
            produced_by[id(tensor)] = layer
        return outputs

    copied = rewire(functional, call)
    readers = {}
    for layer, sources in calls:
        for source in sources:
            readers.setdefault(id(source), []).append(layer)
    for tensor in copied.outputs:
        readers.setdefault(id(produced_by.get(id(tensor))), []).append(None)
    return Graph(calls, readers)

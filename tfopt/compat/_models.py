"""Rebuilds a Sequential or functional model in the other Keras generation, layer by layer, with its weights.

Each layer is made anew from its translated config (`_layers.translate`) by the other generation's `from_config`; a
functional model is wired again from the inbound nodes of its config, which the generations write differently:

    Keras 3:  {"args": [{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}],
               "kwargs": {}}
    tf_keras: [[layer, node, tensor, kwargs], ...]   (one entry: called on a tensor; several: on their list)

A Keras 3 functional config also records the `keras.ops` calls made on its tensors (`keras.ops.relu(x)`), which
tf_keras can't rebuild; one is left out: the `NotEqual` mask of an `Embedding(mask_zero=True)` that Keras 3 passes
as `mask=` to a layer called on the Embedding's output, a mask tf_keras propagates by itself.

Weights are copied layer by layer with `set_weights`; the source model is only read.

Example:
    >>> import keras
    >>> from tfopt.compat import _models
    >>> _models.unsupported(keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x, name="f")]))
    ["'f' (Lambda)"]
    >>> inputs = keras.Input((2,))
    >>> _models.unsupported(keras.Model(inputs, keras.ops.relu(inputs)))  # doctest: +ELLIPSIS
    ["'relu...' (Relu, a keras.ops call)"]
"""

import collections
import dataclasses
import importlib

import keras
import tensorflow as tf

from tfopt import _compat, _surgery
from tfopt.compat import _layers


@dataclasses.dataclass(frozen=True)
class _Ref:
    """A tensor of the source graph: output `tensor` of the `node`-th call of the layer named `layer`."""

    layer: str
    node: int
    tensor: int


def unsupported(model):
    """`'name' (ClassName)` of every layer and `keras.ops` call of `model`, nested models included, that can't
    cross."""
    source = _compat.keras_of(model)
    names = []
    for layer in model.layers:
        kind = type(layer).__name__
        if _surgery.graph_kind(layer):
            names += unsupported(layer)
        elif kind not in _layers.LAYERS or type(layer) is not getattr(source.layers, kind, None):
            names.append(f"'{layer.name}' ({kind})")
    if _surgery.graph_kind(model) == "Functional" and not _compat.is_legacy(model):
        config = model.get_config()
        layer_names = {layer.name for layer in model.layers} | _implicit_masks(config)
        names += [f"'{entry['config']['name']}' ({entry['class_name']}, a keras.ops call)"
                  for entry in config["layers"] if entry["config"]["name"] not in layer_names]
    return names


def _implicit_masks(config):
    """Names of the `NotEqual` nodes of a Keras 3 functional `config` that are the mask of an
    `Embedding(mask_zero=True)` and are only passed as `mask=` to layers (of `LAYERS`, not models) called on that
    Embedding's output."""
    calls = [(entry["config"]["name"], index, _keras3_node(node))
             for entry in config["layers"] for index, node in enumerate(entry.get("inbound_nodes", ()))]
    classes = {entry["config"]["name"]: entry for entry in config["layers"]}
    masked = {_Ref(name, index, 0): args[0] for name, index, (args, _) in calls
              if classes[name]["class_name"] == "Embedding" and classes[name]["config"].get("mask_zero")}
    zero_tests = {_Ref(name, 0, 0): args[0] for name, _, (args, kwargs) in calls
                  if classes[name]["class_name"] == "NotEqual" and len(classes[name]["inbound_nodes"]) == 1
                  and len(args) == 2 and isinstance(args[0], _Ref) and args[1] == 0 and not kwargs}
    readers = collections.defaultdict(list)  # tensor -> for each read, whether it is an Embedding output's mask=
    for name, _, (args, kwargs) in calls:
        layer = classes[name]["class_name"] in _layers.LAYERS
        embedding_input = masked.get(args[0]) if layer and args and isinstance(args[0], _Ref) else None
        for ref in _refs((args, kwargs)):
            own_mask = ref is kwargs.get("mask") and embedding_input is not None
            readers[ref].append(own_mask and zero_tests.get(ref) == embedding_input)
    for ref in _refs(_spec(config["output_layers"])):
        readers[ref].append(False)
    return {ref.layer for ref in zero_tests if all(readers[ref])}


def convert(model, to_legacy):
    """A new model of the other generation with `model`'s architecture and weights (uncompiled)."""
    config = model.get_config()
    sources = {layer.name: layer for layer in model.layers}
    masks = _implicit_masks(config) if to_legacy and _surgery.graph_kind(model) == "Functional" else set()
    layers = {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in masks:
            continue
        source = sources.get(name)
        layers[name] = convert(source, to_legacy) if _surgery.graph_kind(source) else _rebuild(entry, to_legacy,
                                                                                               source)
    target = _keras_module(to_legacy)
    if _surgery.graph_kind(model) == "Sequential":
        new = target.Sequential(list(layers.values()), name=config["name"])
    else:
        new = _wire(config, layers, to_legacy, masks)
    for name, source in sources.items():
        if not _surgery.graph_kind(source):
            layers[name].set_weights(source.get_weights())
    return new


def _keras_module(to_legacy):
    return importlib.import_module("tf_keras") if to_legacy else keras


def _rebuild(entry, to_legacy, source):
    class_name, config = entry["class_name"], entry["config"]
    try:
        translated = _layers.translate(class_name, config, to_legacy)
        if to_legacy:
            translated.update(_build_shapes(source))
        return getattr(_keras_module(to_legacy).layers, class_name).from_config(translated)
    except (TypeError, ValueError) as error:
        owner, generation = ("to_tf_keras", "tf_keras") if to_legacy else ("to_keras3", "Keras 3")
        raise ValueError(f"{owner}: layer '{config['name']}' ({class_name}) can't be rebuilt in {generation}: "
                         f"{error}") from error


def _build_shapes(layer):
    """The input shapes of a built Keras 3 MultiHeadAttention, as tf_keras's config holds them (it builds the layer
    from them; without them it warns and builds on the first call); {} for other layers."""
    if not isinstance(layer, keras.layers.MultiHeadAttention) or not layer.built:
        return {}
    shapes = layer.get_build_config()["shapes_dict"]
    value = shapes["value_shape"]
    return {"query_shape": shapes["query_shape"], "value_shape": value, "key_shape": shapes.get("key_shape", value)}


def _wire(config, layers, to_legacy, masks):
    """Calls the new layers on each other's outputs as the source config's inbound nodes say, leaving out the
    `masks` nodes and the `mask=` arguments that read them."""
    builtin = {entry["config"]["name"]: _builtin_node(entry, to_legacy) for entry in config["layers"]}
    read_node = _keras3_node if to_legacy else _legacy_node
    outputs, queue = {}, collections.deque()
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in masks:
            continue
        if entry["class_name"] == "InputLayer":
            outputs[(name, 0)] = [layers[name].output]
        for index, node in enumerate(entry["inbound_nodes"]):
            args, kwargs = read_node(node)
            if isinstance(kwargs.get("mask"), _Ref) and kwargs["mask"].layer in masks:
                kwargs = {key: value for key, value in kwargs.items() if key != "mask"}
            queue.append((name, index, (args, kwargs) if to_legacy else _shift((args, kwargs), builtin)))
    _call_in_order(queue, layers, outputs)
    inputs, model_outputs = (
        _resolve(_shift(_spec(config[key]), builtin), outputs) for key in ("input_layers", "output_layers")
    )
    return _keras_module(to_legacy).Model(inputs, model_outputs, name=config["name"])


def _builtin_node(entry, to_legacy):
    """1 if the source config counts a nested model's own input-to-output node before its calls, else 0.

    tf_keras counts it for functional models and Sequential ones that start with an InputLayer, in inbound nodes and
    in `input_layers`/`output_layers`; Keras 3 for functional models, in `input_layers`/`output_layers` only.
    """
    kind = entry["class_name"]
    if to_legacy:
        return int(kind == "Functional")
    starts_with_input = kind == "Sequential" and entry["config"]["layers"][0]["class_name"] == "InputLayer"
    return int(kind == "Functional" or starts_with_input)


def _call_in_order(queue, layers, outputs):
    """Makes each queued call `(name, node index, (args, kwargs))` once the tensors it reads exist."""
    waited = 0
    while queue:
        if waited > len(queue):
            raise ValueError(f"Inbound nodes of layers {sorted({name for name, _, _ in queue})} never become ready.")
        name, index, (args, kwargs) = queue.popleft()
        if all((ref.layer, ref.node) in outputs for ref in _refs((args, kwargs))):
            result = layers[name](*_resolve(args, outputs), **_resolve(kwargs, outputs))
            outputs[(name, index)] = tf.nest.flatten(result)
            waited = 0
        else:
            queue.append((name, index, (args, kwargs)))
            waited += 1


def _keras3_node(node):
    """(args, kwargs) of a Keras 3 inbound node, with `_Ref`s for the tensors."""

    def read(obj):
        return _map(obj, lambda tensor: _Ref(*tensor["config"]["keras_history"]), leaf=_is_keras3_tensor)

    # Keras 3 records call arguments left at their defaults, such as `mask=None`, which tf_keras would record too.
    kwargs = {key: value for key, value in read(node["kwargs"]).items() if value is not None}
    return read(node["args"]), kwargs


def _is_keras3_tensor(obj):
    return isinstance(obj, dict) and obj.get("class_name") == "__keras_tensor__"


def _legacy_node(node):
    """(args, kwargs) of a tf_keras inbound node, with `_Ref`s for the tensors; a tensor passed by keyword (the
    `value` of a MultiHeadAttention) is written `[layer, node, tensor]` among the kwargs."""
    refs = [_Ref(layer, index, tensor) for layer, index, tensor, *_ in node]
    kwargs = node[0][3] if len(node[0]) > 3 else {}
    return [refs[0] if len(refs) == 1 else refs], _map(kwargs, lambda ref: _Ref(*ref), leaf=_is_legacy_tensor)


def _is_legacy_tensor(obj):
    return isinstance(obj, list) and len(obj) == 3 and isinstance(obj[0], str) and all(
        isinstance(item, int) for item in obj[1:])


def _map(obj, function, leaf=lambda obj: isinstance(obj, _Ref)):
    """`obj` with `function` applied to its leaves (`_Ref`s unless told), through lists, tuples and dicts."""
    if leaf(obj):
        return function(obj)
    if isinstance(obj, (list, tuple)):
        return [_map(item, function, leaf) for item in obj]
    if isinstance(obj, dict):
        return {key: _map(value, function, leaf) for key, value in obj.items()}
    return obj


def _refs(obj):
    found = []
    _map(obj, found.append)
    return found


def _resolve(obj, outputs):
    return _map(obj, lambda ref: outputs[(ref.layer, ref.node)][ref.tensor])


def _shift(obj, builtin):
    return _map(obj, lambda ref: _Ref(ref.layer, ref.node - builtin.get(ref.layer, 0), ref.tensor))


def _spec(spec):
    """`_Ref`s for the model inputs or outputs named by `input_layers`/`output_layers`: one, a list or a dict."""
    if isinstance(spec, (list, tuple)) and len(spec) == 3 and isinstance(spec[0], str):
        return _Ref(*spec)
    if isinstance(spec, dict):
        return {key: _spec(value) for key, value in spec.items()}
    refs = [_spec(item) for item in spec]
    return refs[0] if len(refs) == 1 else refs

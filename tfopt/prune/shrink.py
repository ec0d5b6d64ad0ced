"""What `strip_pruning(..., shrink=True)` changes: attention layers with fewer heads, Dense layers with fewer units
(and their Dense readers with fewer inputs), so that the pruned heads and neurons are gone, not just zero."""

import dataclasses

import keras
import numpy as np

from tfopt import _checks, _surgery
from tfopt.prune.heads import PruneHeads, shrink_attention
from tfopt.prune.wrapper import PruneLowMagnitude, pruned_layers

_OWNER = "strip_pruning"


@dataclasses.dataclass
class _DenseEdit:
    """The units a Dense keeps (None: all), the inputs it keeps (None: all), and what to add to its bias."""

    layer: keras.layers.Layer
    units: np.ndarray = None
    inputs: np.ndarray = None
    bias_shift: np.ndarray = 0.0


def _dense_parts(layer):
    """(inner Dense, [kernel, bias?] arrays, masked) of a Dense or of a pruning wrapper around one; else None."""
    inner = layer.layer if isinstance(layer, PruneLowMagnitude) else layer
    if not isinstance(inner, keras.layers.Dense):
        return None
    weights = layer.masked_weights() if isinstance(layer, PruneLowMagnitude) else layer.get_weights()
    return inner, weights


def _describe(layer):
    inner = getattr(layer, "layer", layer)
    return f"layer '{inner.name}' ({type(inner).__name__})"


def _fail(rule):
    _checks.satisfies(_OWNER, "shrink", True, False, rule)


def _removed_unit_outputs(inner, weights, removed):
    """What each removed unit of a Dense outputs whatever its input: its activation of its bias (its kernel column
    is zero)."""
    bias = weights[1][removed] if inner.use_bias else np.zeros(len(removed), "float32")
    return np.asarray(keras.activations.get(inner.activation)(keras.ops.convert_to_tensor(bias)))


def _plan_units(wrapper, graph, edits, nested_in=None):
    """Records which units a "channel"-pruned Dense keeps, and folds what the removed ones output into the biases
    of the Dense layers reading it. `graph` is that of the model calling it: `nested_in` names it unless it is the
    top-level model."""
    parts = _dense_parts(wrapper)
    if parts is None:
        _fail(f"False for a model pruned by \"channel\" in {_describe(wrapper)}: shrink removes the pruned units of "
              "Dense layers only")
    inner, weights = parts
    mask = np.asarray(wrapper.mask)
    kept, removed = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(~mask.any(axis=0))
    readers = graph.readers.get(id(wrapper), [])
    for reader in readers:
        if reader is None or _dense_parts(reader) is None or graph.call_count(reader) != 1:
            output = "the model's output" if nested_in is None else f"the output of nested model '{nested_in}'"
            read_by = output if reader is None else _describe(reader)
            _fail(f"False when a \"channel\"-pruned Dense is read by anything but Dense layers (each called once): "
                  f"{_describe(wrapper)} is read by {read_by}")
    edits.setdefault(id(wrapper), _DenseEdit(wrapper)).units = kept
    constant = _removed_unit_outputs(inner, weights, removed)
    for reader in readers:
        reader_inner, reader_weights = _dense_parts(reader)
        shift = constant @ reader_weights[0][removed]
        if not reader_inner.use_bias and np.any(shift):
            _fail(f"False here: the removed units of {_describe(wrapper)} output a constant that {_describe(reader)}, "
                  "which has no bias, can't take over")
        edit = edits.setdefault(id(reader), _DenseEdit(reader))
        edit.inputs, edit.bias_shift = kept, edit.bias_shift + shift


def _shrunk_dense(edit):
    inner, weights = _dense_parts(edit.layer)
    kernel = weights[0]
    if edit.inputs is not None:
        kernel = kernel[edit.inputs]
    config = inner.get_config()
    if edit.units is not None:
        kernel, config = kernel[:, edit.units], {**config, "units": len(edit.units)}
    shrunk = [kernel]
    if inner.use_bias:
        bias = weights[1] + edit.bias_shift
        shrunk.append(bias if edit.units is None else bias[edit.units])
    return type(inner).from_config(config), shrunk


def shrink_plan(model):
    """`{id(layer): (new layer, its weights)}` for every layer of a pruned Keras 3 model that shrinking changes:
    each `PruneHeads` and each "channel"-pruned Dense with its readers, found in the (nested) model calling it.
    Raises for a channel-pruned layer it can't remove units from."""
    plan, edits = {}, {}
    for wrapper in pruned_layers(model):
        if isinstance(wrapper, PruneHeads):
            plan[id(wrapper)] = shrink_attention(wrapper)
    for container in _surgery.layers(model, containers=True):
        channel = [layer for layer in getattr(container, "layers", ())
                   if isinstance(layer, PruneLowMagnitude) and layer.structure == "channel"]
        if channel:
            graph = _surgery.trace(_surgery.as_functional(container))
            for wrapper in channel:
                _plan_units(wrapper, graph, edits, None if container is model else container.name)
    plan.update({key: _shrunk_dense(edit) for key, edit in edits.items()})
    return plan

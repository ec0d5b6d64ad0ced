"""Who feeds whom in a Keras 3 model: the calls of its layers in order, and how many calls read each layer's output.

Found by cloning the model once with `keras.models.clone_model(call_function=...)` (Keras's public hook on every
layer call), on copies of its layers, so the model itself gains no call nodes.
"""

import dataclasses

import keras

from tfopt.prune import _cloning


@dataclasses.dataclass
class Graph:
    """The call structure of a Functional model.

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


def as_functional(model):
    """`model` itself if it is Functional; a Functional over the same layers for a Sequential."""
    if isinstance(model, keras.Sequential):
        return keras.Model(model.inputs, model.outputs, name=model.name)
    return model


def trace(functional):
    """The `Graph` of a Functional model."""
    produced_by, originals, calls = {}, {}, []

    def copy(layer):
        duplicate = _cloning.copy_layer(layer)
        originals[id(duplicate)] = layer
        return duplicate

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        original = originals[id(layer)]
        sources = [produced_by.get(id(t)) for t in keras.tree.flatten(args) if isinstance(t, keras.KerasTensor)]
        calls.append((original, sources))
        for tensor in keras.tree.flatten(outputs):
            produced_by[id(tensor)] = original
        return outputs

    copied = keras.models.clone_model(functional, clone_function=copy, call_function=call)
    readers = {}
    for layer, sources in calls:
        for source in sources:
            readers.setdefault(id(source), []).append(layer)
    for tensor in copied.outputs:
        readers.setdefault(id(produced_by.get(id(tensor))), []).append(None)
    return Graph(calls, readers)

"""A float hyper-parameter of a Keras optimizer (SGD `momentum`, Adam `beta_1`) made settable during `fit`.

Keras optimizers keep such hyper-parameters as Python floats, which the train function bakes in as constants when
it is traced: assigning a new float mid-training changes nothing. `make_traced` replaces the float by a
`TracedHyperparameter`, which the traced step reads as a variable, while Python code (`if self.momentum != 0`) and
the optimizer's `get_config` still see a float. The replacement stays for the optimizer's lifetime, so later
traces keep reading the same variable.

It compares by value, as the float it stands for, and its value changes during training, so it is unhashable, as
Python asks of a mutable object that compares by value: a hash by identity would break `a == b => hash(a) ==
hash(b)` (it equals the float 0.9 but would not find 0.9's dict entry), and a hash by value would move the object to
another bucket at each `assign`. Keras never hashes it: `copy.deepcopy` keys its memo by `id`, and saving sees the
floats `get_config` reports.

Example:
    >>> import keras
    >>> from tfopt.callbacks._traced_hyperparameter import make_traced
    >>> optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    >>> import tensorflow as tf
    >>> momentum = make_traced(optimizer, "momentum", tf.distribute.get_strategy())
    >>> momentum.assign(0.85)
    >>> optimizer.get_config()["momentum"]
    0.85
"""

import operator

import tensorflow as tf


class TracedHyperparameter:
    """A scalar that Python compares as a float and TensorFlow reads as a variable."""

    def __init__(self, value, name):
        self.value = float(value)
        self.variable = tf.Variable(self.value, trainable=False, dtype="float32", name=name)

    def assign(self, value):
        self.value = float(value)
        self.variable.assign(self.value)

    def __float__(self):
        return self.value

    def __repr__(self):
        return f"TracedHyperparameter({self.value})"

    def __deepcopy__(self, memo):
        return TracedHyperparameter(self.value, self.variable.name.split(":")[0])

    def _tensor(self):
        return self.variable.read_value()


def _python(op):
    return lambda self, other: op(self.value, other)


def _traced(op, reflected=False):
    if reflected:
        return lambda self, other: op(other, self._tensor())
    return lambda self, other: op(self._tensor(), other)


for _name, _op in [("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt), ("le", operator.le),
                   ("gt", operator.gt), ("ge", operator.ge)]:
    setattr(TracedHyperparameter, f"__{_name}__", _python(_op))
for _name, _op in [("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                   ("truediv", operator.truediv), ("pow", operator.pow)]:
    setattr(TracedHyperparameter, f"__{_name}__", _traced(_op))
    setattr(TracedHyperparameter, f"__r{_name}__", _traced(_op, reflected=True))
TracedHyperparameter.__neg__ = lambda self: -self._tensor()
TracedHyperparameter.__hash__ = None  # compares by a value that changes: see the module's docstring


def _to_tensor(value, dtype=None, name=None, as_ref=False):
    return tf.cast(value._tensor(), dtype or "float32")


tf.register_tensor_conversion_function(TracedHyperparameter, _to_tensor)


def _report_floats(get_config):
    def get_config_with_floats():
        config = get_config()
        return {key: float(v) if isinstance(v, TracedHyperparameter) else v for key, v in config.items()}

    get_config_with_floats.reports_floats = True
    return get_config_with_floats


def make_traced(optimizer, name, strategy):
    """Makes `optimizer.<name>` a `TracedHyperparameter` (once) and returns it.

    `strategy` is the `tf.distribute` strategy the model was built under, so the variable is mirrored with it.
    """
    current = getattr(optimizer, name)
    if isinstance(current, TracedHyperparameter):
        return current
    with strategy.scope():
        traced = TracedHyperparameter(current, name=f"{optimizer.name}_{name}")
    setattr(optimizer, name, traced)
    if not getattr(optimizer.get_config, "reports_floats", False):
        optimizer.get_config = _report_floats(optimizer.get_config)
    return traced

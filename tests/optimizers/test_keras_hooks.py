"""Guards on the private parts of Keras's optimizer that tfopt relies on, so that a Keras upgrade that renames or
reshapes one fails here, by name, rather than silently changing an optimizer's numbers.

Checked on keras 3.15.1 (TensorFlow backend). Two kinds of private name:
- hooks tfopt overrides: `_apply_weight_decay` (`_common.SwitchableDecay` for RAdam, ADOPT, QHAdam, AdaBound,
  and `_common.DecayInUpdateRule` for LARS, NovoGrad, Prodigy, Adan and most of the issue-14 optimizers) and
  `_distributed_tf_update_step` (the one step over all variables of Prodigy, DAdaptAdam and the schedule-free
  optimizers). If Keras stops calling them, the override is dead code and the base's own decay or per-variable step
  runs instead.
- names read by the functions at the end of `tfopt/_compat.py`.
"""

import contextlib
import inspect

import keras
import numpy as np
import pytest

from tfopt import _compat

CHECKED_ON = ("3.15.1",)

# name -> (parameters after `self`, the tfopt code that depends on it)
HOOKS = {
    "_apply_weight_decay": (["variables"],
                            "_common.SwitchableDecay (RAdam, ADOPT, QHAdam, AdaBound) and _common.DecayInUpdateRule"),
    "_distributed_tf_update_step": (["distribution", "grads_and_vars", "learning_rate"],
                                    "Prodigy, DAdaptAdam, ScheduleFreeSGD and ScheduleFreeRAdam"),
}
READ = {
    "_var_key": (["variable"], "_compat.optimizer_variable_key (LARS)"),
    "_get_variable_index": (["variable"], "_compat.optimizer_variable_index (every optimizer)"),
    "_use_weight_decay": (["variable"], "_compat.optimizer_decays (RAdam, DecayInUpdateRule)"),
}


def _explain(name, users, problem):
    return (
        f"Keras {keras.__version__}: `keras.optimizers.Optimizer.{name}` {problem}. {users} depend on it, as it was "
        f"in Keras {', '.join(CHECKED_ON)}; adapt them (and tfopt/_compat.py) and add this version to CHECKED_ON."
    )


@pytest.mark.parametrize("name", list(HOOKS) + list(READ))
def test_private_method_keeps_its_name_and_signature(name):
    parameters, users = {**HOOKS, **READ}[name]
    method = getattr(keras.optimizers.Optimizer, name, None)
    assert callable(method), _explain(name, users, "no longer exists")
    found = list(inspect.signature(method).parameters)[1:]
    assert found == parameters, _explain(name, users, f"now takes {found}, not {parameters}")


class _Spy(keras.optimizers.SGD):
    """SGD recording which private hooks Keras calls during `apply`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = []

    def _apply_weight_decay(self, variables):
        self.calls.append("_apply_weight_decay")
        super()._apply_weight_decay(variables)

    def _distributed_tf_update_step(self, distribution, grads_and_vars, learning_rate):
        self.calls.append("_distributed_tf_update_step")
        super()._distributed_tf_update_step(distribution, grads_and_vars, learning_rate)


@pytest.mark.parametrize("name", list(HOOKS))
def test_keras_calls_the_overridden_hook(name, mirrored_strategy):
    for strategy in (None, mirrored_strategy):
        with strategy.scope() if strategy else contextlib.nullcontext():
            variable = keras.Variable(np.ones(3, "float32"))
            spy = _Spy(learning_rate=0.1, weight_decay=0.1)
        if strategy:
            strategy.run(lambda: spy.apply([keras.ops.ones(3)], [variable]))
        else:
            spy.apply([keras.ops.ones(3)], [variable])
        where = "under MirroredStrategy" if strategy else "on one device"
        assert name in spy.calls, _explain(name, HOOKS[name][1], f"is no longer called by `apply` {where}")


def test_names_read_by_compat_are_there():
    variables = [keras.Variable(np.ones(3, "float32"), name="a"), keras.Variable(np.ones(2, "float32"), name="b")]
    adam = keras.optimizers.Adam(amsgrad=True, weight_decay=0.1)
    adam.exclude_from_weight_decay(var_names=["b"])
    adam.build(variables)
    users = "tfopt/_compat.py's optimizer functions"
    try:
        assert list(_compat.optimizer_trainable_variables(adam)) == variables
        assert [_compat.optimizer_variable_index(adam, v) for v in variables] == [0, 1]
        assert _compat.optimizer_variable_key(adam, variables[0]) != _compat.optimizer_variable_key(adam, variables[1])
        assert [_compat.optimizer_decays(adam, v) for v in variables] == [True, False]
        slots = _compat.adam_slots(adam, variables[1])
        assert [tuple(slot.shape) for slot in slots] == [(2,)] * 3
    except AttributeError as error:
        pytest.fail(_explain(str(error).split("'")[-2], users, "or an attribute it uses is gone"))



class _FinalizeSpy(keras.optimizers.SGD):
    """SGD recording the calls of the public `finalize_variable_values`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.finalized = 0

    def finalize_variable_values(self, var_list):
        self.finalized += 1
        super().finalize_variable_values(var_list)


def test_fit_ends_with_finalize_variable_values():
    """ScheduleFreeSGD and ScheduleFreeRAdam write their averaged weights there: `fit` must call it once at its end."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    spy = _FinalizeSpy(learning_rate=0.1, name="finalize_spy")
    model.compile(spy, "mse")
    model.fit(np.ones((8, 2), "float32"), np.ones((8, 1), "float32"), epochs=2, verbose=0)
    assert spy.finalized == 1, _explain("finalize_variable_values", "ScheduleFreeSGD and ScheduleFreeRAdam",
                                        "is no longer called once at the end of `fit`")

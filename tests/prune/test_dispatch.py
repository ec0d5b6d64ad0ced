"""tf_keras models go to the tfmot adapter (`tfopt.prune.tfmot`), imported only then; here a stand-in records the
calls, so this Keras 3 process never imports tfmot. tests/legacy checks the real adapter under tf_keras."""

import sys
import types

import pytest

import tfopt.prune as tprune

LegacyModel = type("Sequential", (), {"__module__": "tf_keras.src.engine.sequential", "layers": []})


class Recorder:
    """Stands in for the callback tfmot's UpdatePruningStep returns: records the hooks it receives."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, hook):
        return lambda *args: self.calls.append((hook, args))


@pytest.fixture
def adapter(monkeypatch):
    """A stand-in `tfopt.prune.tfmot` recording each call as (function name, arguments)."""
    module = types.ModuleType("tfopt.prune.tfmot")
    module.calls = []
    module.callback = Recorder()

    def record(name, result):
        return lambda *args: module.calls.append((name, args)) or result

    module.prune_low_magnitude = record("prune_low_magnitude", "pruned")
    module.strip_pruning = record("strip_pruning", "stripped")
    module.update_pruning_step = record("update_pruning_step", module.callback)
    monkeypatch.setitem(sys.modules, "tfopt.prune.tfmot", module)
    monkeypatch.setattr(tprune, "tfmot", module, raising=False)
    return module


def test_prune_and_strip_hand_tf_keras_models_to_the_adapter(adapter):
    model, schedule = LegacyModel(), tprune.PolynomialDecay(0.0, 0.8, begin_step=0, end_step=100)
    assert tprune.prune_low_magnitude(model, schedule, "2:4", ["dense"]) == "pruned"
    assert tprune.strip_pruning(model) == "stripped"
    assert adapter.calls == [("prune_low_magnitude", (model, schedule, "2:4", ["dense"])), ("strip_pruning", (model,))]
    assert tprune.sparsity(model) == []


def test_arguments_are_checked_before_the_hand_over(adapter):
    with pytest.raises(ValueError, match="argument `structure`"):
        tprune.prune_low_magnitude(LegacyModel(), tprune.ConstantSparsity(0.5, 0), "2:x")
    assert adapter.calls == []


def test_update_pruning_step_runs_the_adapters_callback_inside_tf_keras_fit(adapter):
    callback, model = tprune.UpdatePruningStep(), LegacyModel()
    callback.set_model(model)
    callback.on_train_begin()
    callback.on_epoch_begin(0)
    callback.on_epoch_end(0, {"loss": 1.0})
    callback.on_train_end()
    assert adapter.calls == [("update_pruning_step", ())]
    assert adapter.callback.calls == [
        ("set_model", (model,)),
        ("on_train_begin", (None,)),
        ("on_epoch_begin", (0, None)),
        ("on_epoch_end", (0, {"loss": 1.0})),
        ("on_train_end", (None,)),
    ]
    assert callback._legacy is None


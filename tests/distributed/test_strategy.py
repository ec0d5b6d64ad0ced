"""`tfopt.distribute.MultiWorkerMirroredStrategy`: Keras is patched when the strategy is made, never on import, and
only on the Keras version the patches were checked on."""

import subprocess
import sys

import keras
import pytest

import tfopt
from tfopt.distribute import strategy

CHECK = """
import keras, tfopt
trainer = next(cls for cls in keras.Model.__mro__ if "_maybe_symbolic_build" in vars(cls))
def patched():
    return [hasattr(trainer._maybe_symbolic_build, "tfopt_fix"),
            hasattr(keras.callbacks.BackupAndRestore._save_model, "tfopt_fix")]
print(patched())
strategy = tfopt.distribute.MultiWorkerMirroredStrategy()
print(patched(), strategy.num_replicas_in_sync, tfopt.distribute.is_chief())
"""


def test_keras_is_patched_when_the_strategy_is_made_not_on_import():
    output = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True,
                            env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert output.stdout.split("\n")[-3:] == ["[False, False]", "[True, True] 1 True", ""]


def test_another_keras_version_is_left_unpatched_with_a_warning(monkeypatch):
    monkeypatch.setattr(keras, "version", lambda: "3.16.0")
    with pytest.warns(RuntimeWarning, match=r"Keras 3\.16\.0 is not the version .* \(Keras 3\.15\.x\)"):
        assert strategy.patch_keras() is False


def test_another_backend_is_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="must run on the TensorFlow backend. Received: KERAS_BACKEND='jax'"):
        tfopt.distribute.MultiWorkerMirroredStrategy()

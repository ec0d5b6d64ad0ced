import json
import subprocess
import sys

import pytest

CHECK = """
import json, os, sys
import tfopt
import tfopt.callbacks, tfopt.compat, tfopt.models, tfopt.optimizers, tfopt.prune, tfopt.schedules
import tfopt.distill, tfopt.distribute, tfopt.export, tfopt.quantize, tfopt.tuning
import tfopt.demo, tfopt.cli
print(json.dumps({
    "tf_keras": "tf_keras" in sys.modules,
    "keras_tuner": "keras_tuner" in sys.modules,
    "tfmot": any(name.startswith("tensorflow_model_optimization") for name in sys.modules),
    "legacy_flag": os.environ.get("TF_USE_LEGACY_KERAS"),
    "version": tfopt.__version__,
}))
"""


def test_import_tfopt_leaves_tf_keras_tfmot_and_keras_tuner_alone():
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    output = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=True)
    state = json.loads(output.stdout.strip().splitlines()[-1])
    assert state == {"tf_keras": False, "keras_tuner": False, "tfmot": False, "legacy_flag": None,
                     "version": state["version"]}
    assert state["version"].count(".") == 2


@pytest.mark.parametrize("area", ["callbacks", "compat", "distill", "distribute", "export", "models", "optimizers",
                                  "prune", "quantize", "schedules", "tuning"])
def test_each_area_exports_what_it_lists(area):
    module = __import__(f"tfopt.{area}", fromlist=["__all__"])
    assert module.__all__ and all(hasattr(module, name) for name in module.__all__)

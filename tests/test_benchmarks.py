"""Every benchmark runs with `--quick` and prints its ratios, each with its spread, so none of them can rot.

Each runs in its own process: the quantization and pruning benchmarks start tf_keras workers (tfmot sets
TF_USE_LEGACY_KERAS for its process), the scaling benchmark a process and a 2-worker cluster, and each benchmark holds
TensorFlow to one thread before its first op.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
RATIO = r"\d+\.\d{3} \(spread \d+\.\d{3}-\d+\.\d{3} over \d+ rounds\)"
CELL = r"\d+\.\d{3} \(\d+\.\d{3}-\d+\.\d{3}\)"
SPEED = r"\d+ \(\d+-\d+\)"  # steps/s: median (min-max)
# The ratio lines a benchmark must print (a regular expression per line); every benchmark prints one at least.
EXPECTED = {
    "distill": [rf"^Distiller ÷ \(teacher forward \+ student step\): {RATIO}",
                rf"^cached ÷ uncached Distiller epoch: {RATIO}", rf"^control ÷ Distiller: {RATIO}"],
    "gradient_monitor": [rf"^GradientMonitor\(every=10\) ÷ plain: {RATIO}", rf"^control ÷ plain: {RATIO}",
                         r"^first fit, trace included: \d+\.\d\d s CPU plain, \d+\.\d\d s with GradientMonitor"],
    "lr_callbacks": [rf"^LRScheduler ÷ plain: {RATIO}", rf"^OneCyclePolicy ÷ plain: {RATIO}",
                     rf"^control ÷ plain: {RATIO}"],
    "optimizers": [rf"^{re.escape(name)} +{CELL} +{CELL} +" for name in ("Adam", "RAdam", "Lookahead(Adam)",
                                                                         "SharpnessAware + Adam", "Adam (control)")],
    "pruning": [rf"^{side} {kind} ÷ plain step time: {RATIO}" for side in (r"tfopt \(Keras 3\)", r"tfmot \(tf_keras\)")
                for kind in ("pruned", "control")],
    "quantization": [rf"^{side} {kind} ÷ float step time: {RATIO}"
                     for side in (r"tfopt \(Keras 3\)", r"tfmot \(tf_keras\)") for kind in ("QAT", "control")]
    + [rf"^{model}.*: int8 {variant} ÷ float32 latency: {RATIO}"
       for model in ("digits CNN", "digits Transformer", "MobileNet-style") for variant in ("PTQ", "QAT")]
    + [rf"^digits Transformer {kind} ÷ float step time: {RATIO}" for kind in ("QAT", "control")],
    "scaling": [rf"^{re.escape(name)} +{SPEED} +{SPEED} +{CELL} +{CELL} +{CELL}$"
                for name in ("Adam", "LRScheduler", "SharpnessAware", "quantize_model", "Adam (control)")]
    + [rf"^Adam steps/s, 2 workers ÷ 1 process: {RATIO}", r"^goal: .*: (met|NOT met for .+)$"],
}


SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.stem.startswith("_"))


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_runs_quick(name):
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}  # as a user runs it
    result = subprocess.run([sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"], capture_output=True, env=env,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TensorFlow held to 1 thread" in result.stdout
    assert re.search(f"{RATIO}|{CELL}", result.stdout), f"no ratio with its spread in:\n{result.stdout}"
    for pattern in EXPECTED.get(name, []):
        assert re.search(pattern, result.stdout, re.MULTILINE), f"{pattern!r} not in:\n{result.stdout}"

"""Plain Keras 3.15 `fit` under `tf.distribute.MultiWorkerMirroredStrategy` still fails without each of the two fixes
in tfopt/distribute/_trainer.py, and works (`fit`, `evaluate`, `predict`) with both.

If a Keras release makes an assertion on an error below fail, upstream has fixed that failure: drop the fix from
`_trainer.py`, its step here, and move `strategy.CHECKED_KERAS` on.
"""

import json

import cluster
import pytest


@pytest.mark.slow
def test_plain_keras_fails_without_each_fix_and_trains_with_both(tmp_path):
    cluster.run(tmp_path, "keras_fixes", tmp_path, timeout=180)
    for index in (0, 1):
        errors = json.loads((tmp_path / f"worker{index}" / "errors.json").read_text())
        assert errors["none"].startswith("ValueError: Attempt to convert a value (PerReplica:"), errors["none"]
        assert "Invalid reduction dimension 0 for input with 0 dimensions" in errors["symbolic_build"], errors
        assert errors["both"] is None

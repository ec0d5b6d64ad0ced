"""tf_keras tests: this folder runs in its own pytest process with TF_USE_LEGACY_KERAS=1 (tools/run_tests.py)."""

import os

import pytest

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise pytest.UsageError("tests/legacy must run with TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported.")


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.legacy)

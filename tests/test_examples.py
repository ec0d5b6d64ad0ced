import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = sorted((pathlib.Path(__file__).parent.parent / "examples").glob("*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_runs_quick(script, tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}  # as a user runs it
    result = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)  # what a script writes by default goes to the working directory
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accuracy" in result.stdout

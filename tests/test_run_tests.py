"""tools/run_tests.py: how the exit codes of its two pytest processes make the verdict. pytest is replaced by a
fake that writes the JUnit report a real run would write and returns a chosen exit code."""

import importlib.util
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "tools" / "run_tests.py"


@pytest.fixture
def run_tests(monkeypatch, tmp_path):
    """`run_tests(argv, outcomes)`: runs the script's `main` with pytest faked; `outcomes` maps a process name
    ("keras3", "tf_keras") to (exit code, tests collected, failures). Returns (exit code, the commands run)."""
    spec = importlib.util.spec_from_file_location("run_tests_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(tmp_path)

    def run(argv, outcomes):
        commands = []

        def fake_pytest(command, env):
            report = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--junitxml="))
            name = pathlib.Path(report).stem
            code, tests, failures = outcomes[name]
            pathlib.Path(report).write_text(
                f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" '
                f'skipped="0"/></testsuites>'
            )
            commands.append(command)
            return code

        monkeypatch.setattr(module.subprocess, "call", fake_pytest)
        return module.main(argv), commands

    return run


def test_everything_passing_passes(run_tests):
    code, commands = run_tests([], {"keras3": (0, 10, 0), "tf_keras": (0, 4, 0)})
    assert code == 0 and len(commands) == 2


def test_a_failing_test_fails(run_tests):
    assert run_tests([], {"keras3": (0, 10, 0), "tf_keras": (1, 4, 1)})[0] == 1


def test_no_test_collected_without_a_selection_fails(run_tests, capsys):
    # A wrong path or a broken collection hook: the full run must find tests in both processes.
    assert run_tests([], {"keras3": (0, 10, 0), "tf_keras": (5, 0, 0)})[0] == 1
    assert "the tf_keras process failed: no test collected" in capsys.readouterr().out
    assert run_tests([], {"keras3": (5, 0, 0), "tf_keras": (5, 0, 0)})[0] == 1


def test_a_selection_that_matches_nothing_fails(run_tests):
    # A typo in a marker or keyword selects nothing anywhere.
    assert run_tests(["-m", "slwo"], {"keras3": (5, 0, 0), "tf_keras": (5, 0, 0)})[0] == 1
    assert run_tests(["-k", "no_such_test"], {"keras3": (5, 0, 0), "tf_keras": (5, 0, 0)})[0] == 1


def test_a_selection_may_empty_one_process_when_the_other_runs_tests(run_tests):
    code, commands = run_tests(["-m", "legacy"], {"keras3": (5, 0, 0), "tf_keras": (0, 4, 0)})
    assert code == 0
    assert commands[0][-2:] == ["-m", "(not legacy) and (legacy)"]
    assert run_tests(["-kquantize"], {"keras3": (0, 3, 0), "tf_keras": (5, 0, 0)})[0] == 0


def test_a_usage_error_fails(run_tests):
    assert run_tests([], {"keras3": (4, 0, 0), "tf_keras": (0, 4, 0)})[0] == 1

"""Runs tfopt's tests in two pytest processes and prints one closing summary.

1. Keras 3: every test outside tests/legacy, and the `Example:` blocks of tfopt's docstrings (doctests).
2. tf_keras: tests/legacy and the doctests of the tf_keras modules (tfmot adapters, the legacy Distiller), with
   TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported.

Each process spreads its tests over up to 4 pytest-xdist workers, one per core (2 on the 2-core machines CI runs
on: the whole of `make test` then takes ~25 instead of ~35 minutes, TensorFlow's ops being mostly single-threaded
at these sizes).

The summary line `tfopt: N passed, N failed, N skipped` adds both processes up; the exit code is non-zero if any
test failed or a process failed to run. pytest's exit code 5 (no test collected) is a failure, since a wrong path or
a typo in a marker would otherwise pass by running nothing, with one exception: a deliberate selection (`-m` or
`-k`) may leave one process empty (`-m legacy` selects nothing in the Keras 3 process) as long as the other one ran
tests.

Example:
    python tools/run_tests.py               # everything, as CI runs it
    python tools/run_tests.py -m "not slow" # skip the slow end-to-end tests
"""

import argparse
import os
import subprocess
import sys
from xml.etree import ElementTree

RESULTS = ".test-results"
NO_TESTS_COLLECTED = 5  # pytest.ExitCode.NO_TESTS_COLLECTED
WORKERS = min(os.cpu_count() or 1, 4)


def _run(name, paths, env_extra, marker, extra):
    report = os.path.join(RESULTS, f"{name}.xml")
    if os.path.exists(report):
        os.remove(report)
    command = [sys.executable, "-m", "pytest", *paths, f"--junitxml={report}", "-p", "no:cacheprovider"]
    if WORKERS > 1:
        command += ["-n", str(WORKERS)]
    if marker:
        command += ["-m", marker]
    print(f"\n=== {name}: {' '.join(command[2:])}", flush=True)
    code = subprocess.call(command + extra, env={**os.environ, **env_extra})
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if os.path.exists(report):
        for suite in ElementTree.parse(report).getroot().iter("testsuite"):
            tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
            failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
            counts["failed"] += failed
            counts["skipped"] += skipped
            counts["passed"] += tests - failed - skipped
    return counts, code


def _verdicts(runs, selected):
    """Whether each process succeeded, given its (counts, exit code) and whether the user selected tests."""
    ran_any = any(sum(counts.values()) > 0 for counts, _ in runs)
    return [code == 0 or (code == NO_TESTS_COLLECTED and selected and ran_any) for _, code in runs]


def _selected(marker, extra):
    return bool(marker) or any(arg.startswith("-k") for arg in extra)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", dest="marker", default=None, help="extra pytest marker expression, e.g. 'not slow'")
    args, extra = parser.parse_known_args(argv)
    os.makedirs(RESULTS, exist_ok=True)

    def combine(base):
        return f"({base}) and ({args.marker})" if args.marker else base

    legacy_modules = ["tfopt/prune/tfmot.py", "tfopt/quantize/tfmot.py", "tfopt/distill/legacy.py"]  # tf_keras
    runs = [
        _run("keras3", ["tests", "--ignore=tests/legacy", "tfopt", "--doctest-modules", "--ignore-glob=*/tfmot.py",
                        "--ignore=tfopt/distill/legacy.py"],
             {}, combine("not legacy"), extra),
        _run("tf_keras", ["tests/legacy", *legacy_modules, "--doctest-modules"], {"TF_USE_LEGACY_KERAS": "1"},
             args.marker, extra),
    ]
    verdicts = _verdicts(runs, _selected(args.marker, extra))
    for name, (counts, code), ok in zip(("keras3", "tf_keras"), runs, verdicts):
        if not ok and counts["failed"] == 0:
            counts["failed"] = 1  # pytest failed without a failing test: usage or collection error, or nothing ran
            reason = "no test collected" if code == NO_TESTS_COLLECTED else f"pytest exited with {code}"
            print(f"tfopt: the {name} process failed: {reason}", flush=True)
    total = {key: sum(counts[key] for counts, _ in runs) for key in ("passed", "failed", "skipped")}
    print(f"\ntfopt: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped", flush=True)
    return 0 if all(verdicts) and total["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

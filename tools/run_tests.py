"""Runs tfopt's tests in two pytest processes and prints one closing summary.

1. Keras 3: every test outside tests/legacy, and the `Example:` blocks of tfopt's docstrings (doctests).
2. tf_keras: tests/legacy and the doctests of the tfmot adapters, with TF_USE_LEGACY_KERAS=1 set before
   TensorFlow is imported.

pytest's exit code 5 (no test collected) counts as success for a process; the summary line
`tfopt: N passed, N failed, N skipped` adds both processes up, and the exit code is non-zero if any test failed.

Example:
    python tools/run_tests.py               # everything, as CI runs it
    python tools/run_tests.py -m "not slow" # skip the slow end-to-end tests
"""

import argparse
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

RESULTS = ".test-results"


def _run(name, paths, env_extra, marker, extra):
    report = os.path.join(RESULTS, f"{name}.xml")
    if os.path.exists(report):
        os.remove(report)
    command = [sys.executable, "-m", "pytest", *paths, f"--junitxml={report}", "-p", "no:cacheprovider"]
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
    ok = code in (0, 5)
    if not ok and counts["failed"] == 0:
        counts["failed"] = 1  # pytest itself failed (usage or collection error) without a report entry
    return counts, ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", dest="marker", default=None, help="extra pytest marker expression, e.g. 'not slow'")
    args, extra = parser.parse_known_args(argv)
    os.makedirs(RESULTS, exist_ok=True)

    def combine(base):
        return f"({base}) and ({args.marker})" if args.marker else base

    tfmot_adapters = ["tfopt/prune/tfmot.py", "tfopt/quantize/tfmot.py"]  # their examples import tfmot
    runs = [
        _run("keras3", ["tests", "--ignore=tests/legacy", "tfopt", "--doctest-modules", "--ignore-glob=*/tfmot.py"],
             {}, combine("not legacy"), extra),
        _run("tf_keras", ["tests/legacy", *tfmot_adapters, "--doctest-modules"], {"TF_USE_LEGACY_KERAS": "1"},
             args.marker, extra),
    ]
    total = {key: sum(counts[key] for counts, _ in runs) for key in ("passed", "failed", "skipped")}
    print(f"\ntfopt: {total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped", flush=True)
    return 0 if all(ok for _, ok in runs) and total["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Starts worker processes of one `MultiWorkerMirroredStrategy` cluster on free loopback ports.

Each worker runs `python -m worker <args>` (tests/distributed/worker.py) with its own `TF_CONFIG`, in its own process
group, with `TF_USE_LEGACY_KERAS=1` if the cluster is `legacy` (tf_keras models) and without it otherwise, its
output in `<folder>/worker<i>.log`. `run` waits for all of them within a time limit; on a timeout, a failure or an
exception (a failing test) every worker still alive is killed with its whole process group.
"""

import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def free_ports(count):
    """`count` TCP ports on 127.0.0.1 that were free a moment ago."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _environment(ports, index, legacy):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    environment = {name: value for name, value in os.environ.items() if name != "TF_USE_LEGACY_KERAS"}
    return {
        **environment,
        **({"TF_USE_LEGACY_KERAS": "1"} if legacy else {}),
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)]),
        "CUDA_VISIBLE_DEVICES": "",
    }


def _kill(processes):
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    for process in processes:
        process.wait()


class Cluster:
    """The worker processes of one launch: `start`, then `wait` (or `run` for both)."""

    def __init__(self, folder, workers=2, legacy=False):
        self.folder = pathlib.Path(folder)
        self.workers = workers
        self.legacy = legacy
        self.processes = []

    def log(self, index):
        return (self.folder / f"worker{index}.log").read_text()

    def start(self, *args):
        self.folder.mkdir(parents=True, exist_ok=True)
        ports = free_ports(self.workers)
        for index in range(self.workers):
            with open(self.folder / f"worker{index}.log", "w") as log:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "worker", *map(str, args)], env=_environment(ports, index, self.legacy),
                    cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                ))
        return self

    def wait(self, timeout):
        """The workers' exit codes once all have ended; kills them all if any runs past `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while any(process.poll() is None for process in self.processes):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"workers still running after {timeout} s:\n" + self.logs())
                time.sleep(0.2)
        finally:
            _kill(self.processes)
        return [process.returncode for process in self.processes]

    def kill(self):
        _kill(self.processes)

    def logs(self):
        return "\n".join(f"--- worker{index}:\n{self.log(index)[-4000:]}" for index in range(self.workers))


def run(folder, *args, timeout=180, workers=2, legacy=False):
    """Runs `worker.py *args` on `workers` workers (in legacy mode if `legacy`); raises with their logs unless all
    exit with 0."""
    cluster = Cluster(folder, workers, legacy)
    try:
        codes = cluster.start(*args).wait(timeout)
    finally:
        cluster.kill()
    if codes != [0] * workers:
        raise AssertionError(f"worker exit codes {codes}:\n" + cluster.logs())
    return cluster


def results(folder, name):
    """What each worker of a run in `folder` saved for feature `name`, worker 0 first: one dict of arrays each."""
    return [dict(np.load(folder / f"worker{index}" / f"{name}.npz")) for index in (0, 1)]


def assert_workers_end_at(saved, expected, rtol=1e-5, atol=1e-6):
    """Every worker's arrays equal `expected` (one process's) within float32 tolerance."""
    for index, result in enumerate(saved):
        assert sorted(result) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, rtol=rtol, atol=atol, err_msg=f"worker{index} {key}")


def assert_workers_agree(saved):
    """The two workers' arrays are bit-identical."""
    first, second = saved
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)

"""Fault tolerance: worker 1 is killed (SIGKILL) in the middle of epoch 2 of 4, both workers are started again, and
Keras's `BackupAndRestore` resumes them from the chief's backup of epoch 1's end, with the optimizer's slots and step,
`OneCyclePolicy`'s rate and momentum, and the pruning masks and step intact: the final weights equal an uninterrupted
single process's, and no finished epoch runs twice. The same runs check that `BackupAndRestore`, `ModelCheckpoint`
and `TensorBoard` wrote from the chief only."""

import contextlib
import json
import signal

import cluster
import features
import numpy as np
import pytest

EPOCHS, KILLED_IN = 4, 2


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """The folder of a run killed in epoch `KILLED_IN`, with the backup state found between the two launches."""
    folder = tmp_path_factory.mktemp("resume")
    first = cluster.Cluster(folder).start("resume", folder, EPOCHS, KILLED_IN)
    try:
        first.processes[1].wait(timeout=180)
    finally:
        first.kill()
    assert first.processes[1].returncode == -signal.SIGKILL, first.logs()
    backup = json.loads((folder / "shared" / "backup" / "training_metadata.json").read_text())
    cluster.run(folder, "resume", folder, EPOCHS, -1, timeout=180)
    return folder, backup


@pytest.mark.slow
def test_final_weights_equal_an_uninterrupted_run(resumed):
    folder, backup = resumed
    assert backup["epoch"] == KILLED_IN
    expected = features.weights(features.resumable(contextlib.nullcontext(), EPOCHS))
    for index in (0, 1):
        result = np.load(folder / f"worker{index}" / "resumable.npz")
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-5, atol=1e-6, err_msg=f"worker{index} {key}")


@pytest.mark.slow
def test_no_finished_epoch_runs_twice(resumed):
    folder, _ = resumed
    killed = [f"begin {e}" if half == 0 else f"end {e}" for e in range(KILLED_IN) for half in (0, 1)]
    rest = [f"begin {e}" if half == 0 else f"end {e}" for e in range(KILLED_IN, EPOCHS) for half in (0, 1)]
    for index in (0, 1):
        assert (folder / f"worker{index}" / "epochs.txt").read_text().split("\n")[:-1] == [
            *killed, f"begin {KILLED_IN}", *rest]


@pytest.mark.slow
def test_only_the_chief_wrote_and_the_other_worker_deleted_its_copies(resumed):
    folder, _ = resumed
    chief_pids = (folder / "worker0" / "pids.txt").read_text().split()
    worker_pids = (folder / "worker1" / "pids.txt").read_text().split()
    shared = folder / "shared"
    assert not (shared / "backup").exists()  # the chief deleted its backup at the end; the other worker didn't
    assert sorted(path.name for path in (shared / "checkpoints").iterdir()) == [
        f"epoch{e}.weights.h5" for e in range(1, EPOCHS + 1)]
    events = list((shared / "logs").rglob("events.out.tfevents.*"))
    assert sorted(path.name.split(".")[-3] for path in events) == chief_pids  # <time>.<host>.<pid>.<n>.v2
    # The non-chief's TensorBoard log went to its temporary folder: deleted at the end of the finished run, left
    # behind only by the killed one.
    leftovers = list((folder / "worker1" / "tmp").rglob("events.out.tfevents.*"))
    assert [path.name.split(".")[-3] for path in leftovers] == worker_pids[:1]

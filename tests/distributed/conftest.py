"""tests/distributed: clusters of 2 worker processes on loopback (cluster.py, worker.py), checked against one
process training the same features on the same global batches (features.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# worker.py is a worker process's script: it reads TF_CONFIG when imported, so the doctest collection
# (`--doctest-modules` over tests/) must not import it.
collect_ignore = ["worker.py"]

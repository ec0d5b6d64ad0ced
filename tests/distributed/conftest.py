"""tests/distributed: clusters of 2 worker processes on loopback (cluster.py, worker.py), checked against one
process training the same features on the same global batches (features.py)."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

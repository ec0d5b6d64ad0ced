"""Every feature of features.py trained by 2 workers under `tfopt.distribute.MultiWorkerMirroredStrategy` ends where
one process ends on the same global batches (float32 tolerance), and the two workers agree exactly (pruning masks
and QAT ranges included). One cluster launch trains them all."""

import contextlib

import cluster
import features
import numpy as np
import pytest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The folder holding `worker<i>/<feature>.npz` for every feature."""
    folder = tmp_path_factory.mktemp("features")
    cluster.run(folder, "features", folder, *features.FEATURES, timeout=300)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", list(features.FEATURES))
def test_two_workers_end_where_one_process_ends(trained, name):
    # SOAP's and Shampoo's eigenbases magnify the rounding of the summed gradients (as for 2 local replicas in the
    # optimizer contract): every optimizer at the contract's replica tolerance.
    tolerance = dict(rtol=1e-4, atol=1e-5) if name == "every_optimizer" else {}
    cluster.assert_workers_end_at(cluster.results(trained, name), features.FEATURES[name](contextlib.nullcontext()),
                                  **tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(features.FEATURES))
def test_the_workers_agree_exactly(trained, name):
    cluster.assert_workers_agree(cluster.results(trained, name))


@pytest.mark.slow
def test_reduce_lr_on_plateau_halved_the_rate_once(trained):
    for result in cluster.results(trained, "reduce_lr_on_plateau"):
        np.testing.assert_allclose(result["learning_rate"], 5e-3, rtol=1e-6)


@pytest.mark.slow
def test_the_pruned_kernels_are_half_zeros(trained):
    for result in cluster.results(trained, "prune"):
        kernels = [value for value in result.values() if value.ndim == 2]
        assert len(kernels) == 4 and all(np.mean(kernel == 0) == 0.5 for kernel in kernels)

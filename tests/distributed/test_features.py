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


def _results(folder, name):
    return [dict(np.load(folder / f"worker{index}" / f"{name}.npz")) for index in (0, 1)]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(features.FEATURES))
def test_two_workers_end_where_one_process_ends(trained, name):
    expected = features.FEATURES[name](contextlib.nullcontext())
    for index, result in enumerate(_results(trained, name)):
        assert sorted(result) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-5, atol=1e-6, err_msg=f"worker{index} {key}")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(features.FEATURES))
def test_the_workers_agree_exactly(trained, name):
    first, second = _results(trained, name)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


@pytest.mark.slow
def test_reduce_lr_on_plateau_halved_the_rate_once(trained):
    for result in _results(trained, "reduce_lr_on_plateau"):
        np.testing.assert_allclose(result["learning_rate"], 5e-3, rtol=1e-6)


@pytest.mark.slow
def test_the_pruned_kernels_are_half_zeros(trained):
    for result in _results(trained, "prune"):
        kernels = [value for value in result.values() if value.ndim == 2]
        assert len(kernels) == 4 and all(np.mean(kernel == 0) == 0.5 for kernel in kernels)

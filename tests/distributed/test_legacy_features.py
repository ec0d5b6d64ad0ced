"""The tf_keras path: every legacy feature of features.py trained by 2 workers in legacy mode
(`TF_USE_LEGACY_KERAS=1`) under TensorFlow's `MultiWorkerMirroredStrategy` ends where one process ends on the same
global batches, and the two workers agree exactly (tfmot pruning masks and QAT ranges included). One cluster launch
trains them all; a second checks that `tfopt.distribute.MultiWorkerMirroredStrategy` works in a legacy process too.

tfopt's `LRScheduler` and `ReduceLROnPlateau` included: inside tf_keras's `fit` (which runs callbacks in the
strategy's scope) NumPy can't convert a multi-worker variable ("object __array__ method not producing an array"), so
they read the step through `.numpy()` and hand the plateau logic to tf_keras's own callback. tfmot's QAT
(`quantize_model` on a tf_keras model) trains, but each worker learns its activation ranges from its own share of
the global batch: the workers' ranges and weights differ from each other and from one process (xfail, strict)."""

import contextlib

import cluster
import features
import numpy as np
import pytest

DIVERGING = {"legacy_quantize": "tfmot QAT: each worker's activation ranges come from its own share of the batch, "
                                  "not reduced over the workers, so the workers' ranges (and weights) diverge"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The folder holding `worker<i>/<feature>.npz` for every legacy feature."""
    folder = tmp_path_factory.mktemp("legacy_features")
    cluster.run(folder, "tf_features", folder, *features.LEGACY_FEATURES, timeout=240, legacy=True)
    return folder


def _params():
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DIVERGING[name])) if name in DIVERGING
            else name for name in features.LEGACY_FEATURES]


@pytest.mark.slow
@pytest.mark.parametrize("name", _params())
def test_two_workers_end_where_one_process_ends(trained, name):
    cluster.assert_workers_end_at(cluster.results(trained, name),
                                  features.LEGACY_FEATURES[name](contextlib.nullcontext()))


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=DIVERGING[name]))
                                  if name in DIVERGING else name for name in features.LEGACY_FEATURES])
def test_the_workers_agree_exactly(trained, name):
    cluster.assert_workers_agree(cluster.results(trained, name))


@pytest.mark.slow
def test_the_callbacks_moved_the_rate(trained):
    for name in ("legacy_lr_scheduler", "legacy_reduce_lr_on_plateau"):
        assert all(float(result["learning_rate"]) < 1e-2 for result in cluster.results(trained, name)), name


@pytest.mark.slow
def test_the_pruned_kernels_and_masks_are_half_zeros(trained):
    for result in cluster.results(trained, "legacy_prune"):
        matrices = [value for value in result.values() if value.ndim == 2]  # 2 kernels and their 2 masks
        assert len(matrices) == 4 and all(np.mean(matrix == 0) == 0.5 for matrix in matrices)


@pytest.mark.slow
def test_tfopt_strategy_in_a_legacy_process(tmp_path):
    """`tfopt.distribute.MultiWorkerMirroredStrategy` is TensorFlow's strategy (its patches touch Keras 3 only): a
    tf_keras model trains under it as under TensorFlow's."""
    cluster.run(tmp_path, "features", tmp_path, "legacy_adam", timeout=120, legacy=True)
    cluster.assert_workers_end_at(cluster.results(tmp_path, "legacy_adam"),
                                  features.legacy_adam(contextlib.nullcontext()))

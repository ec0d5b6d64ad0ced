"""The three mask rules (unstructured, "channel", "N:M") against NumPy, and the parsing of `structure`."""

import keras
import numpy as np
import pytest

from tfopt.prune import masks


def compute(kernel, pattern, sparsity=0.0, filter_axes=1):
    tensor = keras.ops.convert_to_tensor(kernel)
    return keras.ops.convert_to_numpy(masks.mask(tensor, pattern, np.float32(sparsity), filter_axes))


def reference_keep(count, sparsity):
    """tfmot's count of kept weights: max(round(count * (1 - sparsity)), 1) in float32, half to even."""
    return max(int(np.round(np.float32(count) * (np.float32(1) - np.float32(sparsity)))), 1)


@pytest.mark.parametrize("sparsity", [0.0, 0.25, 0.5, 0.8, 0.99])
def test_unstructured_keeps_the_largest_magnitudes(sparsity):
    kernel = np.random.default_rng(1).normal(size=(10, 7)).astype("float32")
    mask = compute(kernel, None, sparsity)
    keep = reference_keep(kernel.size, sparsity)
    assert mask.shape == kernel.shape and set(np.unique(mask)) <= {0.0, 1.0}
    assert int(mask.sum()) == keep
    assert np.abs(kernel[mask == 1]).min() >= np.abs(kernel[mask == 0]).max(initial=0)


def test_unstructured_count_is_exact_with_ties_and_rounds_half_to_even():
    mask = compute(np.ones((2, 5), "float32"), None, 0.25)  # 10 * 0.75 = 7.5 -> 8 kept
    assert int(mask.sum()) == 8


def test_channel_zeroes_the_whole_filters_of_smallest_l2_norm():
    kernel = np.random.default_rng(2).normal(size=(3, 3, 4, 6)).astype("float32")
    mask = compute(kernel, "channel", 0.5)
    norms = np.sqrt((kernel**2).sum(axis=(0, 1, 2)))
    kept = mask[0, 0, 0] == 1
    assert np.all(mask == mask[:1, :1, :1, :]) and kept.sum() == 3
    assert norms[kept].min() > norms[~kept].max()


def test_channel_on_a_depthwise_kernel_prunes_channel_multiplier_pairs():
    kernel = np.random.default_rng(3).normal(size=(3, 3, 4, 2)).astype("float32")
    mask = compute(kernel, "channel", 0.75, filter_axes=2)
    norms = np.sqrt((kernel**2).sum(axis=(0, 1)))
    kept = mask[0, 0] == 1
    assert np.all(mask == mask[:1, :1]) and kept.sum() == 2
    assert norms[kept].min() > norms[~kept].max()


@pytest.mark.parametrize("shape", [(8, 5), (3, 3, 8, 5)], ids=["dense", "conv"])
@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 8)])
def test_n_of_m_zeroes_the_n_smallest_of_every_m_consecutive_inputs(shape, n, m):
    kernel = np.random.default_rng(4).normal(size=shape).astype("float32")
    mask = compute(kernel, (n, m))
    groups = np.moveaxis(mask, -2, -1).reshape(-1, m)  # groups of M consecutive inputs (kernel axis -2)
    magnitudes = np.moveaxis(np.abs(kernel), -2, -1).reshape(-1, m)
    np.testing.assert_array_equal((groups == 0).sum(axis=1), n)
    for group, values in zip(groups, magnitudes):
        assert values[group == 1].min() >= values[group == 0].max()


@pytest.mark.parametrize(
    "structure, parsed", [(None, None), ("channel", "channel"), ("2:4", (2, 4)), ("1:16", (1, 16))]
)
def test_structures_parse(structure, parsed):
    assert masks.parse("Owner", structure) == parsed


@pytest.mark.parametrize("structure", ["4:2", "2:2", "0:4", "2:4:8", "2-4", "Channel", "", 24])
def test_malformed_structure(structure):
    with pytest.raises(ValueError) as raised:
        masks.parse("Owner", structure)
    assert str(raised.value) == (
        f"Owner: argument `structure` must be {masks.STRUCTURES}. Received: structure={structure!r}"
    )

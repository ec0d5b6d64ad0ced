"""The masks: which weights of a kernel survive, written with `keras.ops` so they run inside the training step.

```python
keep = max(round(count * (1 - sparsity)), 1)            # in float32, round half to even, as tfmot
None:      keep the `keep` largest |w| of the whole kernel
"channel": keep the `keep` filters of largest L2 norm (whole output filters)
"N:M":     zero the N smallest |w| of every M consecutive weights along kernel axis -2 (the input axis)
```
Ties are broken by position, so exactly `count - keep` weights (filters; N per group) are zeroed.
"""

import re

from keras import ops

from tfopt import _checks

STRUCTURES = 'None, "channel", "head" or "N:M" with 0 < N < M, such as "2:4"'


def parse(owner, structure):
    """None, "channel", "head" or the pair (N, M) of an "N:M" structure; raises for anything else."""
    if structure is None or structure in ("channel", "head"):
        return structure
    match = re.fullmatch(r"(\d+):(\d+)", structure) if isinstance(structure, str) else None
    _checks.satisfies(owner, "structure", structure, match and 0 < int(match[1]) < int(match[2]), STRUCTURES)
    return int(match[1]), int(match[2])


def check_fits(owner, structure, layer, kernel):
    """Raises unless `structure` can apply to `layer`, whose `Kernel` description is `kernel`."""
    pattern = parse(owner, structure)
    described = f"layer '{layer.name}' ({type(layer).__name__})"
    if pattern == "channel":
        _checks.satisfies(owner, "structure", structure, kernel.filter_axes > 0,
                          f"None or \"N:M\" for {described}: its kernel does not end with its output axes")
    if not isinstance(pattern, tuple):
        return
    _checks.satisfies(
        owner, "structure", structure, kernel.groupable, f"None or \"channel\" for {described}: it has no input axis"
    )
    inputs = getattr(layer, kernel.attribute).shape[-2]
    _checks.satisfies(
        owner, "structure", structure, inputs % pattern[1] == 0,
        f"a multiple of M = {pattern[1]} inputs per group, but {described} has {inputs} inputs",
    )


def keep_largest(scores, sparsity):
    """1 for the `keep` largest entries of `scores`, 0 for the others."""
    flat = ops.reshape(scores, (-1,))
    count = flat.shape[0]
    keep = ops.maximum(ops.round(float(count) * (1.0 - sparsity)), 1.0)
    order = ops.argsort(-flat)
    kept_in_order = ops.cast(ops.cast(ops.arange(count), "float32") < keep, scores.dtype)
    return ops.reshape(ops.scatter(order[:, None], kept_in_order, (count,)), scores.shape)


def _filters(kernel, sparsity, filter_axes):
    norms = ops.sqrt(ops.sum(ops.square(kernel), axis=tuple(range(len(kernel.shape) - filter_axes))))
    return ops.broadcast_to(keep_largest(norms, sparsity), kernel.shape)


def _n_of_m(kernel, n, m):
    inputs_last = ops.moveaxis(ops.abs(kernel), -2, -1)
    groups = ops.reshape(inputs_last, (*inputs_last.shape[:-1], inputs_last.shape[-1] // m, m))
    rank = ops.argsort(ops.argsort(groups, axis=-1), axis=-1)  # 0 for the smallest |w| of its group
    kept = ops.cast(rank >= n, kernel.dtype)
    return ops.moveaxis(ops.reshape(kept, inputs_last.shape), -1, -2)


def mask(kernel, pattern, sparsity, filter_axes, transposed=False):
    """The mask (0. or 1., shaped and typed as `kernel`) for a parsed structure `pattern` at `sparsity`.

    `transposed`: the kernel's filters are its axis -2 and its inputs axis -1 (a transposed convolution's).
    """
    if transposed:
        return ops.swapaxes(mask(ops.swapaxes(kernel, -1, -2), pattern, sparsity, filter_axes), -1, -2)
    if pattern == "channel":
        return _filters(kernel, sparsity, filter_axes)
    if isinstance(pattern, tuple):
        return _n_of_m(kernel, *pattern)
    return keep_largest(ops.abs(kernel), sparsity)

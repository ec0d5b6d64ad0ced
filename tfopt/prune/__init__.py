"""Magnitude pruning with one API for both Kerases: tfopt's own code for Keras 3 models, tfmot for tf_keras ones.

```python
pruned = tfopt.prune.prune_low_magnitude(model, tfopt.prune.PolynomialDecay(0.0, 0.8, 0, 1000))
pruned.compile(...); pruned.fit(..., callbacks=[tfopt.prune.UpdatePruningStep()])
plain = tfopt.prune.strip_pruning(pruned); tfopt.prune.sparsity(plain)
```
Nothing here imports tfmot or tf_keras: the tf_keras paths import `tfopt.prune.tfmot` when they are taken.
"""

from tfopt.prune.attention import PruneAttention
from tfopt.prune.callback import UpdatePruningStep
from tfopt.prune.heads import PruneHeads
from tfopt.prune.prune import prune_low_magnitude
from tfopt.prune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from tfopt.prune.strip import strip_pruning
from tfopt.prune.summary import LayerSparsity, sparsity
from tfopt.prune.wrapper import PruneLowMagnitude

__all__ = [
    "ConstantSparsity",
    "LayerSparsity",
    "PolynomialDecay",
    "PruneAttention",
    "PruneHeads",
    "PruneLowMagnitude",
    "PruningSchedule",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "sparsity",
    "strip_pruning",
]

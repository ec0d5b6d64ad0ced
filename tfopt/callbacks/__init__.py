"""Keras callbacks: per-batch schedules, one-cycle, plateau reduction, the LR range test, weight averaging (SWA).

Each works in Keras 3's `fit` and, except where its docstring says otherwise, in tf_keras's.
"""

from tfopt.callbacks.lr_finder import LRFinder, find_lr
from tfopt.callbacks.lr_scheduler import LRScheduler
from tfopt.callbacks.one_cycle_policy import OneCyclePolicy
from tfopt.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from tfopt.callbacks.swa import SWA

__all__ = ["LRFinder", "LRScheduler", "OneCyclePolicy", "ReduceLROnPlateau", "SWA", "find_lr"]

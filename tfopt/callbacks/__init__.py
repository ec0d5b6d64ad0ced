"""Keras callbacks: per-batch schedules, one-cycle, plateau reduction, the LR range test, weight averaging (SWA),
per-layer gradient monitoring.

Each works in Keras 3's `fit` and, except where its docstring says otherwise, in tf_keras's.
"""

from tfopt.callbacks.gradient_monitor import GradientMonitor
from tfopt.callbacks.lr_finder import LRFinder, find_lr
from tfopt.callbacks.lr_scheduler import LRScheduler
from tfopt.callbacks.one_cycle_policy import OneCyclePolicy
from tfopt.callbacks.reduce_lr_on_plateau import ReduceLROnPlateau
from tfopt.callbacks.swa import SWA

__all__ = ["GradientMonitor", "LRFinder", "LRScheduler", "OneCyclePolicy", "ReduceLROnPlateau", "SWA", "find_lr"]

"""Wrapper models whose training step differs from Keras's own; `fit`, `evaluate` and `predict` stay Keras's."""

from tfopt.models.sharpness_aware import SharpnessAware

__all__ = ["SharpnessAware"]

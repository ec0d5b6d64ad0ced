"""Keras 3 optimizers that Keras itself lacks, exact to their papers' update rules."""

__all__ = []

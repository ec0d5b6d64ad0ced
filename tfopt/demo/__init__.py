"""`tfopt demo`: the main job, end to end on scikit-learn's digits (runs offline)."""

from tfopt.demo.run import run

__all__ = ["run"]

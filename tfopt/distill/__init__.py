"""Knowledge distillation inside `fit`: a `Distiller` model and the losses Keras lacks.

Example:
    >>> import keras, tfopt
    >>> teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> student = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    >>> distiller = tfopt.distill.Distiller(teacher, student, tfopt.distill.SoftTargets(temperature=4.0))
"""

from tfopt.distill._loss import DistillationLoss
from tfopt.distill.attention_transfer import AttentionTransfer
from tfopt.distill.cache import cache_teacher_outputs
from tfopt.distill.decoupled_kd import DecoupledKD
from tfopt.distill.distiller import Distiller
from tfopt.distill.hint import HintDistillation
from tfopt.distill.relational_kd import RelationalKD
from tfopt.distill.soft_targets import SoftTargets

__all__ = ["AttentionTransfer", "DecoupledKD", "DistillationLoss", "Distiller", "HintDistillation", "RelationalKD",
           "SoftTargets", "cache_teacher_outputs"]

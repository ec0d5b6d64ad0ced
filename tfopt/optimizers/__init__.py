"""Keras 3 optimizers that Keras itself lacks, exact to their papers' update rules, and optimizer wrappers.

Example:
    >>> import keras, tfopt
    >>> optimizer = tfopt.optimizers.Lookahead(tfopt.optimizers.RAdam(learning_rate=1e-3))
"""

from tfopt.optimizers.adabelief import AdaBelief
from tfopt.optimizers.adabound import AdaBound
from tfopt.optimizers.adamp import AdamP
from tfopt.optimizers.adan import Adan
from tfopt.optimizers.ademamix import AdEMAMix
from tfopt.optimizers.adopt import ADOPT
from tfopt.optimizers.cautious import Cautious
from tfopt.optimizers.dadapt_adam import DAdaptAdam
from tfopt.optimizers.gradient_centralization import GradientCentralization
from tfopt.optimizers.laprop import LaProp
from tfopt.optimizers.lars import LARS
from tfopt.optimizers.lazy_adam import LazyAdam
from tfopt.optimizers.lookahead import Lookahead
from tfopt.optimizers.madgrad import MADGRAD
from tfopt.optimizers.mars import MARS
from tfopt.optimizers.novograd import NovoGrad
from tfopt.optimizers.prodigy import Prodigy
from tfopt.optimizers.qhadam import QHAdam
from tfopt.optimizers.radam import RAdam
from tfopt.optimizers.schedule_free_radam import ScheduleFreeRAdam
from tfopt.optimizers.schedule_free_sgd import ScheduleFreeSGD
from tfopt.optimizers.sgdp import SGDP
from tfopt.optimizers.shampoo import Shampoo
from tfopt.optimizers.soap import SOAP
from tfopt.optimizers.stable_adamw import StableAdamW
from tfopt.optimizers.yogi import Yogi

__all__ = [
    "ADOPT",
    "AdEMAMix",
    "AdaBelief",
    "AdaBound",
    "AdamP",
    "Adan",
    "Cautious",
    "DAdaptAdam",
    "GradientCentralization",
    "LARS",
    "LaProp",
    "LazyAdam",
    "Lookahead",
    "MADGRAD",
    "MARS",
    "NovoGrad",
    "Prodigy",
    "QHAdam",
    "RAdam",
    "SGDP",
    "SOAP",
    "ScheduleFreeRAdam",
    "ScheduleFreeSGD",
    "Shampoo",
    "StableAdamW",
    "Yogi",
]

"""The two quantization schemes `tfopt.quantize.quantize_model` trains for, as TFLite runs them.

| scheme  | weights                                   | activations                                          |
| ------- | ----------------------------------------- | ---------------------------------------------------- |
| "int8"  | int8, symmetric (zero point 0), per output | int8, asymmetric: range [min, max] from training      |
|         | channel for Conv/DepthwiseConv, per tensor |                                                      |
|         | for Dense                                  |                                                      |
| "16x8"  | the same                                   | int16, symmetric: range [-a, a], a = max(|min|, |max|) |

Example:
    >>> from tfopt.quantize import schemes
    >>> schemes.get("quantize_model", "16x8").activation_bits
    16
"""

import dataclasses

from tfopt import _checks


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How weights and activations are quantized.

    Attributes:
        name: "int8" or "16x8".
        activation_bits: 8 or 16.
        symmetric_activations: whether activation ranges are centred on 0 (TFLite's int16 kernels need zero point 0).
    """

    name: str
    activation_bits: int
    symmetric_activations: bool
    weight_bits: int = 8


SCHEMES = {"int8": Scheme("int8", 8, False), "16x8": Scheme("16x8", 16, True)}


def get(owner, name):
    """The `Scheme` called `name`; a ValueError naming the valid ones otherwise."""
    _checks.choice(owner, "scheme", name, tuple(SCHEMES))
    return SCHEMES[name]

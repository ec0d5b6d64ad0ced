"""tfopt: parts that plug into an unchanged Keras `model.fit`.

Example:
    >>> import keras, tfopt
    >>> schedule = tfopt.schedules.OneCycle(max_lr=1e-2, total_steps=1000)
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)
"""

__version__ = "0.1.0"

from tfopt import (  # noqa: E402,F401
    callbacks, compat, distill, distribute, export, models, optimizers, prune, quantize, schedules, tuning,
)

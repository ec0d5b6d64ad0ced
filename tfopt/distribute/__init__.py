"""Training across machines with Keras 3: `MultiWorkerMirroredStrategy` and writing from the chief only.

Importing this package changes nothing in Keras; making the strategy does (see `strategy.py`).

Example:
    >>> import tfopt
    >>> tfopt.distribute.is_chief()
    True
"""

from tfopt.distribute.chief import chief_path, is_chief
from tfopt.distribute.strategy import MultiWorkerMirroredStrategy

__all__ = ["MultiWorkerMirroredStrategy", "chief_path", "is_chief"]

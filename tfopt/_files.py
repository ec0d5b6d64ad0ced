"""Writing files so that a failure never leaves a half-written file or replaces a good one, and, under a multi-worker
strategy, so that only the chief's file stays.

Example:
    >>> from tfopt import _files
    >>> _files.write_atomically("/tmp/tfopt-example.txt", lambda file: file.write(b"ok"))
    '/tmp/tfopt-example.txt'
"""

import os
import tempfile

from tfopt.distribute import chief


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write):
    """Calls `write(file)` on a temporary binary file next to `path`, then renames it to `path`.

    The file gets the permissions a plain `open(path, "wb")` would (0666 less the umask), not mkstemp's 0600.
    On any error the temporary file is removed and `path` is left as it was. Under a multi-worker strategy a worker
    other than the chief writes into a temporary folder that is deleted (`tfopt.distribute.chief_path`), so every
    tfopt writer (plots, reports, TFLite files, the demo's) leaves the chief's file only. Returns `path`.
    """
    path = os.fspath(path)
    with chief.chief_path(path) as target:
        _replace_atomically(target, write)
    return path


def _replace_atomically(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise

"""Writing files so that a failure never leaves a half-written file or replaces a good one, and, under a multi-worker
strategy, so that only the chief's file stays.

Example:
    >>> from tfopt import _files
    >>> _files.write_atomically("/tmp/tfopt-example.txt", lambda file: file.write(b"ok"))
    '/tmp/tfopt-example.txt'
"""

import os
import stat
import tempfile

from tfopt.distribute import chief


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path, write):
    """Calls `write(file)` on a temporary binary file next to `path`, then renames it to `path`.

    As a plain `open(path, "wb")` would: a symbolic link's target is replaced (the link stays), an existing file keeps
    its permissions and a new one gets 0666 less the umask (not mkstemp's 0600), and a missing folder raises a
    `FileNotFoundError` naming `path`. On any error the temporary file is removed and `path` is left as it was.
    Under a multi-worker strategy a worker other than the chief writes into a temporary folder that is deleted
    (`tfopt.distribute.chief_path`), so every tfopt writer (plots, reports, TFLite files, the demo's) leaves the
    chief's file only. Returns `path`.
    """
    path = os.fspath(path)
    with chief.chief_path(path) as target:
        _replace_atomically(target, write)
    return path


def _replace_atomically(path, write):
    real = os.path.realpath(path)
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: no such folder {folder}")
    mode = stat.S_IMODE(os.stat(real).st_mode) if os.path.exists(real) else 0o666 & ~_umask()
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(real)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, real)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise

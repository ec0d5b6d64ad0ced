"""tfopt._files.write_atomically: the written file, its permissions, and what a failure leaves."""

import os
import stat

import pytest

from tfopt import _files


def test_writes_with_the_permissions_of_a_plain_open(tmp_path):
    path = tmp_path / "out.bin"
    _files.write_atomically(path, lambda file: file.write(b"content"))
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_bytes() == b"content"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")

    def fail(file):
        file.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        _files.write_atomically(path, fail)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_a_worker_other_than_the_chief_leaves_no_file(tmp_path, monkeypatch):
    from tfopt.distribute import chief  # noqa: PLC0415

    monkeypatch.setattr(chief, "is_chief", lambda strategy=None: False)
    written = []
    path = _files.write_atomically(tmp_path / "out.bin", lambda file: written.append(file.write(b"content")))
    assert path == str(tmp_path / "out.bin") and written == [7]  # the write ran, into a deleted folder
    assert os.listdir(tmp_path) == []

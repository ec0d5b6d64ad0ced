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


def test_an_existing_file_keeps_its_permissions(tmp_path):
    path = tmp_path / "private.bin"
    path.write_bytes(b"old")
    path.chmod(0o600)
    _files.write_atomically(path, lambda file: file.write(b"new"))
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symbolic_link_stays_and_its_target_is_replaced(tmp_path):
    target, link = tmp_path / "v3.tflite", tmp_path / "latest.tflite"
    target.write_bytes(b"v3")
    link.symlink_to(target)
    assert _files.write_atomically(link, lambda file: file.write(b"v4")) == str(link)
    assert link.is_symlink() and os.readlink(link) == str(target) and target.read_bytes() == b"v4"
    assert sorted(os.listdir(tmp_path)) == ["latest.tflite", "v3.tflite"]


def test_a_missing_folder_names_the_path(tmp_path):
    path = tmp_path / "missing" / "out.bin"
    with pytest.raises(FileNotFoundError, match=f"cannot write {path}: no such folder {tmp_path / 'missing'}$"):
        _files.write_atomically(path, lambda file: file.write(b"content"))
    assert os.listdir(tmp_path) == []

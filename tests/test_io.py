"""Atomic outputs get the mode the umask gives any new file (group-readable on a shared cluster)."""

import os
import stat

import pytest

from tbdencoder.io import atomic_directory, atomic_write_text


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o002, 0o664, 0o775), (0o022, 0o644, 0o755),
                                                        (0o077, 0o600, 0o700)])
def test_atomic_outputs_honour_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "metrics.json", "{}")
        with atomic_directory(tmp_path / "dataset") as folder:
            (folder / "x.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "dataset").stat().st_mode) == dir_mode
    assert (tmp_path / "metrics.json").read_text() == "{}"

"""Atomic file writing, hashing and logging shared by every step."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


def get_logger(name: str) -> logging.Logger:
    """A logger that prints `time level name: message` once per process."""
    root = logging.getLogger("tbdencoder")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return logging.getLogger(f"tbdencoder.{name}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A failure (or a kill) never leaves a half-written `path` behind, and an existing
    `path` is untouched until the new one is complete. The file gets the mode a plain
    `open()` would give it (0666 minus the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp")
    os.fchmod(fd, 0o666 & ~current_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def current_umask() -> int:
    """The process's file mode creation mask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `out_dir`, on failure it is removed."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        tmp.chmod(0o777 & ~current_umask())
        yield tmp
        old = tmp.with_name(tmp.name + ".old")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray, allow_pickle: bool = False) -> None:
    """np.save through `atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=allow_pickle)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file through `atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def text_sha256(*parts: str) -> str:
    """Hex sha256 of strings joined by newlines (for cache keys)."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def write_strings(group, name: str, values) -> None:
    """Store a sequence of str as a variable-length utf-8 HDF5 dataset."""
    import h5py

    group.create_dataset(name, data=np.array(list(values), dtype=object), dtype=h5py.string_dtype())

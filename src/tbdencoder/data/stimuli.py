"""stimuli.h5: one row per stimulus, as image paths or uint8 pixels.

Datasets: `stimulus_id` (n,) str, `content_hash` (n,) sha256 hex of the stimulus content (an image
file's bytes; for pixels, the row's dtype, shape and bytes), and either `path` (n,) str (relative paths
are relative to the working directory) or `pixels` (n, H, W, 3) uint8.
Optional provenance columns are 1-D str datasets under `provenance/`.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from tbdencoder.io import atomic_path, file_sha256, write_strings


def write_image_paths(
    out_path: str | Path, stimulus_ids: list[str], paths: list[Path], provenance: dict[str, list[str]] | None = None
) -> None:
    """Write a stimuli file of image paths, hashing each file's bytes."""
    with _stimuli_file(out_path, stimulus_ids, provenance) as h5:
        write_strings(h5, "path", [str(p) for p in paths])
        write_strings(h5, "content_hash", [file_sha256(p) for p in paths])


def write_pixels(
    out_path: str | Path, stimulus_ids: list[str], pixels: np.ndarray, provenance: dict[str, list[str]] | None = None
) -> None:
    """Write a stimuli file of (n, H, W, 3) uint8 pixels, hashing each row (equal images share a hash)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) != len(stimulus_ids):
        raise ValueError(f"{out_path}: expected ({len(stimulus_ids)}, H, W, 3) uint8 pixels, "
                         f"got {pixels.shape} {pixels.dtype}")
    with _stimuli_file(out_path, stimulus_ids, provenance) as h5:
        h5.create_dataset("pixels", data=pixels, chunks=(1, *pixels.shape[1:]))  # the feature stage reads rows
        write_strings(h5, "content_hash", [pixels_sha256(image) for image in pixels])


@contextlib.contextmanager
def _stimuli_file(out_path: str | Path, stimulus_ids: list[str],
                  provenance: dict[str, list[str]] | None) -> Iterator[h5py.File]:
    """An atomically written stimuli file holding the ids and provenance; the caller adds the content."""
    if len(set(stimulus_ids)) != len(stimulus_ids):
        raise ValueError(f"{out_path}: stimulus ids must be unique")
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "stimulus_id", stimulus_ids)
        for name, column in (provenance or {}).items():
            write_strings(h5, f"provenance/{name}", column)
        yield h5


def pixels_sha256(image: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and C-order bytes."""
    digest = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def read_stimulus_ids(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as h5:
        return list(h5["stimulus_id"].asstr()[:])

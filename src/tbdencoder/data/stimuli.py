"""stimuli.h5: one row per stimulus, as image paths or uint8 pixels.

Datasets: `stimulus_id` (n,) str, `content_hash` (n,) sha256 hex of the stimulus content,
and either `path` (n,) str (relative paths are relative to the working directory)
or `pixels` (n, H, W, 3) uint8. Optional provenance columns are 1-D datasets under `provenance/`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
from tbdencoder.io import atomic_path, file_sha256, write_strings


def write_image_paths(
    out_path: str | Path, stimulus_ids: list[str], paths: list[Path], provenance: dict[str, list[str]] | None = None
) -> None:
    """Write a stimuli file of image paths, hashing each file's bytes."""
    if len(set(stimulus_ids)) != len(stimulus_ids):
        raise ValueError(f"{out_path}: stimulus ids must be unique")
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "stimulus_id", stimulus_ids)
        write_strings(h5, "path", [str(p) for p in paths])
        write_strings(h5, "content_hash", [file_sha256(p) for p in paths])
        for name, column in (provenance or {}).items():
            write_strings(h5, f"provenance/{name}", column)


def read_stimulus_ids(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as h5:
        return list(h5["stimulus_id"].asstr()[:])

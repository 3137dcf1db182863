"""What the shared trainer trains on: row-indexed data sets whose batches are dicts of tensors.

`ArrayData` holds arrays in memory; `HDF5Data` reads only a batch's rows of named datasets of a file
(the `layers/<layer>/<token>` maps of a features file, too large for memory), with in-memory arrays
(the targets) beside them. Floating arrays become float32 tensors; others (subject indices) keep their type.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np
import torch


class TrainData(Protocol):
    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> Any:
        """The rows `indices` (in that order) as a pytree (dict, list, tuple) of tensors."""

    def fingerprint(self) -> str:
        """Identifies the data, cheaply: a checkpoint of other data is not resumed."""


def _float32(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.astype(np.float32, copy=False) if np.issubdtype(array.dtype, np.floating) else array


class ArrayData:
    """Rows-first arrays of one length, as tensors on `device`; batches are {name: rows}."""

    def __init__(self, arrays: Mapping[str, np.ndarray], device: str | torch.device = "cpu"):
        self.arrays = {name: torch.as_tensor(_float32(array), device=device) for name, array in arrays.items()}
        lengths = {name: len(array) for name, array in self.arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays of one length expected, got {lengths}")
        self.n_rows = lengths.popitem()[1]

    def __len__(self) -> int:
        return self.n_rows

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        return {name: array[torch.as_tensor(indices, device=array.device)] for name, array in self.arrays.items()}

    def fingerprint(self) -> str:
        """sha256 of the names, shapes, dtypes and values."""
        digest = hashlib.sha256()
        for name, array in self.arrays.items():
            digest.update(f"{name} {tuple(array.shape)} {array.dtype}".encode())
            digest.update(array.cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


class HDF5Data:
    """Rows `rows` (default: all, in file order) of the datasets `datasets` ({batch key: dataset name}) of an
    HDF5 file, read batch by batch (each dataset once per batch, only the batch's rows, in increasing
    order as h5py needs), plus in-memory `arrays` aligned with those rows."""

    def __init__(self, path: str | Path, datasets: Mapping[str, str], rows: np.ndarray | None = None,
                 arrays: Mapping[str, np.ndarray] | None = None):
        self.path, self.datasets = Path(path), dict(datasets)
        with h5py.File(self.path, "r") as h5:
            lengths = {name: len(h5[name]) for name in self.datasets.values()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{self.path}: datasets of one length expected, got {lengths}")
        self.rows = np.arange(lengths.popitem()[1]) if rows is None else np.asarray(rows, dtype=np.int64)
        self.arrays = ArrayData(arrays) if arrays else None
        if self.arrays is not None and len(self.arrays) != len(self.rows):
            raise ValueError(f"arrays have {len(self.arrays)} rows, the file's selection {len(self.rows)}")

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, indices: np.ndarray) -> dict[str, torch.Tensor]:
        file_rows, order = np.unique(self.rows[indices], return_inverse=True)
        with h5py.File(self.path, "r") as h5:
            batch = {key: torch.as_tensor(_float32(h5[name][file_rows])[order]) for key, name in self.datasets.items()}
        return batch if self.arrays is None else {**batch, **self.arrays.batch(indices)}

    def fingerprint(self) -> str:
        """sha256 of the datasets' names, shapes and dtypes, the rows, the arrays and the file's content: its
        `cache_key` attr where it has one (features files: a hash of the stimuli, backbone and settings),
        else its resolved path and the first and last selected rows of each dataset."""
        digest = hashlib.sha256(self.rows.tobytes())
        with h5py.File(self.path, "r") as h5:
            content = h5.attrs.get("cache_key")
            digest.update(str(self.path.resolve() if content is None else content).encode())
            for key, name in self.datasets.items():
                dataset = h5[name]
                digest.update(f"{key} {name} {dataset.shape} {dataset.dtype}".encode())
                if content is None and len(self.rows):
                    digest.update(dataset[np.unique(self.rows[[0, -1]])].tobytes())
        digest.update(b"" if self.arrays is None else self.arrays.fingerprint().encode())
        return digest.hexdigest()

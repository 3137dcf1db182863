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


class SubjectsData:
    """Rows of several subjects whose targets differ in width (fMRI vertex sets): features `x` (n, p) with each
    row's `subject` (n,) index and its row `row` (n,) in that subject's targets `ys[subject]` (rows-first
    arrays, or h5py datasets read a batch at a time). A batch is {"x", "subject", "y": {subject: (b_s, t_s)},
    "rows": {subject: positions of its rows in the batch}} (keys of "y" and "rows" are subject indices as str)."""

    def __init__(self, x: np.ndarray, subject: np.ndarray, row: np.ndarray, ys: list):
        self.x = torch.as_tensor(_float32(x))
        self.subject, self.row, self.ys = np.asarray(subject, np.int64), np.asarray(row, np.int64), ys
        if not len(self.x) == len(self.subject) == len(self.row):
            raise ValueError(f"x, subject and row must have one length, got {len(self.x)}, {len(self.subject)}, "
                             f"{len(self.row)}")

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, indices: np.ndarray) -> dict:
        indices = np.asarray(indices, np.int64)
        subjects = self.subject[indices]
        ys, rows = {}, {}
        for s in np.unique(subjects):
            positions = np.flatnonzero(subjects == s)
            wanted = self.row[indices[positions]]
            unique, order = np.unique(wanted, return_inverse=True)  # h5py reads increasing rows
            ys[str(s)] = torch.as_tensor(_float32(self.ys[s][unique])[order])
            rows[str(s)] = torch.as_tensor(positions)
        return {"x": self.x[torch.as_tensor(indices)], "subject": torch.as_tensor(subjects), "y": ys, "rows": rows}

    def fingerprint(self) -> str:
        """sha256 of x, the subject and row indices, and each target array (a dataset on disk: its shape and its
        first and last rows)."""
        digest = hashlib.sha256(self.x.contiguous().numpy().tobytes())
        digest.update(self.subject.tobytes() + self.row.tobytes())
        for y in self.ys:
            digest.update(f"{y.shape} {y.dtype}".encode())
            digest.update(np.ascontiguousarray(y).tobytes() if isinstance(y, np.ndarray)
                          else np.asarray(y[0]).tobytes() + np.asarray(y[len(y) - 1]).tobytes())
        return digest.hexdigest()

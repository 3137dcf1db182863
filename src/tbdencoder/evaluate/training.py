"""Training curves of gradient-trained families, as their fits files keep them (fMRI and MEG alike).

Layout: a group `folds` with one subgroup per fold named by its index ("0", "1", ...); a gradient-trained family
writes `folds/<k>/train_loss` (epochs,), `folds/<k>/validation_loss` (epochs,) (mean squared error over
standardised targets, one value per epoch) and `folds/<k>/best_epoch` (scalar, the 0-based epoch whose weights
were kept: the lowest validation loss). fMRI fits have one fold ("0"), MEG fits one per outer fold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


@dataclass(frozen=True)
class TrainingCurve:
    """One fold's losses per epoch and the epoch whose weights were kept."""

    train_loss: np.ndarray  # (epochs,)
    validation_loss: np.ndarray  # (epochs,)
    best_epoch: int  # 0-based


def read_training_curves(fit: str | Path | h5py.File) -> dict[int, TrainingCurve]:
    """{fold index: its curve}, folds in increasing order, of every `folds/<k>` that holds a `train_loss` of the
    fits file `fit` (a path or an open file); empty for a fits file without curves (a family that is not
    gradient-trained)."""
    if not isinstance(fit, h5py.File):
        with h5py.File(fit, "r") as h5:
            return read_training_curves(h5)
    curves = {}
    for name, group in fit.get("folds", {}).items():
        if not isinstance(group, h5py.Group) or "train_loss" not in group:
            continue
        where = f"{fit.filename}: folds/{name}"
        if not name.isdigit():
            raise ValueError(f"{where}: expected fold groups named by their index (0, 1, ...)")
        missing = [k for k in ("validation_loss", "best_epoch") if k not in group]
        if missing:
            raise KeyError(f"{where} has train_loss but no {missing} (expected train_loss, validation_loss "
                           "and best_epoch)")
        train, validation = group["train_loss"][()], group["validation_loss"][()]
        if np.ndim(train) != 1 or not len(train) or np.shape(validation) != np.shape(train):
            raise ValueError(f"{where}: train_loss {np.shape(train)} and validation_loss {np.shape(validation)}; "
                             "expected two arrays (epochs,) of the same length, epochs >= 1")
        best_epoch = np.asarray(group["best_epoch"][()])
        if (best_epoch.ndim != 0 or not np.issubdtype(best_epoch.dtype, np.integer)
                or not 0 <= int(best_epoch) < len(train)):
            raise ValueError(f"{where}/best_epoch is {best_epoch.tolist()!r} ({best_epoch.dtype}); expected one "
                             f"0-based integer epoch below {len(train)}")
        curves[int(name)] = TrainingCurve(np.asarray(train, np.float64), np.asarray(validation, np.float64),
                                          int(best_epoch))
    return dict(sorted(curves.items()))

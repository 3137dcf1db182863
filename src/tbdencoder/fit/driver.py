"""The one fit driver: any model family, any cross-validation scheme, fMRI or MEG rows.

A problem is a pool of training rows and a set of rows to predict; a scheme is a list of folds, each
(training rows of the pool, rows to predict). The schemes the pipeline uses:

- fixed split (fMRI): one fold, all training rows -> the scored and the submission images;
- scene-grouped CV (MEG, within subject): the pool is the subject's own rows; each fold predicts the
  rows on some scenes from the rows on the other scenes;
- held-out subject (MEG): the pool is the other subjects' rows; each fold predicts the held-out
  subject's rows on some scenes from the pool's rows on the other scenes.

Each fold's model is built from the spec (`models.base.build_encoder`) and fitted with the training rows'
groups (inner CV never splits a group), subjects and the targets' metadata. The driver returns the
predictions, the fold of every predicted row and every fold's model state; the modality modules
(`fit.fmri`, `fit.meg`) load the rows and write the fits files. Nothing here computes an evaluation score.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import GroupKFold

from tbdencoder.features.featureset import FeatureSet
from tbdencoder.io import get_logger
from tbdencoder.models.base import build_encoder

log = get_logger("fit")


@dataclass
class Rows:
    """Rows of a regression problem: features, targets (None for rows only predicted), CV groups, subjects."""

    X: FeatureSet
    Y: np.ndarray | None = None
    groups: np.ndarray | None = None
    subjects: np.ndarray | None = None

    def take(self, rows) -> Rows:
        pick = (lambda values: None if values is None else values[rows])
        return Rows(self.X.take(rows), pick(self.Y), pick(self.groups), pick(self.subjects))

    @staticmethod
    def stack(parts: list[Rows]) -> Rows:
        """Several problems' rows (e.g. subjects) as one; targets, groups and subjects must be given for all."""
        return Rows(FeatureSet.stack([part.X for part in parts]), *(
            np.concatenate([getattr(part, name) for part in parts]) for name in ("Y", "groups", "subjects")))


@dataclass
class Fold:
    train: np.ndarray  # bool mask over the pool's rows
    predict: np.ndarray  # indices of the rows to predict


@dataclass
class FoldFits:
    """What the driver returns: predictions, the fold of every predicted row and each fold's model output."""

    prediction: np.ndarray  # (n_target, t) float32
    fold: np.ndarray  # (n_target,) int64, -1 where no fold predicts the row
    states: list[dict[str, np.ndarray]]  # per fold: Encoder.state() (per-target arrays)
    artifacts: list[dict[str, np.ndarray]]  # per fold: Encoder.artifacts() where a family has them (weights, curves)


def fit_by_folds(spec: dict[str, Any], pool: Rows, target: Rows, folds: list[Fold], *,
                 targets: dict[str, Any] | None = None, device: str = "auto", checkpoint_dir: str | Path | None = None,
                 label: str = "") -> FoldFits:
    """Fit one model of `spec` per fold on its training rows and predict its rows of `target`.

    A family that checkpoints (its constructor takes `checkpoint`) gets `<checkpoint_dir>/fold<k>.pt`, so
    an interrupted fit resumes fold by fold.
    """
    prediction = np.zeros((target.X.n_rows, pool.Y.shape[1]), dtype=np.float32)
    row_fold = np.full(target.X.n_rows, -1, dtype=np.int64)
    states, artifacts = [], []
    for index, fold in enumerate(folds):
        train = pool.take(fold.train)
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"fold{index}.pt"
        model = build_encoder(spec, device, checkpoint).fit(train.X, train.Y, groups=train.groups,
                                                            subjects=train.subjects, targets=targets)
        rows = target.take(fold.predict)
        prediction[fold.predict] = model.predict(rows.X, subjects=rows.subjects, targets=targets)
        row_fold[fold.predict] = index
        states.append(model.state())
        artifacts.append(model.artifacts() if hasattr(model, "artifacts") else {})
        log.info("%s fold %d/%d: %s fitted on %d rows (%d left out), predicted %d rows", label, index + 1, len(folds),
                 spec["family"], int(fold.train.sum()), int((~fold.train).sum()), len(fold.predict))
    return FoldFits(prediction, row_fold, states, artifacts)


def training_sha256(X: FeatureSet, Y: np.ndarray) -> str:
    """Hex sha256 of the training features and targets (float32 bytes, shapes included)."""
    digest = hashlib.sha256()
    for array in (X.flat(), Y):
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.data)
    return digest.hexdigest()


def checkpoint_dir(out_path: str | Path) -> Path:
    """Where a fit's training checkpoints live until its fits file is written: `<out>.checkpoints/`."""
    return Path(f"{out_path}.checkpoints")


def write_artifacts(h5, artifacts: list[dict[str, np.ndarray]]) -> None:
    """Each fold's artifacts as `folds/<k>/<name>` of an open fits file (nothing for families without any)."""
    for index, arrays in enumerate(artifacts):
        for name, values in arrays.items():
            h5[f"folds/{index}/{name}"] = values


def read_artifacts(h5, fold: int = 0) -> dict[str, np.ndarray]:
    """A fold's artifacts from an open fits file, keyed as the family wrote them (`weights/0.weight`, ...)."""
    if f"folds/{fold}" not in h5:
        return {}
    arrays = {}
    h5[f"folds/{fold}"].visititems(lambda name, item: arrays.__setitem__(name, item[()]) if hasattr(item, "dtype") else None)
    return arrays


def fixed_split(n_pool: int, n_target: int) -> list[Fold]:
    """One fold: every pool row trains, every target row is predicted."""
    return [Fold(np.ones(n_pool, dtype=bool), np.arange(n_target))]


def scene_folds(target_scenes: np.ndarray, pool_scenes: np.ndarray, n_folds: int, inner_folds: int, seed: int,
                subject: str) -> list[Fold]:
    """Folds over the target's scenes; each trains on the pool rows whose scene is not in the fold.

    The outer (`meg.fit.outer_folds`) and inner (`meg.fit.inner_folds`) fold counts are checked against the
    scenes available before any fitting.
    """
    n_scenes = len(np.unique(target_scenes))
    if not 2 <= n_folds <= n_scenes:
        raise ValueError(f"{subject}: meg.fit.outer_folds = {n_folds}, but {n_scenes} scenes are available "
                         f"(scene-grouped folds need 2..{n_scenes})")
    splits = GroupKFold(n_folds, shuffle=True, random_state=seed).split(target_scenes, groups=target_scenes)
    folds = [Fold(~np.isin(pool_scenes, target_scenes[test]), test) for _, test in splits]
    fewest = min(len(np.unique(pool_scenes[fold.train])) for fold in folds)
    if not 2 <= inner_folds <= fewest:
        raise ValueError(f"{subject}: meg.fit.inner_folds = {inner_folds}, but the fewest training scenes of any "
                         f"of the {n_folds} outer folds are {fewest} (scene-grouped inner folds need 2..{fewest})")
    return folds

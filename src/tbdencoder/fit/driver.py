"""The one fit driver: any model family, any cross-validation scheme, fMRI or MEG rows.

A problem is a pool of training rows and a set of rows to predict; a scheme is a list of folds, each
(training rows of the pool, rows to predict). The schemes the pipeline uses:

- fixed split (fMRI, `fit_subjects`): all training rows -> the scored and the submission images, for one
  subject or several (a family with `many_subjects` fitted on all at once, any other per subject);
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

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
from sklearn.model_selection import GroupKFold

from tbdencoder.features.featureset import FeatureSet
from tbdencoder.io import get_logger
from tbdencoder.models.base import build_encoder, build_subjects_encoder

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
                 from_fits: dict[str, str] | None = None, label: str = "") -> FoldFits:
    """Fit one model of `spec` per fold on its training rows and predict its rows of `target`.

    A family that checkpoints (its constructor takes `checkpoint`) gets `<checkpoint_dir>/fold<k>.pt`, so
    an interrupted fit resumes fold by fold. `from_fits` ({model: fits file}) goes to a family that reads
    other models' fits (the spec's `from_models`).
    """
    prediction = np.zeros((target.X.n_rows, pool.Y.shape[1]), dtype=np.float32)
    row_fold = np.full(target.X.n_rows, -1, dtype=np.int64)
    states, artifacts = [], []
    for index, fold in enumerate(folds):
        train = pool.take(fold.train)
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"fold{index}.pt"
        model = build_encoder(spec, device, checkpoint, from_fits)
        rows = target.take(fold.predict)
        if getattr(model, "many_subjects", False):
            prediction[fold.predict], state, arrays = _fit_subjects_fold(model, train, rows, targets)
        else:
            model.fit(train.X, train.Y, groups=train.groups, subjects=train.subjects, targets=targets)
            prediction[fold.predict] = model.predict(rows.X, subjects=rows.subjects, targets=targets)
            state, arrays = model.state(), model.artifacts() if hasattr(model, "artifacts") else {}
        row_fold[fold.predict] = index
        states.append(state)
        artifacts.append(arrays)
        log.info("%s fold %d/%d: %s fitted on %d rows (%d left out), predicted %d rows", label, index + 1, len(folds),
                 spec["family"], int(fold.train.sum()), int((~fold.train).sum()), len(fold.predict))
    return FoldFits(prediction, row_fold, states, artifacts)


def fit_joint_by_folds(spec: dict[str, Any], pool: Rows, folds: list[Fold], *, targets: dict[str, Any] | None = None,
                       device: str = "auto", checkpoint_dir: str | Path | None = None,
                       from_fits: dict[str, str] | None = None, label: str = "") -> dict[str, FoldFits]:
    """One model of several subjects (a `many_subjects` family) per fold, fitted on the fold's training rows of
    every subject of `pool` at once, predicting the fold's rows of each (`fold.predict` indexes the pool; MEG:
    all subjects share `targets`). Per subject: its rows' predictions and folds, each fold's state and artifacts."""
    names = list(dict.fromkeys(pool.subjects))
    local = {s: np.flatnonzero(pool.subjects == s) for s in names}
    prediction = {s: np.zeros((len(local[s]), pool.Y.shape[1]), dtype=np.float32) for s in names}
    row_fold = {s: np.full(len(local[s]), -1, dtype=np.int64) for s in names}
    states, artifacts = {s: [] for s in names}, {s: [] for s in names}
    per_subject = {s: targets for s in names}
    for index, fold in enumerate(folds):
        train, rows = pool.take(fold.train), pool.take(fold.predict)
        checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"fold{index}.pt"
        model = build_encoder(spec, device, checkpoint, from_fits)
        model.fit(train.X, {s: train.Y[train.subjects == s] for s in names if (train.subjects == s).any()},
                  groups=train.groups, subjects=train.subjects, targets=per_subject)
        predicted = model.predict(rows.X, subjects=rows.subjects, targets=per_subject)
        for s in names:
            if s in predicted:
                where = np.searchsorted(local[s], fold.predict[rows.subjects == s])
                prediction[s][where], row_fold[s][where] = predicted[s], index
            states[s].append(model.subject_state(s, targets))
            artifacts[s].append(model.subject_artifacts(s, targets))
        log.info("%s fold %d/%d: %s fitted on %d rows of %d subjects, predicted %d rows", label, index + 1, len(folds),
                 spec["family"], int(fold.train.sum()), len(names), len(fold.predict))
    return {s: FoldFits(prediction[s], row_fold[s], states[s], artifacts[s]) for s in names}


def _fit_subjects_fold(model, train: Rows, rows: Rows, targets: dict[str, Any] | None):
    """A fold of a family fitted on several subjects at once: fit on the pool's subjects (targets per subject,
    here all of one shape, MEG's), predict the fold's rows, which are one subject's (the pool's own, or a new
    one); that subject's state and artifacts."""
    (subject,) = set(rows.subjects)
    names = list(dict.fromkeys(train.subjects))
    per_subject = {s: targets for s in {*names, subject}}
    model.fit(train.X, {s: train.Y[train.subjects == s] for s in names}, groups=train.groups,
              subjects=train.subjects, targets=per_subject)
    prediction = model.predict(rows.X, subjects=rows.subjects, targets=per_subject)[subject]
    return prediction, model.subject_state(subject, targets), model.subject_artifacts(subject, targets)


def fit_subjects(spec: dict[str, Any], train: dict[str, Rows], target: dict[str, Rows],
                 targets: dict[str, dict[str, Any]], *, device: str = "auto", checkpoint_dir: str | Path | None = None,
                 from_fits: dict[str, str] | None = None, label: str = "") -> dict[str, FoldFits]:
    """The fixed split over several subjects: one model of `spec` fitted on every subject's training rows
    predicts every subject's target rows; per subject, what `fit_by_folds` returns for one fold.

    A family with `many_subjects` sees all subjects at once (targets per subject, widths may differ); any
    other family is fitted per subject (models.base.PerSubject), as if each subject were fitted alone.
    """
    subjects = list(train)

    def whose(part: dict[str, Rows]) -> np.ndarray:
        return np.concatenate([np.full(part[s].X.n_rows, s) for s in subjects])

    grouped = all(train[s].groups is not None for s in subjects)
    model = build_subjects_encoder(spec, device, checkpoint_dir, from_fits).fit(
        FeatureSet.stack([train[s].X for s in subjects]), {s: train[s].Y for s in subjects},
        groups=np.concatenate([train[s].groups for s in subjects]) if grouped else None, subjects=whose(train),
        targets=targets)
    prediction = model.predict(FeatureSet.stack([target[s].X for s in subjects]), subjects=whose(target),
                               targets=targets)
    states = {s: model.subject_state(s, targets[s]) for s in subjects}
    artifacts = {s: model.subject_artifacts(s, targets[s]) for s in subjects}
    log.info("%s: %s fitted on %s rows of %d subject(s), predicted %s rows", label, spec["family"],
             "+".join(str(train[s].X.n_rows) for s in subjects), len(subjects),
             "+".join(str(target[s].X.n_rows) for s in subjects))
    return {s: FoldFits(np.asarray(prediction[s], dtype=np.float32), np.zeros(target[s].X.n_rows, dtype=np.int64),
                        [states[s]], [artifacts[s]]) for s in subjects}


def training_sha256(X: FeatureSet, Y: np.ndarray) -> str:
    """Hex sha256 of the training features and targets (float32 bytes, shapes included)."""
    digest = hashlib.sha256(str((X.n_rows, sum(X.block_sizes))).encode())
    for chunk in X.row_chunks():  # the flat view's bytes, a chunk of rows at a time: maps on disk are never read whole
        digest.update(np.ascontiguousarray(chunk, dtype=np.float32).data)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    digest.update(str(Y.shape).encode())
    digest.update(Y.data)
    return digest.hexdigest()


@contextlib.contextmanager
def open_fit(path: str | Path) -> Iterator[h5py.File]:
    """An open fits file, or a ValueError naming it when it is not one (missing, truncated, another HDF5 file)."""
    try:
        h5 = h5py.File(path, "r")
    except (OSError, FileNotFoundError) as error:
        raise ValueError(f"{path}: not a readable fits file ({error}); expected a results/fits/... .h5 written by "
                         "`tbdencoder fit` or `fit-meg`") from None
    with h5:
        missing = [key for key in ("spec", "training_sha256", "model") if key not in h5.attrs]
        if missing:
            raise ValueError(f"{path}: not a fits file (no attrs {missing}; it holds {sorted(h5)[:6]}); expected "
                             "a results/fits/... .h5 written by `tbdencoder fit` or `fit-meg`")
        yield h5


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


def scene_folds(target_scenes: np.ndarray, pool_scenes: np.ndarray, n_folds: int, inner_folds: int, seed: int,
                subject: str, split_scenes: np.ndarray | None = None) -> list[Fold]:
    """Folds over the target's scenes; each trains on the pool rows whose scene is not in the fold.

    `split_scenes` (default: the target's): the scenes, one per fixation, whose scene-grouped split defines the
    folds, e.g. every training subject's, so that a subject fitted alone and a model of all of them predict
    each of its rows from the same fold; a fold with none of the target's scenes is left out.
    The outer (`meg.fit.outer_folds`) and inner (`meg.fit.inner_folds`) fold counts are checked against the
    scenes available before any fitting.
    """
    split_scenes = target_scenes if split_scenes is None else np.asarray(split_scenes)
    n_scenes = len(np.unique(split_scenes))
    if not 2 <= n_folds <= n_scenes:
        raise ValueError(f"{subject}: meg.fit.outer_folds = {n_folds}, but {n_scenes} scenes are available "
                         f"(scene-grouped folds need 2..{n_scenes})")
    splits = GroupKFold(n_folds, shuffle=True, random_state=seed).split(split_scenes, groups=split_scenes)
    held = [np.unique(split_scenes[test]) for _, test in splits]
    folds = [Fold(~np.isin(pool_scenes, scenes), np.flatnonzero(np.isin(target_scenes, scenes))) for scenes in held]
    folds = [fold for fold in folds if len(fold.predict)]
    fewest = min(len(np.unique(pool_scenes[fold.train])) for fold in folds)
    if not 2 <= inner_folds <= fewest:
        raise ValueError(f"{subject}: meg.fit.inner_folds = {inner_folds}, but the fewest training scenes of any "
                         f"of the {n_folds} outer folds are {fewest} (scene-grouped inner folds need 2..{fewest})")
    return folds

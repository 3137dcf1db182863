"""Steps `fit-meg` and `fit-meg-heldout`: time-resolved ridge from fixation-crop features to MEG.

Every gradiometer x time sample is a target with its own ridge penalty (chosen by scene-grouped
K-fold CV on the training rows). Targets are z-scored per subject (over its fixations), so
subjects with different field strengths pool fairly and predictions are in those units.

- `fit_meg_subject`: out-of-fold predictions of one subject's epochs, outer folds grouped by
  scene (no scene in both train and test).
- `fit_meg_heldout`: a subject never trained on is predicted by models trained on the other
  subjects; the held-out subject's scenes are split into folds and each fold is predicted by a
  model trained without any fixation on those scenes.

Fits hold predictions and the outer fold of each row; evaluate_meg computes r within folds.
Output layout: docs/meg.md (`results/fits/meg/<sub>/<model>.h5`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from sklearn.model_selection import GroupKFold

from tbdencoder.data.meg import read_epochs
from tbdencoder.features.store import load_design_matrix
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models.ridge import RidgeEncoder

log = get_logger("fit_meg")


@dataclass
class MegRows:
    """One subject's fixations that have epochs and crop features, as a regression problem."""

    subject: str
    fixation_id: np.ndarray  # (n,) str
    scene_id: np.ndarray  # (n,) str
    X: np.ndarray  # (n, p) float32, the streams' features side by side
    Y: np.ndarray  # (n, channels * times) float32, z-scored per target
    ch_names: list[str]
    times: np.ndarray
    random_init_features: bool


@dataclass(frozen=True)
class RidgeSettings:
    alphas: list[float]
    inner_folds: int
    seed: int
    device: str = "auto"

    def fit(self, X: np.ndarray, Y: np.ndarray, scenes: np.ndarray) -> RidgeEncoder:
        model = RidgeEncoder(self.alphas, self.inner_folds, self.seed, device=self.device)
        return model.fit(X, Y, groups=scenes)


def stream_stimulus_ids(fixation_ids, stream: str) -> list[str]:
    """The stimuli.h5 ids of a stream's crops (see data.crop_stimuli)."""
    return [f"{fixation_id}_{stream}" for fixation_id in fixation_ids]


def load_rows(epochs_path: str | Path, features_path: str | Path, streams: list[str], layers: list[int],
              tokens: list[str]) -> MegRows:
    """Join epochs and crop features by fixation id (never by row order); z-score the targets."""
    data, fixation_ids, times, fixations = read_epochs(epochs_path)
    with h5py.File(features_path, "r") as h5:
        have = set(h5["stimulus_id"].asstr()[:])
        random_init = bool(h5.attrs.get("random_init", False))
    wanted = [stream_stimulus_ids(fixation_ids, stream) for stream in streams]
    keep = np.array([all(ids[row] in have for ids in wanted) for row in range(len(fixation_ids))])
    if not keep.any():
        raise ValueError(f"{features_path}: no features for any fixation of {epochs_path} (streams {streams})")
    if not keep.all():
        log.warning("%s: %d of %d epochs have no crop features for streams %s (crop dropped); left out",
                    epochs_path, int((~keep).sum()), len(keep), streams)
    ids = np.asarray(fixation_ids)[keep]
    X = np.concatenate([load_design_matrix(features_path, stream_stimulus_ids(ids, s), layers, tokens)[0]
                        for s in streams], axis=1)
    Y = data[keep].reshape(int(keep.sum()), -1).astype(np.float64)
    scale = Y.std(0)
    scale[scale == 0] = 1.0
    Y = ((Y - Y.mean(0)) / scale).astype(np.float32)
    with h5py.File(epochs_path, "r") as h5:
        ch_names = list(h5["channels/name"].asstr()[:])
        subject = str(h5.attrs["subject"])
    scenes = fixations["sceneID"].astype(str).to_numpy()[keep]
    return MegRows(subject, ids, scenes, X, Y, ch_names, np.asarray(times), random_init)


def _scene_folds(target: MegRows, scenes: np.ndarray, settings: RidgeSettings,
                 n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training mask over the rows with `scenes`, test rows of the target) per outer fold, grouped by the target's
    scenes; the outer and inner fold counts are checked against the scenes available before any fitting."""
    n_scenes = len(np.unique(target.scene_id))
    if not 2 <= n_folds <= n_scenes:
        raise ValueError(f"{target.subject}: meg.fit.outer_folds = {n_folds}, but {n_scenes} scenes are available "
                         f"(scene-grouped folds need 2..{n_scenes})")
    splits = GroupKFold(n_folds, shuffle=True, random_state=settings.seed).split(target.X, groups=target.scene_id)
    folds = [(~np.isin(scenes, target.scene_id[test]), test) for _, test in splits]
    fewest = min(len(np.unique(scenes[train])) for train, _ in folds)
    if not 2 <= settings.inner_folds <= fewest:
        raise ValueError(f"{target.subject}: meg.fit.inner_folds = {settings.inner_folds}, but the fewest training "
                         f"scenes of any of the {n_folds} outer folds are {fewest} (scene-grouped inner folds need "
                         f"2..{fewest})")
    return folds


def _predict_by_scene_folds(target: MegRows, X: np.ndarray, Y: np.ndarray, scenes: np.ndarray,
                            settings: RidgeSettings, n_folds: int,
                            model_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the target's scenes into folds; predict each fold from the rows (X, Y, scenes) not on its scenes.

    Returns the predictions of every target row, the outer fold that predicted each row, and the median over
    folds of each target's alpha.
    """
    folds = _scene_folds(target, scenes, settings, n_folds)
    prediction = np.empty_like(target.Y)
    row_fold = np.empty(len(prediction), dtype=np.int64)
    fold_alphas = []
    for fold, (train, test) in enumerate(folds):
        model = settings.fit(X[train], Y[train], scenes[train])
        prediction[test] = model.predict(target.X[test])
        row_fold[test] = fold
        fold_alphas.append(model.alpha_)
        log.info("%s %s fold %d/%d: %d training fixations (%d left out: scenes of the test fold), %d test fixations",
                 target.subject, model_name, fold + 1, n_folds, int(train.sum()), int((~train).sum()), len(test))
    return prediction, row_fold, np.median(fold_alphas, axis=0)


def fit_meg_subject(epochs_path: str | Path, features_path: str | Path, out_path: str | Path, *, model_name: str,
                    backbone: str, streams: list[str], layers: list[int], tokens: list[str], alphas: list[float],
                    n_folds: int, inner_folds: int, seed: int, device: str = "auto") -> None:
    """Out-of-fold predictions of one subject's epochs, folds grouped by scene."""
    start = time.perf_counter()
    rows = load_rows(epochs_path, features_path, streams, layers, tokens)
    settings = RidgeSettings(alphas, inner_folds, seed, device)
    prediction, fold, alpha = _predict_by_scene_folds(rows, rows.X, rows.Y, rows.scene_id, settings, n_folds,
                                                      model_name)
    _write_fit(out_path, rows, prediction, fold, alpha, model_name=model_name, backbone=backbone, streams=streams,
               layers=layers, tokens=tokens, scheme="scene_cv", n_folds=n_folds, train_subjects=[rows.subject],
               elapsed_s=time.perf_counter() - start)


def fit_meg_heldout(train_epochs: list[str | Path], train_features: list[str | Path], epochs_path: str | Path,
                    features_path: str | Path, out_path: str | Path, *, model_name: str, backbone: str,
                    streams: list[str], layers: list[int], tokens: list[str], alphas: list[float], n_folds: int,
                    inner_folds: int, seed: int, device: str = "auto") -> None:
    """Predict a held-out subject from models trained on the other subjects (shared sensor space)."""
    start = time.perf_counter()
    if len(train_epochs) != len(train_features) or not train_epochs:
        raise ValueError(f"need one features file per training epochs file, got {len(train_epochs)} epochs "
                         f"and {len(train_features)} features files")
    target = load_rows(epochs_path, features_path, streams, layers, tokens)
    pool = [load_rows(e, f, streams, layers, tokens) for e, f in zip(train_epochs, train_features)]
    for path, rows in zip(train_epochs, pool):
        if rows.ch_names != target.ch_names or not np.allclose(rows.times, target.times):
            raise ValueError(f"{path}: channels or epoch times differ from {epochs_path}; a shared sensor space "
                             f"(same channel names and times) is needed to predict a held-out subject")
    settings = RidgeSettings(alphas, inner_folds, seed, device)
    prediction, fold, alpha = _predict_by_scene_folds(
        target, np.concatenate([rows.X for rows in pool]), np.concatenate([rows.Y for rows in pool]),
        np.concatenate([rows.scene_id for rows in pool]), settings, n_folds, model_name)
    _write_fit(out_path, target, prediction, fold, alpha, model_name=model_name, backbone=backbone, streams=streams,
               layers=layers, tokens=tokens, scheme="heldout_subject", n_folds=n_folds,
               train_subjects=[rows.subject for rows in pool], elapsed_s=time.perf_counter() - start)


def _write_fit(out_path: str | Path, rows: MegRows, prediction: np.ndarray, fold: np.ndarray, alpha: np.ndarray, *,
               model_name: str, backbone: str, streams: list[str], layers: list[int], tokens: list[str], scheme: str,
               n_folds: int, train_subjects: list[str], elapsed_s: float) -> None:
    shape = (len(rows.ch_names), len(rows.times))
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "fixation_id", rows.fixation_id)
        write_strings(h5, "scene_id", rows.scene_id)
        h5["prediction"] = prediction.reshape(len(prediction), *shape)
        h5["fold"] = fold
        h5["alpha"] = alpha.reshape(shape)
        h5.attrs.update(
            subject=rows.subject, model=model_name, streams=streams, backbone=backbone, layers=layers,
            tokens=tokens, times=rows.times, ch_names=rows.ch_names, scheme=scheme, n_folds=n_folds,
            train_subjects=train_subjects, random_init_features=rows.random_init_features,
            prediction_units="z-score per sensor x time over the subject's fixations",
        )
    log.info("%s %s (%s, %s): X %s, %d targets, %d folds, median alpha %g; %.1f s%s", rows.subject, model_name,
             scheme, "+".join(streams), rows.X.shape, alpha.size, n_folds, np.median(alpha), elapsed_s,
             " (features from a RANDOM-INIT network)" if rows.random_init_features else "")

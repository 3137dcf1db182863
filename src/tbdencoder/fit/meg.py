"""Steps `fit-meg` and `fit-meg-heldout`: fixation-crop features -> MEG, every gradiometer x time sample a target.

Targets are z-scored per subject (over its fixations), so subjects with different field strengths pool
fairly and predictions are in those units. Any model family runs (the spec's `family`); the fold loop is
the one driver's (`fit.driver`).

- `fit_meg_subject`: out-of-fold predictions of one subject's epochs, outer folds grouped by scene (no
  scene in both train and test).
- `fit_meg_heldout`: a subject never trained on is predicted by models trained on the other subjects;
  the held-out subject's scenes are split into folds and each fold is predicted by a model trained
  without any fixation on those scenes.

The spec (one JSON object): the model's `meg.models` entry with `meg.fit` (`alphas`, `outer_folds`,
`inner_folds` = the folds a family uses for its own hyper-parameters, grouped by scene, and `seed`).
Fits hold predictions, the outer fold of each row and the per-target state of the models (the median
over folds) and each fold's artifacts (`folds/<k>/`: the MLP's weights and loss curves); evaluate_meg
computes r within folds. A gradient-trained family checkpoints each fold to `<out>.checkpoints/` (removed
once the fits file is written), so a killed fit resumes. Layout: docs/meg.md (`results/fits/meg/<sub>/<model>.h5`).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tbdencoder.data.meg import read_epochs
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.fit.driver import FoldFits, Rows, checkpoint_dir, fit_by_folds, scene_folds, write_artifacts
from tbdencoder.io import atomic_path, get_logger, write_strings

log = get_logger("fit_meg")


@dataclass
class MegRows:
    """One subject's fixations that have epochs and crop features, as a regression problem."""

    subject: str
    fixation_id: np.ndarray  # (n,) str
    scene_id: np.ndarray  # (n,) str
    X: FeatureSet  # the streams' blocks side by side (`foveal:block06/global`, ...)
    Y: np.ndarray  # (n, channels * times) float32, z-scored per target
    ch_names: list[str]
    times: np.ndarray
    random_init_features: bool

    def rows(self) -> Rows:
        return Rows(self.X, self.Y, groups=self.scene_id, subjects=np.full(len(self.Y), self.subject))


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
    X = FeatureSet.side_by_side([FeatureSet.load(features_path, stream_stimulus_ids(ids, s), layers, tokens,
                                                 prefix=f"{s}:") for s in streams])
    Y = data[keep].reshape(int(keep.sum()), -1).astype(np.float64)
    scale = Y.std(0)
    scale[scale == 0] = 1.0
    Y = ((Y - Y.mean(0)) / scale).astype(np.float32)
    with h5py.File(epochs_path, "r") as h5:
        ch_names = list(h5["channels/name"].asstr()[:])
        subject = str(h5.attrs["subject"])
    scenes = fixations["sceneID"].astype(str).to_numpy()[keep]
    return MegRows(subject, ids, scenes, X, Y, ch_names, np.asarray(times), random_init)


def _family_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a family sees: its inner CV folds are `inner_folds`."""
    return {**spec, "cv_folds": spec["inner_folds"]}


def _targets(rows: MegRows) -> dict[str, Any]:
    """What a topographic family may use about the sensor x time targets (row-major: channel, then time)."""
    return {"ch_names": rows.ch_names, "times": rows.times}


def fit_meg_subject(epochs_path: str | Path, features_path: str | Path, out_path: str | Path, *, model_name: str,
                    spec: dict[str, Any], device: str = "auto") -> None:
    """Out-of-fold predictions of one subject's epochs, folds grouped by scene."""
    start = time.perf_counter()
    rows = load_rows(epochs_path, features_path, spec["streams"], spec["layers"], spec["tokens"])
    folds = scene_folds(rows.scene_id, rows.scene_id, spec["outer_folds"], spec["inner_folds"], spec["seed"],
                        rows.subject)
    fits = fit_by_folds(_family_spec(spec), rows.rows(), rows.rows(), folds, targets=_targets(rows), device=device,
                        checkpoint_dir=checkpoint_dir(out_path), label=f"{rows.subject} {model_name}")
    _write_fit(out_path, rows, fits, model_name=model_name, spec=spec, scheme="scene_cv",
               train_subjects=[rows.subject], elapsed_s=time.perf_counter() - start)


def fit_meg_heldout(train_epochs: list[str | Path], train_features: list[str | Path], epochs_path: str | Path,
                    features_path: str | Path, out_path: str | Path, *, model_name: str, spec: dict[str, Any],
                    device: str = "auto") -> None:
    """Predict a held-out subject from models trained on the other subjects (shared sensor space)."""
    start = time.perf_counter()
    if len(train_epochs) != len(train_features) or not train_epochs:
        raise ValueError(f"need one features file per training epochs file, got {len(train_epochs)} epochs "
                         f"and {len(train_features)} features files")
    streams, layers, tokens = spec["streams"], spec["layers"], spec["tokens"]
    target = load_rows(epochs_path, features_path, streams, layers, tokens)
    pool = [load_rows(e, f, streams, layers, tokens) for e, f in zip(train_epochs, train_features)]
    for path, rows in zip(train_epochs, pool):
        if rows.ch_names != target.ch_names or not np.allclose(rows.times, target.times):
            raise ValueError(f"{path}: channels or epoch times differ from {epochs_path}; a shared sensor space "
                             f"(same channel names and times) is needed to predict a held-out subject")
    pooled = Rows.stack([rows.rows() for rows in pool])
    folds = scene_folds(target.scene_id, pooled.groups, spec["outer_folds"], spec["inner_folds"], spec["seed"],
                        target.subject)
    fits = fit_by_folds(_family_spec(spec), pooled, target.rows(), folds, targets=_targets(target), device=device,
                        checkpoint_dir=checkpoint_dir(out_path), label=f"{target.subject} {model_name}")
    _write_fit(out_path, target, fits, model_name=model_name, spec=spec,
               scheme="heldout_subject", train_subjects=[rows.subject for rows in pool],
               elapsed_s=time.perf_counter() - start)


def _write_fit(out_path: str | Path, rows: MegRows, fits: FoldFits, *, model_name: str, spec: dict[str, Any], scheme: str,
               train_subjects: list[str], elapsed_s: float) -> None:
    shape = (len(rows.ch_names), len(rows.times))
    prediction, states = fits.prediction, fits.states
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "fixation_id", rows.fixation_id)
        write_strings(h5, "scene_id", rows.scene_id)
        h5["prediction"] = prediction.reshape(len(prediction), *shape)
        h5["fold"] = fits.fold
        for key in states[0]:  # per-target state (targets first, e.g. `alpha`): the median over folds
            median = np.median([state[key] for state in states], axis=0)
            h5[key] = median.reshape(*shape, *median.shape[1:])
        write_artifacts(h5, fits.artifacts)
        write_strings(h5, "feature_blocks", rows.X.names)
        h5["block_sizes"] = rows.X.block_sizes
        h5.attrs.update(
            subject=rows.subject, model=model_name, family=spec["family"], streams=spec["streams"],
            backbone=spec["backbone"], layers=spec["layers"], tokens=spec["tokens"], times=rows.times,
            ch_names=rows.ch_names, scheme=scheme, n_folds=len(states), train_subjects=train_subjects,
            random_init_features=rows.random_init_features, spec=json.dumps(spec, sort_keys=True),
            prediction_units="z-score per sensor x time over the subject's fixations",
        )
    log.info("%s %s (%s, %s, %s): X %s, %d targets, %d folds; %.1f s%s", rows.subject, model_name, spec["family"],
             scheme, "+".join(spec["streams"]), (rows.X.n_rows, sum(rows.X.block_sizes)), prediction.shape[1],
             len(states), elapsed_s, " (features from a RANDOM-INIT network)" if rows.random_init_features else "")
    shutil.rmtree(checkpoint_dir(out_path), ignore_errors=True)

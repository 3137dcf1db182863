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
over folds), and per fold its state and artifacts (`folds/<k>/state/*`; `folds/<k>/*`: the MLP's weights
and loss curves); evaluate_meg computes r within folds. `load_fitted_meg` rebuilds each fold's model from
them and its training rows (checked by sha256), and `predict_meg_stimuli` predicts new fixations with the
mean of the fold models (`tbdencoder predict`). A gradient-trained family checkpoints each fold to `<out>.checkpoints/` (removed
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

from tbdencoder.data.meg import read_epochs, read_fixation_column
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.features.identity import check_same_network, verify_features
from tbdencoder.fit.driver import (Fold, FoldFits, Rows, checkpoint_dir, fit_by_folds, fit_joint_by_folds, open_fit,
                                   read_artifacts, scene_folds, training_sha256, write_artifacts)
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models.base import Encoder, reload_encoder

log = get_logger("fit_meg")
STATE = "state"  # fits files keep each fold's per-target state under folds/<k>/state/


@dataclass
class MegRows:
    """One subject's fixations that have epochs and crop features, as a regression problem."""

    subject: str
    fixation_id: np.ndarray  # (n,) str
    scene_id: np.ndarray  # (n,) str
    X: FeatureSet  # the streams' blocks side by side (`foveal:block06/global`, ...)
    Y: np.ndarray  # (n, channels * times) float32, z-scored per target
    ch_names: list[str]
    sensor_positions: np.ndarray  # (channels, 3) m, device coordinates
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
        sensor_positions = h5["channels/loc"][:, :3].astype(np.float32)
        subject = str(h5.attrs["subject"])
    scenes = fixations["sceneID"].astype(str).to_numpy()[keep]
    return MegRows(subject, ids, scenes, X, Y, ch_names, sensor_positions, np.asarray(times), random_init)


def family_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec a family sees: its inner CV folds are `inner_folds`."""
    return {**spec, "cv_folds": spec["inner_folds"]}


def meg_targets(rows: MegRows) -> dict[str, Any]:
    """What a family may know about the sensor x time targets (channel-major: channel, then time)."""
    n_times = len(rows.times)
    return {"ch_names": rows.ch_names, "times": rows.times, "sensor_positions": rows.sensor_positions,
            "target_channel": np.repeat(np.arange(len(rows.ch_names)), n_times),
            "target_time": np.tile(np.asarray(rows.times, dtype=np.float64), len(rows.ch_names))}


@dataclass
class MegProblem:
    """What a MEG fit is made from, rebuilt identically for a reload: the pool, the subject predicted, folds."""

    inputs: dict[str, Any]  # the files: epochs, features (+ train_epochs, train_features for a held-out subject)
    pool: Rows
    target: MegRows
    folds: list[Fold]
    scheme: str
    train_subjects: list[str]


def cohort_scenes(epochs_paths: list[str]) -> np.ndarray:
    """The scene of every fixation of several subjects' epochs files, in their order: what folds are split on
    when a subject fitted alone and a model of all of them must share folds."""
    return np.concatenate([read_fixation_column(path, "sceneID").astype(str) for path in epochs_paths])


def meg_problem(spec: dict[str, Any], epochs: str, features: str, train_epochs: list[str] | None = None,
                train_features: list[str] | None = None, joint_epochs: list[str] | None = None,
                joint_features: list[str] | None = None, cohort_epochs: list[str] | None = None) -> MegProblem:
    """Within subject (no training files): the subject's own rows, scene-grouped folds; with `cohort_epochs`
    (every training subject's, the subject's among them) the folds of the scenes of all of them, so that each
    row is predicted from the same fold as by a model of all of them. Held-out subject: the training subjects'
    rows (a shared sensor space) predict the subject's, each fold without its scenes. Joint (`joint_*`: every
    training subject's files, the subject's among them): one model of several subjects per fold of the scenes of
    all of them, the subject's rows of the fold predicted."""
    if joint_epochs is not None:
        return _joint_problem(spec, str(epochs), [str(e) for e in joint_epochs], [str(f) for f in joint_features])
    streams, layers, tokens = spec["streams"], spec["layers"], spec["tokens"]
    target = load_rows(epochs, features, streams, layers, tokens)
    inputs = {"epochs": str(epochs), "features": str(features)}
    if train_epochs is None:
        pool, scheme, train_subjects = target.rows(), "scene_cv", [target.subject]
    else:
        if len(train_epochs) != len(train_features) or not train_epochs:
            raise ValueError(f"need one features file per training epochs file, got {len(train_epochs)} epochs "
                             f"and {len(train_features)} features files")
        parts = [load_rows(e, f, streams, layers, tokens) for e, f in zip(train_epochs, train_features)]
        for path, rows in zip(train_epochs, parts):
            if rows.ch_names != target.ch_names or not np.allclose(rows.times, target.times):
                raise ValueError(f"{path}: channels or epoch times differ from {epochs}; a shared sensor space "
                                 f"(same channel names and times) is needed to predict a held-out subject")
        pool, scheme = Rows.stack([rows.rows() for rows in parts]), "heldout_subject"
        train_subjects = [rows.subject for rows in parts]
        inputs.update(train_epochs=[str(e) for e in train_epochs], train_features=[str(f) for f in train_features])
    split = None
    if cohort_epochs is not None:
        if train_epochs is not None or str(epochs) not in map(str, cohort_epochs):
            raise ValueError(f"{epochs}: cohort folds are for a training subject among {cohort_epochs}")
        inputs["cohort_epochs"] = [str(e) for e in cohort_epochs]
        split = cohort_scenes(inputs["cohort_epochs"])
    folds = scene_folds(target.scene_id, pool.groups, spec["outer_folds"], spec["inner_folds"], spec["seed"],
                        target.subject, split)
    return MegProblem(inputs, pool, target, folds, scheme, train_subjects)


def _joint_parts(spec: dict[str, Any], epochs: list[str], features: list[str]) -> tuple[list[MegRows], Rows,
                                                                                        list[Fold]]:
    """Every subject's rows, stacked as one pool, and the folds of the scenes of all of them (a scene is never
    in training and in test, whoever saw it)."""
    if len(epochs) != len(features) or not epochs:
        raise ValueError(f"need one features file per epochs file, got {len(epochs)} and {len(features)}")
    parts = [load_rows(e, f, spec["streams"], spec["layers"], spec["tokens"]) for e, f in zip(epochs, features)]
    for path, rows in zip(epochs[1:], parts[1:]):
        if rows.ch_names != parts[0].ch_names or not np.allclose(rows.times, parts[0].times):
            raise ValueError(f"{path}: channels or epoch times differ from {epochs[0]}; a model of several subjects "
                             "needs a shared sensor space (same channel names and times)")
    pool = Rows.stack([rows.rows() for rows in parts])
    folds = scene_folds(pool.groups, pool.groups, spec["outer_folds"], spec["inner_folds"], spec["seed"], "joint",
                        cohort_scenes(epochs))
    return parts, pool, folds


def _subject_folds(folds: list[Fold], pool: Rows, subject: str) -> list[Fold]:
    """The pool's folds with each fold's predicted rows narrowed to `subject`'s, as indices into its own rows."""
    local = np.cumsum(pool.subjects == subject) - 1
    return [Fold(fold.train, local[fold.predict[pool.subjects[fold.predict] == subject]]) for fold in folds]


def _joint_problem(spec: dict[str, Any], epochs: str, joint_epochs: list[str],
                   joint_features: list[str]) -> MegProblem:
    parts, pool, folds = _joint_parts(spec, joint_epochs, joint_features)
    if epochs not in joint_epochs:
        raise ValueError(f"{epochs}: not among the joint fit's epochs files {joint_epochs}")
    target = parts[joint_epochs.index(epochs)]
    inputs = {"epochs": epochs, "features": joint_features[joint_epochs.index(epochs)], "joint_epochs": joint_epochs,
              "joint_features": joint_features}
    return MegProblem(inputs, pool, target, _subject_folds(folds, pool, target.subject), "joint_scene_cv",
                      [rows.subject for rows in parts])


def fit_meg_joint(epochs_paths: list[str | Path], features_paths: list[str | Path], out_paths: list[str | Path], *,
                  model_name: str, spec: dict[str, Any], device: str = "auto",
                  from_fits: dict[str, str] | None = None) -> None:
    """One model of several subjects (a `many_subjects` family) per fold of all the subjects' scenes, fitted on
    every subject's training rows at once; each subject's fits file (`out_paths`, in the order of the epochs)
    holds its out-of-fold predictions, as `fit_meg_subject` writes them."""
    start = time.perf_counter()
    epochs, features = [str(e) for e in epochs_paths], [str(f) for f in features_paths]
    parts, pool, folds = _joint_parts(spec, epochs, features)
    fits = fit_joint_by_folds(family_spec(spec), pool, folds, targets=meg_targets(parts[0]), device=device,
                              checkpoint_dir=checkpoint_dir(out_paths[0]), from_fits=from_fits,
                              label=f"joint {model_name}")
    inputs = {"joint_epochs": epochs, "joint_features": features}
    for path, rows, out in zip(epochs, parts, out_paths):
        problem = MegProblem({"epochs": path, "features": features[epochs.index(path)], **inputs}, pool, rows,
                             _subject_folds(folds, pool, rows.subject), "joint_scene_cv",
                             [part.subject for part in parts])
        _write(problem, fits[rows.subject], out, model_name, spec, from_fits, start)
    shutil.rmtree(checkpoint_dir(out_paths[0]), ignore_errors=True)


def fit_meg_subject(epochs_path: str | Path, features_path: str | Path, out_path: str | Path, *, model_name: str,
                    spec: dict[str, Any], device: str = "auto", from_fits: dict[str, str] | None = None,
                    cohort_epochs: list[str | Path] | None = None) -> None:
    """Out-of-fold predictions of one subject's epochs, folds grouped by scene: the subject's own, or with
    `cohort_epochs` (every training subject's epochs files) those of `fit_meg_joint` on them. `from_fits`: the
    fits files of the spec's `from_models` ({model: path}), for a family that reads them."""
    cohort = None if cohort_epochs is None else [str(e) for e in cohort_epochs]
    _fit(meg_problem(spec, str(epochs_path), str(features_path), cohort_epochs=cohort), out_path, model_name, spec,
         device, from_fits)


def fit_meg_heldout(train_epochs: list[str | Path], train_features: list[str | Path], epochs_path: str | Path,
                    features_path: str | Path, out_path: str | Path, *, model_name: str, spec: dict[str, Any],
                    device: str = "auto", from_fits: dict[str, str] | None = None) -> None:
    """Predict a held-out subject from models trained on the other subjects (shared sensor space)."""
    _fit(meg_problem(spec, epochs_path, features_path, train_epochs, train_features), out_path, model_name, spec,
         device, from_fits)


def _fit(problem: MegProblem, out_path: str | Path, model_name: str, spec: dict[str, Any], device: str,
         from_fits: dict[str, str] | None) -> None:
    start = time.perf_counter()
    rows = problem.target
    fits = fit_by_folds(family_spec(spec), problem.pool, rows.rows(), problem.folds, targets=meg_targets(rows),
                        device=device, checkpoint_dir=checkpoint_dir(out_path), from_fits=from_fits,
                        label=f"{rows.subject} {model_name}")
    _write(problem, fits, out_path, model_name, spec, from_fits, start)
    shutil.rmtree(checkpoint_dir(out_path), ignore_errors=True)


def _write(problem: MegProblem, fits: FoldFits, out_path: str | Path, model_name: str, spec: dict[str, Any],
           from_fits: dict[str, str] | None, start: float) -> None:
    """A subject's fits file (the module docstring's layout)."""
    rows = problem.target
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
        write_artifacts(h5, [{**artifacts, **{f"{STATE}/{key}": value for key, value in state.items()}}
                             for state, artifacts in zip(states, fits.artifacts)])
        write_strings(h5, "feature_blocks", rows.X.names)
        h5["block_sizes"] = rows.X.block_sizes
        h5.attrs.update(
            subject=rows.subject, model=model_name, family=spec["family"], streams=spec["streams"],
            backbone=spec["backbone"], layers=spec["layers"], tokens=spec["tokens"], times=rows.times,
            ch_names=rows.ch_names, scheme=problem.scheme, n_folds=len(states),
            train_subjects=problem.train_subjects, random_init_features=rows.random_init_features,
            spec=json.dumps(spec, sort_keys=True), inputs=json.dumps(problem.inputs),
            training_sha256=training_sha256(problem.pool.X, problem.pool.Y), from_fits=json.dumps(from_fits or {}),
            prediction_units="z-score per sensor x time over the subject's fixations",
        )
    log.info("%s %s (%s, %s, %s): X %s, %d targets, %d folds; %.1f s%s", rows.subject, model_name, spec["family"],
             problem.scheme, "+".join(spec["streams"]), (rows.X.n_rows, sum(rows.X.block_sizes)), prediction.shape[1],
             len(states), time.perf_counter() - start,
             " (features from a RANDOM-INIT network)" if rows.random_init_features else "")


@dataclass
class FittedMeg:
    """A stored MEG fit made usable again: one reloaded model per outer fold, and the problem it was fitted on."""

    models: list[Encoder]
    problem: MegProblem
    spec: dict[str, Any]

    def fold_predictions(self) -> np.ndarray:
        """(n, channels, times): each stored fixation predicted by its own fold's model (= the stored prediction)."""
        rows = self.problem.target
        out = np.zeros((rows.X.n_rows, len(rows.ch_names), len(rows.times)), dtype=np.float32)
        for model, fold in zip(self.models, self.problem.folds):
            part = rows.rows().take(fold.predict)
            out[fold.predict] = model.predict(part.X, subjects=part.subjects,
                                              targets=meg_targets(rows)).reshape(len(fold.predict), *out.shape[1:])
        return out

    def predict(self, features_path: str | Path, fixation_ids: list[str]) -> np.ndarray:
        """(n, channels, times) for new fixations' crop features: the mean of the outer folds' models."""
        spec, rows = self.spec, self.problem.target
        X = FeatureSet.side_by_side([FeatureSet.load(features_path, stream_stimulus_ids(fixation_ids, stream),
                                                     spec["layers"], spec["tokens"], prefix=f"{stream}:")
                                     for stream in spec["streams"]])
        if X.names != rows.X.names or list(X.block_sizes) != list(rows.X.block_sizes):
            raise ValueError(f"{features_path}: feature blocks {list(zip(X.names, X.block_sizes))} differ from the "
                             f"fit's {list(zip(rows.X.names, rows.X.block_sizes))}")
        mean = np.mean([model.predict(X, targets=meg_targets(rows)) for model in self.models], axis=0)
        return mean.reshape(len(fixation_ids), len(rows.ch_names), len(rows.times)).astype(np.float32)


def load_fitted_meg(fit_path: str | Path, device: str = "auto") -> FittedMeg:
    """The fold models of a MEG fits file, reloaded by their family from each fold's state and training rows
    (rebuilt from the files the fit names, checked by sha256 against what the model saw)."""
    with open_fit(fit_path) as h5:
        attrs = dict(h5.attrs)
        folds = [read_artifacts(h5, fold) for fold in range(int(attrs["n_folds"]))]
    spec = json.loads(attrs["spec"])
    problem = meg_problem(spec, **json.loads(attrs["inputs"]))
    if training_sha256(problem.pool.X, problem.pool.Y) != attrs["training_sha256"]:
        raise ValueError(f"{fit_path}: the training data in {json.loads(attrs['inputs'])} are not what the model "
                         "was fitted on (sha256 differs); rerun the fit")
    models = []
    for arrays, fold in zip(folds, problem.folds):
        state = {name.removeprefix(f"{STATE}/"): value for name, value in arrays.items()}
        train = problem.pool.take(fold.train)
        models.append(reload_encoder(spec, state, train.X, train.Y, device, json.loads(attrs.get("from_fits", "{}"))))
    return FittedMeg(models, problem, spec)


def predict_meg_stimuli(fit_path: str | Path, features_path: str | Path, out_path: str | Path,
                        device: str = "auto") -> None:
    """Predict every fixation of a crop-features file with a stored MEG fit (the mean of its fold models).

    Output h5: `fixation_id` (n,), `prediction` (n, channels, times) float32 in the fit's units; attrs fit,
    model, subject, ch_names, times.
    """
    start = time.perf_counter()
    verify_features(features_path)
    fitted = load_fitted_meg(fit_path, device)
    check_same_network([fitted.problem.inputs["features"]], [features_path], fitted.spec["tokens"], f"fit {fit_path}")
    stream = fitted.spec["streams"][0]
    with h5py.File(features_path, "r") as h5:
        fixation_ids = [sid.removesuffix(f"_{stream}") for sid in h5["stimulus_id"].asstr()[:]
                        if sid.endswith(f"_{stream}")]
    prediction = fitted.predict(features_path, fixation_ids)
    rows = fitted.problem.target
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "fixation_id", fixation_ids)
        h5["prediction"] = prediction
        h5.attrs.update(fit=str(fit_path), model=fitted.spec.get("model", ""), subject=rows.subject,
                        ch_names=rows.ch_names, times=rows.times)
    log.info("%s: %d fixations predicted with %s (%d fold models) in %.1f s", out_path, len(fixation_ids), fit_path,
             len(fitted.models), time.perf_counter() - start)

"""Step `fit`: one model of any family for one subject x hemisphere -> fits/<subject>/<hemi>/<model>.h5;
step `predict`: a stored fit's predictions for any stimuli with features.

The spec (one JSON object): the model's `models` entry of params.yaml with `fit` (`alphas`, `cv_folds`,
`seed`). The scheme is the fixed split of responses.h5: one model fitted on the training rows predicts
the scored rows and the submission images (`fit.driver`).

fits file: `test_prediction` (n_test, V) and `submission_prediction` (n_sub, V) float32; the model's
per-vertex state (`alpha`, `cv_score` for the ridge families; what `Encoder.state()` returns); the
family's artifacts under `folds/0/` (the MLP's weights and loss curves; `Encoder.artifacts()`);
`feature_blocks` (block names) and `block_sizes`; attrs: subject, hemisphere, model, family, backbone,
layers, tokens, spec (JSON), random_init_features, features and responses (the paths fitted on) and
training_sha256 (of the training features and targets).

Coefficients are not stored: at NSD scale (p = 15,360 features x 20,000 vertices) they would take
1.2 GB per hemisphere and model. A family reloads from its state and the training data
(`load_fitted`: the ridge families refit their coefficients from the alphas, one decomposition and no
CV; the MLP reads its stored network), checked against `training_sha256`: the reloaded model is the
fitted one. A gradient-trained family checkpoints to `<out>.checkpoints/` while it trains; a killed fit
resumes from there, and the folder is removed once the fits file is written.
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

from tbdencoder.data.cortex import LazyTargets, vertex_positions
from tbdencoder.data.responses import Responses, read_rois, read_targets
from tbdencoder.features.featureset import FeatureSet, load_model_features
from tbdencoder.features.identity import check_same_network, verify_features
from tbdencoder.fit.driver import (FoldFits, Rows, checkpoint_dir, fit_subjects, open_fit, read_artifacts,
                                   training_sha256, write_artifacts)
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models.base import Encoder, reload_encoder
from tbdencoder.models.ridge import check_folds

log = get_logger("fit")


def _paths(features: str | Path | list[str | Path]) -> list[str]:
    """One features file per backbone of the model (a single path for a single backbone)."""
    return [str(features)] if isinstance(features, (str, Path)) else [str(path) for path in features]


def _features(features: str | Path | list[str | Path], ids: list[str], spec: dict[str, Any]) -> FeatureSet:
    return load_model_features(_paths(features), ids, spec)


def fmri_targets(responses_path: str | Path, hemisphere: str) -> dict[str, Any]:
    """What a family may know about a hemisphere's vertices: ROI labels per class (`roi`), fsaverage indices,
    and positions on the fsaverage sphere with both hemispheres in one frame (`data.cortex`, from the mesh the
    responses file names, `fmri.fsaverage_dir`; computed when a family first reads `targets["positions"]`)."""
    with h5py.File(responses_path, "r") as h5:
        index = h5[hemisphere]["fsaverage_index"][:]
        fsaverage_dir = str(h5.attrs.get("fsaverage_dir", "")) or None
    rois = {name: labels for name, (labels, _) in read_rois(responses_path, hemisphere).items()}
    return LazyTargets({"roi": rois, "fsaverage_index": index, "hemisphere": hemisphere},
                       {"positions": lambda: vertex_positions(index, hemisphere, fsaverage_dir)})


def fit_fmri(features_path: str | Path | list[str | Path], responses_path: str | Path, hemisphere: str, model_name: str,
             spec: dict[str, Any], out_path: str | Path, device: str = "auto",
             from_fits: dict[str, str] | None = None) -> None:
    """Fit on the training rows, predict the scored rows and the submission images, save everything.
    `from_fits`: the fits files of the spec's `from_models` ({model: path}), for a family that reads them."""
    fit_fmri_subjects([FmriUnit(features_path, responses_path, out_path)], hemisphere, model_name, spec, device,
                      from_fits)


@dataclass
class FmriUnit:
    """One subject's hemisphere of a fit: its features file(s), responses.h5 and fits file."""

    features: str | Path | list[str | Path]
    responses: str | Path
    out: str | Path


def load_units(units: list[FmriUnit], hemisphere: str, spec: dict[str, Any]) -> tuple[dict, dict, dict, dict]:
    """Per subject of `units` (the fixed split of each responses.h5): its training Rows, its rows to predict (the
    scored, then the submission images), its targets' metadata and its Responses."""
    train, target, targets, responses = {}, {}, {}, {}
    for unit in units:
        read = Responses.read(unit.responses)
        subject = read.subject
        if subject in responses:
            raise ValueError(f"{unit.responses}: subject {subject} is given twice (also {units[0].responses})")
        responses[subject] = read
        train[subject] = Rows(_features(unit.features, read.train_stimulus_id, spec),
                              read_targets(unit.responses, hemisphere, "train"))
        check_folds(spec["cv_folds"], train[subject].X.n_rows, f"fit.cv_folds ({unit.responses}, {hemisphere})")
        target[subject] = Rows(_features(unit.features, read.test_stimulus_id + read.submission_stimulus_id, spec))
        targets[subject] = fmri_targets(unit.responses, hemisphere)
    return train, target, targets, responses


def fit_fmri_subjects(units: list[FmriUnit], hemisphere: str, model_name: str, spec: dict[str, Any],
                      device: str = "auto", from_fits: dict[str, Any] | None = None,
                      extra_targets: dict[str, dict[str, Any]] | None = None) -> None:
    """One model of `spec` for the subjects of `units` (the fixed split of each responses.h5; `fit.driver.
    fit_subjects`): a family with `many_subjects` is fitted on all of them at once, any other per subject.
    Each subject's fits file is written as `fit_fmri` writes it. `extra_targets` ({subject: {key: value}}) joins
    the targets' metadata the family sees (the recipe's teacher predictions)."""
    start = time.perf_counter()
    train, target, targets, responses = load_units(units, hemisphere, spec)
    for subject, extra in (extra_targets or {}).items():
        targets[subject].update(extra)
    checkpoints = checkpoint_dir(units[0].out)
    fits = fit_subjects(spec, train, target, targets, device=device, checkpoint_dir=checkpoints, from_fits=from_fits,
                        label=f"{'+'.join(responses)} {hemisphere} {model_name}")
    seconds = time.perf_counter() - start
    for unit, (subject, fit) in zip(units, fits.items()):
        _write_fit(unit, responses[subject], hemisphere, model_name, spec, train[subject], fit, from_fits, seconds)
    shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("%s %s (%s): %d subject(s) in %.1f s", hemisphere, model_name, spec["family"], len(units),
             time.perf_counter() - start)


def fit_fmri_joint(features_paths: list[str | Path], responses_paths: list[str | Path], hemisphere: str,
                   model_name: str, spec: dict[str, Any], out_paths: list[str | Path], device: str = "auto",
                   from_fits: dict[str, Any] | None = None) -> None:
    """One model of several subjects (a `many_subjects` family) for a hemisphere of every subject at once: one
    responses.h5 and one fits file per subject, and per subject one features file per backbone of the model
    (`features_paths` subject by subject, in the order of `responses_paths`). `from_fits`: the fits files of the
    spec's `from_models`, each a path or one path per subject."""
    if len(out_paths) != len(responses_paths) or len(features_paths) % max(1, len(responses_paths)):
        raise ValueError(f"expected one fits file per responses file and the same number of features files for "
                         f"each subject, got {len(responses_paths)} responses, {len(out_paths)} fits files and "
                         f"{len(features_paths)} features files")
    per = len(features_paths) // len(responses_paths)
    units = [FmriUnit([str(f) for f in features_paths[i * per:(i + 1) * per]], responses, out)
             for i, (responses, out) in enumerate(zip(responses_paths, out_paths))]
    fit_fmri_subjects(units, hemisphere, model_name, spec, device, from_fits)


def _write_fit(unit: FmriUnit, responses: Responses, hemisphere: str, model_name: str, spec: dict[str, Any],
               train: Rows, fit: FoldFits, from_fits: dict[str, Any] | None, fit_seconds: float,
               extra_attrs: dict[str, Any] | None = None) -> None:
    """A subject's fits file (atomically): predictions, per-target state, fold artifacts and the attrs a reload
    checks; `fit_seconds`: the fit's time (all its subjects'), `extra_attrs`: more attrs (a recipe's)."""
    (state,) = fit.states
    random_init = any(random_init_features(path) for path in _paths(unit.features))
    n_test = len(responses.test_stimulus_id)
    with atomic_path(unit.out) as tmp, h5py.File(tmp, "w") as h5:
        h5["test_prediction"] = fit.prediction[:n_test]
        h5["submission_prediction"] = fit.prediction[n_test:]
        for key, values in state.items():
            h5[key] = np.asarray(values, dtype=np.float32)
        write_artifacts(h5, fit.artifacts)
        write_strings(h5, "feature_blocks", train.X.names)
        h5["block_sizes"] = train.X.block_sizes
        h5.attrs.update(
            subject=responses.subject, hemisphere=hemisphere, model=model_name, family=spec["family"],
            backbone=json.dumps(spec["backbone"]), layers=json.dumps(spec["layers"]), tokens=spec["tokens"],
            spec=json.dumps(spec, sort_keys=True), random_init_features=random_init,
            features=json.dumps(_paths(unit.features)), responses=str(unit.responses),
            training_sha256=training_sha256(train.X, train.Y), from_fits=json.dumps(from_fits or {}),
            fit_seconds=float(fit_seconds), **(extra_attrs or {}),
        )
    summary = ", ".join(f"median {key} {float(np.median(values)):.3g}" for key, values in state.items())
    log.info("%s %s %s (%s): X %s -> Y %s, %s%s", responses.subject, hemisphere, model_name, spec["family"],
             (train.X.n_rows, sum(train.X.block_sizes)), train.Y.shape, summary,
             " (features from a RANDOM-INIT network)" if random_init else "")


@dataclass
class FittedModel:
    """A stored fit made usable again: the reloaded model and the feature blocks it reads."""

    model: Encoder
    spec: dict[str, Any]
    targets: dict[str, Any]
    features: list[str]  # the training features files, one per backbone

    def predict(self, features_path: str | Path | list[str | Path], stimulus_ids: list[str]) -> np.ndarray:
        """(n, V) predictions for stimuli of a features file (the same backbone and layers as the fit; one file
        per backbone for a model combining several)."""
        return self.model.predict(_features(features_path, stimulus_ids, self.spec), targets=self.targets)


def random_init_features(features_path: str) -> bool:
    with h5py.File(features_path, "r") as h5:
        return bool(h5.attrs.get("random_init", False))


def _stored_paths(value: str) -> list[str]:
    """The features files a fit was made from (a JSON list; older fits hold one plain path)."""
    return json.loads(value) if value.startswith("[") else [value]


def load_fitted(fit_path: str | Path, features_path: str | Path | list[str | Path] | None = None,
                responses_path: str | Path | None = None, device: str = "auto") -> FittedModel:
    """The fitted model of a fits file, reloaded by its family from the stored state and the training data.

    `features_path` / `responses_path` default to the files the model was fitted on (the fits file's
    attrs); the training data read from them must be what the model saw (checked by sha256).
    """
    with open_fit(fit_path) as h5:
        attrs = dict(h5.attrs)
        spec = json.loads(attrs["spec"])
        if spec["family"] == "all_for_one_teacher":
            raise ValueError(f"{fit_path}: an All-for-One teacher keeps its predictions, not a model to reload; "
                             f"predict new images with its student ({attrs['recipe']}_student) or its soups' members")
        state = {key: h5[key][:] for key in h5 if key not in ("test_prediction", "submission_prediction",
                                                                "feature_blocks", "block_sizes", "folds")}
        state.update(read_artifacts(h5))
    features_path = _paths(features_path or _stored_paths(attrs["features"]))
    responses_path = responses_path or attrs["responses"]
    _check_stored_paths(fit_path, [*features_path, responses_path])
    X = _features(features_path, Responses.read(responses_path).train_stimulus_id, spec)
    Y = read_targets(responses_path, str(attrs["hemisphere"]), "train")
    if training_sha256(X, Y) != attrs["training_sha256"]:
        raise ValueError(f"{fit_path}: the training data in {features_path} and {responses_path} are not what "
                         "the model was fitted on (sha256 differs); rerun the fit")
    model = reload_encoder(spec, state, X, Y, device, json.loads(attrs.get("from_fits", "{}")))
    return FittedModel(model, spec, fmri_targets(responses_path, str(attrs["hemisphere"])), features_path)


def _check_stored_paths(fit_path: str | Path, paths: list[str | Path]) -> None:
    """FileNotFoundError for training files that are not where the fit says, with the way out."""
    missing = [str(path) for path in paths if not Path(path).exists()]
    if missing:
        raise FileNotFoundError(f"{fit_path}: the training data {missing} are not there (from {Path.cwd()}); a fit "
                                "names its training files as they were given, relative to the directory it was made "
                                "in: run predict from that directory, or pass --train-features / --responses")


def predict_stimuli(fit_path: str | Path, features_path: str | Path | list[str | Path], out_path: str | Path, *,
                    train_features: str | Path | list[str | Path] | None = None, responses_path: str | Path | None = None,
                    device: str = "auto") -> None:
    """Predict every stimulus of a features file (e.g. your own images) with a stored fit.

    Output h5: `stimulus_id` (n,), `prediction` (n, V) float32; attrs fit (path), model, subject, hemisphere.
    """
    start = time.perf_counter()
    for path in _paths(features_path):
        verify_features(path)
    fitted = load_fitted(fit_path, train_features, responses_path, device)
    check_same_network(fitted.features, _paths(features_path), fitted.spec["tokens"], f"fit {fit_path}")
    with h5py.File(_paths(features_path)[0], "r") as h5:
        stimulus_ids = list(h5["stimulus_id"].asstr()[:])
    with open_fit(fit_path) as h5:
        attrs = {key: h5.attrs[key] for key in ("model", "subject", "hemisphere")}
    prediction = fitted.predict(features_path, stimulus_ids)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "stimulus_id", stimulus_ids)
        h5["prediction"] = prediction.astype(np.float32)
        h5.attrs.update(fit=str(fit_path), **attrs)
    log.info("%s: %d stimuli predicted with %s in %.1f s", out_path, len(stimulus_ids), fit_path,
             time.perf_counter() - start)

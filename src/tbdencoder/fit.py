"""Step `fit`: one encoding model for one subject x hemisphere -> fits/<subject>/<hemi>/<model>.h5;
step `predict`: a stored fit's predictions for any stimuli with features.

fits file: `test_prediction` (n_test, V) and `submission_prediction` (n_sub, V) float32; per vertex
`alpha` (the penalty chosen by CV) and `cv_score` (cross-validated R^2 on the training rows);
`feature_blocks` (column block names) and `block_sizes`; attrs: subject, hemisphere, model, family,
backbone, layers, tokens, roi_class, alphas, cv_folds, seed, random_init_features, features and
responses (the paths fitted on) and training_sha256 (of the training features and targets).

Coefficients are not stored: at NSD scale (p = 15,360 features x 20,000 vertices) they would take
1.2 GB per hemisphere and model. Both ridge families are determined by their per-vertex alphas and
the training data, so `load_fitted` refits the coefficients from the alphas (one decomposition, no CV)
and checks the training data against `training_sha256`: the refit model is the fitted one.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.data.responses import Responses, read_rois, read_targets
from tbdencoder.features.store import load_design_matrix
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models import FAMILIES
from tbdencoder.models.ridge import RidgeEncoder, check_folds

log = get_logger("fit")


def build_model(family: str, alphas: list[float], cv_folds: int, seed: int, device: str, roi_labels=None):
    """An unfitted estimator of `family` with the shared hyper-parameters."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    kwargs = dict(alphas=alphas, cv_folds=cv_folds, seed=seed, device=device)
    return FAMILIES[family](roi_labels, **kwargs) if family == "roi_ridge" else FAMILIES[family](**kwargs)


def training_sha256(X: np.ndarray, Y: np.ndarray) -> str:
    """Hex sha256 of the training features and targets (float32 bytes, shapes included)."""
    digest = hashlib.sha256()
    for array in (X, Y):
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.data)
    return digest.hexdigest()


def fit_model(
    features_path: str | Path,
    responses_path: str | Path,
    hemisphere: str,
    model_name: str,
    family: str,
    backbone: str,
    layers: list[int],
    tokens: list[str],
    alphas: list[float],
    cv_folds: int,
    seed: int,
    out_path: str | Path,
    roi_class: str | None = None,
    device: str = "auto",
) -> None:
    """Fit on the training rows, predict the scored rows and the submission images, save everything."""
    start = time.perf_counter()
    responses = Responses.read(responses_path)
    X_train, block_names = load_design_matrix(features_path, responses.train_stimulus_id, layers, tokens)
    X_test, _ = load_design_matrix(features_path, responses.test_stimulus_id, layers, tokens)
    X_sub, _ = load_design_matrix(features_path, responses.submission_stimulus_id, layers, tokens)
    Y_train = read_targets(responses_path, hemisphere, "train")
    check_folds(cv_folds, len(X_train), f"fit.cv_folds ({responses_path}, {hemisphere})")
    roi_labels = None
    if family == "roi_ridge":
        rois = read_rois(responses_path, hemisphere)
        if roi_class not in rois:
            raise KeyError(f"{responses_path}: no ROI class {roi_class!r} for {hemisphere} (has {sorted(rois)})")
        roi_labels = rois[roi_class][0]
    model = build_model(family, alphas, cv_folds, seed, device, roi_labels).fit(X_train, Y_train)
    with h5py.File(features_path, "r") as h5:
        random_init = bool(h5.attrs.get("random_init", False))
        block_sizes = [h5[f"layers/{name}"].shape[1] for name in block_names]
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5["test_prediction"] = model.predict(X_test).astype(np.float32)
        h5["submission_prediction"] = model.predict(X_sub).astype(np.float32)
        h5["alpha"] = model.alpha_.astype(np.float32)
        h5["cv_score"] = model.cv_score_.astype(np.float32)
        write_strings(h5, "feature_blocks", block_names)
        h5["block_sizes"] = block_sizes
        h5.attrs.update(
            subject=responses.subject, hemisphere=hemisphere, model=model_name, family=family, backbone=backbone,
            layers=layers, tokens=tokens, roi_class=roi_class or "", alphas=alphas, cv_folds=cv_folds, seed=seed,
            random_init_features=random_init, features=str(features_path), responses=str(responses_path),
            training_sha256=training_sha256(X_train, Y_train),
        )
    log.info("%s %s %s: X %s -> Y %s, median alpha %.3g, mean CV R^2 %.3f, %.1f s%s", responses.subject, hemisphere,
             model_name, X_train.shape, Y_train.shape, float(np.median(model.alpha_)), float(model.cv_score_.mean()),
             time.perf_counter() - start, " (features from a RANDOM-INIT network)" if random_init else "")


@dataclass
class FittedModel:
    """A stored fit made usable again: the refit model and the feature columns it reads."""

    model: RidgeEncoder
    layers: list[int]
    tokens: list[str]

    def predict(self, features_path: str | Path, stimulus_ids: list[str]) -> np.ndarray:
        """(n, V) predictions for stimuli of a features file (the same backbone and layers as the fit)."""
        return self.model.predict(load_design_matrix(features_path, stimulus_ids, self.layers, self.tokens)[0])


def load_fitted(fit_path: str | Path, features_path: str | Path | None = None,
                responses_path: str | Path | None = None, device: str = "auto") -> FittedModel:
    """The fitted model of a fits file, its coefficients refit from the stored alphas.

    `features_path` / `responses_path` default to the files the model was fitted on (the fits file's
    attrs); the training data read from them must be what the model saw (checked by sha256).
    """
    with h5py.File(fit_path, "r") as h5:
        attrs = dict(h5.attrs)
        alpha = h5["alpha"][:]
    features_path = features_path or attrs["features"]
    responses_path = responses_path or attrs["responses"]
    responses = Responses.read(responses_path)
    layers, tokens = [int(v) for v in attrs["layers"]], [str(v) for v in np.atleast_1d(attrs["tokens"])]
    X, _ = load_design_matrix(features_path, responses.train_stimulus_id, layers, tokens)
    Y = read_targets(responses_path, str(attrs["hemisphere"]), "train")
    if training_sha256(X, Y) != attrs["training_sha256"]:
        raise ValueError(f"{fit_path}: the training data in {features_path} and {responses_path} are not what "
                         "the model was fitted on (sha256 differs); rerun the fit")
    return FittedModel(RidgeEncoder(device=device).refit(X, Y, alpha), layers, tokens)


def predict_stimuli(fit_path: str | Path, features_path: str | Path, out_path: str | Path, *,
                    train_features: str | Path | None = None, responses_path: str | Path | None = None,
                    device: str = "auto") -> None:
    """Predict every stimulus of a features file (e.g. your own images) with a stored fit.

    Output h5: `stimulus_id` (n,), `prediction` (n, V) float32; attrs fit (path), model, subject, hemisphere.
    """
    start = time.perf_counter()
    fitted = load_fitted(fit_path, train_features, responses_path, device)
    with h5py.File(features_path, "r") as h5:
        stimulus_ids = list(h5["stimulus_id"].asstr()[:])
    with h5py.File(fit_path, "r") as h5:
        attrs = {key: h5.attrs[key] for key in ("model", "subject", "hemisphere")}
    prediction = fitted.predict(features_path, stimulus_ids)
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "stimulus_id", stimulus_ids)
        h5["prediction"] = prediction.astype(np.float32)
        h5.attrs.update(fit=str(fit_path), **attrs)
    log.info("%s: %d stimuli predicted with %s in %.1f s", out_path, len(stimulus_ids), fit_path,
             time.perf_counter() - start)

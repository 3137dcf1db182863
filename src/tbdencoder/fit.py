"""Step `fit`: one encoding model for one subject x hemisphere -> fits/<subject>/<hemi>/<model>.h5.

fits file: `test_prediction` (n_test, V) and `submission_prediction` (n_sub, V) float32; per vertex
`alpha`, `cv_score` (cross-validated R^2 on the training rows), `intercept`; `coef` (p, V) on
standardised features with `x_mean`, `x_scale` (p,), `feature_blocks` (column block names) and
`block_sizes`; attrs: subject, hemisphere, model, family, backbone, layers, tokens, roi_class,
alphas, cv_folds, seed, random_init_features.
"""

from __future__ import annotations

import time
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.data.responses import Responses, read_rois, read_targets
from tbdencoder.features.store import load_design_matrix
from tbdencoder.io import atomic_path, get_logger, write_strings
from tbdencoder.models import FAMILIES

log = get_logger("fit")


def build_model(family: str, alphas: list[float], cv_folds: int, seed: int, device: str, roi_labels=None):
    """An unfitted estimator of `family` with the shared hyper-parameters."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    kwargs = dict(alphas=alphas, cv_folds=cv_folds, seed=seed, device=device)
    return FAMILIES[family](roi_labels, **kwargs) if family == "roi_ridge" else FAMILIES[family](**kwargs)


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
    roi_labels = None
    if family == "roi_ridge":
        rois = read_rois(responses_path, hemisphere)
        if roi_class not in rois:
            raise KeyError(f"{responses_path}: no ROI class {roi_class!r} for {hemisphere} (has {sorted(rois)})")
        roi_labels = rois[roi_class][0]
    model = build_model(family, alphas, cv_folds, seed, device, roi_labels).fit(X_train, Y_train)
    with h5py.File(features_path, "r") as h5:
        random_init = bool(h5.attrs.get("random_init", False))
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5["test_prediction"] = model.predict(X_test).astype(np.float32)
        h5["submission_prediction"] = model.predict(X_sub).astype(np.float32)
        for name in ("alpha", "cv_score", "intercept", "coef", "x_mean", "x_scale"):
            h5[name] = getattr(model, f"{name}_").astype(np.float32)
        write_strings(h5, "feature_blocks", block_names)
        with h5py.File(features_path, "r") as features:
            h5["block_sizes"] = [features[f"layers/{name}"].shape[1] for name in block_names]
        h5.attrs.update(
            subject=responses.subject, hemisphere=hemisphere, model=model_name, family=family, backbone=backbone,
            layers=layers, tokens=tokens, roi_class=roi_class or "", alphas=alphas, cv_folds=cv_folds, seed=seed,
            random_init_features=random_init,
        )
    log.info("%s %s %s: X %s -> Y %s, median alpha %.3g, mean CV R^2 %.3f, %.1f s%s", responses.subject, hemisphere,
             model_name, X_train.shape, Y_train.shape, float(np.median(model.alpha_)), float(model.cv_score_.mean()),
             time.perf_counter() - start, " (features from a RANDOM-INIT network)" if random_init else "")

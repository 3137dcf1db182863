"""Per-target Pearson r, the Algonauts 2023 challenge score and per-ROI summaries."""

from __future__ import annotations

import numpy as np


def pearson_r(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson correlation over rows (stimuli) for every column (target); 0 where either is constant."""
    prediction = np.asarray(prediction, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    p = prediction - prediction.mean(0)
    t = target - target.mean(0)
    denominator = np.sqrt((p**2).sum(0) * (t**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (p * t).sum(0) / denominator
    return np.where(denominator > 0, r, 0.0)


MIN_FOLD_ROWS = 3  # r within a fold of fewer rows is not a measurement


def pearson_r_within_folds(prediction: np.ndarray, target: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Pearson r within each outer fold, averaged over the folds weighted by their row counts, for every column;
    `folds` (n,) names the outer fold that predicted each row of the out-of-fold `prediction`.

    Why not one r over all rows: the fold mean of the predictions carries the training mean, which
    anti-correlates with the test fold's mean (the training rows are the other folds), so r pooled over folds
    is negative on pure noise (about -sqrt(K / n) for K folds of n rows when the model predicts its intercept).
    Subtracting each fold's mean before pooling removes that part, but a pooled r still normalises by the
    predictions of the other folds, which were trained on this fold's targets, and stays slightly negative.
    Within one fold the predictions come from a model that never saw the fold: under the null (rows
    exchangeable within the fold, independent of the training rows) each fold's r has expectation 0, and so
    has their weighted mean.
    """
    folds = np.asarray(folds)
    if folds.shape != (len(prediction),) or len(target) != len(prediction):
        raise ValueError(f"folds {folds.shape}, prediction {np.shape(prediction)} and target {np.shape(target)} "
                         "must have the same number of rows")
    labels, sizes = np.unique(folds, return_counts=True)
    if sizes.min() < MIN_FOLD_ROWS:
        raise ValueError(f"fold {labels[np.argmin(sizes)]} holds {sizes.min()} rows; a correlation within a fold "
                         f"needs at least {MIN_FOLD_ROWS}")
    weighted = sum((folds == fold).sum() * pearson_r(prediction[folds == fold], target[folds == fold])
                   for fold in np.unique(folds))
    return weighted / len(folds)


def challenge_score(r: np.ndarray, noise_ceiling: np.ndarray) -> np.ndarray:
    """Algonauts 2023 per-vertex score: 100 * max(r, 0)^2 / noise ceiling (a fraction), capped at 100.

    Vertices with a zero noise ceiling score NaN (undefined) and are left out of means.
    """
    r = np.clip(np.asarray(r, dtype=np.float64), 0.0, None)
    noise_ceiling = np.asarray(noise_ceiling, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(noise_ceiling > 0, 100.0 * r**2 / noise_ceiling, np.nan)
    return np.minimum(score, 100.0)


def roi_medians(values: np.ndarray, labels: np.ndarray, names: dict[int, str]) -> dict[str, tuple[int, float]]:
    """{ROI name: (vertex count, median value)} for every labelled ROI present (label 0 = unlabelled is skipped)."""
    out = {}
    for label, name in sorted(names.items()):
        mask = labels == label
        if label == 0 or not mask.any():
            continue
        out[name] = (int(mask.sum()), float(np.nanmedian(values[mask])))
    return out


def block_preference(block_weight: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Summary of per-target block weights (t, n_blocks) (banded ridge): for every block the fraction of targets
    whose largest weight it has (`preferred`, the targets' preferred layer / stream) and its mean weight."""
    block_weight = np.asarray(block_weight, dtype=np.float64).reshape(-1, len(names))
    preferred = np.bincount(block_weight.argmax(1), minlength=len(names)) / len(block_weight)
    return {"preferred": dict(zip(names, preferred.tolist())),
            "mean_weight": dict(zip(names, block_weight.mean(0).tolist()))}

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
    return {name: (int(mask.sum()), float(np.nanmedian(values[mask]))) for name, mask in roi_masks(labels, names)}


def roi_masks(labels: np.ndarray, names: dict[int, str]):
    """(ROI name, vertex mask) of every labelled ROI present, in label order (label 0 = unlabelled is skipped)."""
    for label, name in sorted(names.items()):
        mask = labels == label
        if label != 0 and mask.any():
            yield name, mask


def block_preference(block_weight: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Summary of per-target block weights (t, n_blocks) (banded ridge): for every block the fraction of targets
    whose largest weight it has (`preferred`, the targets' preferred layer / stream) and its mean weight.

    Blocks named `<group>:<block>` (MEG streams, combined backbones) also get `share`: per group, the mean over
    targets of its blocks' summed weight (e.g. each backbone's share per vertex, averaged).
    """
    block_weight = np.asarray(block_weight, dtype=np.float64).reshape(-1, len(names))
    summary = {"preferred": dict(zip(names, preferred_block_fractions(block_weight).tolist())),
               "mean_weight": dict(zip(names, block_weight.mean(0).tolist()))}
    groups = [name.split(":")[0] for name in names]
    if all(":" in name for name in names):
        summary["share"] = {group: float(block_weight[:, [g == group for g in groups]].sum(1).mean())
                            for group in dict.fromkeys(groups)}
    return summary


def preferred_block_fractions(block_weight: np.ndarray) -> np.ndarray:
    """(n_blocks,) fraction of the targets (rows of `block_weight` (t, n_blocks)) whose largest weight is each
    block; a tie goes to the first block. Sums to 1."""
    block_weight = np.asarray(block_weight)
    if block_weight.ndim != 2 or not len(block_weight):
        raise ValueError(f"block_weight has shape {block_weight.shape}; expected (targets >= 1, blocks)")
    return np.bincount(block_weight.argmax(1), minlength=block_weight.shape[1]) / len(block_weight)


def roi_block_fractions(block_weight: np.ndarray, rois: dict[str, tuple[np.ndarray, dict[int, str]]],
                        roi_classes: list[str]) -> list[tuple[str, str, int, np.ndarray]]:
    """(roi class, ROI, vertex count, preferred_block_fractions of its vertices) for every ROI present of each of
    `roi_classes` found in `rois` ({class: (labels per vertex, {label: name})}, as data.responses.read_rois),
    in class then label order."""
    return [(roi_class, roi, int(mask.sum()), preferred_block_fractions(block_weight[mask]))
            for roi_class in roi_classes if roi_class in rois
            for roi, mask in roi_masks(*rois[roi_class])]

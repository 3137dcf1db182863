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

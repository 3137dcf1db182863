"""MEG noise ceiling per sensor x time from repeated fixations in free viewing.

There are no repeated stimuli by design, but a subject often fixates the same spot of the same scene in
different trials. Two such fixations (same subject, same scene, different trials, gaze positions at most
`max_distance_px` apart on the screen) form a repeat pair: both epochs contain the same foveal
stimulus-driven response s plus independent noise, y1 = s + e1, y2 = s + e2. Then

    rho = corr(y1, y2) = var s / var y,

and no prediction f of the response can correlate better with a single-fixation response than s itself:
max_f corr(f, y) = corr(s, y) = cov(s, y) / sqrt(var s var y) = var s / sqrt(var s var y) = sqrt(var s / var y).
So the ceiling on a model's Pearson r with single-fixation epochs is sqrt(max(rho, 0)).

rho is the Pearson r over pairs computed symmetrically (the pairs stacked as (a, b) and (b, a)), so neither
member of a pair is privileged. The two fixations of a pair still differ in their parafoveal content, their
saccade history and their exact position, so their shared part is smaller than the full foveal-driven
response: the ceiling is a lower bound on the reliability of the foveal-driven response.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.io import get_logger

log = get_logger("noise_ceiling_meg")

PAIRING_COLUMNS = ("subject", "session", "trial", "sceneID", "gx", "gy")


def repeat_pairs(fixations: pd.DataFrame, max_distance_px: float) -> np.ndarray:
    """(n_pairs, 2) row positions of `fixations` forming repeat pairs.

    Candidates are two fixations of the same subject on the same scene in different trials (session, trial)
    whose gaze (gx, gy, screen px) lies at most `max_distance_px` apart; they are taken greedily by
    increasing distance, each fixation in at most one pair. Rows with non-finite gaze never pair.
    """
    missing = [c for c in PAIRING_COLUMNS if c not in fixations.columns]
    if missing:
        raise KeyError(f"fixations table lacks columns {missing}; expected {list(PAIRING_COLUMNS)}")
    if not max_distance_px >= 0:
        raise ValueError(f"max_distance_px must be >= 0, got {max_distance_px}")
    xy = fixations[["gx", "gy"]].to_numpy(np.float64)
    trial_codes = pd.factorize(pd.MultiIndex.from_frame(fixations[["session", "trial"]].astype(str)))[0]
    candidates = []  # (distance_px, row_a, row_b)
    for rows in fixations.groupby(["subject", "sceneID"], sort=False).indices.values():
        rows = rows[np.isfinite(xy[rows]).all(1)]
        distance_px = np.linalg.norm(xy[rows, None, :] - xy[None, rows, :], axis=-1)
        a, b = np.nonzero(np.triu(distance_px <= max_distance_px, k=1)
                          & (trial_codes[rows, None] != trial_codes[None, rows]))
        candidates.append(np.column_stack([distance_px[a, b], rows[a], rows[b]]))
    candidates = np.concatenate(candidates) if candidates else np.empty((0, 3))
    candidates = candidates[np.lexsort((candidates[:, 2], candidates[:, 1], candidates[:, 0]))]
    used = np.zeros(len(fixations), dtype=bool)
    pairs = []
    for _, a, b in candidates:
        a, b = int(a), int(b)
        if not (used[a] or used[b]):
            used[a] = used[b] = True
            pairs.append((a, b))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def noise_ceiling(epochs: np.ndarray, pairs: np.ndarray, *, min_pairs: int) -> np.ndarray:
    """Ceiling (ch, t) on the Pearson r of a prediction with single-fixation epochs (n, ch, t).

    sqrt(max(rho, 0)) with rho the symmetric split-half r over the repeat `pairs` (row indices into
    `epochs`); all NaN, with a warning, when there are fewer than `min_pairs` pairs.
    """
    epochs = np.asarray(epochs)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    need = max(min_pairs, 2)
    if len(pairs) < need:
        log.warning("only %d repeat pairs (need %d): noise ceiling undefined (NaN)", len(pairs), need)
        return np.full(epochs.shape[1:], np.nan)
    a, b = epochs[pairs[:, 0]], epochs[pairs[:, 1]]
    rho = pearson_r(np.concatenate([a, b]), np.concatenate([b, a]))
    return np.sqrt(np.clip(rho, 0.0, None))

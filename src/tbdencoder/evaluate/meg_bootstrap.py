"""Bootstrap over scenes of the within-fold r of MEG predictions, from sufficient statistics per scene.

Fixations of one scene share its image and are not independent, so the unit resampled is the scene: all its
fixations come along, with the scene's multiplicity. Scenes are drawn with replacement within their outer fold
(a stratified bootstrap: each scene lies in one fold of the scene-grouped CV, and every fold keeps its number of
scenes), so fixations keep their fold and the fold's model.

r within a fold is a function of five sums over its rows (x, y, x^2, y^2, xy per sensor x time); a resample is
then a weighted sum of the scenes' sums, the weights the scenes' draw counts, without touching the rows again.
The values are standardised per fold (r is invariant to that) so the sums keep their precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tbdencoder.evaluate.metrics import MIN_FOLD_ROWS

MIN_SCENES_PER_FOLD = 2  # a bootstrap over one scene of a fold has no spread: no interval
BATCH = 50  # resamples summed at once (memory: BATCH x 5 x sensors x times floats per fold)


@dataclass
class SceneSums:
    """Sums over each scene's rows of x, y, x^2, y^2, xy (x prediction, y target, standardised per fold)."""

    sums: np.ndarray  # (scenes, 5, ch, t)
    count: np.ndarray  # (scenes,) rows of the scene
    fold: np.ndarray  # (scenes,) index of the scene's outer fold (0 .. n_folds - 1, in sorted fold order)

    @property
    def half(self) -> np.ndarray:
        """(scenes,) the fold half of each scene (alternate outer folds, as MegFit.r_halves)."""
        return self.fold % 2


def _standardised(values: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit sd (a constant column stays 0)."""
    values = values - values.mean(0)
    sd = values.std(0)
    return values / np.where(sd > 0, sd, 1.0)


def scene_sums(prediction: np.ndarray, target: np.ndarray, folds: np.ndarray, scenes: np.ndarray) -> SceneSums:
    """SceneSums of the rows of `prediction` and `target` (n, ch, t), their outer `folds` and `scenes` (n,).

    A scene in two folds is an error: the scene-grouped CV never splits one."""
    fold_values, fold_index = np.unique(folds, return_inverse=True)
    scene_values, scene_index = np.unique(np.asarray(scenes).astype(str), return_inverse=True)
    scene_fold = np.full(len(scene_values), -1)
    scene_fold[scene_index] = fold_index
    split = np.unique(scene_values[scene_index[scene_fold[scene_index] != fold_index]])
    if len(split):
        raise ValueError(f"scenes {split[:3].tolist()} lie in more than one outer fold; the scene bootstrap "
                         "expects scene-grouped folds")
    x, y = np.empty(prediction.shape), np.empty(target.shape)
    for f in range(len(fold_values)):
        rows = fold_index == f
        x[rows], y[rows] = _standardised(np.asarray(prediction[rows], np.float64)), \
            _standardised(np.asarray(target[rows], np.float64))
    one_hot = np.zeros((len(scene_values), len(x)))
    one_hot[scene_index, np.arange(len(x))] = 1.0
    flat = [v.reshape(len(x), -1) for v in (x, y, x * x, y * y, x * y)]
    sums = np.stack([one_hot @ v for v in flat], 1).reshape(len(scene_values), 5, *x.shape[1:])
    return SceneSums(sums=sums, count=one_hot.sum(1), fold=scene_fold)


def r_from_sums(sums: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Pearson r from summed (..., 5, ch, t) statistics of `n` (...) rows: 0 where either side is constant (as
    metrics.pearson_r), NaN where n < MIN_FOLD_ROWS."""
    sx, sy, sxx, syy, sxy = np.moveaxis(sums, -3, 0)
    n = np.asarray(n, np.float64)[..., None, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        vx, vy = n * sxx - sx * sx, n * syy - sy * sy
        denominator = np.sqrt(vx * vy)
        r = np.where(denominator > 1e-12 * n * n, (n * sxy - sx * sy) / denominator, 0.0)
    return np.where(n >= MIN_FOLD_ROWS, r, np.nan)


def halves_r(stats: SceneSums, weights: np.ndarray) -> np.ndarray:
    """(..., 2, ch, t) within-fold r of each fold half (folds weighted by their row counts, as
    metrics.pearson_r_within_folds) when each scene counts `weights` (..., scenes) times; NaN where a fold of the
    half has fewer than MIN_FOLD_ROWS rows."""
    weights = np.asarray(weights, np.float64)
    halves = []
    for h in (0, 1):
        total, rows = 0.0, 0.0
        for f in np.unique(stats.fold[stats.half == h]):
            scenes = stats.fold == f
            w = weights[..., scenes]
            n = w @ stats.count[scenes]
            sums = np.tensordot(w, stats.sums[scenes], axes=(-1, 0))
            total = total + n[..., None, None] * r_from_sums(sums, n)
            rows = rows + n
        halves.append(total / np.asarray(rows)[..., None, None])
    return np.stack(halves, -3)


def draw_weights(stats: SceneSums, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, scenes) draw counts: each fold's scenes drawn with replacement, as many as it has."""
    weights = np.zeros((n_resamples, len(stats.fold)))
    for f in np.unique(stats.fold):
        scenes = np.flatnonzero(stats.fold == f)
        weights[:, scenes] = rng.multinomial(len(scenes), np.full(len(scenes), 1 / len(scenes)), size=n_resamples)
    return weights


def bootstrap(stats: SceneSums, estimate, n_resamples: int, seed: int) -> dict[str, np.ndarray]:
    """`estimate(r_halves (B, 2, ch, t))` -> {name: (B, ...) values} on `n_resamples` scene resamples (seeded
    by `seed`), stacked; a resample with a fold of fewer than MIN_FOLD_ROWS rows gives NaN. All NaN when a fold
    holds fewer than MIN_SCENES_PER_FOLD scenes (no interval from a single scene)."""
    rng = np.random.default_rng(seed)
    weights = draw_weights(stats, n_resamples, rng)
    parts = []
    for start in range(0, n_resamples, BATCH):
        r_halves = halves_r(stats, weights[start:start + BATCH])
        valid = np.isfinite(r_halves).all((-3, -2, -1))
        values = estimate(np.where(valid[:, None, None, None], r_halves, 0.0))
        parts.append({k: np.where(valid.reshape(-1, *[1] * (np.ndim(v) - 1)), v, np.nan) for k, v in values.items()})
    out = {k: np.concatenate([p[k] for p in parts]).astype(np.float64) for k in parts[0]}
    if np.bincount(stats.fold).min() < MIN_SCENES_PER_FOLD:
        out = {k: np.full_like(v, np.nan) for k, v in out.items()}
    return out


def percentile_interval(values: np.ndarray, level: float) -> np.ndarray:
    """(2, ...) equal-tailed percentile interval at `level` over the resamples (axis 0) that are numbers; NaN
    where none is."""
    finite = np.isfinite(values).any(0)
    tail = 50 * (1 - level)
    with np.errstate(invalid="ignore"):
        bounds = np.nanpercentile(np.where(finite, values, 0.0), [tail, 100 - tail], axis=0)
    return np.where(finite, bounds, np.nan)

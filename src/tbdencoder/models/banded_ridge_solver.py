"""Banded ridge: one penalty per feature block (layer, token, stream, backbone) per target, by cross-validation.

The model of Nunez-Elizalde, Huth & Gallant (2019) as himalaya's BandedRidgeCV fits it by random search:
for block weights gamma on the simplex (the uniform weighting first, then Dirichlet samples), scale each
block's columns by sqrt(gamma_b), so that ridge with penalty alpha on the scaled features is ridge with
penalty alpha / gamma_b on block b; cross-validate every (gamma, alpha) pair for every target and keep
the best. Each candidate gamma is one call of the project's ridge solver (`ridge_solver._Solver`: one
eigendecomposition per fold serves every alpha and every target), so the cost is n_gammas times that of
plain ridge. The uniform candidate is plain ridge (alpha scaled by the number of blocks), so on the
training folds banded ridge is never worse than ridge; what it can lose on new data is the noise of
choosing among more candidates.

Per target the result holds the chosen gamma (the block weights: a target's preferred block is the
block with the largest weight), alpha, the CV score and the coefficients on the unscaled features.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from tbdencoder.device import resolve_device
from tbdencoder.models.ridge_solver import _best_alpha_index, _Solver

DIRICHLET_CONCENTRATIONS = (0.1, 1.0)  # as himalaya: sparse and spread block weightings, alternately


class BandedRidgeCVResult(NamedTuple):
    coef: np.ndarray  # (p, t) float32 on the unscaled features
    gamma: np.ndarray  # (t, n_blocks) float64 block weights (sum 1) of every target
    alpha: np.ndarray  # (t,) float64 penalty on the scaled features (block b's penalty: alpha / gamma_b)
    cv_score: np.ndarray  # (t,) float64 R^2 at the chosen (gamma, alpha), averaged over folds


def candidate_gammas(n_blocks: int, n_gammas: int, seed: int) -> np.ndarray:
    """(n_gammas, n_blocks) block weightings: the uniform one, then Dirichlet samples (himalaya's scheme)."""
    if n_gammas < 1:
        raise ValueError(f"n_gammas must be at least 1, got {n_gammas}")
    rng = np.random.default_rng(seed)
    gammas = np.full((n_gammas, n_blocks), 1.0 / n_blocks)
    for i in range(1, n_gammas):
        concentration = DIRICHLET_CONCENTRATIONS[i % len(DIRICHLET_CONCENTRATIONS)]
        gammas[i] = rng.dirichlet(np.full(n_blocks, concentration))
    return gammas


def banded_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    block_sizes: Sequence[int],
    alphas: Sequence[float],
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    gammas: np.ndarray,
    y_offset: np.ndarray | None = None,
    device: str = "auto",
    max_batch_targets: int | None = None,
) -> BandedRidgeCVResult:
    """Fit banded ridge (no intercept) of Y (n, t) on X (n, p) whose columns are blocks of `block_sizes`.

    gammas : (n_candidates, n_blocks) block weightings to search (`candidate_gammas`).
    Other arguments as in `ridge_solver.ridge_cv`.
    """
    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y)
    block_sizes = [int(size) for size in block_sizes]
    gammas = np.asarray(gammas, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or sum(block_sizes) != X.shape[1]:
        raise ValueError(f"expected X (n, p) with p = sum of block_sizes {block_sizes} and Y (n, t), "
                         f"got {X.shape} and {Y.shape}")
    if gammas.ndim != 2 or gammas.shape[1] != len(block_sizes) or np.any(gammas <= 0):
        raise ValueError(f"gammas must be (n_candidates, {len(block_sizes)}) positive weights, got {gammas.shape}")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas) & (alphas > 0)):
        raise ValueError(f"alphas must be a non-empty list of finite positive numbers, got {alphas}")
    solver_device = resolve_device(device)
    offset = np.zeros(Y.shape[1], dtype=np.float32) if y_offset is None else np.asarray(y_offset, np.float32)

    best_score = np.full(Y.shape[1], -np.inf)
    best_candidate = np.zeros(Y.shape[1], dtype=np.int64)
    best_alpha = np.zeros(Y.shape[1])
    for candidate, gamma in enumerate(gammas):
        solver = _Solver(X * _column_scale(block_sizes, gamma), folds, alphas, solver_device)
        for cols in _batches(solver, Y.shape[1], max_batch_targets):
            scores = solver.cv_scores(solver.targets(Y, offset, cols))
            index = _best_alpha_index(scores, alphas)
            score = scores[index, np.arange(scores.shape[1])]
            better = score > best_score[cols]  # ties keep the earlier candidate (the uniform one first)
            best_score[cols] = np.where(better, score, best_score[cols])
            best_candidate[cols] = np.where(better, candidate, best_candidate[cols])
            best_alpha[cols] = np.where(better, alphas[index], best_alpha[cols])

    coef = banded_ridge_fixed(X, Y, block_sizes, gammas[best_candidate], best_alpha, y_offset=offset, device=device,
                              max_batch_targets=max_batch_targets)
    return BandedRidgeCVResult(coef, gammas[best_candidate], best_alpha, best_score)


def banded_ridge_fixed(X: np.ndarray, Y: np.ndarray, block_sizes: Sequence[int], gamma: np.ndarray, alpha: np.ndarray,
                       *, y_offset: np.ndarray | None = None, device: str = "auto",
                       max_batch_targets: int | None = None) -> np.ndarray:
    """(p, t) float32 coefficients with each target's block weights gamma (t, n_blocks) and alpha (t,), no CV.

    The refit half of `banded_ridge_cv`: targets sharing a weighting are solved together (one decomposition
    per distinct weighting), so the stored weights and alphas give back the fitted coefficients.
    """
    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y)
    block_sizes = [int(size) for size in block_sizes]
    offset = np.zeros(Y.shape[1], dtype=np.float32) if y_offset is None else np.asarray(y_offset, np.float32)
    solver_device = resolve_device(device)
    weightings, which = np.unique(np.asarray(gamma, dtype=np.float64), axis=0, return_inverse=True)
    coef = np.empty((X.shape[1], Y.shape[1]), dtype=np.float32)
    for index, weighting in enumerate(weightings):
        targets = np.flatnonzero(which.ravel() == index)
        scale = _column_scale(block_sizes, weighting)
        solver = _Solver(X * scale, [], np.unique(alpha[targets]), solver_device)
        size = solver.batch_size(len(targets), max_batch_targets)
        for start in range(0, len(targets), size):
            chunk = targets[start:start + size]
            batch = solver.targets(Y[:, chunk], offset[chunk], slice(None))
            coef[:, chunk] = solver.coef(batch, np.asarray(alpha, dtype=np.float64)[chunk]) * scale[:, None]
    return coef


def _column_scale(block_sizes: list[int], gamma: np.ndarray) -> np.ndarray:
    """(p,) float32 sqrt(gamma_b) for every column of block b."""
    return np.repeat(np.sqrt(gamma), block_sizes).astype(np.float32)


def _batches(solver: _Solver, n_targets: int, max_batch_targets: int | None) -> list[slice]:
    size = solver.batch_size(n_targets, max_batch_targets)
    return [slice(start, start + size) for start in range(0, n_targets, size)]

"""Ridge regression with a penalty per target chosen by cross-validation (torch solver, CPU or CUDA)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

from tbdencoder.models.ridge_solver import ridge_cv


class RidgeEncoder:
    """Linear encoding model: standardised features -> centred targets, one ridge penalty per target.

    Parameters
    ----------
    alphas : candidate penalties (the grid searched for every target).
    cv_folds : number of shuffled K-fold splits of the training rows used to pick each target's alpha
        (grouped K-fold when `fit` gets groups: no group on both sides of a split).
    seed : seed of the fold shuffling.
    shared_alpha : pick one alpha for all targets (best mean CV score) instead of one per target.
    device : 'auto', 'cpu' or 'cuda' (where the torch solver runs).
    max_batch_targets : upper bound on the targets solved at once (otherwise set by the free memory).

    Fitted attributes: coef_ (p, t) on standardised features, intercept_ (t,), alpha_ (t,),
    cv_score_ (t,) the cross-validated R^2 at the chosen alpha, x_mean_, x_scale_ (p,).
    """

    def __init__(self, alphas=(1.0,), cv_folds: int = 5, seed: int = 0, shared_alpha: bool = False,
                 device: str = "auto", max_batch_targets: int | None = None):
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.seed = seed
        self.shared_alpha = shared_alpha
        self.device = device
        self.max_batch_targets = max_batch_targets

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None) -> "RidgeEncoder":
        X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(f"expected X (n, p) and Y (n, t) with the same n, got {X.shape} and {Y.shape}")
        self.x_mean_ = X.mean(0)
        self.x_scale_ = X.std(0)
        self.x_scale_[self.x_scale_ == 0] = 1.0
        self.intercept_ = Y.mean(0, dtype=np.float64).astype(np.float32)
        if groups is None:
            folds = list(KFold(self.cv_folds, shuffle=True, random_state=self.seed).split(X))
        else:
            folds = list(GroupKFold(self.cv_folds, shuffle=True, random_state=self.seed).split(X, groups=groups))
        solution = ridge_cv((X - self.x_mean_) / self.x_scale_, Y, self.alphas, folds,
                            shared_alpha=self.shared_alpha, y_offset=self.intercept_, device=self.device,
                            max_batch_targets=self.max_batch_targets)
        self.coef_ = solution.coef
        self.alpha_ = solution.alpha.astype(np.float32)
        self.cv_score_ = solution.cv_score.astype(np.float32)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, dtype=np.float32) - self.x_mean_) / self.x_scale_
        return Xs @ self.coef_ + self.intercept_

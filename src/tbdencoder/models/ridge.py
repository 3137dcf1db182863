"""Ridge regression with a penalty per target chosen by cross-validation (torch solver, CPU or CUDA)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import GroupKFold, KFold

from tbdencoder.features.featureset import FeatureSet, as_matrix
from tbdencoder.models.base import register
from tbdencoder.models.ridge_solver import ridge_cv, ridge_fixed_alpha

MIN_VALIDATION_ROWS = 2  # R^2 about a one-row fold's mean is undefined (leave-one-out is refused)


def check_folds(n_folds: int, n_rows: int, key: str, n_groups: int | None = None, group_name: str = "groups") -> None:
    """Refuse K-fold CV that cannot score every alpha: more folds than groups, or folds too small.

    `key` names the setting in the error (a params key such as 'fit.cv_folds').
    """
    if n_groups is not None and n_folds > n_groups:
        raise ValueError(f"{key} = {n_folds}: more folds than the {n_groups} {group_name} available "
                         f"(grouped folds need at least one of them each)")
    if n_rows // n_folds < MIN_VALIDATION_ROWS:
        raise ValueError(
            f"{key} = {n_folds}: {n_rows} training rows leave fewer than {MIN_VALIDATION_ROWS} validation rows per "
            f"fold; use at most {n_rows // MIN_VALIDATION_ROWS} folds (leave-one-out is not supported: the R^2 "
            f"that picks each alpha is undefined on one row)")


def cv_splits(n_rows: int, cv_folds: int, seed: int, groups: np.ndarray | None = None) -> list:
    """Shuffled K-fold (train, validation) row splits, grouped when `groups` is given; checked by check_folds."""
    check_folds(cv_folds, n_rows, "cv_folds", None if groups is None else len(np.unique(groups)))
    rows = np.zeros(n_rows)
    if groups is None:
        return list(KFold(cv_folds, shuffle=True, random_state=seed).split(rows))
    return list(GroupKFold(cv_folds, shuffle=True, random_state=seed).split(rows, groups=groups))


def set_offsets(model, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes; set `model`'s feature means and scales (x_mean_, x_scale_) and intercept_ (target means)."""
    X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"expected X (n, p) and Y (n, t) with the same n, got {X.shape} and {Y.shape}")
    model.x_mean_ = X.mean(0)
    model.x_scale_ = X.std(0)
    model.x_scale_[model.x_scale_ == 0] = 1.0
    model.intercept_ = Y.mean(0, dtype=np.float64).astype(np.float32)
    return X, Y


@register("ridge")
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

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict | None = None) -> "RidgeEncoder":
        X, Y = set_offsets(self, as_matrix(X), Y)
        folds = cv_splits(len(X), self.cv_folds, self.seed, groups)
        solution = ridge_cv((X - self.x_mean_) / self.x_scale_, Y, self.alphas, folds,
                            shared_alpha=self.shared_alpha, y_offset=self.intercept_, device=self.device,
                            max_batch_targets=self.max_batch_targets)
        self.coef_ = solution.coef
        self.alpha_ = solution.alpha.astype(np.float32)
        self.cv_score_ = solution.cv_score.astype(np.float32)
        return self

    def state(self) -> dict[str, np.ndarray]:
        return {"alpha": self.alpha_, "cv_score": self.cv_score_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet | np.ndarray, Y: np.ndarray,
               device: str = "auto") -> "RidgeEncoder":
        """The model a stored `state` came from, given the training data it was fitted on."""
        return cls(device=device).refit(X, Y, state["alpha"])

    def refit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, alpha: np.ndarray) -> "RidgeEncoder":
        """Fit with a given alpha per target (no CV): what a stored fit's alphas need to predict again.

        With the alphas `fit` chose on the same X and Y, the coefficients equal `fit`'s.
        """
        X, Y = set_offsets(self, as_matrix(X), Y)
        self.alpha_ = np.asarray(alpha, dtype=np.float32)
        self.coef_ = ridge_fixed_alpha((X - self.x_mean_) / self.x_scale_, Y, self.alpha_.astype(np.float64),
                                       y_offset=self.intercept_, device=self.device,
                                       max_batch_targets=self.max_batch_targets)
        return self

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict | None = None) -> np.ndarray:
        Xs = (as_matrix(X) - self.x_mean_) / self.x_scale_
        return Xs @ self.coef_ + self.intercept_

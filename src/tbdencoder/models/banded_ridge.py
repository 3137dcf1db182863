"""Banded ridge as a model family: one penalty per feature block per target (banded_ridge_solver).

The blocks are the FeatureSet's (layers x tokens x streams, later backbones), so each target's block
weights say which layer (token, stream) predicts it: the weights are reported per target in the fits
file (`block_weight`, targets x blocks, in the order of `feature_blocks`).
"""

from __future__ import annotations

import numpy as np

from tbdencoder.config import family_defaults
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.models.banded_ridge_solver import banded_ridge_cv, banded_ridge_fixed, candidate_gammas
from tbdencoder.models.base import register
from tbdencoder.models.ridge import cv_splits, set_offsets

DEFAULTS = family_defaults("banded_ridge")  # the params schema holds every hyper-parameter's default


@register("banded_ridge")
class BandedRidgeEncoder:
    """Ridge with a penalty per block per target, chosen by K-fold CV over `n_gammas` block weightings x `alphas`.

    Parameters
    ----------
    alphas, cv_folds, seed, device : as in RidgeEncoder (folds grouped when `fit` gets groups).
    n_gammas : block weightings searched: the uniform one (plain ridge) and n_gammas - 1 Dirichlet samples.

    Fitted attributes: coef_ (p, t) on standardised features, intercept_ (t,), block_weight_ (t, n_blocks)
    summing to 1, alpha_ (t,) the penalty on the weighted features (block b's penalty is alpha_ / weight_b),
    cv_score_ (t,), block_names_.
    """

    def __init__(self, alphas=(1.0,), cv_folds: int = 5, seed: int = 0, n_gammas: int = DEFAULTS["n_gammas"],
                 device: str = "auto"):
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.seed = seed
        self.n_gammas = n_gammas
        self.device = device

    def fit(self, X: FeatureSet, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict | None = None) -> "BandedRidgeEncoder":
        if not isinstance(X, FeatureSet):
            raise TypeError("banded ridge needs a FeatureSet (its blocks get their own penalties), got an array")
        flat, Y = set_offsets(self, X.flat(), Y)
        folds = cv_splits(len(flat), self.cv_folds, self.seed, groups)
        result = banded_ridge_cv((flat - self.x_mean_) / self.x_scale_, Y, X.block_sizes, self.alphas, folds,
                                 gammas=candidate_gammas(len(X.block_sizes), self.n_gammas, self.seed),
                                 y_offset=self.intercept_, device=self.device)
        self.coef_ = result.coef
        self.block_weight_ = result.gamma.astype(np.float32)
        self.alpha_ = result.alpha.astype(np.float32)
        self.cv_score_ = result.cv_score.astype(np.float32)
        self.block_names_ = list(X.names)
        return self

    def predict(self, X: FeatureSet, *, subjects: np.ndarray | None = None,
                targets: dict | None = None) -> np.ndarray:
        return ((X.flat() - self.x_mean_) / self.x_scale_) @ self.coef_ + self.intercept_

    def state(self) -> dict[str, np.ndarray]:
        return {"alpha": self.alpha_, "cv_score": self.cv_score_, "block_weight": self.block_weight_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet, Y: np.ndarray,
               device: str = "auto") -> "BandedRidgeEncoder":
        """The model a stored state came from: coefficients refit from its block weights and alphas (no CV)."""
        model = cls(device=device)
        flat, Y = set_offsets(model, X.flat(), Y)
        model.block_weight_, model.alpha_ = state["block_weight"], state["alpha"]
        model.cv_score_, model.block_names_ = state["cv_score"], list(X.names)
        model.coef_ = banded_ridge_fixed((flat - model.x_mean_) / model.x_scale_, Y, X.block_sizes,
                                         model.block_weight_, model.alpha_, y_offset=model.intercept_, device=device)
        return model

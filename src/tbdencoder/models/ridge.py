"""Ridge regression with a penalty per target chosen by cross-validation (himalaya, torch backend)."""

from __future__ import annotations

import numpy as np
import torch
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score
from sklearn.model_selection import KFold


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in {"cpu", "cuda"}:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return device


class RidgeEncoder:
    """Linear encoding model: standardised features -> centred targets, one ridge penalty per target.

    Parameters
    ----------
    alphas : candidate penalties (the grid searched for every target).
    cv_folds : number of shuffled K-fold splits of the training rows used to pick each target's alpha.
    seed : seed of the fold shuffling.
    shared_alpha : pick one alpha for all targets (best mean CV score) instead of one per target.
    device : 'auto', 'cpu' or 'cuda' (himalaya torch / torch_cuda backend).

    Fitted attributes: coef_ (p, t) on standardised features, intercept_ (t,), alpha_ (t,),
    cv_score_ (t,) the cross-validated R^2 at the chosen alpha, x_mean_, x_scale_ (p,).
    """

    def __init__(self, alphas=(1.0,), cv_folds: int = 5, seed: int = 0, shared_alpha: bool = False, device: str = "auto"):
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.seed = seed
        self.shared_alpha = shared_alpha
        self.device = device

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "RidgeEncoder":
        X, Y = np.asarray(X, dtype=np.float32), np.asarray(Y, dtype=np.float32)
        if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
            raise ValueError(f"expected X (n, p) and Y (n, t) with the same n, got {X.shape} and {Y.shape}")
        self.x_mean_ = X.mean(0)
        self.x_scale_ = X.std(0)
        self.x_scale_[self.x_scale_ == 0] = 1.0
        self.intercept_ = Y.mean(0)
        Xs = (X - self.x_mean_) / self.x_scale_
        backend = set_backend("torch_cuda" if resolve_device(self.device) == "cuda" else "torch", on_error="raise")
        folds = KFold(self.cv_folds, shuffle=True, random_state=self.seed)
        model = RidgeCV(
            alphas=np.asarray(self.alphas, dtype=np.float32),
            cv=folds,
            solver_params={"local_alpha": not self.shared_alpha, "score_func": r2_score, "warn": False},
        )
        model.fit(Xs, Y - self.intercept_)
        self.coef_ = backend.to_numpy(model.coef_).astype(np.float32)
        self.alpha_ = backend.to_numpy(model.best_alphas_).astype(np.float32)
        self.cv_score_ = backend.to_numpy(model.cv_scores_).astype(np.float32)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, dtype=np.float32) - self.x_mean_) / self.x_scale_
        return Xs @ self.coef_ + self.intercept_


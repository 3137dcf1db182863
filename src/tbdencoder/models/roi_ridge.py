"""ROI-wise linear models: one ridge per ROI of a subject x hemisphere (seed 002's CLIP-ROI)."""

from __future__ import annotations

import numpy as np

from tbdencoder.models.ridge import RidgeEncoder


class RoiRidgeEncoder:
    """A separate ridge model, with one penalty shared by the ROI's vertices, for every ROI.

    Parameters
    ----------
    roi_labels : (t,) int label of every target; label 0 (unlabelled) vertices form their own group.
    alphas, cv_folds, seed, device : as in RidgeEncoder.

    Fitted attributes match RidgeEncoder's (coef_, intercept_, alpha_, cv_score_ per target),
    so both are saved and evaluated the same way; x_mean_/x_scale_ are shared by all ROIs.
    """

    def __init__(self, roi_labels, alphas=(1.0,), cv_folds: int = 5, seed: int = 0, device: str = "auto"):
        self.roi_labels = roi_labels
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.seed = seed
        self.device = device

    def fit(self, X: np.ndarray, Y: np.ndarray) -> "RoiRidgeEncoder":
        labels = np.asarray(self.roi_labels)
        if labels.shape != (Y.shape[1],):
            raise ValueError(f"roi_labels has shape {labels.shape}, expected ({Y.shape[1]},) (one per target)")
        self.coef_ = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float32)
        self.alpha_ = np.zeros(Y.shape[1], dtype=np.float32)
        self.cv_score_ = np.zeros(Y.shape[1], dtype=np.float32)
        self.intercept_ = np.zeros(Y.shape[1], dtype=np.float32)
        for label in np.unique(labels):
            columns = np.flatnonzero(labels == label)
            roi_model = RidgeEncoder(self.alphas, self.cv_folds, self.seed, shared_alpha=True, device=self.device)
            roi_model.fit(X, Y[:, columns])
            self.coef_[:, columns] = roi_model.coef_
            self.alpha_[columns] = roi_model.alpha_
            self.cv_score_[columns] = roi_model.cv_score_
            self.intercept_[columns] = roi_model.intercept_
        self.x_mean_, self.x_scale_ = roi_model.x_mean_, roi_model.x_scale_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        Xs = (np.asarray(X, dtype=np.float32) - self.x_mean_) / self.x_scale_
        return Xs @ self.coef_ + self.intercept_

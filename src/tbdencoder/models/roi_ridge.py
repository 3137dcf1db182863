"""ROI-wise linear models: one ridge per ROI of a subject x hemisphere (seed 002's CLIP-ROI)."""

from __future__ import annotations

import numpy as np

from tbdencoder.features.featureset import FeatureSet, as_matrix
from tbdencoder.models.base import register
from tbdencoder.models.ridge import RidgeEncoder


@register("roi_ridge")
class RoiRidgeEncoder:
    """A separate ridge model, with one penalty shared by the ROI's vertices, for every ROI.

    Parameters
    ----------
    roi_class : which ROI labelling of the targets to use: `fit` reads the labels (t,) int from
        `targets["roi"][roi_class]`; label 0 (unlabelled) vertices form their own group.
    alphas, cv_folds, seed, device : as in RidgeEncoder.

    Fitted attributes match RidgeEncoder's (coef_, intercept_, alpha_, cv_score_ per target),
    so both are saved and evaluated the same way; x_mean_/x_scale_ are shared by all ROIs.
    """

    def __init__(self, roi_class: str, alphas=(1.0,), cv_folds: int = 5, seed: int = 0, device: str = "auto"):
        self.roi_class = roi_class
        self.alphas = alphas
        self.cv_folds = cv_folds
        self.seed = seed
        self.device = device

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict | None = None) -> "RoiRidgeEncoder":
        rois = (targets or {}).get("roi", {})
        if self.roi_class not in rois:
            raise KeyError(f"roi_ridge needs the targets' {self.roi_class!r} ROI labels; have {sorted(rois)}")
        labels = np.asarray(rois[self.roi_class])
        if labels.shape != (Y.shape[1],):
            raise ValueError(f"{self.roi_class} labels have shape {labels.shape}, expected ({Y.shape[1]},) "
                             "(one per target)")
        X = as_matrix(X)
        self.coef_ = np.zeros((X.shape[1], Y.shape[1]), dtype=np.float32)
        self.alpha_ = np.zeros(Y.shape[1], dtype=np.float32)
        self.cv_score_ = np.zeros(Y.shape[1], dtype=np.float32)
        self.intercept_ = np.zeros(Y.shape[1], dtype=np.float32)
        for label in np.unique(labels):
            columns = np.flatnonzero(labels == label)
            roi_model = RidgeEncoder(self.alphas, self.cv_folds, self.seed, shared_alpha=True, device=self.device)
            roi_model.fit(X, Y[:, columns], groups=groups)
            self.coef_[:, columns] = roi_model.coef_
            self.alpha_[columns] = roi_model.alpha_
            self.cv_score_[columns] = roi_model.cv_score_
            self.intercept_[columns] = roi_model.intercept_
        self.x_mean_, self.x_scale_ = roi_model.x_mean_, roi_model.x_scale_
        return self

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict | None = None) -> np.ndarray:
        Xs = (as_matrix(X) - self.x_mean_) / self.x_scale_
        return Xs @ self.coef_ + self.intercept_

    def state(self) -> dict[str, np.ndarray]:
        return {"alpha": self.alpha_, "cv_score": self.cv_score_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet | np.ndarray, Y: np.ndarray,
               device: str = "auto") -> RidgeEncoder:
        """Each vertex's ridge with its ROI's alpha: the ROI-wise models, refit (see RidgeEncoder.reload)."""
        return RidgeEncoder.reload(state, X, Y, device)

"""The Algonauts 2023 devkit baseline as a model family: features -> incremental PCA -> linear regression.

The organisers' tutorial takes one AlexNet layer's features of the training images, fits scikit-learn's
IncrementalPCA (100 components, in batches) on them, and fits an ordinary least-squares LinearRegression
from the components to every vertex; features are neither standardised nor penalised. This family does
the same on any FeatureSet (the blocks side by side), so the baseline runs on the same split as ridge.

Fits files keep the PCA (`components`, `pca_mean`) and the regression (`coef`, `intercept`) per fold:
a few hundred kB for 100 components, and a reload needs no training data.
"""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import IncrementalPCA
from sklearn.linear_model import LinearRegression

from tbdencoder.config import family_defaults
from tbdencoder.features.featureset import FeatureSet, as_matrix
from tbdencoder.models.base import register

DEFAULTS = family_defaults("pca_linear")  # the params schema holds every hyper-parameter's default


@register("pca_linear")
class PcaLinearEncoder:
    """IncrementalPCA(n_components, batch_size) fitted on the training rows, then LinearRegression per target.

    Fitted attributes: pca_ (sklearn IncrementalPCA), regression_ (sklearn LinearRegression), train_r2_ (t,).
    """

    def __init__(self, n_components: int = DEFAULTS["n_components"], batch_size: int = DEFAULTS["batch_size"]):
        self.n_components = n_components
        self.batch_size = batch_size

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict | None = None) -> "PcaLinearEncoder":
        X, Y = as_matrix(X), np.asarray(Y, dtype=np.float32)
        most = min(X.shape)
        if not 1 <= self.n_components <= most:
            raise ValueError(f"n_components = {self.n_components}: expected 1..{most} (training rows x features "
                             f"{X.shape})")
        # IncrementalPCA needs every batch to hold at least n_components rows
        batch_size = max(self.batch_size, self.n_components)
        self.pca_ = IncrementalPCA(n_components=self.n_components, batch_size=batch_size).fit(X)
        components = self.pca_.transform(X)
        self.regression_ = LinearRegression().fit(components, Y)
        residual = Y - self.regression_.predict(components)
        total = ((Y - Y.mean(0)) ** 2).sum(0)
        self.train_r2_ = (1 - (residual ** 2).sum(0) / np.maximum(total, 1e-12)).astype(np.float32)
        return self

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict | None = None) -> np.ndarray:
        return self.regression_.predict(self.pca_.transform(as_matrix(X))).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"train_r2": self.train_r2_}

    def artifacts(self) -> dict[str, np.ndarray]:
        return {"components": self.pca_.components_.astype(np.float32), "pca_mean": self.pca_.mean_,
                "coef": self.regression_.coef_.T.astype(np.float32), "intercept": self.regression_.intercept_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet | np.ndarray, Y: np.ndarray,
               device: str = "auto") -> "PcaLinearEncoder":
        """The stored PCA and regression (no refit)."""
        model = cls(n_components=len(state["components"]))
        model.pca_ = IncrementalPCA(n_components=model.n_components)
        model.pca_.components_ = state["components"].astype(np.float64)
        model.pca_.mean_ = state["pca_mean"]
        model.pca_.whiten = False
        model.regression_ = LinearRegression()
        model.regression_.coef_ = state["coef"].T.astype(np.float64)
        model.regression_.intercept_ = state["intercept"]
        model.train_r2_ = state["train_r2"]
        return model

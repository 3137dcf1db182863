"""Encoding models: scikit-learn style estimators with fit(X, Y) / predict(X)."""

from tbdencoder.models.ridge import RidgeEncoder
from tbdencoder.models.roi_ridge import RoiRidgeEncoder

FAMILIES = {"ridge": RidgeEncoder, "roi_ridge": RoiRidgeEncoder}
FeatureEncoder = RidgeEncoder  # the seed documents' name for the ridge estimator

__all__ = ["FAMILIES", "FeatureEncoder", "RidgeEncoder", "RoiRidgeEncoder"]

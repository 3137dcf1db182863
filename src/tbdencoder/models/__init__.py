"""Encoding models: scikit-learn style estimators with fit(X, Y) / predict(X)."""

from tbdencoder.models.ridge import RidgeEncoder
from tbdencoder.models.roi_ridge import RoiRidgeEncoder

FAMILIES = {"ridge": RidgeEncoder, "roi_ridge": RoiRidgeEncoder}

__all__ = ["FAMILIES", "RidgeEncoder", "RoiRidgeEncoder"]

"""Model families (encoding, and decoding: clip_alignment): scikit-learn style estimators registered under their `family` name (models.base)."""

from tbdencoder.models.banded_ridge import BandedRidgeEncoder
from tbdencoder.models.clip_alignment import ClipAlignment
from tbdencoder.models.factortopy import FactorTopy
from tbdencoder.models.base import FAMILIES, Encoder, build_encoder, register
from tbdencoder.models.mlp import MLPEncoder
from tbdencoder.models.neck_readout import NeckReadout
from tbdencoder.models.pca_linear import PcaLinearEncoder
from tbdencoder.models.ridge import RidgeEncoder
from tbdencoder.models.roi_ridge import RoiRidgeEncoder
from tbdencoder.models.subject_adapters import SubjectAdapters

FeatureEncoder = RidgeEncoder  # the seed documents' name for the ridge estimator

__all__ = ["FAMILIES", "BandedRidgeEncoder", "ClipAlignment", "Encoder", "FactorTopy", "FeatureEncoder", "MLPEncoder", "NeckReadout", "PcaLinearEncoder", "RidgeEncoder", "RoiRidgeEncoder", "SubjectAdapters",
           "build_encoder", "register"]

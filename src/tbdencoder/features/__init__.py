"""Frozen deep-network features of stimuli: open_clip ViT blocks -> class token and pooled patch grid."""

from tbdencoder.features.backbones import (
    BackboneSpec,
    Preprocess,
    WeightsUnavailableError,
    load_backbone,
    resolve_backbone,
)
from tbdencoder.features.extract import extract_features, read_stimuli

__all__ = [
    "BackboneSpec",
    "Preprocess",
    "WeightsUnavailableError",
    "extract_features",
    "load_backbone",
    "read_stimuli",
    "resolve_backbone",
]

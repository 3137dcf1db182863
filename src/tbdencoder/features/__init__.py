"""Frozen deep-network features of stimuli from a backbone registry (open_clip, timm, torchvision)."""

from tbdencoder.features.backbone_registry import (
    BackboneSpec,
    WeightsUnavailableError,
    load_backbone,
    resolve_backbone,
)
from tbdencoder.features.extract import extract_features, read_stimuli

__all__ = [
    "BackboneSpec",
    "WeightsUnavailableError",
    "extract_features",
    "load_backbone",
    "read_stimuli",
    "resolve_backbone",
]

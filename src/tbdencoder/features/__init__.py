"""Frozen deep-network features of stimuli from a backbone registry (open_clip, timm, torchvision).

The names below load on first use, so that `features.layer_names` (params validation) imports no torch.
"""

from importlib import import_module

_HOMES = {"BackboneSpec": "backbone_registry", "WeightsUnavailableError": "backbone_registry",
          "load_backbone": "backbone_registry", "resolve_backbone": "backbone_registry",
          "extract_features": "extract", "read_stimuli": "extract"}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)

"""Dataset formats: readers for the real layouts and the files between stages."""

from tbdencoder.data.crops import ScreenGeometry, extract_dva_crop

__all__ = ["ScreenGeometry", "extract_dva_crop"]

"""Fixation crops: a square window of a given visual angle around a gaze position.

Screen geometry: the scene image is shown centred on the screen at its native pixel size;
gaze positions are screen pixels (origin top-left, y down). A visual angle of `dva` degrees
spans 2 * D * tan(dva / 2) cm at viewing distance D, converted to pixels with the screen's
pixels per cm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

PADDING_MODES = ("constant", "edge")


@dataclass(frozen=True)
class ScreenGeometry:
    """The display: resolution (px), physical width (cm) and viewing distance (cm)."""

    width_px: int = 1024
    height_px: int = 768
    width_cm: float = 37.5
    viewing_distance_cm: float = 80.0

    def __post_init__(self):
        for name in ("width_px", "height_px", "width_cm", "viewing_distance_cm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"screen {name} must be > 0, got {getattr(self, name)}")

    @property
    def px_per_cm(self) -> float:
        return self.width_px / self.width_cm

    def dva_to_px(self, dva: float) -> float:
        """Extent on screen (pixels) of a visual angle of `dva` degrees centred on the line of sight."""
        if not 0 < dva < 180:
            raise ValueError(f"dva must lie in (0, 180) degrees, got {dva}")
        return 2.0 * self.viewing_distance_cm * math.tan(math.radians(dva) / 2.0) * self.px_per_cm

    def scene_offset(self, image_shape: tuple[int, ...]) -> tuple[float, float]:
        """Screen position (x, y) of the top-left corner of a centred image of shape (H, W, ...)."""
        height, width = image_shape[:2]
        return (self.width_px - width) / 2.0, (self.height_px - height) / 2.0

    def screen_to_image(self, xy: tuple[float, float], image_shape: tuple[int, ...]) -> tuple[float, float]:
        """Gaze in screen pixels -> position in the centred image's pixel coordinates."""
        x0, y0 = self.scene_offset(image_shape)
        return xy[0] - x0, xy[1] - y0


DEFAULT_SCREEN = ScreenGeometry()


def crop_side_px(dva: float, screen: ScreenGeometry = DEFAULT_SCREEN) -> int:
    """Side (whole pixels, >= 1) of the square crop spanning `dva` degrees."""
    return max(1, round(screen.dva_to_px(dva)))


def crop_box(image_shape: tuple[int, ...], fixation_xy: tuple[float, float], dva: float,
             screen: ScreenGeometry = DEFAULT_SCREEN) -> tuple[int, int, int]:
    """(left, top, side) in image pixels of the dva-wide square centred on a screen-pixel fixation."""
    x, y = screen.screen_to_image(fixation_xy, image_shape)
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"fixation position must be finite, got {fixation_xy}")
    side = crop_side_px(dva, screen)
    return math.floor(x - side / 2.0 + 0.5), math.floor(y - side / 2.0 + 0.5), side


def crop_leaves_image(image_shape: tuple[int, ...], fixation_xy: tuple[float, float], dva: float,
                      screen: ScreenGeometry = DEFAULT_SCREEN) -> bool:
    """Whether the crop window reaches outside the image (and so needs padding)."""
    left, top, side = crop_box(image_shape, fixation_xy, dva, screen)
    height, width = image_shape[:2]
    return left < 0 or top < 0 or left + side > width or top + side > height


def extract_dva_crop(image: np.ndarray | Image.Image, fixation_xy: tuple[float, float], dva: float,
                     screen: ScreenGeometry = DEFAULT_SCREEN, padding: str = "constant",
                     pad_value: int = 128) -> np.ndarray | Image.Image:
    """The (side, side, C) window of `image` spanning `dva` degrees around a fixation in screen pixels.

    Parts of the window outside the image are filled by `padding`: 'constant' (pad_value) or
    'edge' (the nearest image pixel). A PIL image gives a PIL image (ready for a backbone's
    preprocessing), an array an array.
    """
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    if isinstance(image, Image.Image):
        crop = extract_dva_crop(np.asarray(image), fixation_xy, dva, screen, padding, pad_value)
        return Image.fromarray(crop[..., 0] if crop.shape[2] == 1 else crop)
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    left, top, side = crop_box(image.shape, fixation_xy, dva, screen)
    height, width = image.shape[:2]
    rows, cols = np.arange(top, top + side), np.arange(left, left + side)
    crop = image[np.clip(rows, 0, height - 1)][:, np.clip(cols, 0, width - 1)]  # 'edge' padding
    if padding == "constant":
        outside = ((rows < 0) | (rows >= height))[:, None] | ((cols < 0) | (cols >= width))[None, :]
        crop[outside] = pad_value
    return crop

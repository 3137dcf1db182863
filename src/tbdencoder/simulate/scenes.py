"""Stimulus scenes: augmented views of the natural photos shipped with scikit-image and scikit-learn.

Every stimulus is identified by an NSD-like id in a global id space; the pixels of a stimulus depend
only on (seed, id), so an image shared between subjects has identical bytes for each of them.
"""

from __future__ import annotations

import functools

import numpy as np
import skimage.data
from PIL import Image, ImageEnhance
from sklearn.datasets import load_sample_images

N_NSD_IDS = 73000  # NSD's stimulus id space, 0..72999
_SCENE_STREAM = 1  # RNG stream tag for per-image augmentation (see simulate.fmri for the others)
_SKIMAGE_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
    "camera", "coins", "brick", "grass", "gravel", "moon", "clock",
)


@functools.lru_cache(maxsize=1)
def source_photos() -> tuple[np.ndarray, ...]:
    """The packaged photos as RGB uint8 arrays (grey ones replicated to three channels); no network."""
    photos = [getattr(skimage.data, name)() for name in _SKIMAGE_PHOTOS]
    photos.append(skimage.data.stereo_motorcycle()[0])
    photos.extend(load_sample_images().images)
    return tuple(np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for p in photos)


def _random_square_crop(rng: np.random.Generator, photo: np.ndarray) -> np.ndarray:
    """A square crop covering 10-100 % of the photo's area (capped by its short side)."""
    height, width = photo.shape[:2]
    side = int(min(np.sqrt(rng.uniform(0.1, 1.0) * height * width), height, width))
    top = rng.integers(0, height - side + 1)
    left = rng.integers(0, width - side + 1)
    return photo[top:top + side, left:left + side]


def _colour_jitter(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Random brightness, contrast and saturation factors and a small hue rotation."""
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.6, 1.4))
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(-13, 14))) % 256  # up to ~18 degrees
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


def make_scene(rng: np.random.Generator, image_size_px: int) -> np.ndarray:
    """One augmented view of a packaged photo: crop, optional flip, resize, colour jitter -> (H, W, 3) uint8."""
    photos = source_photos()
    crop = _random_square_crop(rng, photos[rng.integers(len(photos))])
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    size = (image_size_px, image_size_px)
    image = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.asarray(_colour_jitter(rng, image))


def scene_for_id(seed: int, nsd_id: int, image_size_px: int) -> np.ndarray:
    """The stimulus with this id: the same (seed, id) always gives the same pixels."""
    return make_scene(np.random.default_rng([seed, _SCENE_STREAM, nsd_id]), image_size_px)


def assign_image_ids(
    rng: np.random.Generator, n_subjects: int, n_train_images: int, n_test_images: int, n_shared_images: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per subject (train ids, test ids), each ascending.

    `n_shared_images` ids are seen by every subject; the rest of each subject's ids are its own.
    Shared images fall at random into a subject's train or test split.
    """
    n_per_subject = n_train_images + n_test_images
    if not 0 <= n_shared_images <= n_per_subject:
        raise ValueError(f"n_shared_images={n_shared_images} must lie in 0..{n_per_subject} (train + test per subject)")
    n_own = n_per_subject - n_shared_images
    n_total = n_shared_images + n_subjects * n_own
    if n_total > N_NSD_IDS:
        raise ValueError(f"{n_total} distinct images requested; the NSD id space holds {N_NSD_IDS}")
    ids = rng.choice(N_NSD_IDS, size=n_total, replace=False)
    shared = ids[:n_shared_images]
    splits = []
    for k in range(n_subjects):
        own = ids[n_shared_images + k * n_own:n_shared_images + (k + 1) * n_own]
        subject_ids = rng.permutation(np.concatenate([shared, own]))
        splits.append((np.sort(subject_ids[:n_train_images]), np.sort(subject_ids[n_train_images:])))
    return splits

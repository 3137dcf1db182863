"""stimuli.h5: one row per stimulus, as image paths or uint8 pixels.

Datasets: `stimulus_id` (n,) str, `content_hash` (n,) sha256 hex of the stimulus content (an image
file's bytes; for pixels, the row's dtype, shape and bytes), and either `path` (n,) str (relative paths
are relative to the working directory) or `pixels` (n, H, W, 3) uint8.
Optional provenance columns are 1-D str datasets under `provenance/`.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from PIL import Image

from tbdencoder.io import atomic_path, file_sha256, get_logger, write_strings

log = get_logger("stimuli")


def write_image_paths(
    out_path: str | Path, stimulus_ids: list[str], paths: list[Path], provenance: dict[str, list[str]] | None = None
) -> None:
    """Write a stimuli file of image paths, hashing each file's bytes."""
    with _stimuli_file(out_path, stimulus_ids, provenance) as h5:
        write_strings(h5, "path", [str(p) for p in paths])
        write_strings(h5, "content_hash", [file_sha256(p) for p in paths])


def write_pixels(
    out_path: str | Path, stimulus_ids: list[str], pixels: np.ndarray, provenance: dict[str, list[str]] | None = None
) -> None:
    """Write a stimuli file of (n, H, W, 3) uint8 pixels, hashing each row (equal images share a hash)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3 or len(pixels) != len(stimulus_ids):
        raise ValueError(f"{out_path}: expected ({len(stimulus_ids)}, H, W, 3) uint8 pixels, "
                         f"got {pixels.shape} {pixels.dtype}")
    with _stimuli_file(out_path, stimulus_ids, provenance) as h5:
        h5.create_dataset("pixels", data=pixels, chunks=(1, *pixels.shape[1:]))  # the feature stage reads rows
        write_strings(h5, "content_hash", [pixels_sha256(image) for image in pixels])


@contextlib.contextmanager
def _stimuli_file(out_path: str | Path, stimulus_ids: list[str],
                  provenance: dict[str, list[str]] | None) -> Iterator[h5py.File]:
    """An atomically written stimuli file holding the ids and provenance; the caller adds the content."""
    if len(set(stimulus_ids)) != len(stimulus_ids):
        raise ValueError(f"{out_path}: stimulus ids must be unique")
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "stimulus_id", stimulus_ids)
        for name, column in (provenance or {}).items():
            write_strings(h5, f"provenance/{name}", column)
        yield h5


def decode_image(path: str | Path) -> tuple[tuple[int, int], float]:
    """Decode an image file once: its (width, height) and the fraction of its pixels that are not opaque (alpha
    below 255; the RGB conversion drops alpha and shows what lies under it). ValueError naming a file that is
    truncated or not an image."""
    try:
        with Image.open(path) as image:
            image.load()
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            alpha = np.asarray(image.convert("RGBA").getchannel("A")) if has_alpha else None
            size = image.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: cannot decode the image, expected a complete image file ({exc})") from exc
    return size, 0.0 if alpha is None else float((alpha < 255).mean())


def check_images(paths: list[Path]) -> None:
    """Decode every image once, so that a truncated or corrupt file is named here, not mid-extraction; warn, with
    counts and file names, about images with transparent pixels and images under half the median width or height
    (a thumbnail or a 1 x 1 placeholder among photos)."""
    decoded = {path: decode_image(path) for path in paths}
    if not decoded:
        return
    median = np.median([size for size, _ in decoded.values()], axis=0)
    odd = {
        "with transparent pixels (alpha < 255; the RGB conversion drops alpha)":
            [f"{path} ({100 * fraction:.0f} %)" for path, (_, fraction) in decoded.items() if fraction > 0],
        f"under half the median size {median[0]:.0f} x {median[1]:.0f} px":
            [f"{path} ({size[0]} x {size[1]})" for path, (size, _) in decoded.items() if (np.array(size) < median / 2).any()],
    }
    for what, found in odd.items():
        if found:
            log.warning("%d of %d images %s: %s%s", len(found), len(decoded), what, ", ".join(found[:5]),
                        " ..." * (len(found) > 5))


def load_rgb(path: str | Path) -> Image.Image:
    """An image file as 8-bit RGB; 16-bit greyscale (modes I;16*, I) is scaled to 0..255, not clipped."""
    with Image.open(path) as image:
        if image.mode.startswith("I"):
            values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257
            return Image.fromarray(np.round(values).astype(np.uint8)).convert("RGB")
        return image.convert("RGB")


def pixels_sha256(image: np.ndarray) -> str:
    """Hex sha256 of an array's dtype, shape and C-order bytes."""
    digest = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def read_stimulus_ids(path: str | Path) -> list[str]:
    with h5py.File(path, "r") as h5:
        return list(h5["stimulus_id"].asstr()[:])

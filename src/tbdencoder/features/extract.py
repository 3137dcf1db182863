"""Layer-wise features of a stimulus set from any registered backbone, cached by content, resumable after a kill.

Output HDF5: `stimulus_id`, `content_hash` (n,) in stimuli.h5 row order; per requested layer L (the
library's name: `block06`, `features.10`) `layers/L/global` (n, C), for spatial layers `layers/L/grid`
(n, g*g*C) and, with map_size, `layers/L/map` (n, h*w*C), flattened as (row, col, channel); with
embedding, `embedding` (n, d). Each dataset's `shape` attr is its per-row shape (C,), (g, g, C), (h, w, C).
Provenance in attrs: library, model, weights, preprocessing (JSON), layers, grid and map sizes, cache key,
and `content_sha256`, the digest of the values (`features.identity`). See features.backbone_registry for
what each token is.

The cache entry is verified before each reuse (`verify_features`): one that was edited, truncated or damaged
is discarded with a warning naming it, and recomputed. The output is a copy, so editing it leaves the cache
entry as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import open_clip
import timm
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import tbdencoder
from tbdencoder.data.stimuli import load_rgb
from tbdencoder.features.backbone_registry import BackboneSpec, load_backbone, resolve_backbone
from tbdencoder.features.identity import content_sha256, verify_features
from tbdencoder.io import atomic_path, get_logger, text_sha256
from tbdencoder.device import resolve_device

log = get_logger("features.extract")

FORMAT_VERSION = "features-v3"  # bump when the computation or layout changes, to invalidate caches
TARGET_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Stimuli:
    """The rows of a stimuli.h5 file."""

    path: Path
    ids: list[str]
    hashes: list[str]
    image_paths: list[str] | None  # absolute image paths, or None when the file stores `pixels`

    def copies(self) -> dict[int, list[int]]:
        """First row of each distinct content hash -> every row with that hash (first-seen order)."""
        first: dict[str, int] = {}
        groups: dict[int, list[int]] = {}
        for row, content_hash in enumerate(self.hashes):
            groups.setdefault(first.setdefault(content_hash, row), []).append(row)
        return groups


def read_stimuli(path: str | os.PathLike) -> Stimuli:
    """Read ids, content hashes and image paths (resolved against the working directory)."""
    with h5py.File(path, "r") as h5:
        ids = list(h5["stimulus_id"].asstr()[:])
        hashes = list(h5["content_hash"].asstr()[:])
        if "path" in h5:
            image_paths = [str(Path(p).resolve()) for p in h5["path"].asstr()[:]]
        elif "pixels" in h5:
            image_paths = None
        else:
            raise ValueError(f"{path}: needs a `path` or a `pixels` dataset")
    if not ids or len(ids) != len(hashes):
        raise ValueError(f"{path}: expected matching non-empty stimulus_id/content_hash, got {len(ids)}/{len(hashes)}")
    return Stimuli(Path(path).resolve(), ids, hashes, image_paths)


class StimulusDataset(Dataset):
    """Preprocessed images of selected stimulus rows; yields (image tensor, row)."""

    def __init__(self, stimuli: Stimuli, rows: list[int], transform):
        self.stimuli = stimuli
        self.rows = rows
        self.transform = transform
        self._pixels = None  # opened lazily, once per worker process

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.rows[index]
        return self.transform(self._image(row)), row

    def _image(self, row: int) -> Image.Image:
        if self.stimuli.image_paths is not None:
            return load_rgb(self.stimuli.image_paths[row])
        if self._pixels is None:
            self._pixels = h5py.File(self.stimuli.path, "r")["pixels"]
        return Image.fromarray(self._pixels[row])


def extract_features(
    stimuli_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    model_name: str,
    pretrained: str | None,
    random_init: bool,
    layers: list,
    grid_size: int,
    library: str = "open_clip",
    map_size: int | None = None,
    embedding: bool = False,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str = "auto",
    seed: int = 0,
    cache_dir: str | os.PathLike,
) -> Path:
    """Write the features of `stimuli_path` to `out_path` via the cache file `cache_dir/{cache_key}.h5`.

    A complete cache file is reused without touching the model once its values match its digest (else it is
    discarded and recomputed); a partial one is resumed from its last checkpoint (logged after each batch is
    flushed to it).
    """
    spec = resolve_backbone(library, model_name, pretrained, random_init, layers)
    if grid_size < 1:
        raise ValueError(f"grid_size must be >= 1, got {grid_size}")
    if map_size is not None and map_size < 1:
        raise ValueError(f"map_size must be >= 1 or None, got {map_size}")
    stimuli = read_stimuli(stimuli_path)
    attrs = feature_attrs(spec, stimuli, grid_size, map_size, embedding, seed)
    final = Path(cache_dir) / f"{attrs['cache_key']}.h5"
    if final.exists() and _verified(final):
        log.info("cache hit: %s", final)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        _compute(final, stimuli, spec, attrs, grid_size, map_size, embedding, batch_size, num_workers,
                 resolve_device(device), seed)
    _materialise(final, out_path)
    log.info("wrote %s", out_path)
    return Path(out_path)


def feature_attrs(spec: BackboneSpec, stimuli: Stimuli, grid_size: int, map_size: int | None, embedding: bool,
                  seed: int) -> dict:
    """The output file's attrs, including its cache key."""
    stimuli_hash = text_sha256(*stimuli.hashes)
    preprocess = json.dumps(spec.preprocess, sort_keys=True)
    cache_key = text_sha256(
        FORMAT_VERSION,
        stimuli_hash,
        text_sha256(*stimuli.ids),  # ids are stored in the output, so they key it too
        spec.library,
        spec.model_name,
        spec.identity,
        f"random_init={spec.random_init}",
        f"seed={seed}",
        f"layers={list(spec.layers)}",
        f"grid_size={grid_size}",
        f"map_size={map_size}",
        f"embedding={embedding}",
        preprocess,
    )
    return {
        "format_version": FORMAT_VERSION,
        "library": spec.library,
        "model_name": spec.model_name,
        "pretrained": spec.pretrained or "",
        "weights": spec.identity,
        "random_init": spec.random_init,
        "seed": seed,
        "layers": list(spec.layers),
        "grid_size": grid_size,
        "map_size": -1 if map_size is None else map_size,
        "embedding": embedding,
        "preprocess": preprocess,
        "stimuli_hash": stimuli_hash,
        "cache_key": cache_key,
        "tbdencoder_version": tbdencoder.__version__,
        "library_versions": json.dumps({"open_clip": open_clip.__version__, "timm": timm.__version__,
                                        "torchvision": torchvision.__version__, "torch": str(torch.__version__)}),
    }


def _compute(final: Path, stimuli: Stimuli, spec: BackboneSpec, attrs: dict, grid_size: int, map_size: int | None,
             embedding: bool, batch_size: int, num_workers: int, device: torch.device, seed: int) -> None:
    """Fill `{key}.partial.h5` (resuming it if present), then rename it to `final`."""
    backbone = load_backbone(spec, seed).to(device)
    partial = final.with_name(f"{final.stem}.partial.h5")
    with _open_partial(partial, stimuli, attrs) as h5:
        _fill(h5, stimuli, backbone, grid_size, map_size, embedding, batch_size, num_workers, device)
        del h5["done"]
        h5.attrs["content_sha256"] = content_sha256(h5)
    os.replace(partial, final)
    with h5py.File(final, "r") as h5:
        shapes = {name: tuple(h5[name].attrs["shape"]) for name in _feature_datasets(h5)}
    log.info("features of %d stimuli, per-row shapes: %s", len(stimuli.ids), shapes)


def _verified(entry: Path) -> bool:
    """Whether a cache entry's values match its digest; a bad entry is removed with a warning naming it."""
    try:
        verify_features(entry)
        return True
    except ValueError as error:
        log.warning("discarding cache entry %s and recomputing it: %s", entry, error)
        entry.unlink()
        return False


def _feature_datasets(h5: h5py.File) -> list[str]:
    names = [f"layers/{layer}/{token}" for layer in h5.get("layers", {}) for token in h5[f"layers/{layer}"]]
    return names + (["embedding"] if "embedding" in h5 else [])


def _open_partial(path: Path, stimuli: Stimuli, attrs: dict) -> h5py.File:
    """Reopen a partial file from an interrupted run with the same cache key, else start a new one."""
    if path.exists():
        try:
            h5 = h5py.File(path, "r+")
            if h5.attrs.get("cache_key") == attrs["cache_key"] and "done" in h5:
                return h5
            h5.close()
        except OSError as error:
            log.warning("partial file %s is unreadable (%s)", path, error)
        log.warning("discarding partial file %s", path)
        path.unlink()
    return _create_partial(path, stimuli, attrs)


def _create_partial(path: Path, stimuli: Stimuli, attrs: dict) -> h5py.File:
    """ids, hashes and the done mask; the feature datasets are created by the first batch (their shapes)."""
    n = len(stimuli.ids)
    h5 = h5py.File(path, "w")
    for name, values in (("stimulus_id", stimuli.ids), ("content_hash", stimuli.hashes)):
        h5.create_dataset(name, data=np.array(values, dtype=object), dtype=h5py.string_dtype(), chunks=(min(n, 4096),))
    h5.create_dataset("done", shape=(n,), dtype=bool, chunks=(min(n, 4096),))
    h5.attrs.update(attrs)  # written last: a partial file without a cache_key is discarded
    h5.flush()
    return h5


def _row_chunks(n: int, cols: int) -> tuple[int, int]:
    return max(1, min(n, TARGET_CHUNK_BYTES // (4 * cols))), cols


def _fill(h5: h5py.File, stimuli: Stimuli, backbone, grid_size: int, map_size: int | None, embedding: bool,
          batch_size: int, num_workers: int, device: torch.device) -> None:
    """Compute every not-yet-done distinct image once, writing each batch to all rows that share it."""
    copies = stimuli.copies()
    done = h5["done"][:]
    todo = [row for row in copies if not done[row]]
    log.info("%d stimuli, %d distinct images, %d already done; device %s",
             len(done), len(copies), len(copies) - len(todo), device)
    loader = DataLoader(StimulusDataset(stimuli, todo, backbone.transform), batch_size=batch_size,
                        num_workers=num_workers, pin_memory=device.type == "cuda")
    written = int(done.sum())
    start = time.perf_counter()
    with tqdm(total=len(copies), initial=len(copies) - len(todo), unit="img", desc="features") as bar:
        for images, rows in loader:
            images = images.to(device, non_blocking=True)
            features = backbone.features(images, grid_size, map_size, embedding)
            written += _write_batch(h5, rows.tolist(), features, copies)
            log.info("checkpoint: %d of %d rows written to %s", written, len(done), h5.filename)
            bar.update(len(rows))
    elapsed = time.perf_counter() - start
    log.info("computed %d images in %.1f s (%.1f images/s) on %s",
             len(todo), elapsed, len(todo) / max(elapsed, 1e-9), device)


def _write_batch(h5: h5py.File, rows: list[int], features: dict[str, torch.Tensor],
                 copies: dict[int, list[int]]) -> int:
    """Store a batch's features in every row sharing each image, mark them done and flush; return the rows written."""
    targets = np.array([target for row in rows for target in copies[row]])
    sources = np.array([i for i, row in enumerate(rows) for _ in copies[row]])
    order = np.argsort(targets)  # h5py writes need increasing row indices
    targets, sources = targets[order], sources[order]
    n = len(h5["done"])
    for key, values in features.items():
        name = key if key == "embedding" else f"layers/{key}"
        values = values.numpy()
        if name not in h5:
            columns = int(np.prod(values.shape[1:]))
            h5.create_dataset(name, shape=(n, columns), dtype="f4", chunks=_row_chunks(n, columns))
            h5[name].attrs["shape"] = values.shape[1:]
        h5[name][targets] = values.reshape(len(values), -1)[sources]
    h5["done"][targets] = True
    h5.flush()
    return len(targets)


def _materialise(final: Path, out_path: str | os.PathLike) -> None:
    """Copy the cache file to `out_path` (never a link: editing the output must not change the cache entry)."""
    with atomic_path(out_path) as tmp:
        shutil.copyfile(final, tmp)

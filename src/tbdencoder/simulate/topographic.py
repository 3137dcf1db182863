"""Topographic ground truth: vertices on the fsaverage sphere, each driven by one known layer of a fixed network
at a known image position (what FactorTopy's selectors assume, and what they should recover).

- The network: a fixed random convolutional network (`fixed_network_maps`, seeded): `n_layers` stages of a 3 x 3
  convolution, ReLU and 2 x 2 average pooling, each stage's output pooled to `map_size` x `map_size` patches:
  the patch maps a features file holds (`<layer>/map`, (h, w, C), row-major, channels last) and their spatial
  means as global tokens (`<layer>/global`).
- The cortex: a hemisphere's vertices are the fsaverage5 vertices nearest its occipital pole, with the fMRI
  simulator's retinotopy (`simulate.fmri.select_patch`, `vertex_ground_truth`): eccentricity grows with the
  distance from the pole, polar angle follows the angle about it, the left hemisphere sees the right half of the
  image; so receptive-field centres are smooth on the sphere around each pole.
- The driving layer grows with the distance from the pole (`layer = floor(radius * n_layers)`): a hierarchy.
- A vertex's response: the bilinear sample of its layer's map at its centre (`grid_sample`, as FactorTopy reads
  maps), read out by weights from a rank-`rank` subspace of that layer's channels (shared tuning, so a shared
  channel alignment can express it), z-scored, times `snr`, plus unit Gaussian noise.
- Streams (the fMRI simulator's `streams` ROI labels: early, and ventral, lateral, parietal at mid and high
  radius): with `streams_differ`, each stream has its own channel subspace in every layer, so that what drives a
  region differs by stream (All-for-One's premise: a small model per region can specialise its channel alignment,
  one whole-brain alignment of the same width cannot serve all); without, every stream shares its layer's.
- `truth_seed` (default: `seed`) draws the network and the tuning subspaces, so that several subjects (each its
  own `seed`: images, cortex, noise) share one truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tbdencoder.data.cortex import vertex_positions
from tbdencoder.simulate.fmri import roi_labels, select_patch, vertex_ground_truth
from tbdencoder.simulate.scenes import scene_for_id


def fixed_network_maps(images: np.ndarray, n_layers: int = 4, channels: int = 16, map_size: int = 8,
                       seed: int = 0) -> list[np.ndarray]:
    """Per stage (n, map_size, map_size, channels) float32 maps of the fixed random network for uint8 images
    (n, H, W, 3)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(np.asarray(images), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0 - 0.5
    maps = []
    with torch.no_grad():
        for stage in range(n_layers):
            weight = torch.randn(channels, x.shape[1], 3, 3, generator=generator) / (3 * x.shape[1] ** 0.5)
            h = F.conv2d(x, weight, padding=1)
            h = h - h.mean(dim=(2, 3), keepdim=True)  # each image's local contrast
            x = F.avg_pool2d(h * h, 2).sqrt()  # energy: not a linear function of the stage below
            x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-8)
            maps.append(F.adaptive_avg_pool2d(x, map_size).permute(0, 2, 3, 1).numpy().astype(np.float32))
    return maps


def sample_maps(maps: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, V, C): maps (n, h, w, C) sampled bilinearly at image fractions x, y (V,) as FactorTopy samples them."""
    grid = torch.as_tensor(np.stack([x, y], 1) * 2 - 1, dtype=torch.float32)[None, :, None, :]
    tensor = torch.as_tensor(maps).permute(0, 3, 1, 2)
    sampled = F.grid_sample(tensor, grid.expand(len(tensor), -1, -1, -1), mode="bilinear", padding_mode="zeros",
                            align_corners=False)
    return sampled[..., 0].transpose(1, 2).numpy()


@dataclass
class TopographicProblem:
    maps: list[np.ndarray]  # per layer (n, h, w, C)
    Y: np.ndarray  # (n, V) responses
    signal: np.ndarray  # (n, V) noiseless
    positions: np.ndarray  # (V, 3) on the fsaverage sphere (data.cortex frame)
    fsaverage_index: np.ndarray  # (V,)
    rf_x: np.ndarray  # (V,) image fractions, x to the right
    rf_y: np.ndarray  # (V,) y down
    layer: np.ndarray  # (V,) 0-based driving layer
    radius: np.ndarray  # (V,) distance from the pole, 0..1
    streams: np.ndarray  # (V,) the fMRI simulator's `streams` ROI label (simulate.fmri.ROI_MAPPINGS)
    image_ids: list[str]  # (n,) one id per image


STREAM_OF_LABEL = np.array([4, 0, 1, 2, 3, 1, 2, 3])  # streams label -> other, early, ventral, lateral, parietal


def simulate_topographic(n_images: int, n_vertices: int, *, hemisphere: str = "lh", n_layers: int = 4,
                         channels: int = 16, map_size: int = 8, image_size_px: int = 64, rank: int = 4,
                         snr: float = 2.0, seed: int = 0, streams_differ: bool = False,
                         truth_seed: int | None = None) -> TopographicProblem:
    """A hemisphere's topographic problem (module docstring); same arguments, same arrays."""
    rng = np.random.default_rng([seed, 7])
    tuning = rng if truth_seed is None else np.random.default_rng([truth_seed, 11])
    images = np.stack([scene_for_id(seed, k, image_size_px) for k in range(n_images)])
    maps = fixed_network_maps(images, n_layers, channels, map_size, seed if truth_seed is None else truth_seed)
    patch = select_patch(hemisphere, n_vertices, rng)
    truth = vertex_ground_truth(patch, hemisphere, rng)
    streams = roi_labels(patch)["streams"].astype(np.int64)
    stream = STREAM_OF_LABEL[streams] if streams_differ else np.zeros(n_vertices, np.int64)
    rf_x, rf_y = truth["rf_x"].to_numpy(), truth["rf_y"].to_numpy()
    layer = np.minimum((patch.radius * n_layers).astype(int), n_layers - 1)
    signal = np.zeros((n_images, n_vertices))
    for k in range(n_layers):
        for group in range(STREAM_OF_LABEL.max() + 1 if streams_differ else 1):
            subspace, _ = np.linalg.qr(tuning.standard_normal((channels, rank)))
            mine = np.flatnonzero((layer == k) & (stream == group))
            weights = subspace @ rng.standard_normal((rank, len(mine)))
            signal[:, mine] = np.einsum("nvc,cv->nv", sample_maps(maps[k], rf_x[mine], rf_y[mine]), weights)
    sd = signal.std(0)
    signal = snr * (signal - signal.mean(0)) / np.where(sd > 0, sd, 1.0)
    Y = signal + rng.standard_normal(signal.shape)
    return TopographicProblem(maps, Y.astype(np.float32), signal.astype(np.float32),
                              vertex_positions(patch.fsaverage_index, hemisphere), patch.fsaverage_index,
                              rf_x, rf_y, layer, patch.radius, streams, [f"img{seed}_{k:05d}" for k in range(n_images)])

"""FactorTopy at NSD shape: time per epoch and peak memory on this machine, against its matmul peak.

NSD / Algonauts 2023, one subject: 39,548 vertices (both hemispheres in one model, as the public code fits
them), 9,841 images, a ViT-B with 4 layers of 16 x 16 patch maps (768 channels, the global token beside each).
The maps are read a batch at a time from an HDF5 file (DiskRows, as the fit step reads a features file): the file
holds `--file-rows` images (the images of an epoch cycle over them: a batch reads as many bytes as at NSD size),
the targets are in memory (the driver's copy and the family's standardised one). The family's defaults (width
128, selector MLPs 128 wide, 32 frequencies, batches of 8, smooth L1, the decaying regulariser); positions on the
two hemispheres' unit spheres (the frame of data.cortex).

Measured: the first `--batches` training steps of an epoch (the shared trainer's, extrapolated to the epoch by
TrainingClock) and the whole validation pass, the FLOPs of one step counted from the shapes (forward; backward
about twice that), the achieved rate as a fraction of this machine's float32 matmul peak measured in the same run,
and the peak resident memory. The paper's cost: about 30 minutes for one subject on an RTX 4090 (8 GB).

Device: cuda when torch sees a GPU, else the CPU.

    python benchmarks/bench_factortopy.py [--quick] [--batches B]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy before torch)
from common import PeakRSS, TrainingClock, matmul_gflops, report

NSD = {"vertices": 39_548, "images": 9_841, "layers": 4, "grid": 16, "channels": 768}
QUICK = {"vertices": 5_000, "images": 1_000, "layers": 4, "grid": 16, "channels": 768}


def step_flops(shape: dict, batch: int, width: int = 128, hidden: int = 128, frequencies: int = 32) -> float:
    """Forward FLOPs of one training step (multiply-adds count 2): alignment of every layer's map and global token,
    the three selector MLPs over every vertex, bilinear sampling and mixing, the readout."""
    L, g, C, V = shape["layers"], shape["grid"], shape["channels"], shape["vertices"]
    align = 2 * L * batch * (g * g + 1) * C * width
    encoding = 6 * frequencies
    selectors = 2 * V * sum(encoding * hidden + hidden * hidden + hidden * out for out in (2, L, 1))
    sampling = L * batch * V * width * 10  # 4 weighted taps and the layer weight
    mixing = batch * V * width * 6 + 2 * batch * V * width * L  # scale mix, global-token layer mix
    readout = 2 * batch * V * width
    return float(align + selectors + sampling + mixing + readout)


def write_maps(path: Path, shape: dict, n_rows: int, rng: np.random.Generator) -> None:
    g, C = shape["grid"], shape["channels"]
    with h5py.File(path, "w") as h5:
        for k in range(shape["layers"]):
            maps = h5.create_dataset(f"layers/block{k:02d}/map", (n_rows, g * g * C), np.float32, chunks=(1, g * g * C))
            for start in range(0, n_rows, 32):
                maps[start:start + 32] = rng.standard_normal((min(32, n_rows - start), g * g * C), dtype=np.float32)
            h5[f"layers/block{k:02d}/global"] = rng.standard_normal((n_rows, C), dtype=np.float32)


def sphere_positions(n: int, rng: np.random.Generator) -> np.ndarray:
    """n points on the two hemispheres' unit spheres, centred at x = -1.5 and +1.5."""
    points = rng.standard_normal((n, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    points[:, 0] += np.where(np.arange(n) < n // 2, -1.5, 1.5)
    return points.astype(np.float32)


def time_batch_reads(clock: TrainingClock) -> None:
    """Count a whole FactorTopy batch (targets and maps) as reading, in place of the clock's SubjectsData.batch."""
    from tbdencoder.models import factortopy
    from tbdencoder.models.train_data import SubjectsData

    SubjectsData.batch = clock.saved[1]
    real = factortopy.TopographicData.batch

    def batch(data, indices):
        start = time.perf_counter()
        try:
            return real(data, indices)
        finally:
            clock.read_seconds += time.perf_counter() - start

    factortopy.TopographicData.batch = batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['vertices']} vertices, {QUICK['images']} images")
    parser.add_argument("--batches", type=int, default=20, help="training steps timed (the epoch is extrapolated)")
    parser.add_argument("--file-rows", type=int, default=256, help="images in the maps file (epochs cycle over them)")
    args = parser.parse_args()
    shape = QUICK if args.quick else NSD
    import torch

    from tbdencoder.device import resolve_device
    from tbdencoder.features.featureset import DiskRows, FeatureSet
    from tbdencoder.models.factortopy import FactorTopy

    device = resolve_device("auto")
    peak_gflops = matmul_gflops()
    rng = np.random.default_rng(0)
    sampler = PeakRSS()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "maps.h5"
        write_maps(path, shape, args.file_rows, rng)
        rows = np.arange(shape["images"]) % args.file_rows
        names, data, shapes = [], [], []
        for k in range(shape["layers"]):
            for token, size in (("map", (shape["grid"], shape["grid"], shape["channels"])), ("global", None)):
                names.append(f"block{k:02d}/{token}")
                data.append(DiskRows.of(path, f"layers/block{k:02d}/{token}", rows))
                shapes.append(size)
        X = FeatureSet(names, data, shapes)
        Y = rng.standard_normal((shape["images"], shape["vertices"]), dtype=np.float32)
        positions = sphere_positions(shape["vertices"], rng)
        sampler.phase("before fit")
        model = FactorTopy(max_epochs=1, patience=1, in_memory_gb=0.0, device=str(device))  # maps from disk
        with TrainingClock(sampler, max_batches=args.batches) as clock:
            time_batch_reads(clock)
            start = time.perf_counter()
            model.fit(X, {"s": Y}, subjects=np.full(shape["images"], "s"), targets={"s": {"positions": positions}})
            total = time.perf_counter() - start
        sampler.phase(None)
    (epoch,) = clock.epochs
    step_seconds = epoch["seconds"] / epoch["batches"]
    flops = 3 * step_flops(shape, model.settings.batch_size)
    print(f"# {shape['vertices']} vertices, {shape['images']} images, {shape['layers']} layers of "
          f"{shape['grid']} x {shape['grid']} x {shape['channels']} maps on disk; device {device}; "
          f"{torch.get_num_threads()} threads", flush=True)
    print(f"factortopy epoch ({epoch['batches']} steps of {model.settings.batch_size} images, extrapolated from "
          f"{epoch['timed_batches']}): {epoch['seconds']:.0f} s = {epoch['seconds'] / 60:.1f} min; "
          f"{step_seconds * 1e3:.0f} ms per step, of which reading batches {100 * epoch['read_share']:.0f} %; "
          f"validation pass {clock.times.get('validation loss', 0):.0f} s; whole run {total:.0f} s", flush=True)
    print(f"step FLOPs (forward + backward ~ 3 x forward): {flops / 1e9:.1f} GFLOP; achieved "
          f"{flops / step_seconds / 1e9:.1f} GFLOP/s; matmul peak {peak_gflops:.1f} GFLOP/s", flush=True)
    report("factortopy step against the matmul peak (ratio = fraction of peak)", step_seconds,
           flops / (peak_gflops * 1e9))
    print("peak RSS: " + ", ".join(f"{name} {value / 2**30:.2f} GiB" for name, value in sampler.peaks.items())
          + f"; targets in memory: {2 * Y.nbytes / 2**30:.2f} GiB (the driver's and the standardised copy)", flush=True)
    print("paper (Yang et al. 2024): about 30 min for one subject on an RTX 4090 (8 GB); here one epoch "
          f"{epoch['seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

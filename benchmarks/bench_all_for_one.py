"""The All-for-One recipe at NSD size (8 subjects): jobs, compute and disk of the public recipe's grid, estimated
from a small model's training step measured here.

Measured, side by side in one run: a `neck_readout` training step (batches of 8 images, the family's defaults:
width 128, smooth L1) over one hemisphere's vertices of a 9-way group (19,774 / 9) and of the whole hemisphere
(19,774), a ViT-B's 4 layers of 16 x 16 x 768 patch maps read from an HDF5 file a batch at a time; the ratio of the
two steps says how the cost grows with the group. A step reads the maps of 8 images, each of one subject, and
predicts that subject's vertices of the group: its cost does not depend on how many subjects the model has, so
an epoch of the 8 subjects' 9,841 training images each is 8 x 9,841 / 8 steps.

Estimated from it (per hemisphere, both hemispheres double the jobs): the public grid (3 whole-brain seeds, the
8 streams + the rest, 9 clusters, ten 9-way partitions: 111 small models), their epochs on this CPU and the
GPU-hours of that many epochs at the step time the ratio to a GPU's step gives (`--gpu-speedup`, stated, not
measured here: no GPU on this machine), and the disk: the kept epochs of each small model (top_k), the soups'
stitched predictions (training images float16, the rest float32) and the teacher.

    python benchmarks/bench_all_for_one.py [--quick] [--batches B] [--epochs E] [--top-k K]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy before torch)
from common import PeakRSS, TrainingClock, report

NSD = {"vertices": 19_774, "images": 9_841, "scored": 159 + 100, "subjects": 8, "layers": 4, "grid": 16,
       "channels": 768}
QUICK = {**NSD, "vertices": 4_000, "images": 800}
GRID = {"whole-brain seeds": (3, 1), "streams + the rest": (1, 9), "clusters": (1, 9), "random partitions": (10, 9)}


def write_features(path: Path, shape: dict, n_rows: int, rng: np.random.Generator) -> None:
    g, C = shape["grid"], shape["channels"]
    with h5py.File(path, "w") as h5:
        for k in range(shape["layers"]):
            maps = h5.create_dataset(f"layers/block{k:02d}/map", (n_rows, g * g * C), np.float32, chunks=(1, g * g * C))
            for start in range(0, n_rows, 32):
                maps[start:start + 32] = rng.standard_normal((min(32, n_rows - start), g * g * C), dtype=np.float32)
            h5[f"layers/block{k:02d}/global"] = rng.standard_normal((n_rows, C), dtype=np.float32)


def write_neck(path: Path, shape: dict, rng: np.random.Generator) -> None:
    """A FactorTopy fits file's selections (what neck_readout reads), random."""
    from tbdencoder.io import write_strings

    V, L = shape["vertices"], shape["layers"]
    with h5py.File(path, "w") as h5:
        h5.attrs.update(family="factortopy", subject="s", hemisphere="lh")
        write_strings(h5, "feature_blocks", [f"block{k:02d}/{t}" for k in range(L) for t in ("map", "global")])
        h5["space_x"], h5["space_y"] = rng.uniform(0.1, 0.9, (2, V)).astype(np.float32)
        h5["layer_weights"] = rng.dirichlet(np.ones(L), V).astype(np.float32)
        h5["scale"] = rng.uniform(0.1, 0.9, V).astype(np.float32)


def step_seconds(X, neck: Path, shape: dict, vertices: np.ndarray, batches: int, sampler: PeakRSS) -> tuple[float, int]:
    """(seconds per training step, parameters) of a neck_readout model over `vertices`, timed on its first steps."""
    from tbdencoder.models.neck_readout import NeckReadout

    rng = np.random.default_rng(1)
    Y = rng.standard_normal((shape["images"], len(vertices)), dtype=np.float32)
    model = NeckReadout(neck="neck", max_epochs=1, patience=1, in_memory_gb=0.0, device="auto", validation_fraction=0.01,
                        from_fits={"neck": [str(neck)]})
    with TrainingClock(sampler, max_batches=batches) as clock:
        model.fit(X, {"s": Y}, subjects=np.full(shape["images"], "s"),
                  targets={"s": {"hemisphere": "lh", "vertices": vertices}})
    (epoch,) = clock.epochs
    return epoch["seconds"] / epoch["batches"], sum(p.numel() for p in model.network_.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['vertices']} vertices, {QUICK['images']} images")
    parser.add_argument("--batches", type=int, default=10, help="training steps timed per model")
    parser.add_argument("--file-rows", type=int, default=256, help="images in the maps file (epochs cycle over them)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per small model in the estimate")
    parser.add_argument("--top-k", type=int, default=10, help="kept epochs per small model (the public recipe: 10)")
    parser.add_argument("--gpu-speedup", type=float, default=30.0,
                        help="a GPU step over this CPU's (not measured here; FactorTopy's paper: ~30 min a subject "
                             "on an RTX 4090 against ~100 min an epoch here)")
    args = parser.parse_args()
    shape = QUICK if args.quick else NSD
    import torch

    from tbdencoder.features.featureset import DiskRows, FeatureSet

    rng = np.random.default_rng(0)
    sampler = PeakRSS()
    with tempfile.TemporaryDirectory() as folder:
        features, neck = Path(folder) / "maps.h5", Path(folder) / "neck.h5"
        write_features(features, shape, args.file_rows, rng)
        write_neck(neck, shape, rng)
        rows = np.arange(shape["images"]) % args.file_rows
        names, data, shapes = [], [], []
        for k in range(shape["layers"]):
            for token, size in (("map", (shape["grid"], shape["grid"], shape["channels"])), ("global", None)):
                names.append(f"block{k:02d}/{token}")
                data.append(DiskRows.of(features, f"layers/block{k:02d}/{token}", rows))
                shapes.append(size)
        X = FeatureSet(names, data, shapes)
        group = np.sort(rng.choice(shape["vertices"], shape["vertices"] // 9, replace=False))
        small, small_parameters = step_seconds(X, neck, shape, group, args.batches, sampler)
        whole, whole_parameters = step_seconds(X, neck, shape, np.arange(shape["vertices"]), args.batches, sampler)
    S, V = shape["subjects"], shape["vertices"]
    steps = S * shape["images"] // 8
    # per-subject parameters: the aligner is shared, the readout (width + bias + scale) is per vertex and subject
    aligner = small_parameters - 130 * len(group)
    member_parameters = {"small": aligner + 130 * len(group) * S, "whole": aligner + 130 * V * S}
    print(f"# one hemisphere, {V} vertices, {shape['images']} images a subject, {S} subjects; maps of "
          f"{shape['layers']} layers {shape['grid']} x {shape['grid']} x {shape['channels']} on disk; "
          f"{torch.get_num_threads()} threads", flush=True)
    report(f"neck_readout step, 1/9 group ({len(group)} vertices) against the whole hemisphere ({V})", small, whole)
    n_models = sum(instances * groups for instances, groups in GRID.values())
    epoch = {"small": small * steps, "whole": whole * steps}
    cpu_hours = sum(instances * groups * epoch["small" if groups > 1 else "whole"] for instances, groups
                    in GRID.values()) * args.epochs / 3600
    print(f"an epoch of all {S} subjects ({steps} steps): small model {epoch['small'] / 60:.0f} min, whole-brain "
          f"model {epoch['whole'] / 60:.0f} min on this CPU", flush=True)
    print(f"the public grid, one hemisphere: {n_models} small models ({', '.join(f'{k}: {i} x {g}' for k, (i, g) in GRID.items())}), "
          f"{n_models + 1 + 11 + 15 + 2} jobs with the neck, groups, soups, teacher and student; "
          f"{args.epochs} epochs each: {cpu_hours:.0f} CPU-hours here, about {cpu_hours / args.gpu_speedup:.0f} "
          f"GPU-hours at a {args.gpu_speedup:.0f}x faster step (both hemispheres: twice that)", flush=True)
    checkpoint = {name: 4 * count * args.top_k for name, count in member_parameters.items()}
    members_bytes = sum(instances * groups * checkpoint["small" if groups > 1 else "whole"] for instances, groups
                        in GRID.values())
    soup_bytes = S * V * (2 * shape["images"] + 4 * shape["scored"])
    n_soups = sum(instances for instances, _ in GRID.values())
    print(f"disk, one hemisphere: kept epochs {members_bytes / 2**30:.1f} GiB ({args.top_k} per model; "
          f"{member_parameters['small'] / 1e6:.2f} M parameters a small model, {member_parameters['whole'] / 1e6:.2f} M "
          f"whole-brain), soups {n_soups} x {soup_bytes / 2**30:.2f} GiB = {n_soups * soup_bytes / 2**30:.0f} GiB, "
          f"teacher {S * V * 4 * shape['images'] / 2**30:.1f} GiB", flush=True)
    print("peak RSS: " + ", ".join(f"{name} {value / 2**30:.2f} GiB" for name, value in sampler.peaks.items()),
          flush=True)
    print("public recipe (MemoryEncodingModel README): ~1,000 GPU-hours and ~1 TB of checkpoints for its 111 models "
          "(each with its own backbone adapters: far more parameters per model than here)", flush=True)


if __name__ == "__main__":
    main()

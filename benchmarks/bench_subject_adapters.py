"""subject_adapters at NSD shape with its targets on disk: time per epoch, the reduced-rank start, peak memory.

8 subjects x 9,000 images (1,000 shared by all, as NSD's shared images; the rest each subject's own) x about
40,000 fsaverage vertices each (39,000 to 41,000, drawn from 50,000: the vertex sets differ), 768 features.
Targets: a planted rank-16 signal (a latent shared by all subjects read out by a per-subject mixing: the family's
own model) plus noise, written as one float32 (images, vertices) dataset per subject, chunked by single rows
(160 kB) so that a batch reads only its rows; 11.5 GB in a temporary directory, deleted at the end. Features
(72,000 x 768 float32) are in memory. The family's defaults (rank 16, batch 64, subject dropout 0.1, validation
20 % of the images) and a fixed number of epochs (patience large).

Each run is a child process; it prints its resident memory before the fit (data loaded, file open), the peak
during each phase (a sampler thread reading the RSS every 20 ms) and the process's ru_maxrss, and the time of each
phase: the targets' means and sds (a pass over the file), the reduced-rank start (a ridge per subject on its
training rows, read into memory one subject at a time, then the factorisation), each epoch (training batches read
from disk; the file is dropped from the page cache before the first one with posix_fadvise, so epoch 1 reads from
the disk and later ones from whatever the page cache keeps), and the validation R^2 (row blocks).

Side by side, at the --quick size (3 subjects x 2,000 images x 5,000 vertices): the same fit with the targets
in memory (numpy arrays) against on disk, ratio of epoch times, and how far their predictions differ.

Device: cuda when torch sees a GPU (the trunk, the adapters and each batch move there; the start's ridge solves
go through the ridge solver's device), else the CPU.

    python benchmarks/bench_subject_adapters.py [--quick] [--epochs N] [--max-batches B]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy; the child process inherits it)
from common import PeakRSS, TrainingClock, report

FULL = dict(subjects=8, images=9000, vertices=40000)
QUICK = dict(subjects=3, images=2000, vertices=5000)
P, SHARED_IMAGES, RANK_PLANTED, EPOCHS = 768, 1000, 16, 2


def write_data(path: Path, subjects: int, images: int, vertices: int, seed: int = 0) -> None:
    """One HDF5 file: features (unique images, P), per subject `sub-XX/{image, y, fsaverage_index, hemisphere}`."""
    rng = np.random.default_rng(seed)
    n_unique = SHARED_IMAGES + subjects * (images - SHARED_IMAGES)
    features = rng.standard_normal((n_unique, P), dtype=np.float32)
    trunk = rng.standard_normal((P, RANK_PLANTED), dtype=np.float32) / np.sqrt(P)
    latent = features @ trunk  # (unique images, rank)
    pool = int(vertices * 1.25)
    common_mixing = rng.standard_normal((pool, RANK_PLANTED), dtype=np.float32)
    gain = np.logspace(-1.3, -0.3, pool, dtype=np.float32)[rng.permutation(pool)]  # R^2 ceilings ~0.04 to 0.5
    with h5py.File(path, "w") as h5:
        h5["features"] = features
        for s in range(subjects):
            group = h5.create_group(f"sub-{s + 1:02d}")
            own = SHARED_IMAGES + s * (images - SHARED_IMAGES) + np.arange(images - SHARED_IMAGES)
            image = np.concatenate([np.arange(SHARED_IMAGES), own])
            group["image"] = image
            width = vertices + int(rng.integers(-1000, 1001)) if subjects > 1 else vertices
            index = np.sort(rng.choice(pool, width, replace=False))
            group["fsaverage_index"] = index % (pool // 2)
            group["hemisphere"] = np.where(index < pool // 2, "lh", "rh").astype("S2")
            mixing = ((common_mixing[index] + 0.5 * rng.standard_normal((width, RANK_PLANTED), dtype=np.float32))
                      * gain[index, None] / np.sqrt(RANK_PLANTED))
            y = group.create_dataset("y", (images, width), np.float32, chunks=(1, width))
            for start in range(0, images, 500):
                rows = slice(start, min(start + 500, images))
                y[rows] = latent[image[rows]] @ mixing.T + rng.standard_normal((rows.stop - start, width),
                                                                               dtype=np.float32)


def child(path: Path, mode: str, epochs: int, max_batches: int | None, predictions: Path | None) -> None:
    """Fit SubjectAdapters on the file's subjects (targets in memory or on disk); print one JSON line."""
    import torch

    from tbdencoder.models import subject_adapters
    from tbdencoder.models.subject_adapters import SubjectAdapters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sampler = PeakRSS()
    h5 = h5py.File(path, "r")
    names = sorted(name for name in h5 if name.startswith("sub-"))
    features = h5["features"][:]
    images = {s: h5[s]["image"][:] for s in names}
    X = np.concatenate([features[images[s]] for s in names])
    subjects = np.repeat(names, [len(images[s]) for s in names])
    groups = np.concatenate([images[s] for s in names])
    Y = {s: h5[s]["y"][:] if mode == "memory" else h5[s]["y"] for s in names}
    targets = {s: {"fsaverage_index": h5[s]["fsaverage_index"][:], "hemisphere": h5[s]["hemisphere"][:].astype(str)}
               for s in names}
    rss_before = sampler.rss()
    with TrainingClock(sampler, max_batches, path if mode == "disk" else None) as clock:
        subject_adapters.column_moments = clock.timed("target moments", subject_adapters.column_moments)
        SubjectAdapters._reduced_rank_start = clock.timed("reduced-rank start", SubjectAdapters._reduced_rank_start)
        SubjectAdapters._validation_r2 = clock.timed("validation R^2", SubjectAdapters._validation_r2)
        model = SubjectAdapters(max_epochs=epochs, patience=epochs + 1, device=device, seed=0)
        start = time.perf_counter()
        model.fit(X, Y, groups=groups, subjects=subjects, targets=targets)
        fit_seconds = time.perf_counter() - start
    times, epoch_times = clock.times, clock.epochs
    if predictions is not None:
        new = np.random.default_rng(1).standard_normal((100, P), dtype=np.float32)
        out = model.predict(np.tile(new, (len(names), 1)), subjects=np.repeat(names, 100), targets=targets)
        np.savez(predictions, **out)
    r2 = float(np.mean([np.nanmean(model.validation_r2_[s]) for s in names]))
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
                      "shape": [len(names), int(np.mean([len(images[s]) for s in names])),
                                int(np.mean([Y[s].shape[1] for s in names]))],
                      "fit_s": fit_seconds, "times": times, "epochs": epoch_times, "rss_before": rss_before,
                      "peaks": sampler.peaks, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "validation_r2": r2, "best_epoch": int(model.best_epoch_)}), flush=True)


def run(path: Path, mode: str, epochs: int, max_batches: int | None = None, predictions: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", str(path), mode, "--epochs", str(epochs)]
    command += [] if max_batches is None else ["--max-batches", str(max_batches)]
    command += [] if predictions is None else ["--predictions", str(predictions)]
    output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    gib = 2**30
    n_subjects, n_images, n_vertices = result["shape"]
    print(f"# {mode} targets, {n_subjects} subjects x {n_images} images x ~{n_vertices} vertices, p = {P}, "
          f"{result['device']}: fit {result['fit_s']:.0f} s, RSS before the fit {result['rss_before'] / gib:.2f} GiB, "
          f"peak RSS (ru_maxrss) {result['maxrss'] / gib:.2f} GiB; mean validation R^2 {result['validation_r2']:.3f}",
          flush=True)
    for name, seconds in result["times"].items():
        if name != "training":
            print(f"#   {name}: {seconds:.1f} s, peak RSS {result['peaks'].get(name, 0) / gib:.2f} GiB", flush=True)
    for number, epoch in enumerate(result["epochs"], 1):
        part = ("" if epoch["timed_batches"] == epoch["batches"] else
                f" (EXTRAPOLATED from {epoch['timed_batches']} of {epoch['batches']} batches)")
        cache = (" (file dropped from the page cache first)" if number == 1 and mode == "disk" else "")
        print(f"#   epoch {number}: {epoch['seconds']:.1f} s{part}, {epoch['batches']} batches, "
              f"{100 * epoch['read_share']:.0f} % of it reading/standardising targets{cache}", flush=True)
    print(f"#   peak RSS during the epochs {result['peaks'].get('epochs', 0) / gib:.2f} GiB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the side-by-side at 3 x 2,000 x 5,000")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--max-batches", type=int, help="full size: time only the first B batches of each epoch")
    parser.add_argument("--child", nargs=2, metavar=("FILE", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--predictions", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1], args.epochs, args.max_batches, args.predictions)
        return
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMPDIR")) as tmp:
        folder = Path(tmp)
        quick = folder / "quick.h5"
        write_data(quick, **QUICK)
        results = {mode: run(quick, mode, args.epochs, predictions=folder / f"{mode}.npz")
                   for mode in ("memory", "disk")}
        memory, disk = np.load(folder / "memory.npz"), np.load(folder / "disk.npz")
        difference = max(float(np.abs(disk[s] - memory[s]).max() / np.abs(memory[s]).max()) for s in memory.files)
        epoch = {mode: float(np.mean([e["seconds"] for e in result["epochs"]])) for mode, result in results.items()}
        report(f"subject_adapters epoch, targets on disk vs in memory ({QUICK['subjects']} subjects x "
               f"{QUICK['images']} images x {QUICK['vertices']} vertices, p = {P}; max relative difference of the "
               f"predictions {difference:.1e})", epoch["disk"], epoch["memory"])
        quick.unlink()
        if args.quick:
            return
        full = folder / "nsd.h5"
        start = time.perf_counter()
        write_data(full, **FULL)
        print(f"# wrote {full.stat().st_size / 1e9:.1f} GB of NSD-shaped targets in {time.perf_counter() - start:.0f} s",
              flush=True)
        result = run(full, "disk", args.epochs, args.max_batches)
        epochs = [e["seconds"] for e in result["epochs"]]
        print(f"subject_adapters at NSD shape ({FULL['subjects']} x {FULL['images']} x ~{FULL['vertices']}, p = {P}, "
              f"targets on disk {full.stat().st_size / 1e9:.1f} GB, {result['device']}): reduced-rank start "
              f"{result['times'].get('reduced-rank start', 0):.0f} s, epoch {' / '.join(f'{s:.0f}' for s in epochs)} s "
              f"(cold / warm page cache), peak RSS {result['maxrss'] / 2**30:.2f} GiB (before the fit "
              f"{result['rss_before'] / 2**30:.2f} GiB)", flush=True)


if __name__ == "__main__":
    main()

"""clip_alignment at THINGS-MEG shape with the brain data on disk: time per epoch and peak memory.

THINGS-MEG (Hebart et al. 2023; the anchor's data): 4 subjects x 22,448 training images, 271 sensors x 281
samples (200 Hz). The decoding driver fits one model per window; a 250 ms window is 50 samples, so a model reads
(rows, 271, 50): per subject one float32 dataset chunked by single rows (54 kB), 4.9 GB in all, in a temporary
directory deleted at the end; the embedding (512-d, CLIP ViT-B/32's) in memory. The data: the embedding's first
8 dimensions, read out by a per-subject sensor mixing and a response kernel, in noise. The family's defaults
(channels 128, MLP head 256, batch 128, CLIP 0.75 + MSE 0.25, validation 20 % of the images) and a fixed number
of epochs (patience large).

Each run is a child process; it prints its resident memory before the fit, the peak during the epochs and the
process's ru_maxrss, and each epoch's time with the share spent reading and standardising batches (the file is
dropped from the page cache first: epoch 1 reads the disk).

Side by side, at the --quick size (4 subjects x 1,500 images): the same fit with the brain data in memory against
on disk, ratio of epoch times, and how far their decoded embeddings differ.

Device: cuda when torch sees a GPU, else the CPU.

    python benchmarks/bench_clip_alignment.py [--quick] [--epochs N] [--max-batches B]
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

FULL = dict(subjects=4, images=22448)
QUICK = dict(subjects=4, images=1500)
SENSORS, SAMPLES, D, PLANTED, EPOCHS = 271, 50, 512, 8, 1


def write_data(path: Path, subjects: int, images: int, seed: int = 0) -> None:
    """One HDF5 file: `embedding` (images, D) and per subject `sub-XX/brain` (images, SENSORS, SAMPLES)."""
    rng = np.random.default_rng(seed)
    embedding = rng.standard_normal((images, D), dtype=np.float32)
    kernel = np.exp(-0.5 * ((np.arange(SAMPLES) - SAMPLES / 2) / (SAMPLES / 8)) ** 2).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5["embedding"] = embedding
        for s in range(subjects):
            mixing = rng.standard_normal((PLANTED, SENSORS), dtype=np.float32) / np.sqrt(PLANTED)
            data = h5.create_dataset(f"sub-{s + 1:02d}/brain", (images, SENSORS, SAMPLES), np.float32,
                                     chunks=(1, SENSORS, SAMPLES))
            for start in range(0, images, 1000):
                block = slice(start, min(start + 1000, images))
                signal = (embedding[block, :PLANTED] @ mixing)[:, :, None] * kernel
                data[block] = signal + 2.0 * rng.standard_normal(signal.shape, dtype=np.float32)


def child(path: Path, mode: str, epochs: int, max_batches: int | None, predictions: Path | None) -> None:
    """Fit ClipAlignment on the file's subjects (brain data in memory or on disk); print one JSON line."""
    import torch

    from tbdencoder.models.clip_alignment import ClipAlignment

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sampler = PeakRSS()
    h5 = h5py.File(path, "r")
    names = sorted(name for name in h5 if name.startswith("sub-"))
    embedding = h5["embedding"][:]
    embedding = (embedding - embedding.mean(0)) / embedding.std(0)
    brain = {s: h5[s]["brain"][:] if mode == "memory" else h5[s]["brain"] for s in names}
    groups = {s: np.arange(len(embedding)) for s in names}  # the same images for every subject, as THINGS-MEG
    rss_before = sampler.rss()
    with TrainingClock(sampler, max_batches, path if mode == "disk" else None) as clock:
        model = ClipAlignment(max_epochs=epochs, patience=epochs + 1, device=device, seed=0)
        start = time.perf_counter()
        model.fit(brain, {s: embedding for s in names}, groups=groups)
        fit_seconds = time.perf_counter() - start
    if predictions is not None:
        np.savez(predictions, **model.predict({s: h5[s]["brain"][:200] for s in names}))
    print(json.dumps({"device": torch.cuda.get_device_name() if device == "cuda" else f"cpu ({os.cpu_count()} cores)",
                      "shape": [len(names), len(embedding)], "fit_s": fit_seconds, "times": clock.times,
                      "epochs": clock.epochs, "rss_before": rss_before, "peaks": sampler.peaks,
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "validation_loss": float(model.curves_["validation_loss"].min())}), flush=True)


def run(path: Path, mode: str, epochs: int, max_batches: int | None = None, predictions: Path | None = None) -> dict:
    command = [sys.executable, __file__, "--child", str(path), mode, "--epochs", str(epochs)]
    command += [] if max_batches is None else ["--max-batches", str(max_batches)]
    command += [] if predictions is None else ["--predictions", str(predictions)]
    output = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    result = json.loads(output.strip().splitlines()[-1])
    gib = 2**30
    n_subjects, n_images = result["shape"]
    print(f"# {mode} brain data, {n_subjects} subjects x {n_images} images x {SENSORS} sensors x {SAMPLES} samples, "
          f"d = {D}, {result['device']}: fit {result['fit_s']:.0f} s, RSS before the fit "
          f"{result['rss_before'] / gib:.2f} GiB, peak RSS (ru_maxrss) {result['maxrss'] / gib:.2f} GiB; best "
          f"validation loss {result['validation_loss']:.3f}", flush=True)
    for number, epoch in enumerate(result["epochs"], 1):
        part = ("" if epoch["timed_batches"] == epoch["batches"] else
                f" (EXTRAPOLATED from {epoch['timed_batches']} of {epoch['batches']} batches)")
        cache = " (file dropped from the page cache first)" if number == 1 and mode == "disk" else ""
        print(f"#   epoch {number}: {epoch['seconds']:.1f} s{part}, {epoch['batches']} batches, "
              f"{100 * epoch['read_share']:.0f} % of it reading/standardising brain data{cache}", flush=True)
    print(f"#   peak RSS during the epochs {result['peaks'].get('epochs', 0) / gib:.2f} GiB", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the side-by-side at 4 x 1,500 images")
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
        results = {mode: run(quick, mode, 2, predictions=folder / f"{mode}.npz") for mode in ("memory", "disk")}
        memory, disk = np.load(folder / "memory.npz"), np.load(folder / "disk.npz")
        difference = max(float(np.abs(disk[s] - memory[s]).max() / np.abs(memory[s]).max()) for s in memory.files)
        epoch = {mode: float(np.mean([e["seconds"] for e in result["epochs"]])) for mode, result in results.items()}
        report(f"clip_alignment epoch, brain data on disk vs in memory ({QUICK['subjects']} subjects x "
               f"{QUICK['images']} images x {SENSORS} x {SAMPLES}; max relative difference of the decoded "
               f"embeddings {difference:.1e})", epoch["disk"], epoch["memory"])
        quick.unlink()
        if args.quick:
            return
        full = folder / "things_meg.h5"
        start = time.perf_counter()
        write_data(full, **FULL)
        print(f"# wrote {full.stat().st_size / 1e9:.1f} GB of THINGS-MEG-shaped windows in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        result = run(full, "disk", args.epochs, args.max_batches)
        epochs = [e["seconds"] for e in result["epochs"]]
        print(f"clip_alignment at THINGS-MEG shape ({FULL['subjects']} x {FULL['images']} images, {SENSORS} sensors "
              f"x {SAMPLES} samples per 250 ms window, d = {D}, brain data on disk {full.stat().st_size / 1e9:.1f} GB, "
              f"{result['device']}): epoch {' / '.join(f'{s:.0f}' for s in epochs)} s, peak RSS "
              f"{result['maxrss'] / 2**30:.2f} GiB (before the fit {result['rss_before'] / 2**30:.2f} GiB); one "
              f"window's fit of E epochs takes about E x the epoch, a time course of W windows W times that",
              flush=True)


if __name__ == "__main__":
    main()

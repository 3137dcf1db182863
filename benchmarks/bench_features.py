"""Feature extraction: our feature stage vs the naive loop of seed 000 (idea 2), same images, model and layers.

Ours: `extract_features` on a stimuli.h5 of natural-photo scenes (batches, one forward pass up to the
deepest requested block, all layers from it, streaming HDF5 writes). Naive: one image at a time, one
full forward pass per requested layer with a forward hook on that block. Both run a random-init
ViT-B-32 on the CPU and must give the same numbers.

    python benchmarks/bench_features.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
from pathlib import Path

from common import fastest, matmul_gflops, report  # first: sets the OpenMP wait policy before torch loads

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from tbdencoder.features import extract_features, load_backbone, resolve_backbone
from tbdencoder.features.extract import layer_group
from tbdencoder.simulate.scenes import scene_for_id

MODEL, LAYERS, GRID_SIZE, BATCH_SIZE, IMAGE_SIZE_PX = "ViT-B-32", [3, 6, 9, 12], 2, 32, 256
SPEED_TARGET = 3.0


def write_stimuli(path: Path, n_images: int) -> Path:
    """A stimuli.h5 of `n_images` distinct scenes cut from the packaged natural photos."""
    pixels = np.stack([scene_for_id(0, nsd_id, IMAGE_SIZE_PX) for nsd_id in range(n_images)])
    with h5py.File(path, "w") as h5:
        h5["stimulus_id"] = np.array([f"scene{i:05d}" for i in range(n_images)], dtype=object)
        h5["content_hash"] = np.array([hashlib.sha256(p.tobytes()).hexdigest() for p in pixels], dtype=object)
        h5["pixels"] = pixels
    return path


def ours(stimuli: Path, workdir: Path) -> dict[str, np.ndarray]:
    """The feature stage, with an empty cache; returns the written datasets."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    out = extract_features(stimuli, run_dir / "features.h5", model_name=MODEL, pretrained=None, random_init=True,
                           layers=LAYERS, grid_size=GRID_SIZE, batch_size=BATCH_SIZE, device="cpu", seed=0,
                           cache_dir=run_dir / "cache")
    with h5py.File(out, "r") as h5:
        return {name: h5[name][:] for name in (f"{layer_group(layer)}/{token}" for layer in LAYERS
                                               for token in ("global", "grid"))}


def naive(stimuli: Path) -> dict[str, np.ndarray]:
    """Seed 000, idea 2: per image, per layer, a hook on the block and a whole forward pass."""
    visual, preprocess = load_backbone(resolve_backbone(MODEL, None, True), seed=0)
    transform = preprocess.transform()
    rows = {}
    with h5py.File(stimuli, "r") as h5, torch.no_grad():
        for pixels in h5["pixels"]:
            image = transform(Image.fromarray(pixels))[None]
            for layer in LAYERS:
                captured = {}
                hook = visual.transformer.resblocks[layer - 1].register_forward_hook(
                    lambda module, inputs, output: captured.__setitem__("tokens", output))
                visual(image)
                hook.remove()
                for name, values in _cls_and_grid(captured["tokens"]).items():
                    rows.setdefault(f"{layer_group(layer)}/{name}", []).append(values)
    return {name: np.concatenate(values) for name, values in rows.items()}


def _cls_and_grid(tokens: torch.Tensor) -> dict[str, np.ndarray]:
    """Class token, and patch tokens average-pooled to a GRID_SIZE x GRID_SIZE grid as (row, col, channel)."""
    side = int(round((tokens.shape[1] - 1) ** 0.5))
    patches = tokens[:, 1:].reshape(tokens.shape[0], side, side, -1).permute(0, 3, 1, 2)
    grid = F.adaptive_avg_pool2d(patches, GRID_SIZE).permute(0, 2, 3, 1).flatten(1)
    return {"global": tokens[:, 0].numpy(), "grid": grid.numpy()}


def flops_per_image() -> float:
    """FLOPs of one image's forward pass up to the deepest requested block (torch's FLOP counter).

    Counted with autograd on: MultiheadAttention's inference fast path is one fused op the counter
    does not see, its composite path (same arithmetic) is counted op by op.
    """
    visual, _ = load_backbone(resolve_backbone(MODEL, None, True), seed=0)
    counter = FlopCounterMode(display=False)
    with counter:
        visual.forward_intermediates(torch.zeros(1, 3, 224, 224), indices=[layer - 1 for layer in LAYERS],
                                     stop_early=True, intermediates_only=True)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="64 images instead of 256")
    args = parser.parse_args()
    n_images = 64 if args.quick else 256
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        stimuli = write_stimuli(workdir / "stimuli.h5", n_images)
        results = fastest({"ours": lambda: ours(stimuli, workdir), "naive": lambda: naive(stimuli)}, repeats=1)
    (ours_s, ours_features), (naive_s, naive_features) = results["ours"], results["naive"]
    difference = max(np.abs(ours_features[name] - naive_features[name]).max() for name in naive_features)
    label = f"features ({n_images} images, random-init {MODEL}, blocks {LAYERS}, CPU)"
    report(f"{label} vs naive loop (seed 000)", ours_s, naive_s, target=SPEED_TARGET)
    print(f"{label} outputs vs naive loop: max abs difference {difference:.1e}")
    flops, peak = flops_per_image(), matmul_gflops() * 1e9
    images_per_s = n_images / ours_s
    print(f"{label} ours {images_per_s:.1f} images/s, naive {n_images / naive_s:.1f} images/s; "
          f"{flops / 1e9:.2f} GFLOP per image -> {flops * images_per_s / 1e9:.1f} GFLOP/s = "
          f"{100 * flops * images_per_s / peak:.0f}% of this machine's float32 matmul rate "
          f"({peak / 1e9:.0f} GFLOP/s, {torch.get_num_threads()} threads)", flush=True)


if __name__ == "__main__":
    main()

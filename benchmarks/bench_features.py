"""Feature extraction: our feature stage vs the naive loop of seed 000 (idea 2), same images, model and layers,
for three backbones: open_clip ViT-B/32, timm DINOv2 ViT-S/14 and torchvision AlexNet (the devkit's layers).

Ours: `extract_features` on a stimuli.h5 of natural-photo scenes (batches, one forward pass up to the
deepest requested layer, all layers from it, streaming HDF5 writes). Naive: one image at a time, one
full forward pass per requested layer with a forward hook on that layer's module. Both run random-init
networks on the CPU and must give the same numbers.

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
from tbdencoder.features.backbone_registry import layer_name
from tbdencoder.simulate.scenes import scene_for_id

GRID_SIZE, BATCH_SIZE, IMAGE_SIZE_PX = 2, 32, 256
SPEED_TARGET = 3.0
# (library, model, layers, images in the full run): DINOv2 runs at its 518 px input, about 20x ViT-B/32's work
BACKBONES = [
    ("open_clip", "ViT-B-32", [3, 6, 9, 12], 256),
    ("timm", "vit_small_patch14_dinov2", [3, 6, 9, 12], 32),
    ("torchvision", "alexnet", ["features.2", "features.5", "features.7", "features.9", "features.12",
                                "classifier.2", "classifier.5", "classifier.6"], 256),
]


def write_stimuli(path: Path, n_images: int) -> Path:
    """A stimuli.h5 of `n_images` distinct scenes cut from the packaged natural photos."""
    pixels = np.stack([scene_for_id(0, nsd_id, IMAGE_SIZE_PX) for nsd_id in range(n_images)])
    with h5py.File(path, "w") as h5:
        h5["stimulus_id"] = np.array([f"scene{i:05d}" for i in range(n_images)], dtype=object)
        h5["content_hash"] = np.array([hashlib.sha256(p.tobytes()).hexdigest() for p in pixels], dtype=object)
        h5["pixels"] = pixels
    return path


def ours(stimuli: Path, workdir: Path, library: str, model: str, layers: list) -> dict[str, np.ndarray]:
    """The feature stage, with an empty cache; returns the written datasets."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    out = extract_features(stimuli, run_dir / "features.h5", library=library, model_name=model, pretrained=None,
                           random_init=True, layers=layers, grid_size=GRID_SIZE, batch_size=BATCH_SIZE, device="cpu",
                           seed=0, cache_dir=run_dir / "cache")
    with h5py.File(out, "r") as h5:
        return {f"{layer}/{token}": h5[f"layers/{layer}/{token}"][:]
                for layer in h5["layers"] for token in h5[f"layers/{layer}"]}


def naive(stimuli: Path, library: str, model: str, layers: list) -> dict[str, np.ndarray]:
    """Seed 000, idea 2: per image, per layer, a hook on the layer's module and a whole forward pass."""
    backbone = load_backbone(resolve_backbone(library, model, None, True, layers), seed=0)
    network, modules, prefix_tokens = _network_and_modules(backbone, library, layers)
    rows = {}
    with h5py.File(stimuli, "r") as h5, torch.no_grad():
        for pixels in h5["pixels"]:
            image = backbone.transform(Image.fromarray(pixels))[None]
            for layer, module in zip(layers, modules):
                captured = {}
                hook = module.register_forward_hook(lambda m, inputs, output: captured.__setitem__("out", output))
                network(image)
                hook.remove()
                for token, values in _tokens(captured["out"], prefix_tokens).items():
                    rows.setdefault(f"{layer_name(layer)}/{token}", []).append(values)
    return {name: np.concatenate(values) for name, values in rows.items()}


def _network_and_modules(backbone, library: str, layers: list):
    """The whole network, the module of each layer, and how many prefix tokens a ViT block output starts with."""
    if library == "open_clip":
        return backbone.visual, [backbone.visual.transformer.resblocks[b - 1] for b in layers], 1
    if library == "timm":
        model = backbone.model
        return model, [model.blocks[b - 1] for b in layers], model.num_prefix_tokens
    return backbone.model, [backbone.model.get_submodule(path) for path in layers], 0


def _tokens(output: torch.Tensor, prefix_tokens: int) -> dict[str, np.ndarray]:
    """global / grid of one layer output: ViT tokens (1, N, C), a CNN map (1, C, H, W) or a vector (1, C)."""
    if output.ndim == 2:
        return {"global": output.numpy()}
    if output.ndim == 3:  # ViT: class token first, then any registers, then the patch tokens
        side = int(round((output.shape[1] - prefix_tokens) ** 0.5))
        spatial = output[:, prefix_tokens:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        global_vector = output[:, 0]
    else:
        spatial, global_vector = output, output.mean((2, 3))
    grid = F.adaptive_avg_pool2d(spatial, GRID_SIZE).permute(0, 2, 3, 1).flatten(1)
    return {"global": global_vector.numpy(), "grid": grid.numpy()}


def flops_per_image(library: str, model: str, layers: list) -> float:
    """FLOPs of one image's pass up to the deepest requested layer (torch's FLOP counter).

    Counted with autograd on: MultiheadAttention's inference fast path is one fused op the counter
    does not see, its composite path (same arithmetic) is counted op by op.
    """
    backbone = load_backbone(resolve_backbone(library, model, None, True, layers), seed=0)
    image = backbone.transform(Image.fromarray(np.zeros((IMAGE_SIZE_PX, IMAGE_SIZE_PX, 3), np.uint8)))[None]
    counter = FlopCounterMode(display=False)
    with counter:
        if library == "torchvision":  # AlexNet's devkit layers run to its last one: the whole network
            backbone.model(image)
        else:
            network = backbone.visual if library == "open_clip" else backbone.model
            network.forward_intermediates(image, indices=[block - 1 for block in layers], stop_early=True,
                                          intermediates_only=True)
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a quarter of the images")
    args = parser.parse_args()
    peak = matmul_gflops() * 1e9
    for library, model, layers, n_full in BACKBONES:
        n_images = n_full // 4 if args.quick else n_full
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            stimuli = write_stimuli(workdir / "stimuli.h5", n_images)
            results = fastest({"ours": lambda: ours(stimuli, workdir, library, model, layers),
                               "naive": lambda: naive(stimuli, library, model, layers)}, repeats=1)
        (ours_s, ours_features), (naive_s, naive_features) = results["ours"], results["naive"]
        difference = max(np.abs(ours_features[name] - naive_features[name]).max() for name in naive_features)
        label = f"features ({n_images} images, random-init {library} {model}, layers {layers}, CPU)"
        report(f"{label} vs naive loop (seed 000)", ours_s, naive_s, target=SPEED_TARGET)
        print(f"{label} outputs vs naive loop: max abs difference {difference:.1e}")
        flops = flops_per_image(library, model, layers)
        images_per_s = n_images / ours_s
        print(f"{label} ours {images_per_s:.1f} images/s, naive {n_images / naive_s:.1f} images/s; "
              f"{flops / 1e9:.2f} GFLOP per image -> {flops * images_per_s / 1e9:.1f} GFLOP/s = "
              f"{100 * flops * images_per_s / peak:.0f}% of this machine's float32 matmul rate "
              f"({peak / 1e9:.0f} GFLOP/s, {torch.get_num_threads()} threads)", flush=True)


if __name__ == "__main__":
    main()

"""GPU paths against the CPU, side by side in one run: ridge at NSD scale, the shared trainer (MLP head,
CLIP loss), bf16 features. Prints `name: ours X, baseline Y, ratio Z` rows (ours = GPU, baseline = CPU)
and how far the GPU's numbers are from the CPU's.

Needs a CUDA device (`--device` names another to smoke-test the script): not part of `make bench`.
    python benchmarks/bench_gpu.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tbdencoder.features.backbone_registry import load_backbone, resolve_backbone
from tbdencoder.models.losses import ClipLoss
from tbdencoder.models.mlp import MLPEncoder
from tbdencoder.models.ridge import RidgeEncoder
from tbdencoder.models.train_data import ArrayData
from tbdencoder.models.trainer import TrainSettings, train_on


def timed(run):
    """(result, seconds) of run(), CUDA work included."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def row(name: str, gpu_s: float, cpu_s: float, note: str = "") -> None:
    print(f"{name}: ours {gpu_s:.2f} s, baseline {cpu_s:.2f} s, ratio {cpu_s / gpu_s:.1f}x{note}", flush=True)


def ridge(device: str, quick: bool) -> None:
    """One NSD hemisphere: 9,841 images x 768 features -> 20,544 vertices, 10 alphas, 5-fold CV."""
    n, p, t = (2000, 256, 2000) if quick else (9841, 768, 20544)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, p), dtype=np.float32)
    Y = X @ (rng.standard_normal((p, t), dtype=np.float32) / np.sqrt(p)) + rng.standard_normal((n, t), dtype=np.float32)
    alphas = np.logspace(-1, 5, 10)
    train, test = slice(0, n - 500), slice(n - 500, n)
    (gpu, gpu_s), (cpu, cpu_s) = (
        timed(lambda d=d: RidgeEncoder(alphas=alphas, cv_folds=5, seed=0, device=d).fit(X[train], Y[train]))
        for d in (device, "cpu"))
    difference = np.abs(gpu.predict(X[test]) - cpu.predict(X[test])).max() / np.abs(cpu.predict(X[test])).max()
    same_alpha = float(np.mean(gpu.alpha_ == cpu.alpha_))
    row(f"ridge_cv {n} x {p} -> {t} targets", gpu_s, cpu_s,
        f" (max prediction difference {difference:.1e} of the largest; same alpha for {same_alpha:.1%} of targets)")


def mlp(device: str, quick: bool) -> None:
    """The MLP head at MEG scale: 6,144 features -> 512 hidden -> 10,404 sensor x time targets, 20 epochs."""
    n, p, t = (600, 512, 1000) if quick else (2000, 6144, 10404)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, p), dtype=np.float32)
    Y = np.tanh(X[:, :8] @ rng.standard_normal((8, t), dtype=np.float32)) + rng.standard_normal((n, t), dtype=np.float32)
    settings = dict(hidden_units=512, max_epochs=20, patience=20, seed=0)
    (gpu, gpu_s), (cpu, cpu_s) = (timed(lambda d=d: MLPEncoder(**settings, device=d).fit(X, Y)) for d in (device, "cpu"))
    curve = np.abs(gpu.validation_loss_ - cpu.validation_loss_).max() / cpu.validation_loss_.max()
    row(f"MLP head {n} x {p} -> 512 -> {t}, 20 epochs", gpu_s, cpu_s,
        f" (validation curves differ by at most {curve:.1e} of the largest; best epoch {gpu.best_epoch_} vs "
        f"{cpu.best_epoch_})")


def clip_decoding(device: str, quick: bool) -> None:
    """Decoding with the CLIP loss (learned temperature): brain responses -> a 512-d image embedding by a linear
    map; top-1 retrieval among the held-out candidates, against chance."""
    n, p, d = (800, 500, 64) if quick else (4000, 10404, 512)
    rng = np.random.default_rng(2)
    embedding = rng.standard_normal((n, d), dtype=np.float32)
    brain = embedding @ rng.standard_normal((d, p), dtype=np.float32) + 3 * rng.standard_normal((n, p), dtype=np.float32)
    train, test = slice(0, n - 200), slice(n - 200, n)

    def fit(on: str):
        torch.manual_seed(0)
        module, loss = torch.nn.Linear(p, d), ClipLoss()
        data = (ArrayData({"x": brain[train], "y": embedding[train]}, on),
                ArrayData({"x": brain[test], "y": embedding[test]}, on))
        settings = TrainSettings(learning_rate=1e-3, batch_size=256, max_epochs=30, patience=30, seed=0)
        train_on(module, *data, settings, loss=loss, device=on)
        with torch.no_grad():
            scores = loss.cpu().scores(module(torch.as_tensor(brain[test])), torch.as_tensor(embedding[test]))
        return float((scores.argmax(1) == torch.arange(200)).float().mean()), float(loss.log_temperature.detach().exp())

    ((gpu_top1, gpu_t), gpu_s), ((cpu_top1, cpu_t), cpu_s) = (timed(lambda o=o: fit(o)) for o in (device, "cpu"))
    row(f"CLIP-loss decoder {p} -> {d}, 30 epochs", gpu_s, cpu_s,
        f" (top-1 among 200 held-out candidates {gpu_top1:.2f} vs {cpu_top1:.2f}, chance 0.005; learned temperature "
        f"{gpu_t:.3f} vs {cpu_t:.3f}, from 0.07)")


def features(device: str, quick: bool) -> None:
    """open_clip ViT-B/32 (random init), 4 blocks: the extractor's bf16 autocast on the GPU against fp32 on the
    CPU; then GPU images/s of larger towers."""
    n = 64 if quick else 512
    images = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    spec = resolve_backbone("open_clip", "ViT-B-32", None, True, [3, 6, 9, 12])

    def run(on: str, backbone):
        out = [backbone.features(batch.to(on), grid_size=2, map_size=None, embedding=True) for batch in images.split(64)]
        return {key: torch.cat([o[key] for o in out]) for key in out[0]}

    (gpu, gpu_s), (cpu, cpu_s) = (timed(lambda o=o: run(o, load_backbone(spec, seed=0).to(torch.device(o))))
                                  for o in (device, "cpu"))
    worst = max(float((gpu[k] - cpu[k]).norm() / cpu[k].norm()) for k in cpu)
    row(f"features ViT-B/32, {n} images, bf16 GPU vs fp32 CPU (model load included)", gpu_s, cpu_s,
        f" (worst relative difference of a block's features {worst:.1e})")
    for name in ([] if quick else ["ViT-B-16", "ViT-L-14"]):
        backbone = load_backbone(resolve_backbone("open_clip", name, None, True, [6, 12]), seed=0).to(torch.device(device))
        run(device, backbone)  # warm-up
        _, seconds = timed(lambda b=backbone: run(device, b))
        print(f"features {name}, bf16 on {device}: {n / seconds:.0f} images/s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device here")
    print(f"device: {torch.cuda.get_device_name() if args.device == 'cuda' else args.device}; "
          f"CPU threads: {torch.get_num_threads()}", flush=True)
    for check in (ridge, mlp, clip_decoding, features):
        check(args.device, args.quick)

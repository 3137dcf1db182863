"""Scale run: one NSD-sized subject through RidgeEncoder, timed, with the peak memory of the process.

9,841 training images x 39,548 vertices (random standardised X, a planted low-rank linear signal plus
noise), 768 and 3,072 features, 10 alphas, 5 folds, on the CPU. Each size runs in a child process whose
peak resident memory (data included) the parent reads from the kernel.

    python benchmarks/bench_ridge_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy; the child process inherits it)

N_IMAGES, N_VERTICES, FEATURES = 9841, 39548, (768, 3072)
QUICK_IMAGES, QUICK_VERTICES, QUICK_FEATURES = 3000, 4000, (256, 1024)
ALPHAS = np.logspace(-1, 6, 10)
MEMORY_TARGET_GIB = 12.0


def planted_data(n: int, p: int, t: int, rank: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """X (n, p) and Y = X A B + noise (n, t), float32, built column block by column block."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    signal = X @ (rng.standard_normal((p, rank), dtype=np.float32) / np.sqrt(p * rank))
    B = rng.standard_normal((rank, t), dtype=np.float32) * np.logspace(-1, 0.5, t, dtype=np.float32)
    Y = np.empty((n, t), dtype=np.float32)
    for start in range(0, t, 4096):
        block = slice(start, start + 4096)
        Y[:, block] = signal @ B[:, block] + rng.standard_normal((n, B[:, block].shape[1]), dtype=np.float32)
    return X, Y


def child(n: int, p: int, t: int) -> None:
    """Fit one subject; print a JSON line with the fit time and the mean CV score."""
    from tbdencoder.models import RidgeEncoder

    X, Y = planted_data(n, p, t)
    start = time.perf_counter()
    model = RidgeEncoder(alphas=ALPHAS, cv_folds=5, seed=0, device="cpu").fit(X, Y)
    print(json.dumps({"fit_s": time.perf_counter() - start, "cv_r2": float(model.cv_score_.mean())}))


def run(n: int, p: int, t: int) -> None:
    """Run `child` in a subprocess; print its fit time and peak RSS against the memory target."""
    process = subprocess.Popen([sys.executable, __file__, "--child", str(n), str(p), str(t)],
                               stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"scale run n={n} p={p} t={t} failed with exit code {process.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    peak_gib = usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux
    verdict = "met" if peak_gib < MEMORY_TARGET_GIB else f"MISSED by {peak_gib - MEMORY_TARGET_GIB:.1f} GiB"
    print(f"ridge scale (n={n}, p={p}, t={t}, {len(ALPHAS)} alphas, 5 folds, CPU): ours {result['fit_s']:.0f} s "
          f"fit, peak RSS {peak_gib:.2f} GiB (data included), baseline {MEMORY_TARGET_GIB:g} GiB (target), ratio "
          f"{peak_gib / MEMORY_TARGET_GIB:.2f}; target peak RSS < {MEMORY_TARGET_GIB:g} GiB: {verdict}; "
          f"mean CV R^2 {result['cv_r2']:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_IMAGES} images x {QUICK_VERTICES} vertices, {QUICK_FEATURES} features")
    parser.add_argument("--child", nargs=3, type=int, metavar=("N", "P", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    n, t, features = (QUICK_IMAGES, QUICK_VERTICES, QUICK_FEATURES) if args.quick else (N_IMAGES, N_VERTICES, FEATURES)
    for p in features:
        run(n, p, t)


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmark scripts: side-by-side timing, matmul throughput, result lines.

Import this module before torch: it makes idle OpenMP threads sleep instead of spinning, which on a
machine shared with other work keeps torch's timings (ours and himalaya's) from collapsing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import time  # noqa: E402
from typing import Callable  # noqa: E402

import torch  # noqa: E402


def fastest(candidates: dict[str, Callable[[], object]], repeats: int) -> dict[str, tuple[float, object]]:
    """Run the candidates in turn, `repeats` rounds, in this process: name -> (fastest seconds, last result).

    Interleaving the rounds exposes every candidate to the same background load; the minimum is the
    least disturbed run.
    """
    best: dict[str, tuple[float, object]] = {}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
            best[name] = (min(seconds, best.get(name, (float("inf"),))[0]), result)
    return best


def matmul_gflops(size: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matmul throughput (GFLOP/s, best of `repeats`) with torch's current threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    seconds = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / seconds / 1e9


def _timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def report(name: str, ours: float, baseline: float, unit: str = "s", target: float | None = None) -> None:
    """Print `name: ours X, baseline Y, ratio Z` (ratio = baseline / ours), and how it stands against `target`."""
    ratio = baseline / ours
    line = f"{name}: ours {ours:.3g} {unit}, baseline {baseline:.3g} {unit}, ratio {ratio:.2f}x"
    if target is not None:
        line += f"; target >= {target:g}x: " + ("met" if ratio >= target else
                                                  f"MISSED by {100 * (1 - ratio / target):.0f}%")
    print(line, flush=True)


def relative_difference(ours, reference) -> float:
    """Largest, over columns, of max |ours - reference| / max |reference| (numpy arrays, one column per target)."""
    scale = abs(reference).max(0)
    scale[scale == 0] = 1.0
    return float((abs(ours - reference).max(0) / scale).max())

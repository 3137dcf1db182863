"""Helpers shared by the benchmark scripts: side-by-side timing, matmul throughput, result lines.

Import this module before torch: it makes idle OpenMP threads sleep instead of spinning, which on a
machine shared with other work keeps torch's timings (ours and himalaya's) from collapsing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
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


class PeakRSS:
    """The process's resident memory sampled every `interval` s in a thread; `phase(name)` starts a new peak."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self.process, self.interval, self.peaks, self.current = psutil.Process(), interval, {}, None
        self.lock, self.stop = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def rss(self) -> int:
        return self.process.memory_info().rss

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            with self.lock:
                if self.current is not None:
                    self.peaks[self.current] = max(self.peaks.get(self.current, 0), self.rss())

    def phase(self, name: str | None) -> None:
        with self.lock:
            self.current = name
            if name is not None:
                self.peaks[name] = max(self.peaks.get(name, 0), self.rss())


def drop_page_cache(path: Path) -> None:
    """Evict the file's pages from the page cache (no privileges needed): the next reads come from the disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)

class TrainingClock:
    """Times the shared trainer's passes in this process while in use (`with TrainingClock(...) as clock`):
    each training epoch (with `max_batches`, only its first B batches, extrapolated to the whole epoch) and the
    share of it spent reading and standardising batches; the validation passes as a phase; with `drop` (a
    file), the file is dropped from the page cache when training starts, so the first epoch reads the disk."""

    def __init__(self, sampler: PeakRSS, max_batches: int | None = None, drop: Path | None = None):
        self.sampler, self.max_batches, self.drop = sampler, max_batches, drop
        self.times, self.epochs, self.read_seconds = {}, [], 0.0

    def timed(self, name: str, function):
        def wrapper(*args, **kwargs):
            self.sampler.phase(name)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    def __enter__(self):
        from tbdencoder.models import trainer
        from tbdencoder.models.train_data import SubjectsData

        self.saved = trainer._mean_loss, SubjectsData.batch, trainer.train_on
        real_mean_loss, real_batch, real_train_on = self.saved
        clock = self

        def mean_loss(data, rows, batch_size, loss_of):
            if loss_of.__name__ != "training_step":
                return clock.timed("validation loss", real_mean_loss)(data, rows, batch_size, loss_of)
            total = -(-len(rows) // batch_size)
            if clock.max_batches is not None:
                rows = rows[:clock.max_batches * batch_size]
            clock.sampler.phase("epochs")
            clock.read_seconds, start = 0.0, time.perf_counter()
            value = real_mean_loss(data, rows, batch_size, loss_of)
            seconds = time.perf_counter() - start
            done = -(-len(rows) // batch_size)
            clock.epochs.append({"seconds": seconds * total / done, "batches": total, "timed_batches": done,
                                 "read_share": clock.read_seconds / seconds})
            return value

        def batch(data, indices):
            start = time.perf_counter()
            out = real_batch(data, indices)
            clock.read_seconds += time.perf_counter() - start
            return out

        def train_on(*args, **kwargs):
            if clock.drop is not None:
                drop_page_cache(clock.drop)
            return clock.timed("training", real_train_on)(*args, **kwargs)

        trainer._mean_loss, SubjectsData.batch, trainer.train_on = mean_loss, batch, train_on
        return self

    def __exit__(self, *exc):
        from tbdencoder.models import trainer
        from tbdencoder.models.train_data import SubjectsData

        trainer._mean_loss, SubjectsData.batch, trainer.train_on = self.saved
        self.sampler.phase(None)
        return False

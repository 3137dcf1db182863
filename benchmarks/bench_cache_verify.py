"""What verifying a feature cache entry costs: `verify_features` (recompute the content digest) against reading
the same file's feature datasets into memory, the least a reuse does, on an NSD-sized features file.

One NSD subject's images (10,000) through the demo's CLIP backbone: 4 layers x (class token 768 + 2 x 2 grid
3,072) = 15,360 float32 features per image, 614 MB. The ratio (read / verify) says how many plain reads one
check costs; it is paid once per cache hit, next to minutes of extraction.

    python benchmarks/bench_cache_verify.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import h5py
import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy)
from common import fastest, report

from tbdencoder.features.identity import content_sha256, verify_features
from tbdencoder.io import write_strings

N_IMAGES, LAYERS, WIDTH, GRID = 10_000, 4, 768, 2
QUICK_IMAGES = 2_000


def write_features(path: Path, n: int) -> int:
    """A features file in the extractor's layout, with its digest; returns its size in bytes."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        write_strings(h5, "stimulus_id", [f"nsd-{i:05d}" for i in range(n)])
        write_strings(h5, "content_hash", [f"{i:064x}" for i in range(n)])
        for layer in range(1, LAYERS + 1):
            for token, columns in (("global", WIDTH), ("grid", GRID * GRID * WIDTH)):
                h5.create_dataset(f"layers/block{layer:02d}/{token}", data=rng.standard_normal((n, columns),
                                                                                               dtype=np.float32))
        h5.attrs["content_sha256"] = content_sha256(h5)
    return path.stat().st_size


def read_all(path: Path) -> int:
    with h5py.File(path, "r") as h5:
        return sum(h5[f"layers/{layer}/{token}"][:].nbytes for layer in h5["layers"] for token in h5[f"layers/{layer}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    n = QUICK_IMAGES if parser.parse_args().quick else N_IMAGES
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "features.h5"
        size = write_features(path, n)
        best = fastest({"verify": lambda: verify_features(path), "read": lambda: read_all(path)}, repeats=3)
    verify, read = best["verify"][0], best["read"][0]
    print(f"# {n} images, {size / 1e6:.0f} MB: verify {verify:.2f} s ({size / 1e6 / verify:.0f} MB/s), "
          f"plain read {read:.2f} s", flush=True)
    report("cache entry check vs a plain read of its features", verify, read)


if __name__ == "__main__":
    main()

"""Run every benchmark, one after the other, each in its own process: `python benchmarks/run_all.py [--quick]`.

Each prints lines `name: ours X, baseline Y, ratio Z` (ratio = baseline / ours), measured side by side
in one process on the same data, and says where a target is missed and by how much.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = ["bench_features.py", "bench_ridge.py", "bench_ridge_scale.py", "bench_fit_size.py", "bench_banded_ridge.py",
              "bench_cache_verify.py", "bench_subject_adapters.py", "bench_clip_alignment.py",
              "bench_factortopy.py", "bench_all_for_one.py"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    args = parser.parse_args()
    print(f"# {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    failed = []
    for script in BENCHMARKS:
        start = time.perf_counter()
        command = [sys.executable, str(Path(__file__).with_name(script))] + (["--quick"] if args.quick else [])
        if subprocess.run(command).returncode != 0:
            failed.append(script)
        print(f"# {script}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"# failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

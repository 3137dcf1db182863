"""Fits sized for NSD: bytes of results/fits for one subject with the demo's three fMRI models, and the
time to reload a stored fit and predict new stimuli (refit from the stored alphas) against fitting again.

One NSD-sized subject on disk: 9,841 training images of which 10 % are held out for scoring (the
official test fMRI is withheld), 159 submission images, 19,004 + 20,544 vertices (subj01), random
features with a planted linear signal. The file sizes do not depend on the number of features (fits
store predictions and per-vertex alphas, not coefficients); the run uses 768 features to stay within
minutes on a CPU, and prints what the earlier layout (float32 coefficients) would take at the demo's
widths (3,072 features for ridge_cls, 15,360 for ridge_grid and roi_ridge).

    python benchmarks/bench_fit_size.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy)
from common import report

from tbdencoder.fit.fmri import fit_fmri, load_fitted
from tbdencoder.io import write_strings

N_TRAIN, N_HELDOUT, N_SUBMISSION, VERTICES, P = 8857, 984, 159, {"lh": 19004, "rh": 20544}, 768
QUICK = 2000, 200, 159, {"lh": 3000, "rh": 3000}, 256
DEMO_WIDTHS = {"ridge_cls": 3072, "ridge_grid": 15360, "roi_ridge": 15360}
SIZE_TARGET_BYTES = 1e9
ALPHAS = list(np.logspace(-1, 6, 8))


def write_subject(folder: Path, n_train: int, n_heldout: int, n_sub: int, vertices: dict[str, int], p: int):
    """responses.h5 and a features file (block01/global) for one subject; Y = X W + noise, with ROI labels."""
    rng = np.random.default_rng(0)
    ids = [f"nsd-{i:05d}" for i in range(n_train + n_heldout + n_sub)]
    X = rng.standard_normal((len(ids), p), dtype=np.float32)
    features, responses = folder / "features.h5", folder / "responses.h5"
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        h5["layers/block01/global"] = X
    with h5py.File(responses, "w") as h5:
        h5.attrs.update(subject="subj01", eval_split="heldout_train", source="benchmark")
        write_strings(h5, "train_stimulus_id", ids[:n_train])
        write_strings(h5, "test_stimulus_id", ids[n_train:n_train + n_heldout])
        write_strings(h5, "submission_stimulus_id", ids[n_train + n_heldout:])
        for hemi, n_vertices in vertices.items():
            weights = rng.standard_normal((p, 8), dtype=np.float32) @ rng.standard_normal((8, n_vertices),
                                                                                         dtype=np.float32)
            rows = X[: n_train + n_heldout]
            Y = rows @ (weights / np.sqrt(8 * p)) + rng.standard_normal((len(rows), n_vertices), dtype=np.float32)
            h5[f"{hemi}/train"], h5[f"{hemi}/test"] = Y[:n_train], Y[n_train:]
            h5[f"{hemi}/fsaverage_index"] = np.arange(Y.shape[1])
            labels = h5.create_dataset(f"{hemi}/roi/streams", data=rng.integers(0, 8, n_vertices).astype(np.int16))
            labels.attrs["names"] = '{"0": "Unknown", ' + ", ".join(f'"{i}": "roi{i}"' for i in range(1, 8)) + "}"
    return features, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller subject (minutes -> seconds)")
    args = parser.parse_args()
    n_train, n_heldout, n_sub, vertices, p = QUICK if args.quick else (N_TRAIN, N_HELDOUT, N_SUBMISSION, VERTICES, P)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        features, responses = write_subject(folder, n_train, n_heldout, n_sub, vertices, p)
        fit_seconds, total_bytes = {}, 0
        for model, family in (("ridge_cls", "ridge"), ("ridge_grid", "ridge"), ("roi_ridge", "roi_ridge")):
            for hemi in vertices:
                out = folder / f"fits/subj01/{hemi}/{model}.h5"
                start = time.perf_counter()
                spec = dict(family=family, backbone="bench", layers=[1], tokens=["global"], alphas=ALPHAS, cv_folds=5,
                            seed=0, roi_class="streams")
                fit_fmri(features, responses, hemi, model, spec, out, device="cpu")
                fit_seconds[(model, hemi)] = time.perf_counter() - start
                total_bytes += out.stat().st_size
        coef_bytes = sum(4 * width * sum(vertices.values()) for width in DEMO_WIDTHS.values())
        shape = f"{n_train}+{n_heldout} images, {sum(vertices.values())} vertices"
        report(f"fits of one subject, 3 demo models, both hemispheres ({shape}; vs float32 coefficients at the "
               f"demo's widths)", total_bytes / 1e6, coef_bytes / 1e6, unit="MB")
        verdict = "met" if total_bytes <= SIZE_TARGET_BYTES else f"MISSED by {(total_bytes - 1e9) / 1e6:.0f} MB"
        print(f"# target: results/fits of one NSD subject <= 1 GB: {verdict}", flush=True)

        hemi = "rh"
        fit_path = folder / f"fits/subj01/{hemi}/ridge_grid.h5"
        start = time.perf_counter()
        fitted = load_fitted(fit_path, device="cpu")
        with h5py.File(responses) as h5:
            submission_ids = list(h5["submission_stimulus_id"].asstr()[:])
        prediction = fitted.predict(features, submission_ids)
        reload_seconds = time.perf_counter() - start
        with h5py.File(fit_path) as h5:
            stored = h5["submission_prediction"][:]
        difference = float(np.abs(prediction - stored).max() / np.abs(stored).max())
        report(f"reload a stored fit ({hemi}, {vertices[hemi]} vertices, p={p}) and predict {len(submission_ids)} "
               f"images (vs fitting it again with CV); max relative difference to the stored predictions "
               f"{difference:.1e}", reload_seconds, fit_seconds[("ridge_grid", hemi)])


if __name__ == "__main__":
    main()

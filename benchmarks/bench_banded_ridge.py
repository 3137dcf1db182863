"""Banded ridge: `banded_ridge_cv` against himalaya's BandedRidgeCV (torch backend, CPU) on the same folds and the
same candidate block weightings and alphas, scored the same way (R^2 per fold, averaged).

Three blocks of features (say, three layers), targets driven by one block each plus noise. Prints the fit
times, the share of targets for which both pick the same block weighting, and how far the predictions of
the two fits are apart.

    python benchmarks/bench_banded_ridge.py [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np

import common  # noqa: F401  (sets the OpenMP wait policy; import before torch)
from common import fastest, relative_difference, report

from sklearn.model_selection import KFold

from tbdencoder.models.banded_ridge_solver import banded_ridge_cv, candidate_gammas

SIZES = dict(full=(3000, [256, 256, 256], 3000, 16), quick=(1000, [64, 64, 64], 600, 8))
ALPHAS = np.logspace(-1, 5, 10)


def planted(n: int, sizes: list[int], t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sum(sizes)), dtype=np.float32)
    starts = np.cumsum([0, *sizes])
    driver = rng.integers(0, len(sizes), t)
    Y = rng.standard_normal((n, t), dtype=np.float32)
    for block, size in enumerate(sizes):
        cols = np.flatnonzero(driver == block)
        weights = rng.standard_normal((size, len(cols)), dtype=np.float32) / np.sqrt(size)
        Y[:, cols] += X[:, starts[block]:starts[block + 1]] @ weights
    return X, Y


def himalaya_fit(X, Y, sizes, gammas, folds):
    from himalaya.backend import set_backend
    from himalaya.ridge import BandedRidgeCV
    from himalaya.scoring import r2_score

    set_backend("torch", on_error="raise")
    groups = np.repeat(np.arange(len(sizes)), sizes)
    model = BandedRidgeCV(groups=groups, cv=folds, solver_params=dict(
        n_iter=gammas, alphas=ALPHAS, score_func=r2_score, progress_bar=False))
    return model.fit(X, Y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, sizes, t, n_gammas = SIZES["quick" if args.quick else "full"]
    X, Y = planted(n, sizes, t)
    Y -= Y.mean(0)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    gammas = candidate_gammas(len(sizes), n_gammas, seed=0)
    results = fastest({
        "ours": lambda: banded_ridge_cv(X, Y, sizes, ALPHAS, folds, gammas=gammas, device="cpu"),
        "himalaya": lambda: himalaya_fit(X, Y, sizes, gammas, folds),
    }, repeats=1 if not args.quick else 2)
    (ours_s, ours), (himalaya_s, theirs) = results["ours"], results["himalaya"]
    their_deltas = np.asarray(theirs.deltas_.cpu())  # (n_blocks, t) log(gamma_b / alpha)
    their_gamma = np.exp(their_deltas - their_deltas.max(0))
    their_gamma /= their_gamma.sum(0)
    same = np.isclose(ours.gamma, their_gamma.T, rtol=1e-3).all(1).mean()
    prediction_gap = relative_difference(X @ ours.coef, np.asarray(theirs.predict(X).cpu()))
    report(f"banded ridge (n={n}, blocks {sizes}, {t} targets, {n_gammas} block weightings x {len(ALPHAS)} alphas, "
           f"5 folds, CPU) vs himalaya BandedRidgeCV on the same folds and candidates; same weighting chosen for "
           f"{100 * same:.1f}% of targets, max relative prediction difference {prediction_gap:.1e}",
           ours_s, himalaya_s)


if __name__ == "__main__":
    main()

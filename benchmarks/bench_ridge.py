"""Ridge with a per-target penalty: our torch solver vs himalaya RidgeCV and scikit-learn RidgeCV (CPU).

All three get the same X, Y and alpha grid; ours and himalaya the same 5 shuffled folds and R^2 scoring.
scikit-learn's alpha_per_target works only with its efficient leave-one-out (cv=None), so it picks
alphas by another criterion: its time is comparable, its predictions are not (printed for information).
Each timing is the fastest of three interleaved rounds (one with --quick).

    python benchmarks/bench_ridge.py [--quick]
"""

from __future__ import annotations

import argparse

from common import fastest, relative_difference, report  # first: sets the OpenMP wait policy before torch loads

import numpy as np
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score
from sklearn.linear_model import RidgeCV as SklearnRidgeCV
from sklearn.model_selection import KFold

from tbdencoder.models.ridge_solver import ridge_cv

ALPHAS = np.logspace(-1, 6, 10)
SPEED_TARGET = 2.0  # ours vs the faster baseline, when p < n
PREDICTION_TARGET = 1e-4  # relative difference of predictions from himalaya's on the same folds
CASES = {  # name -> (n, p, t)
    "p < n/5": (4000, 500, 5000),  # ours: validation predictions in an r-dimensional basis
    "p < n": (2000, 500, 5000),
    "p > n": (1000, 4000, 2000),
}


def make_data(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Standardised X, centred Y = X W + noise with a signal-to-noise ratio spread over the targets."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    W = rng.standard_normal((p, t), dtype=np.float32) * (np.logspace(-2, 0, t, dtype=np.float32) / np.sqrt(p))
    Y = X @ W + rng.standard_normal((n, t), dtype=np.float32)
    return (X - X.mean(0)) / X.std(0), Y - Y.mean(0)


def run_case(name: str, n: int, p: int, t: int, repeats: int) -> None:
    X, Y = make_data(n, p, t)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    set_backend("torch")
    himalaya = RidgeCV(alphas=ALPHAS.astype(np.float32), cv=folds,
                       solver_params={"score_func": r2_score, "warn": False})
    sklearn = SklearnRidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=False)
    results = fastest({
        "ours": lambda: ridge_cv(X, Y, ALPHAS, folds, device="cpu"),
        "himalaya": lambda: himalaya.fit(X, Y),
        "sklearn": lambda: sklearn.fit(X, Y),
    }, repeats)
    (ours_s, ours), (himalaya_s, _), (sklearn_s, _) = results["ours"], results["himalaya"], results["sklearn"]
    label = f"ridge {name} (n={n}, p={p}, t={t}, {len(ALPHAS)} alphas)"
    report(f"{label} vs himalaya RidgeCV, same 5 folds", ours_s, himalaya_s)
    report(f"{label} vs sklearn RidgeCV(alpha_per_target), leave-one-out (cv=None)", ours_s, sklearn_s)
    faster = min(himalaya_s, sklearn_s)
    report(f"{label} vs the faster baseline ({'himalaya' if faster == himalaya_s else 'sklearn'})", ours_s,
           faster, target=SPEED_TARGET if p < n else None)
    print_agreement(label, X, Y, ours, himalaya, sklearn)


def print_agreement(label: str, X, Y, ours, himalaya, sklearn) -> None:
    predictions = X @ ours.coef
    same = np.isclose(ours.alpha, himalaya.best_alphas_.cpu().numpy(), rtol=1e-4)
    difference = relative_difference(predictions[:, same], X @ himalaya.coef_.cpu().numpy()[:, same])
    score_gap = np.abs(ours.cv_score - himalaya.cv_scores_.cpu().numpy())[~same].max(initial=0)
    print(f"{label} predictions vs himalaya (same folds): same alpha for {same.sum()}/{same.size} targets, "
          f"max relative difference on those {difference:.1e}; target <= {PREDICTION_TARGET:g}: "
          + ("met" if difference <= PREDICTION_TARGET else f"MISSED ({difference / PREDICTION_TARGET:.0f}x over)")
          + f"; the others are ties: best CV R^2 differs by at most {score_gap:.1e}")
    same = np.mean(np.isclose(ours.alpha, sklearn.alpha_, rtol=1e-4))
    print(f"{label} predictions vs sklearn (leave-one-out, other alphas, not comparable): max relative difference "
          f"{relative_difference(predictions, X @ sklearn.coef_.T):.1e}, same alpha for {100 * same:.1f}% of targets")
    columns = np.linspace(0, Y.shape[1] - 1, 20).astype(int)
    X64 = X.astype(np.float64)
    closed_form = np.stack([np.linalg.solve(X64.T @ X64 + ours.alpha[j] * np.eye(X.shape[1]), X64.T @ Y[:, j])
                            for j in columns], axis=1)
    print(f"{label} float32 products vs float64 closed-form solve (20 targets): max relative difference "
          f"{relative_difference(predictions[:, columns], X64 @ closed_form):.1e}", flush=True)


def warm_up() -> None:
    """First calls load BLAS/LAPACK kernels and thread pools: keep that out of the timings."""
    X, Y = make_data(200, 20, 10)
    folds = list(KFold(5, shuffle=True, random_state=0).split(X))
    set_backend("torch")
    ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    RidgeCV(alphas=ALPHAS.astype(np.float32), cv=folds, solver_params={"warn": False}).fit(X, Y)
    SklearnRidgeCV(alphas=ALPHAS, alpha_per_target=True, fit_intercept=False).fit(X, Y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    args = parser.parse_args()
    warm_up()
    for name, (n, p, t) in CASES.items():
        run_case(name, n, p, t, repeats=1 if args.quick else 3)


if __name__ == "__main__":
    main()

"""The torch ridge solver against a direct closed-form solve and against himalaya's RidgeCV."""

import numpy as np
import pytest
import torch
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from himalaya.scoring import r2_score
from sklearn.model_selection import KFold

from tbdencoder.models import ridge_solver
from tbdencoder.device import resolve_device
from tbdencoder.models.ridge_solver import ridge_cv

ALPHAS = np.logspace(-2, 5, 8)
SHAPES = {  # (n, p): which form each fold uses
    "primal, r < n_val": (400, 40),  # validation predictions in an r-dimensional basis
    "primal, r > n_val": (200, 150),
    "dual (p > n)": (120, 300),
}


def _data(n, p, t=24, seed=0):
    """Centred targets whose signal-to-noise ratio spans the alpha grid."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = rng.standard_normal((p, t)) * np.logspace(-2.5, 0, t) / np.sqrt(p) * 3
    Y = (X @ W + rng.standard_normal((n, t))).astype(np.float32)
    return X, Y - Y.mean(0)


def _folds(n):
    return list(KFold(5, shuffle=True, random_state=0).split(np.zeros(n)))


def _closed_form(X, y, alpha):
    X = X.astype(np.float64)
    return np.linalg.solve(X.T @ X + alpha * np.eye(X.shape[1]), X.T @ y.astype(np.float64))


def _himalaya(X, Y, folds, local_alpha=True):
    set_backend("numpy")  # float64 throughout: the more exact reference
    model = RidgeCV(alphas=ALPHAS, cv=folds,
                    solver_params={"local_alpha": local_alpha, "score_func": r2_score, "warn": False})
    return model.fit(X.astype(np.float64), Y.astype(np.float64))


def _relative(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_coef_equals_closed_form_solve(shape):
    X, Y = _data(*shape)
    solution = ridge_cv(X, Y, ALPHAS, _folds(len(X)), device="cpu")
    assert solution.coef.dtype == np.float32 and solution.coef.shape == (X.shape[1], Y.shape[1])
    assert len(np.unique(solution.alpha)) > 2  # the check covers several penalties
    for j in (0, Y.shape[1] // 2, Y.shape[1] - 1):
        assert _relative(solution.coef[:, j], _closed_form(X, Y[:, j], solution.alpha[j])) < 1e-5


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_same_alphas_scores_and_predictions_as_himalaya(shape):
    X, Y = _data(*shape, seed=1)
    folds = _folds(len(X))
    ours = ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    reference = _himalaya(X, Y, folds)
    assert len(np.unique(ours.alpha)) > 2
    np.testing.assert_allclose(ours.alpha, reference.best_alphas_, rtol=1e-9)
    np.testing.assert_allclose(ours.cv_score, reference.cv_scores_, atol=1e-5)
    assert _relative(X @ ours.coef, X @ reference.coef_) < 1e-4


def test_batches_of_targets_give_the_same_result(monkeypatch):
    X, Y = _data(300, 50, t=40)
    folds = _folds(len(X))
    whole = ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    for max_batch_targets in (7, 1):
        batched = ridge_cv(X, Y, ALPHAS, folds, device="cpu", max_batch_targets=max_batch_targets)
        np.testing.assert_array_equal(batched.alpha, whole.alpha)
        np.testing.assert_allclose(batched.cv_score, whole.cv_score, atol=1e-6)  # float32 matmul rounding
        assert _relative(batched.coef, whole.coef) < 1e-6
    # with little free memory, batches shrink on their own
    sizes, cv_scores = [], ridge_solver._Solver.cv_scores

    def recording_cv_scores(self, targets):
        sizes.append(targets.Y.shape[1])
        return cv_scores(self, targets)

    monkeypatch.setattr(ridge_solver._Solver, "cv_scores", recording_cv_scores)
    monkeypatch.setattr(ridge_solver, "_free_memory", lambda device: 100_000)
    small = ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    assert max(sizes) < Y.shape[1] and sum(sizes) == Y.shape[1]
    np.testing.assert_array_equal(small.alpha, whole.alpha)


@pytest.mark.parametrize("shape", [(300, 40), (120, 300)], ids=["primal", "dual"])
def test_shared_alpha_matches_himalaya_and_is_one_penalty(shape):
    X, Y = _data(*shape, seed=2)
    folds = _folds(len(X))
    shared = ridge_cv(X, Y, ALPHAS, folds, device="cpu", shared_alpha=True, max_batch_targets=5)
    per_target = ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    reference = _himalaya(X, Y, folds, local_alpha=False)
    assert len(np.unique(shared.alpha)) == 1 and len(np.unique(per_target.alpha)) > 1
    np.testing.assert_allclose(shared.alpha, reference.best_alphas_, rtol=1e-9)
    np.testing.assert_allclose(shared.cv_score, reference.cv_scores_, atol=1e-5)
    assert shared.cv_score.mean() <= per_target.cv_score.mean()
    assert _relative(shared.coef[:, 3], _closed_form(X, Y[:, 3], shared.alpha[0])) < 1e-5


def test_y_offset_is_subtracted():
    X, Y = _data(200, 30)
    offset = np.linspace(-5, 5, Y.shape[1]).astype(np.float32)
    folds = _folds(len(X))
    centred = ridge_cv(X, Y, ALPHAS, folds, device="cpu")
    shifted = ridge_cv(X, Y + offset, ALPHAS, folds, device="cpu", y_offset=offset)
    np.testing.assert_array_equal(shifted.alpha, centred.alpha)
    assert _relative(shifted.coef, centred.coef) < 1e-5


def test_argument_errors():
    X, Y = _data(50, 5, t=3)
    with pytest.raises(ValueError, match="same n"):
        ridge_cv(X, Y[:10], ALPHAS, _folds(50))
    with pytest.raises(ValueError, match="positive"):
        ridge_cv(X, Y, [1.0, 0.0], _folds(50))
    with pytest.raises(ValueError, match="folds"):
        ridge_cv(X, Y, ALPHAS, [])
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")

import numpy as np
import pytest

from tbdencoder.models import RidgeEncoder, RoiRidgeEncoder
from tbdencoder.evaluate.metrics import pearson_r


def _data(n=240, p=40, t=30, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)).astype(np.float32)
    W = rng.standard_normal((p, t)).astype(np.float32)
    Y = X @ W + 3.0 + noise * rng.standard_normal((n, t)).astype(np.float32)
    return X, Y, W


def test_ridge_recovers_weights():
    X, Y, W = _data()
    model = RidgeEncoder(alphas=[1e-3, 1e-1, 10.0, 1e3], cv_folds=4, seed=0).fit(X[:200], Y[:200])
    # coef_ is on standardised features: undo the scaling to compare with the generating weights
    recovered = model.coef_ / model.x_scale_[:, None]
    # OLS standard error here is about 0.5 / sqrt(200) = 0.035 per weight
    assert np.abs(recovered - W).mean() < 0.05
    assert np.abs(recovered - W).max() < 0.2
    assert pearson_r(model.predict(X[200:]), Y[200:]).min() > 0.98
    assert model.alpha_.shape == (30,) and model.cv_score_.shape == (30,)


def test_ridge_picks_larger_penalty_for_noisier_targets():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((150, 100)).astype(np.float32)
    signal = X @ rng.standard_normal((100, 2)).astype(np.float32) * 0.2
    Y = signal + rng.standard_normal((150, 2)).astype(np.float32) * np.array([0.05, 5.0], dtype=np.float32)
    model = RidgeEncoder(alphas=np.logspace(-2, 5, 8), cv_folds=5).fit(X, Y)
    assert model.alpha_[1] > model.alpha_[0]


def test_ridge_is_deterministic_and_checks_shapes():
    X, Y, _ = _data()
    a = RidgeEncoder(alphas=[0.1, 10.0], seed=3).fit(X, Y)
    b = RidgeEncoder(alphas=[0.1, 10.0], seed=3).fit(X, Y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    with pytest.raises(ValueError, match="same n"):
        RidgeEncoder().fit(X, Y[:10])


def test_roi_ridge_shares_alpha_within_roi_only():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((160, 60)).astype(np.float32)
    Y = X @ rng.standard_normal((60, 20)).astype(np.float32) * 0.3
    labels = np.repeat([0, 1], 10)
    Y[:, 10:] += rng.standard_normal((160, 10)).astype(np.float32) * 8.0  # ROI 1 is much noisier
    model = RoiRidgeEncoder("streams", alphas=np.logspace(-2, 5, 8), cv_folds=4).fit(X, Y,
                                                                                  targets={"roi": {"streams": labels}})
    assert len(np.unique(model.alpha_[:10])) == 1 and len(np.unique(model.alpha_[10:])) == 1
    assert model.alpha_[10] > model.alpha_[0]
    assert model.predict(X).shape == (160, 20)
    with pytest.raises(ValueError, match="one per target"):
        RoiRidgeEncoder("streams").fit(X, Y, targets={"roi": {"streams": labels[:5]}})
    with pytest.raises(KeyError, match="'floc-faces' ROI labels"):
        RoiRidgeEncoder("floc-faces").fit(X, Y, targets={"roi": {"streams": labels}})


def test_ridge_matches_himalaya_on_standardised_features_and_centred_targets():
    """The solver switch kept the model: same folds, scaling and centring as himalaya's RidgeCV."""
    from himalaya.backend import set_backend
    from himalaya.ridge import RidgeCV
    from himalaya.scoring import r2_score
    from sklearn.model_selection import KFold

    X, Y, _ = _data(noise=0.0)
    Y += np.random.default_rng(5).standard_normal(Y.shape).astype(np.float32) * np.logspace(0, 2, Y.shape[1])
    X = X * np.linspace(0.5, 3, X.shape[1], dtype=np.float32) + 1.0
    alphas = np.logspace(-1, 4, 6)
    model = RidgeEncoder(alphas=alphas, cv_folds=4, seed=7, max_batch_targets=8).fit(X, Y)
    set_backend("numpy")
    Xs = ((X - X.mean(0)) / X.std(0)).astype(np.float64)
    reference = RidgeCV(alphas=alphas, cv=KFold(4, shuffle=True, random_state=7),
                        solver_params={"score_func": r2_score, "warn": False}).fit(Xs, Y - Y.mean(0))
    assert len(np.unique(model.alpha_)) > 2
    np.testing.assert_allclose(model.alpha_, reference.best_alphas_, rtol=1e-6)
    np.testing.assert_allclose(model.cv_score_, reference.cv_scores_, atol=1e-5)
    expected = Xs @ reference.coef_ + Y.mean(0)
    assert np.abs(model.predict(X) - expected).max() < 1e-4 * np.abs(expected).max()

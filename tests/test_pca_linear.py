"""The Algonauts devkit baseline (incremental PCA -> linear regression) as a family, beside ridge."""

import numpy as np
import pytest
from sklearn.decomposition import IncrementalPCA
from sklearn.linear_model import LinearRegression

from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.models import PcaLinearEncoder, RidgeEncoder, build_encoder
from tbdencoder.simulate.encoding import simulate_encoding


def test_it_is_the_devkit_pipeline_and_reloads_from_its_artifacts():
    problem = simulate_encoding(400, 150, {"linear": 12}, seed=2)
    X, Y = problem.X[:300], problem.Y[:300]
    model = build_encoder({"family": "pca_linear", "n_components": 20, "batch_size": 100, "layers": [1]}).fit(X, Y)
    pca = IncrementalPCA(n_components=20, batch_size=100).fit(X)  # the organisers' tutorial, by hand
    expected = LinearRegression().fit(pca.transform(X), Y).predict(pca.transform(problem.X[300:]))
    np.testing.assert_allclose(model.predict(problem.X[300:]), expected, rtol=1e-4, atol=1e-4)
    again = PcaLinearEncoder.reload({**model.state(), **model.artifacts()}, None, None)
    np.testing.assert_allclose(again.predict(problem.X[300:]), model.predict(problem.X[300:]), rtol=1e-5, atol=1e-5)


def test_ridge_beats_the_devkit_baseline_where_signal_lies_beyond_the_top_components():
    """Responses driven by low-variance feature directions: 100 components of 300 features keep the high-variance
    ones, so the baseline loses what ridge, with every feature, keeps."""
    problem = simulate_encoding(1200, 300, {"linear": 20}, rank=8, seed=3)
    train, test = slice(0, 900), slice(900, None)
    pca_r = pearson_r(PcaLinearEncoder().fit(problem.X[train], problem.Y[train]).predict(problem.X[test]),
                      problem.Y[test])
    ridge = RidgeEncoder(alphas=np.logspace(-1, 5, 13), device="cpu").fit(problem.X[train], problem.Y[train])
    ridge_r = pearson_r(ridge.predict(problem.X[test]), problem.Y[test])
    assert ridge_r.mean() > pca_r.mean() + 0.05 and pca_r.mean() > 0.1, (ridge_r.mean(), pca_r.mean())


def test_too_many_components_are_refused():
    with pytest.raises(ValueError, match="n_components = 50: expected 1..40"):
        PcaLinearEncoder(n_components=50).fit(np.zeros((40, 60)), np.zeros((40, 2)))

"""FactorTopy (models.factortopy) against the topographic ground truth (simulate.topographic) and by hand.

Recovery thresholds, derived from the maps' grid: the fixed network's maps are 8 x 8 patches, a patch 1/8 = 0.125
image widths wide. The response of a vertex depends on its position only through the bilinear weights of the
four patch centres around it, which change by a whole patch's worth over one patch: with 320 images at SNR 2 a
fitted space selector should land within a quarter patch (0.031 image widths) of the true centre for the median
vertex. Chance is the median distance between a centre and where a selector fitted to responses shuffled across
vertices lands: about 0.27 image widths (measured), and more than one patch is taken as failing to recover.
The layer selector's argmax should name the driving layer for most (>= 80 %) vertices, and the shuffled control
(whose selectors cannot follow the hierarchy) for at most half.
"""

import math

import numpy as np
import pytest
import torch

from tbdencoder.features.featureset import FeatureSet
from tbdencoder.models.factortopy import FactorTopy, selector_regulariser, sphere_encoding
from tbdencoder.simulate.topographic import sample_maps, simulate_topographic

PATCH = 1 / 8  # image widths per patch of the simulated maps
N_TRAIN = 320


def _features(problem, rows) -> FeatureSet:
    names, data, shapes = [], [], []
    for k, maps in enumerate(problem.maps):
        names += [f"layer{k}/map", f"layer{k}/global"]
        data += [maps[rows].reshape(len(rows), -1), maps[rows].mean((1, 2))]
        shapes += [maps.shape[1:], None]
    return FeatureSet(names, data, shapes)


def _fit(problem, Y, **settings):
    model = FactorTopy(width=32, hidden_units=64, max_epochs=100, patience=5, regulariser_steps=300, device="cpu",
                       **settings)
    rows = np.arange(N_TRAIN)
    return model.fit(_features(problem, rows), {"s": Y[rows]}, subjects=np.full(N_TRAIN, "s"),
                     targets={"s": {"positions": problem.positions}})


@pytest.fixture(scope="module")
def problem():
    return simulate_topographic(400, 300, seed=0)


@pytest.fixture(scope="module")
def fitted(problem):
    return _fit(problem, problem.Y)


def _space_error(state, problem) -> np.ndarray:
    return np.hypot(state["space_x"] - problem.rf_x, state["space_y"] - problem.rf_y)


def test_the_space_selector_recovers_receptive_field_centres_and_the_layer_selector_the_driving_layer(fitted, problem):
    state = fitted.subject_state("s")
    assert np.median(_space_error(state, problem)) < PATCH / 4
    assert (state["layer_weights"].argmax(1) == problem.layer).mean() >= 0.8
    np.testing.assert_allclose(state["layer_weights"].sum(1), 1.0, rtol=1e-5)
    # and it predicts new images: the noiseless signal of held-out images
    test = np.arange(N_TRAIN, 400)
    prediction = fitted.predict(_features(problem, test), subjects=np.full(len(test), "s"))["s"]
    r = [np.corrcoef(prediction[:, v], problem.signal[test, v])[0, 1] for v in range(prediction.shape[1])]
    assert np.median(r) > 0.9


def test_selectors_fitted_to_responses_shuffled_across_vertices_recover_nothing(problem):
    shuffled = problem.Y[:, np.random.default_rng(0).permutation(problem.Y.shape[1])]
    state = _fit(problem, shuffled).subject_state("s")
    assert np.median(_space_error(state, problem)) > PATCH
    assert (state["layer_weights"].argmax(1) == problem.layer).mean() <= 0.5


def test_the_simulated_centres_are_retinotopic_on_the_sphere(problem):
    """Neighbours on the sphere have neighbouring centres, the lh sees the right half of the image, and the driving
    layer grows away from the pole."""
    distance = np.linalg.norm(problem.positions[:, None] - problem.positions[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    nearest = distance.argmin(1)
    centre_step = np.hypot(problem.rf_x - problem.rf_x[nearest], problem.rf_y - problem.rf_y[nearest])
    shuffled = np.hypot(problem.rf_x - np.roll(problem.rf_x, 7), problem.rf_y - np.roll(problem.rf_y, 7))
    assert np.median(centre_step) < np.median(shuffled) / 4
    assert (problem.rf_x >= 0.5).mean() > 0.95
    assert np.corrcoef(problem.layer, problem.radius)[0, 1] > 0.9


def test_sample_maps_reads_the_patch_under_a_position():
    maps = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1)
    # the centre of patch (row 1, col 2) is at x = 2.5 / 4, y = 1.5 / 4; halfway to the next column averages them
    values = sample_maps(maps, np.array([2.5 / 4, 3.0 / 4]), np.array([1.5 / 4, 1.5 / 4]))
    np.testing.assert_allclose(values[:, :, 0], [[6.0, 6.5], [22.0, 22.5]])


def test_the_position_encoding_is_fixed_by_the_frame_not_by_the_other_vertices():
    positions = torch.tensor([[-1.5, 0.0, 1.0], [1.2, -0.3, 0.4]])
    both, alone = sphere_encoding(positions, 4), sphere_encoding(positions[:1], 4)
    torch.testing.assert_close(both[:1], alone)
    assert both.shape == (2, 3 * 2 * 4)
    # by hand: x = -1.5 is 1.0 from the frame's low edge (-2.5), 100 steps over the frame's 5.0 -> 20 steps;
    # the first frequency is 1 per step, the second 1000^(-1/4)
    steps = 20.0
    expected = [math.sin(steps), math.sin(steps * 1000 ** -0.25)]
    torch.testing.assert_close(alone[0, [0, 1]], torch.tensor(expected))
    torch.testing.assert_close(alone[0, 4], torch.tensor(math.cos(steps)))


def test_the_regulariser_is_lowest_for_uniform_layer_weights_and_a_balanced_scale():
    """sum p log p / log L: -1 for uniform weights, 0 for one layer; minimising it raises the entropy."""
    uniform, one_hot = torch.full((5, 4), 0.25), torch.eye(4)[[0, 1, 2, 3, 0]]
    half = torch.full((5,), 0.5)
    torch.testing.assert_close(selector_regulariser(uniform, half), torch.tensor(-1.0))
    torch.testing.assert_close(selector_regulariser(one_hot, half), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(selector_regulariser(uniform, torch.ones(5)), torch.tensor(-0.75))


def test_factortopy_refuses_features_without_patch_maps(problem):
    X = FeatureSet(["layer0/global"], [problem.maps[0].mean((1, 2))])
    with pytest.raises(ValueError, match=r"tokens: \[global, map\]"):
        FactorTopy(max_epochs=1, device="cpu").fit(X, {"s": problem.Y}, subjects=np.full(len(problem.Y), "s"),
                                                   targets={"s": {"positions": problem.positions}})

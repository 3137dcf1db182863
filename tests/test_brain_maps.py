"""Brain maps and the measures of FactorTopy's selectors (evaluate.brain_maps), by hand and through evaluate."""

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.evaluate.brain_maps import (
    hierarchy_levels,
    hierarchy_slope,
    layer_colours,
    normalised_entropy,
    retinotopy,
)
from tbdencoder.evaluate.evaluate_fmri import evaluate_subject
from tbdencoder.fit.fmri import fit_fmri
from tbdencoder.io import write_strings


def test_the_layer_colour_is_bright_for_one_layer_and_black_for_all_alike():
    weights = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0]])
    np.testing.assert_allclose(normalised_entropy(weights), [0, 0, 1, np.log(2) / np.log(3)], atol=1e-9)
    rgba = layer_colours(weights)
    assert rgba[0, 2] > rgba[0, 0] and rgba[1, 0] > rgba[1, 2]  # first layer blue, last red (coolwarm)
    np.testing.assert_allclose(rgba[2, :3], 0.0, atol=1e-9)
    np.testing.assert_allclose(rgba[3, :3].max() / rgba[0, :3].max(), 1 - np.log(2) / np.log(3), rtol=0.05)


def test_retinotopy_of_image_positions():
    eccentricity, polar = retinotopy(np.array([0.5, 0.75, 0.5, 0.25]), np.array([0.5, 0.5, 0.25, 0.75]))
    np.testing.assert_allclose(eccentricity, [0, 0.25, 0.25, np.hypot(0.25, 0.25)])
    np.testing.assert_allclose(polar[1:], [0, 90, -135])  # right meridian, upper field (y runs down), lower left


def _rois(prf, floc=None):
    rois = {"prf-visualrois": (np.asarray(prf), {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v",
                                                 6: "V3d", 7: "hV4"})}
    if floc is not None:
        rois["floc-faces"] = (np.asarray(floc), {0: "Unknown", 1: "FFA-1"})
    return rois


def test_the_hierarchy_slope_by_hand():
    # V1, V2, V3, hV4, a face ROI, and a vertex in none: levels 0, 1, 2, 3, 4, NaN
    levels = hierarchy_levels(_rois([1, 4, 5, 7, 0, 0], [0, 0, 0, 0, 1, 0]))
    np.testing.assert_array_equal(levels, [0, 1, 2, 3, 4, np.nan])
    # a network whose layer position equals the level / 4: slope 1, intercept 0
    one_hot = np.eye(5)[[0, 1, 2, 3, 4, 0]]
    fit = hierarchy_slope(one_hot, levels)
    assert fit["slope"] == pytest.approx(1.0) and fit["intercept"] == pytest.approx(0.0, abs=1e-12)
    assert fit["n_vertices"] == 5 and fit["n_per_level"] == {"0": 1, "1": 1, "2": 1, "3": 1, "4": 1}
    # layer positions 0.5, 0.5, 0.5, 0.5, 1.0 against levels 0, .25, .5, .75, 1: least squares by hand
    weights = np.tile([0.5, 0.0, 0.5], (6, 1))
    weights[4] = [0, 0, 1]
    x, y = np.array([0, 0.25, 0.5, 0.75, 1.0]), np.array([0.5, 0.5, 0.5, 0.5, 1.0])
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    assert hierarchy_slope(weights, levels)["slope"] == pytest.approx(slope)
    # one level only: not a number
    assert hierarchy_slope(one_hot, np.array([0, 0, 0, np.nan, np.nan, np.nan])) is None


@pytest.fixture(scope="module")
def factortopy_fit(tiny_fmri_dataset, tmp_path_factory):
    """A tiny FactorTopy fit of both hemispheres of subj01 with map features (random maps)."""
    root = tmp_path_factory.mktemp("brain_maps")
    responses = root / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh", "rh"], ["prf-visualrois", "floc-faces", "streams"], 0.2, 0,
                 responses, root / "stimuli.h5")
    with h5py.File(responses) as h5:
        ids = list(dict.fromkeys([*h5["train_stimulus_id"].asstr()[:], *h5["test_stimulus_id"].asstr()[:],
                                  *h5["submission_stimulus_id"].asstr()[:]]))
    rng = np.random.default_rng(0)
    features = root / "features.h5"
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        for layer in ("block01", "block02"):
            h5[f"layers/{layer}/global"] = rng.standard_normal((len(ids), 3)).astype(np.float32)
            h5[f"layers/{layer}/map"] = rng.standard_normal((len(ids), 2 * 2 * 3)).astype(np.float32)
            h5[f"layers/{layer}/map"].attrs["shape"] = [2, 2, 3]
    spec = {"family": "factortopy", "backbone": "toy", "layers": [1, 2], "tokens": ["global", "map"], "width": 4,
            "hidden_units": 8, "n_frequencies": 4, "max_epochs": 3, "patience": 2, "batch_size": 16,
            "alphas": [1.0], "cv_folds": 3, "seed": 0}
    fits = [root / f"{hemi}.h5" for hemi in ("lh", "rh")]
    for hemi, out in zip(("lh", "rh"), fits):
        fit_fmri(features, responses, hemi, "topy", spec, out, device="cpu")
    return responses, fits


def test_evaluate_reports_the_hierarchy_slope_and_draws_the_selectors(factortopy_fit, tmp_path):
    responses, fits = factortopy_fit
    out = {name: tmp_path / name for name in ("m.json", "t.tsv", "s.h5", "f.png", "p.png", "c.png", "b.png", "bs.png")}
    evaluate_subject(responses, fits, out["m.json"], out["t.tsv"], out["s.h5"], out["f.png"], tmp_path / "sub", "topy",
                     ["streams"], figure_preferred_block_out=out["p.png"], figure_training_out=out["c.png"],
                     figure_brain_scores_out=out["b.png"], figure_brain_selectors_out=out["bs.png"])
    metrics = json.loads(out["m.json"].read_text())["models"]["topy"]
    with h5py.File(fits[0]) as h5:
        weights = h5["layer_weights"][:]
    from tbdencoder.data.responses import read_rois

    expected = hierarchy_slope(weights, hierarchy_levels(read_rois(responses, "lh")))
    assert metrics["lh"]["hierarchy"]["slope"] == pytest.approx(expected["slope"])
    assert metrics["all"]["hierarchy"]["n_vertices"] == (metrics["lh"]["hierarchy"]["n_vertices"]
                                                         + metrics["rh"]["hierarchy"]["n_vertices"])
    assert Image.open(out["bs.png"]).text["Title"] == "subj01: FactorTopy selectors"
    assert Image.open(out["b.png"]).text["Title"] == "subj01: challenge score per vertex"
    assert Image.open(out["bs.png"]).size[1] > Image.open(out["b.png"]).size[1]  # four rows against one

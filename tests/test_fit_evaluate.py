"""fit + evaluate steps on a tiny simulated subject, with features that carry the ground truth."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tbdencoder.cli import main
from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.evaluate.evaluate_fmri import evaluate_subject
from tbdencoder.evaluate.fmri_fit import score_fit
from tbdencoder.evaluate.merge import merge_metrics
from tbdencoder.evaluate.metrics import roi_masks
from tbdencoder.evaluate.plots import NO_BLOCK_WEIGHTS, NO_TRAINING_CURVES
from tbdencoder.evaluate.brain_maps import NO_FACTORTOPY
from tbdencoder.fit.fmri import fit_fmri, load_fitted
from tbdencoder.io import write_strings
from conftest import seal


def _brain_maps(folder):
    """Where evaluate_subject draws its brain maps."""
    return {"figure_brain_scores_out": folder / "brain_scores.png", "figure_brain_selectors_out": folder / "brain_selectors.png"}


def _oracle_features(dataset, subject, responses_path, out_path):
    """A features file whose block01/global is the simulator's noiseless signal of both hemispheres."""
    ids = []
    for split in ("train", "test"):
        folder = dataset / subject / ("training_split/training_images" if split == "train" else "test_split/test_images")
        ids += [f"nsd-{p.stem.split('nsd-')[1]}" for p in sorted(folder.iterdir())]
    signal = np.concatenate([
        np.concatenate([np.load(dataset / f"ground_truth/{subject}/{hemi}_signal.npz")[split] for hemi in ("lh", "rh")], 1)
        for split in ("train", "test")
    ])
    with h5py.File(out_path, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        h5["layers/block01/global"] = signal.astype(np.float32)
        h5["layers/block01/grid"] = np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32)
    seal(out_path)


def _spec(family, tokens, alphas, cv_folds):
    spec = dict(family=family, backbone="test", layers=[1], tokens=tokens, alphas=alphas, cv_folds=cv_folds, seed=0)
    return {**spec, "roi_class": "streams"} if family == "roi_ridge" else spec


@pytest.fixture
def fitted(tiny_fmri_dataset, tmp_path):
    responses = tmp_path / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh", "rh"], ["prf-visualrois", "streams"], 0.2, 0, responses,
                 tmp_path / "stimuli.h5")
    features = tmp_path / "features.h5"
    _oracle_features(tiny_fmri_dataset, "subj01", responses, features)
    fits = []
    for hemi in ("lh", "rh"):
        for model, family, tokens in (("oracle", "ridge", ["global"]), ("noise", "ridge", ["grid"]),
                                      ("oracle_roi", "roi_ridge", ["global"])):
            out = tmp_path / f"fits/{hemi}_{model}.h5"
            fit_fmri(features, responses, hemi, model, _spec(family, tokens, [1e-3, 1.0, 1e3], 3), out, device="cpu")
            fits.append(out)
    return tmp_path, responses, fits


def test_fit_file_contents(fitted, tiny_fmri_dataset):
    tmp_path, responses, _ = fitted
    with h5py.File(tmp_path / "fits/lh_oracle.h5") as h5:
        assert h5["test_prediction"].shape == (12, 120)
        assert h5["submission_prediction"].shape == (12, 120)
        assert h5["alpha"].shape == (120,) and "coef" not in h5  # refit from the alphas on demand
        assert list(h5["feature_blocks"].asstr()[:]) == ["block01/global"]
        assert h5.attrs["model"] == "oracle" and h5.attrs["hemisphere"] == "lh"
    with h5py.File(tmp_path / "fits/lh_oracle_roi.h5") as h5:
        labels = h5py.File(responses)["lh/roi/streams"][:]
        alpha = h5["alpha"][:]
        for label in np.unique(labels):  # one alpha per ROI
            assert len(np.unique(alpha[labels == label])) == 1


def test_oracle_features_reach_the_noise_ceiling(fitted, tiny_fmri_dataset):
    """The noiseless signal predicts held-out data up to the noise: score near 100, unrelated features near 0."""
    tmp_path, responses, fits = fitted
    out = {k: tmp_path / f"out/{k}" for k in ("m.json", "t.tsv", "s.h5", "f.png", "sub", "p.png", "c.png")}
    evaluate_subject(responses, fits, out["m.json"], out["t.tsv"], out["s.h5"], out["f.png"], out["sub"],
                     "oracle", ["prf-visualrois", "streams"], figure_preferred_block_out=out["p.png"],
                     figure_training_out=out["c.png"], **_brain_maps(tmp_path))
    metrics = json.loads(out["m.json"].read_text())
    truth = pd.read_csv(tiny_fmri_dataset / "ground_truth/subj01/lh_vertices.csv")
    with h5py.File(out["s.h5"]) as h5:
        oracle = h5["oracle/lh/score"][:]
        noise = h5["noise/lh/score"][:]
    signal = truth["family"].to_numpy() != "none"
    # 12 test images: the sampling spread of r is large, so compare medians over vertices
    assert np.nanmedian(oracle[signal]) > 60
    assert np.nanmedian(noise[signal]) < 15
    assert metrics["models"]["oracle"]["all"]["challenge_score"] > 3 * metrics["models"]["noise"]["all"]["challenge_score"]
    table = pd.read_csv(out["t.tsv"], sep="\t")
    row = table.query("model == 'oracle' and hemisphere == 'lh' and roi_class == 'all'").iloc[0]
    assert row["mean_score"] == pytest.approx(metrics["models"]["oracle"]["lh"]["challenge_score"], rel=1e-4)
    submission = np.load(out["sub"] / "rh_pred_test.npy")
    with h5py.File(tmp_path / "fits/rh_oracle.h5") as h5:
        np.testing.assert_array_equal(submission, h5["submission_prediction"][:])
    merge_metrics([out["m.json"]], tmp_path / "metrics.json")
    merged = json.loads((tmp_path / "metrics.json").read_text())
    assert merged["summary"]["oracle"]["challenge_score"] == metrics["models"]["oracle"]["all"]["challenge_score"]
    # ridge families have neither block weights nor training curves: the figures say so
    assert Image.open(out["p.png"]).text["Title"] == \
        f"subj01: preferred feature block per ROI (banded ridge)\n{NO_BLOCK_WEIGHTS}"
    assert Image.open(out["c.png"]).text["Title"] == f"subj01: training curves\n{NO_TRAINING_CURVES}"


def test_unknown_submission_model_is_an_error(fitted):
    tmp_path, responses, fits = fitted
    with pytest.raises(ValueError, match="submission model 'nope'"):
        evaluate_subject(responses, fits, tmp_path / "m.json", tmp_path / "t.tsv", tmp_path / "s.h5",
                         tmp_path / "f.png", tmp_path / "sub", "nope", ["streams"],
                         figure_preferred_block_out=tmp_path / "p.png", figure_training_out=tmp_path / "c.png", **_brain_maps(tmp_path))


def test_training_curves_of_a_fits_file_reach_the_figure(fitted, tmp_path, captured):
    """A fits file with a `folds` group (as a gradient-trained family writes it): its curves, epochs 1-based."""
    _, responses, fits = fitted
    mlp = tmp_path / "lh_mlp.h5"
    mlp.write_bytes(fits[0].read_bytes())
    train, validation = np.array([1.0, 0.6, 0.4, 0.3], np.float32), np.array([1.0, 0.8, 0.7, 0.75], np.float32)
    with h5py.File(mlp, "r+") as h5:
        h5.attrs["model"] = "mlp"
        h5["folds/0/train_loss"] = train
        h5["folds/0/validation_loss"] = validation
        h5["folds/0/best_epoch"] = np.int64(2)
    out = tmp_path / "training.png"
    evaluate_subject(responses, [fits[0], mlp], tmp_path / "m.json", tmp_path / "t.tsv", tmp_path / "s.h5",
                     tmp_path / "f.png", tmp_path / "sub", "oracle", ["streams"],
                     figure_preferred_block_out=tmp_path / "p.png", figure_training_out=out, **_brain_maps(tmp_path))
    title, axes = captured[out]
    assert title == "subj01: training curves"
    assert [panel for panel, _ in axes] == ["mlp lh\nbest epoch 3"]
    lines = axes[0][1].lines
    np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])
    np.testing.assert_array_equal(lines[0].get_ydata(), train)
    np.testing.assert_array_equal(lines[1].get_ydata(), validation)
    assert (lines[2].get_xdata()[0], lines[2].get_ydata()[0]) == (3, pytest.approx(0.7))


def test_evaluation_opens_each_fits_file_once(fitted, tmp_path, h5_opens):
    """Scores, block weights, training curves and submission predictions come from one opening of each file."""
    _, responses, fits = fitted
    evaluate_subject(responses, fits, tmp_path / "m.json", tmp_path / "t.tsv", tmp_path / "s.h5", tmp_path / "f.png",
                     tmp_path / "sub", "oracle", ["streams"], figure_preferred_block_out=tmp_path / "p.png",
                     figure_training_out=tmp_path / "c.png", **_brain_maps(tmp_path))
    assert {path.name: h5_opens[path.resolve()] for path in fits} == {path.name: 1 for path in fits}


def test_cli_evaluate_passes_the_figure_paths(fitted, tmp_path):
    _, responses, fits = fitted
    out = {k: tmp_path / k for k in ("m.json", "t.tsv", "s.h5", "f.png", "sub", "p.png", "c.png", "b.png", "bs.png")}
    args = ["evaluate", "--responses", str(responses), "--fits", *map(str, fits), "--metrics-out", str(out["m.json"]),
            "--table-out", str(out["t.tsv"]), "--scores-out", str(out["s.h5"]), "--figure-out", str(out["f.png"]),
            "--submission-dir", str(out["sub"]), "--settings",
            json.dumps({"fmri.evaluation": {"submission_model": "oracle", "figure_roi_classes": ["streams"]}}),
            "--figure-preferred-block", str(out["p.png"]), "--figure-training", str(out["c.png"]),
            "--figure-brain-scores", str(out["b.png"]), "--figure-brain-selectors", str(out["bs.png"])]
    assert main(args) == 0
    assert Image.open(out["p.png"]).text["Title"].endswith(NO_BLOCK_WEIGHTS)
    assert Image.open(out["c.png"]).text["Title"].endswith(NO_TRAINING_CURVES)
    assert Image.open(out["bs.png"]).text["Title"].endswith(NO_FACTORTOPY)
    assert "challenge score per vertex" in Image.open(out["b.png"]).text["Title"]
    with pytest.raises(SystemExit):  # the new flags are required
        main(args[:-2])


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    settings = {"fmri.hemispheres": ["lh"], "fmri.roi_classes": ["streams"], "fmri.heldout_fraction": 0.1,
                "fmri.split_seed": 0, "fmri.fsaverage_dir": None}
    args = ["prepare-fmri", "--dataset-dir", str(tmp_path), "--subject", "subj01", "--responses-out",
            str(tmp_path / "r.h5"), "--stimuli-out", str(tmp_path / "s.h5"), "--settings", json.dumps(settings)]
    assert main(args) == 1
    assert "subj01: subject folder not found" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()
    # a bad setting is refused before the step runs, naming its key
    assert main([*args[:-1], json.dumps({**settings, "fmri.heldout_fraction": 1.5})]) == 1
    assert "key 'fmri.heldout_fraction': 1.5 is greater than or equal to the maximum of 1" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["oracle", "oracle_roi"])
def test_stored_fit_reloads_and_predicts_what_it_predicted(fitted, model, capsys):
    """Alphas + training data give back the fitted model: its test predictions, through the API and the CLI."""
    tmp_path, responses, _ = fitted
    fit_path = tmp_path / f"fits/rh_{model}.h5"
    with h5py.File(fit_path) as h5:
        stored = h5["test_prediction"][:]
    test_ids = list(h5py.File(responses)["test_stimulus_id"].asstr()[:])
    again = load_fitted(fit_path, device="cpu").predict(tmp_path / "features.h5", test_ids)
    np.testing.assert_allclose(again, stored, rtol=1e-4, atol=1e-4 * np.abs(stored).max())
    out = tmp_path / "predicted.h5"
    assert main(["predict", "--fit", str(fit_path), "--features", str(tmp_path / "features.h5"), "--device", "cpu",
                 "--out", str(out)]) == 0
    with h5py.File(out) as h5:
        ids = list(h5["stimulus_id"].asstr()[:])
        rows = [ids.index(sid) for sid in test_ids]
        np.testing.assert_allclose(h5["prediction"][:][rows], stored, rtol=1e-4, atol=1e-4 * np.abs(stored).max())


def test_reload_refuses_training_data_that_changed(fitted):
    tmp_path, responses, _ = fitted
    with h5py.File(responses, "r+") as h5:
        h5["lh/train"][0, 0] += 1.0
    with pytest.raises(ValueError, match="not what the model was fitted on"):
        load_fitted(tmp_path / "fits/lh_oracle.h5", device="cpu")


def test_folds_that_leave_one_validation_row_are_refused(fitted):
    tmp_path, responses, _ = fitted
    n_train = len(h5py.File(responses)["train_stimulus_id"])
    for folds in (n_train, n_train + 5):
        with pytest.raises(ValueError, match=rf"fit.cv_folds .* = {folds}: {n_train} training rows"):
            fit_fmri(tmp_path / "features.h5", responses, "lh", "x", _spec("ridge", ["global"], [1.0], folds),
                     tmp_path / "x.h5", device="cpu")
    assert not (tmp_path / "x.h5").exists()


def test_fixed_split_scores_are_unbiased_under_the_null(tmp_path):
    """Targets independent of the features: the mean test r over vertices is within 2 SE of 0."""
    rng = np.random.default_rng(3)
    n_train, n_test, n_vertices = 300, 100, 2000
    ids = [f"nsd-{i:05d}" for i in range(n_train + n_test)]
    features, responses = tmp_path / "features.h5", tmp_path / "responses.h5"
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        h5["layers/block01/global"] = rng.standard_normal((len(ids), 50)).astype(np.float32)
    with h5py.File(responses, "w") as h5:
        h5.attrs.update(subject="subj01", eval_split="test", source="null")
        write_strings(h5, "train_stimulus_id", ids[:n_train])
        write_strings(h5, "test_stimulus_id", ids[n_train:])
        write_strings(h5, "submission_stimulus_id", ids[n_train:])
        h5["lh/train"] = rng.standard_normal((n_train, n_vertices)).astype(np.float32) + 5.0
        h5["lh/test"] = rng.standard_normal((n_test, n_vertices)).astype(np.float32) - 5.0
        h5["lh/fsaverage_index"] = np.arange(n_vertices)
    fit_fmri(features, responses, "lh", "null", _spec("ridge", ["global"], [1.0, 100.0, 1e4], 5), tmp_path / "fit.h5",
             device="cpu")
    r = score_fit(responses, tmp_path / "fit.h5")[2]
    assert abs(r.mean()) < 2 * r.std() / np.sqrt(r.size), r.mean()


def test_banded_ridge_fit_reports_block_weights_and_reloads(tiny_fmri_dataset, tmp_path, captured):
    """Banded ridge through the fMRI step: the oracle block (the simulator's signal) outweighs a noise block for
    most vertices with signal (40 training images: a noisy choice; tests/test_banded_ridge_solver.py checks the
    90 % recovery on adequate data); the stored weights and alphas reload the model."""
    responses = tmp_path / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh", "rh"], ["streams"], 0.2, 0, responses, tmp_path / "stimuli.h5")
    features = tmp_path / "features.h5"
    _oracle_features(tiny_fmri_dataset, "subj01", responses, features)
    out = tmp_path / "banded.h5"
    fit_fmri(features, responses, "lh", "banded", {**_spec("banded_ridge", ["global", "grid"], [1e-3, 1.0, 1e3], 3),
                                                   "n_gammas": 10}, out, device="cpu")
    truth = pd.read_csv(tiny_fmri_dataset / "ground_truth/subj01/lh_vertices.csv")
    with h5py.File(out) as h5:
        weight = h5["block_weight"][:]
        stored = h5["test_prediction"][:]
        assert list(h5["feature_blocks"].asstr()[:]) == ["block01/global", "block01/grid"]
    signal = truth["family"].to_numpy() != "none"
    assert weight.shape == (120, 2) and (weight[signal].argmax(1) == 0).mean() > 0.6
    np.testing.assert_allclose(weight.sum(1), 1.0, rtol=1e-5)
    test_ids = list(h5py.File(responses)["test_stimulus_id"].asstr()[:])
    again = load_fitted(out, device="cpu").predict(features, test_ids)
    np.testing.assert_allclose(again, stored, rtol=1e-3, atol=1e-3 * np.abs(stored).max())
    # evaluation reports each vertex's preferred block
    paths = {k: tmp_path / f"eval/{k}" for k in ("m.json", "t.tsv", "s.h5", "f.png", "sub", "p.png", "c.png")}
    evaluate_subject(responses, [out], paths["m.json"], paths["t.tsv"], paths["s.h5"], paths["f.png"], paths["sub"],
                     "banded", ["streams"], figure_preferred_block_out=paths["p.png"], figure_training_out=paths["c.png"], **_brain_maps(tmp_path))
    summary = json.loads(paths["m.json"].read_text())["models"]["banded"]["lh"]["block_weights"]
    assert summary["preferred"]["block01/global"] == pytest.approx((weight.argmax(1) == 0).mean())
    with h5py.File(paths["s.h5"]) as h5:
        np.testing.assert_array_equal(h5["banded/lh/preferred_block"][:], weight.argmax(1))
        assert list(h5["banded/lh/preferred_block"].attrs["blocks"]) == ["block01/global", "block01/grid"]
    # the preferred-block figure: per ROI of `streams`, the share of its vertices preferring each block
    title, axes = captured[paths["p.png"]]
    assert title == "subj01: preferred feature block per ROI (banded ridge)"
    panel, ax = axes[0]
    assert panel.startswith("banded lh:")
    with h5py.File(responses) as h5:
        labels = h5["lh/roi/streams"][:]
        names = {int(k): v for k, v in json.loads(h5["lh/roi/streams"].attrs["names"]).items()}
    masks = [np.ones(len(weight), bool)] + [mask for _, mask in roi_masks(labels, names)]
    expected = np.array([[(weight[mask].argmax(1) == b).mean() for mask in masks] for b in (0, 1)])
    heights = np.array([p.get_height() for p in ax.patches]).reshape(2, len(masks))
    np.testing.assert_allclose(heights, expected)
    assert [t.get_text() for t in ax.get_xticklabels()][0] == "all vertices (120)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["block01/global", "block01/grid"]


def test_mlp_fit_stores_its_curves_and_network_and_reloads_without_training(tiny_fmri_dataset, tmp_path,
                                                                             monkeypatch):
    """The MLP through the fMRI step from its spec: loss curves and weights under folds/0, predictions that
    follow the oracle features, a reload that trains nothing and predicts what the fit predicted."""
    responses = tmp_path / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh"], ["streams"], 0.2, 0, responses, tmp_path / "stimuli.h5")
    features = tmp_path / "features.h5"
    _oracle_features(tiny_fmri_dataset, "subj01", responses, features)
    out = tmp_path / "mlp.h5"
    spec = {**_spec("mlp", ["global"], [1.0], 3), "hidden_units": 32, "max_epochs": 150, "patience": 15,
            "learning_rate": 3e-3}
    fit_fmri(features, responses, "lh", "mlp", spec, out, device="cpu")
    with h5py.File(out) as h5:
        curves = {key: h5[f"folds/0/{key}"][()] for key in ("train_loss", "validation_loss", "best_epoch")}
        stored = h5["test_prediction"][:]
        assert h5["validation_r2"].shape == (120,) and h5["folds/0/weights/0.weight"].shape == (32, 240)
    assert len(curves["train_loss"]) == len(curves["validation_loss"]) > curves["best_epoch"]
    assert curves["validation_loss"][curves["best_epoch"]] == curves["validation_loss"].min()
    assert not (tmp_path / "mlp.h5.checkpoints").exists()  # removed once the fits file is written
    truth = pd.read_csv(tiny_fmri_dataset / "ground_truth/subj01/lh_vertices.csv")
    r = score_fit(responses, out)[2]
    assert np.median(r[truth["family"].to_numpy() != "none"]) > 0.3
    monkeypatch.setattr("tbdencoder.models.mlp.train", None)  # reloading must not train
    test_ids = list(h5py.File(responses)["test_stimulus_id"].asstr()[:])
    np.testing.assert_allclose(load_fitted(out, device="cpu").predict(features, test_ids), stored, rtol=1e-5,
                               atol=1e-5)


def test_a_model_combining_two_backbones_reports_each_ones_share_and_reloads(tiny_fmri_dataset, tmp_path):
    """Banded ridge over the blocks of two backbones' files: the one carrying the simulator's signal takes most
    of the weight of vertices with signal; evaluation reports each backbone's share; reloading takes both files."""
    responses = tmp_path / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh"], ["streams"], 0.2, 0, responses, tmp_path / "stimuli.h5")
    oracle, noise = tmp_path / "oracle.h5", tmp_path / "noise.h5"
    _oracle_features(tiny_fmri_dataset, "subj01", responses, oracle)
    with h5py.File(oracle) as source, h5py.File(noise, "w") as h5:
        write_strings(h5, "stimulus_id", source["stimulus_id"].asstr()[:])
        h5["layers/features.2/global"] = np.random.default_rng(1).standard_normal((len(source["stimulus_id"]), 30),
                                                                                   dtype=np.float32)
        h5.attrs["random_init"] = True
    spec = {**_spec("banded_ridge", ["global"], [1e-3, 1.0, 1e3], 3), "n_gammas": 10,
            "backbone": ["clip", "alexnet"], "layers": {"clip": [1], "alexnet": ["features.2"]}}
    out = tmp_path / "combined.h5"
    fit_fmri([oracle, noise], responses, "lh", "combined", spec, out, device="cpu")
    with h5py.File(out) as h5:
        assert list(h5["feature_blocks"].asstr()[:]) == ["clip:block01/global", "alexnet:features.2/global"]
        weight, stored = h5["block_weight"][:], h5["test_prediction"][:]
        assert h5.attrs["random_init_features"]  # one of the two backbones is random-init
    truth = pd.read_csv(tiny_fmri_dataset / "ground_truth/subj01/lh_vertices.csv")
    signal = truth["family"].to_numpy() != "none"
    assert weight[signal, 0].mean() > 0.6
    paths = {k: tmp_path / f"eval/{k}" for k in ("m.json", "t.tsv", "s.h5", "f.png", "sub", "pb.png", "tr.png")}
    evaluate_subject(responses, [out], paths["m.json"], paths["t.tsv"], paths["s.h5"], paths["f.png"], paths["sub"],
                     "combined", ["streams"], figure_preferred_block_out=paths["pb.png"],
                     figure_training_out=paths["tr.png"], **_brain_maps(tmp_path))
    share = json.loads(paths["m.json"].read_text())["models"]["combined"]["lh"]["block_weights"]["share"]
    assert share == pytest.approx({"clip": weight[:, 0].mean(), "alexnet": weight[:, 1].mean()}, rel=1e-5)
    test_ids = list(h5py.File(responses)["test_stimulus_id"].asstr()[:])
    again = load_fitted(out, device="cpu").predict([oracle, noise], test_ids)
    np.testing.assert_allclose(again, stored, rtol=1e-3, atol=1e-3 * np.abs(stored).max())

"""MEG evaluation: repeat pairs, noise ceiling, per-model metrics and figures on synthetic files of docs/meg.md."""

import dataclasses
import json

import h5py
import matplotlib.pyplot as plt
import mne
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tbdencoder.cli import main
from tbdencoder.data.crops import DEFAULT_SCREEN
from tbdencoder.data.meg import read_epochs
from tbdencoder.evaluate.evaluate_meg import evaluate_meg_subject
from tbdencoder.evaluate.meg_fit import MegFit, read_fit
from tbdencoder.evaluate.meg_plots import block_weight_maps
from tbdencoder.evaluate.merge import meg_summary
from tbdencoder.evaluate.plots import NO_BLOCK_WEIGHTS, NO_TRAINING_CURVES
from tbdencoder.evaluate.noise_ceiling_meg import noise_ceiling, repeat_pairs
from tbdencoder.io import write_strings

SFREQ_HZ = 50.0
TIMES_S = np.round(np.arange(-0.1, 0.4 + 1e-9, 1 / SFREQ_HZ), 6)  # 26 samples
MAX_DISTANCE_PX = 10.0
FOVEAL_PEAK_S, PARAFOVEAL_PEAK_S = 0.12, 0.22
N_IMPROVED = 150  # channels where dual beats foveal by DELTA_UP; the others lose DELTA_DOWN
DELTA_UP, DELTA_DOWN = 0.02, 0.01
FIGURES = ("r_time", "topomap", "dual_vs_foveal", "preferred_block", "training")
BLOCKS = ["foveal:block06/global", "parafoveal:block06/global"]
N_PARAFOVEAL = 51  # channels whose largest block weight at the peak is the parafoveal block's (the dual fit)


def neuromag_grads() -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(names, loc (204, 12), coil_type (204,), dev_head_t (4, 4)): Vectorview planar gradiometers, the layout's
    positions mapped onto a 12 cm sphere, MEGxxx2 along the polar and MEGxxx3 along the azimuthal direction."""
    layout = mne.channels.read_layout("Vectorview-all")
    centres = {}
    for name, pos in zip(layout.names, layout.pos):
        if name[-1] in "23":
            centres.setdefault(name.replace(" ", "")[:-1], []).append(pos[:2] + pos[2:] / 2)
    names, loc = [], []
    xy = np.array([np.mean(c, 0) for c in centres.values()])
    xy -= (xy.max(0) + xy.min(0)) / 2
    theta = np.radians(100) * np.linalg.norm(xy, axis=1) / np.linalg.norm(xy, axis=1).max()
    phi = np.arctan2(xy[:, 1], xy[:, 0])
    for stem, th, ph in zip(centres, theta, phi):
        radial = np.array([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)])
        e_theta = np.array([np.cos(th) * np.cos(ph), np.cos(th) * np.sin(ph), -np.sin(th)])
        e_phi = np.array([-np.sin(ph), np.cos(ph), 0.0])
        for suffix, ex, ey in (("2", e_theta, e_phi), ("3", e_phi, -e_theta)):
            names.append(stem + suffix)
            loc.append(np.concatenate([0.12 * radial, ex, ey, radial]))
    dev_head_t = np.eye(4)
    dev_head_t[:3, 3] = [0.0, 0.01, 0.04]
    return names, np.array(loc), np.full(len(names), 3012), dev_head_t


def test_neuromag_grads_builder_is_a_vectorview_array():
    names, loc, coil_type, _ = neuromag_grads()
    assert len(names) == len(set(names)) == 204 and loc.shape == (204, 12)
    assert {n[-1] for n in names} == {"2", "3"} and all(n.startswith("MEG") for n in names)
    np.testing.assert_allclose(np.linalg.norm(loc[:, :3], axis=1), 0.12)


def write_epochs(path, data, fixations: pd.DataFrame, subject="sub-01", ch_names=None):
    """epochs.h5 as docs/meg.md (plus the `columns` attr of data.meg)."""
    names, loc, coil_type, dev_head_t = neuromag_grads()
    with h5py.File(path, "w") as h5:
        onset = h5.create_dataset("grad/onset", data=data.astype(np.float32))
        onset.attrs["times"] = TIMES_S
        onset.attrs["sfreq_hz"] = SFREQ_HZ
        write_strings(h5, "fixation_id", fixations["fixation_id"])
        group = h5.create_group("fixations")
        group.attrs["columns"] = list(fixations.columns)
        for name in fixations.columns:
            if pd.api.types.is_numeric_dtype(fixations[name]):
                group.create_dataset(name, data=fixations[name].to_numpy())
            else:
                write_strings(group, name, fixations[name].astype(str))
        write_strings(h5, "channels/name", ch_names or names)
        h5["channels/loc"] = loc
        h5["channels/coil_type"] = coil_type
        h5["dev_head_t"] = dev_head_t
        h5.attrs.update(subject=subject, l_freq_hz=0.1, h_freq_hz=20.0, line_freq_hz=50.0, tmin_s=-0.1,
                        tmax_s=0.4, baseline_s="null", reject_grad=np.nan, n_rejected=0, n_outside_recording=0)


def write_fit(path, model, prediction, fixation_ids, folds, scenes=None, subject="sub-01", scheme="scene_cv",
              streams=("foveal",), ch_names=None, random_init=False, block_weight=None, curves=None):
    """A fits file as docs/meg.md, with `block_weight` (ch, t, blocks BLOCKS) as banded ridge writes it and
    `curves` ({fold: (train_loss, validation_loss, best_epoch)}) as a gradient-trained family does; `scenes`
    (default: one per fold)."""
    names = ch_names or neuromag_grads()[0]
    with h5py.File(path, "w") as h5:
        write_strings(h5, "fixation_id", fixation_ids)
        write_strings(h5, "scene_id", [f"fold{f}" for f in folds] if scenes is None else scenes)
        h5["prediction"] = prediction.astype(np.float32)
        h5["fold"] = folds
        h5["alpha"] = np.ones(prediction.shape[1:])
        h5.attrs.update(subject=subject, model=model, streams=list(streams), backbone="vit_tiny", layers=[6],
                        tokens=["global"], times=TIMES_S, ch_names=list(names), scheme=scheme, n_folds=5,
                        random_init_features=random_init)
        if block_weight is not None:
            h5["block_weight"] = block_weight
            write_strings(h5, "feature_blocks", BLOCKS)
        for fold, (train, validation, best) in (curves or {}).items():
            h5[f"folds/{fold}/train_loss"] = np.asarray(train, np.float32)
            h5[f"folds/{fold}/validation_loss"] = np.asarray(validation, np.float32)
            h5[f"folds/{fold}/best_epoch"] = np.int64(best)


def predictions_with_r(target, r, folds, rng):
    """Predictions whose within-fold r with `target` (n, ch, t) is exactly `r` (ch, t) over any set of folds.

    Per fold: r * y + sqrt(1 - r^2) * e with y the fold-centred target and e fold-centred noise orthogonal to y
    with y's norm; plus a random offset per fold, which the within-fold r ignores.
    """
    prediction = np.empty(target.shape)
    for fold in np.unique(folds):
        rows = folds == fold
        y = (target[rows] - target[rows].mean(0)) / target.std()
        e = rng.standard_normal(y.shape)
        e -= e.mean(0)
        e -= (e * y).sum(0) / (y * y).sum(0) * y
        e *= np.sqrt((y * y).sum(0) / (e * e).sum(0))
        prediction[rows] = r * y + np.sqrt(1 - r**2) * e + rng.standard_normal()
    return prediction


def bump(t_s, peak_s, width_s=0.04):
    return np.exp(-0.5 * ((t_s - peak_s) / width_s) ** 2)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Epochs with repeated fixations of known reliability and three fits with known r."""
    rng = np.random.default_rng(1)
    n_scenes, n_trials, n_spots, n_explore = 25, 4, 4, 2
    rows = []
    for scene in range(n_scenes):
        spots = np.column_stack([150 + 200 * np.arange(n_spots), 100 + 70 * (np.arange(n_spots) % 2)])
        for k in range(n_trials):
            session, trial = 1 + k % 2, 10 * scene + k // 2  # the same trial number in both sessions
            gaze = [(s, *(spots[s] + rng.uniform(-2, 2, 2))) for s in range(n_spots)]
            gaze += [(-1, 100 + 200 * e, 500 + 60 * k) for e in range(n_explore)]  # > 60 px from any other
            for fix, (spot, gx, gy) in enumerate(gaze, start=1):
                rows.append(dict(fixation_id=f"sub-01_ses-{session}_trial-{trial:03d}_fix-{fix:02d}", subject=1,
                                 session=session, trial=trial, fix_sequence=fix, sceneID=f"scene{scene:03d}",
                                 gx=gx, gy=gy, spot=spot))
    fixations = pd.DataFrame(rows)
    n_ch, n_t = 204, len(TIMES_S)
    signal_var = np.linspace(0.5, 2.0, n_ch)[:, None] * (0.3 + 2 * bump(TIMES_S, 0.15, 0.08))[None, :]
    signals = {}
    data = np.empty((len(fixations), n_ch, n_t))
    for i, row in fixations.iterrows():
        key = (row.sceneID, row.spot) if row.spot >= 0 else i
        if key not in signals:
            signals[key] = rng.standard_normal((n_ch, n_t)) * np.sqrt(signal_var)
        data[i] = signals[key] + rng.standard_normal((n_ch, n_t))
    root = tmp_path_factory.mktemp("meg")
    epochs = root / "epochs.h5"
    write_epochs(epochs, 1e-12 * data, fixations.drop(columns="spot"))

    amplitude = np.linspace(0.05, 0.4, n_ch)
    amplitude[37] = 0.55
    foveal = amplitude[:, None] * bump(TIMES_S, FOVEAL_PEAK_S)[None, :]
    delta = np.where(np.arange(n_ch) < N_IMPROVED, DELTA_UP, -DELTA_DOWN)[:, None] * np.ones(n_t)
    parafoveal = 0.1 * bump(TIMES_S, PARAFOVEAL_PEAK_S)[None, :] * np.ones((n_ch, 1))
    r = {"foveal": foveal, "dual": foveal + delta, "parafoveal": parafoveal}
    fitted = rng.permutation(len(fixations) - 10)  # the last 10 fixations have no fit; rows in another order
    ids = fixations["fixation_id"].to_numpy()[fitted]
    scenes = fixations["sceneID"].to_numpy()[fitted]
    folds = fixations["sceneID"].str[-3:].astype(int).to_numpy()[fitted] % 5
    # dual is a banded fit: at its peak (the foveal peak) N_PARAFOVEAL channels weigh the parafoveal block most,
    # at every other time all channels weigh the foveal block most
    block_weight = np.stack([np.full((n_ch, n_t), 0.7), np.full((n_ch, n_t), 0.3)], -1)
    block_weight[:N_PARAFOVEAL, int(np.argmin(np.abs(TIMES_S - FOVEAL_PEAK_S)))] = [0.2, 0.8]
    # parafoveal is gradient-trained: training curves per outer fold
    curves = {fold: (np.linspace(1.0, 0.5, 8 + fold), np.linspace(1.0, 0.8, 8 + fold) + 0.01 * fold, 3 + fold)
              for fold in range(5)}
    fits = []
    for model, values in r.items():
        fits.append(root / f"{model}.h5")
        write_fit(fits[-1], model, predictions_with_r(data[fitted], values, folds, rng), ids, folds, scenes,
                  streams=["foveal", "parafoveal"] if model == "dual" else [model], random_init=model == "parafoveal",
                  block_weight=block_weight if model == "dual" else None,
                  curves=curves if model == "parafoveal" else None)
    figures = {key: root / f"figure_{key}.png" for key in FIGURES}
    evaluate_meg_subject(epochs, fits, root / "metrics.json", root / "scores.h5", figures,
                         max_distance_px=MAX_DISTANCE_PX, min_pairs=20, n_best_sensors=5)
    return dict(root=root, epochs=epochs, fits=fits, figures=figures, fixations=fixations, r=r, data=data,
                ids=ids, folds=folds, scenes=scenes, block_weight=block_weight, curves=curves,
                truth_nc=np.sqrt(signal_var / (signal_var + 1)), n_pairs=n_scenes * n_spots * n_trials // 2,
                metrics=json.loads((root / "metrics.json").read_text()))


def test_repeat_pairs_rules():
    rows = [  # subject, session, trial, sceneID, gx, gy
        (1, 1, 1, "A", 100, 100),  # 0: pairs with 2 (1 px), the closest candidate
        (1, 1, 2, "A", 103, 100),  # 1: 3 px from 0 and 2 px from 2, but both are taken first
        (1, 1, 3, "A", 101, 100),  # 2
        (1, 1, 1, "A", 100, 101),  # 3: 1 px from 0 but the same trial; 2 is taken, so it pairs with 1 (3.2 px)
        (1, 1, 4, "B", 100, 100),  # 4: same place, other scene
        (1, 1, 5, "B", 100, 100 + MAX_DISTANCE_PX + 0.5),  # 5: too far from 4
        (1, 1, 7, "C", 500, 500),  # 6: trial 7 of session 1 ...
        (1, 2, 7, "C", 500, 505),  # 7: ... and of session 2 are different trials
        (2, 1, 8, "C", 500, 502),  # 8: another subject never pairs, though closest
        (1, 1, 9, "C", np.nan, 500),  # 9: no gaze
    ]
    table = pd.DataFrame(rows, columns=["subject", "session", "trial", "sceneID", "gx", "gy"])
    pairs = repeat_pairs(table, MAX_DISTANCE_PX)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 2), (1, 3), (6, 7)]
    assert repeat_pairs(table, 0.5).tolist() == []
    with pytest.raises(KeyError, match="sceneID"):
        repeat_pairs(table.drop(columns="sceneID"), MAX_DISTANCE_PX)


def test_repeat_pairs_on_simulated_fixations(synthetic):
    fixations = synthetic["fixations"]
    pairs = repeat_pairs(fixations, MAX_DISTANCE_PX)
    assert len(pairs) == synthetic["n_pairs"]
    assert len(np.unique(pairs)) == pairs.size  # each fixation at most once
    a, b = fixations.iloc[pairs[:, 0]], fixations.iloc[pairs[:, 1]]
    assert (a.sceneID.to_numpy() == b.sceneID.to_numpy()).all()
    assert ((a.session.to_numpy() != b.session.to_numpy()) | (a.trial.to_numpy() != b.trial.to_numpy())).all()
    distance_px = np.hypot(a.gx.to_numpy() - b.gx.to_numpy(), a.gy.to_numpy() - b.gy.to_numpy())
    assert (distance_px <= MAX_DISTANCE_PX).all()
    assert (a.spot.to_numpy() == b.spot.to_numpy()).all() and (a.spot.to_numpy() >= 0).all()


def test_noise_ceiling_matches_ground_truth(synthetic):
    with h5py.File(synthetic["root"] / "scores.h5", "r") as h5:
        nc = h5["noise_ceiling"][:]
        assert h5.attrs["n_pairs"] == synthetic["n_pairs"]
        assert h5["repeat_pairs"].shape == (synthetic["n_pairs"], 2)
    truth = synthetic["truth_nc"]
    assert nc.shape == truth.shape
    assert np.abs(nc.mean(0) - truth.mean(0)).max() < 0.05
    assert np.median(np.abs(nc - truth)) < 0.05


def test_noise_ceiling_needs_min_pairs(logs):
    rng = np.random.default_rng(0)
    epochs = rng.standard_normal((8, 3, 4))
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    assert np.isnan(noise_ceiling(epochs, pairs, min_pairs=4)).all()
    assert "only 3 repeat pairs" in logs.text
    assert np.isfinite(noise_ceiling(epochs, pairs, min_pairs=3)).all()
    same = noise_ceiling(np.repeat(epochs[:4], 2, axis=0), np.array([[0, 1], [2, 3], [4, 5], [6, 7]]), min_pairs=2)
    np.testing.assert_allclose(same, 1.0)


def test_metrics_json(synthetic):
    metrics, r = synthetic["metrics"], synthetic["r"]
    names = neuromag_grads()[0]
    assert metrics["subject"] == "sub-01" and metrics["n_pairs"] == synthetic["n_pairs"]
    assert metrics["random_init_features"] is True
    np.testing.assert_allclose(metrics["times"], TIMES_S)
    assert set(metrics["models"]) == {"foveal", "dual", "parafoveal"}
    foveal = metrics["models"]["foveal"]
    assert foveal["scheme"] == "scene_cv" and foveal["streams"] == ["foveal"]
    assert metrics["models"]["dual"]["streams"] == ["foveal", "parafoveal"]
    assert foveal["n_fixations"] == len(synthetic["fixations"]) - 10
    assert foveal["peak_latency_s"] == pytest.approx(FOVEAL_PEAK_S)
    assert metrics["models"]["parafoveal"]["peak_latency_s"] == pytest.approx(PARAFOVEAL_PEAK_S)
    assert foveal["mean_r_at_peak"] == pytest.approx(r["foveal"].mean(0).max())
    assert foveal["best_sensor"] == names[37] and foveal["best_sensor_r_optimistic"] == pytest.approx(0.55)
    assert foveal["best_sensor_latency_s"] == pytest.approx(FOVEAL_PEAK_S)
    best = [37, 203, 202, 201, 200]  # the highest peak r (n_best_sensors = 5)
    assert foveal["n_best_sensors"] == 5
    assert foveal["best_sensors_r_at_peak"] == pytest.approx(r["foveal"][best].max(1).mean())
    np.testing.assert_allclose(foveal["mean_r_over_time"], r["foveal"].mean(0), atol=1e-6)
    with h5py.File(synthetic["root"] / "scores.h5", "r") as h5:
        nc = h5["noise_ceiling"][:].astype(np.float64)
        np.testing.assert_allclose(h5["r/dual"][:], r["dual"], atol=1e-6)
        assert [n.decode() for n in h5["ch_names"][:]] == names
        np.testing.assert_allclose(h5["times"][:], TIMES_S)
    peak = int(np.argmin(np.abs(TIMES_S - FOVEAL_PEAK_S)))
    assert foveal["median_noise_ceiling_at_peak"] == pytest.approx(np.median(nc[:, peak]), rel=1e-5)
    assert foveal["mean_r_at_peak_over_nc"] == pytest.approx(r["foveal"][:, peak].mean() / nc[:, peak].mean(), rel=1e-5)
    reliable = np.argsort(nc[:, peak])[::-1][:foveal["n_reliable_sensors"]]
    assert foveal["n_reliable_sensors"] == round(0.1 * nc.shape[0])
    assert foveal["mean_r_at_peak_reliable_sensors"] == pytest.approx(r["foveal"][reliable, peak].mean(), rel=1e-5)


def test_dual_minus_foveal_by_hand(synthetic):
    comparison = synthetic["metrics"]["dual_minus_foveal"]
    assert comparison["reference_latency_s"] == pytest.approx(FOVEAL_PEAK_S)
    expected = (N_IMPROVED * DELTA_UP - (204 - N_IMPROVED) * DELTA_DOWN) / 204
    assert comparison["mean_delta_r_at_peak"] == pytest.approx(expected)
    assert comparison["fraction_cells_improved"] == pytest.approx(N_IMPROVED / 204)


def test_figures_are_nontrivial_pngs(synthetic):
    for path in synthetic["figures"].values():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, path
        image = plt.imread(path)
        assert image[..., :3].std() > 0.05, path  # not a blank canvas


def test_block_weights_at_peak_by_hand(synthetic):
    """The dual fit's block weights at its peak: N_PARAFOVEAL of 204 channels prefer the parafoveal block there."""
    summary = synthetic["metrics"]["models"]["dual"]["block_weights_at_peak"]
    assert summary["preferred"] == pytest.approx({BLOCKS[0]: 1 - N_PARAFOVEAL / 204, BLOCKS[1]: N_PARAFOVEAL / 204})
    assert "block_weights_at_peak" not in synthetic["metrics"]["models"]["foveal"]
    with h5py.File(synthetic["root"] / "scores.h5") as h5:
        np.testing.assert_array_equal(h5["preferred_block/dual"][:], synthetic["block_weight"].argmax(-1))


def test_block_weight_maps_by_hand():
    """Two gradiometer pairs x 3 times x 2 blocks: the maps at the model's peak (of its 4 best sensors: all, whose
    mean peaks at t 1; its 2 best alone peak at t 2), each pair's mean."""
    r = np.array([[0.1, 0.3, 0.2], [0.0, 0.2, 0.4], [0.1, 0.1, 0.0], [0.2, 0.2, 0.0]])  # mean over sensors peaks at t 1
    weight = np.zeros((4, 3, 2))
    weight[..., 0] = 1.0  # block 0 everywhere but at t 1:
    weight[:, 1] = [[0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8]]
    fit = MegFit(path=None, model="banded", scheme="scene_cv", streams=["foveal"], subject="sub-01",
                 random_init_features=False, n_fixations=10, r=r, r_halves=np.stack([r, r]), block_weight=weight,
                 block_names=BLOCKS)
    assert block_weight_maps(fit, np.array([[0, 1], [2, 3]]), 2)[0] == 2
    peak, pair_weight, preferred = block_weight_maps(fit, np.array([[0, 1], [2, 3]]), 4)
    assert peak == 1
    np.testing.assert_allclose(pair_weight, [[0.6, 0.4], [0.3, 0.7]])
    np.testing.assert_allclose(preferred, [0.25, 0.75])


def test_training_curves_are_read_with_the_fit(synthetic):
    data, fixation_ids, times_s, _ = read_epochs(synthetic["epochs"])
    fit = read_fit(synthetic["fits"][2], data, fixation_ids, neuromag_grads()[0], np.asarray(times_s, np.float64))
    assert fit.model == "parafoveal" and list(fit.training_curves) == list(range(5))
    for fold, (train, validation, best) in synthetic["curves"].items():
        np.testing.assert_allclose(fit.training_curves[fold].train_loss, train, rtol=1e-6)
        np.testing.assert_allclose(fit.training_curves[fold].validation_loss, validation, rtol=1e-6)
        assert fit.training_curves[fold].best_epoch == best
    assert read_fit(synthetic["fits"][0], data, fixation_ids, neuromag_grads()[0],
                    np.asarray(times_s, np.float64)).training_curves == {}


def test_evaluation_opens_each_fits_file_once(synthetic, tmp_path, h5_opens):
    """Predictions, block weights and training curves come from one opening of each fits file."""
    figures = {key: tmp_path / f"{key}.png" for key in FIGURES}
    evaluate_meg_subject(synthetic["epochs"], synthetic["fits"], tmp_path / "m.json", tmp_path / "s.h5", figures,
                         max_distance_px=MAX_DISTANCE_PX, min_pairs=20)
    assert {path.name: h5_opens[path.resolve()] for path in synthetic["fits"]} == \
        {path.name: 1 for path in synthetic["fits"]}


def test_new_figures_carry_the_random_init_note(synthetic):
    for key in ("preferred_block", "training"):
        assert Image.open(synthetic["figures"][key]).text["Title"] == \
            "sub-01 (scene_cv) (features from a RANDOM-INIT network)"


def test_without_enough_pairs_ceiling_is_null(synthetic, tmp_path):
    figures = {key: tmp_path / f"{key}.png" for key in FIGURES}
    evaluate_meg_subject(synthetic["epochs"], synthetic["fits"][:1], tmp_path / "m.json", tmp_path / "s.h5", figures,
                         max_distance_px=MAX_DISTANCE_PX, min_pairs=10_000)
    metrics = json.loads((tmp_path / "m.json").read_text())
    foveal = metrics["models"]["foveal"]
    assert foveal["median_noise_ceiling_at_peak"] is None and foveal["mean_r_at_peak_over_nc"] is None
    assert "dual_minus_foveal" not in metrics
    with h5py.File(tmp_path / "s.h5", "r") as h5:
        assert np.isnan(h5["noise_ceiling"][:]).all()
    assert all(path.stat().st_size > 0 for path in figures.values())
    for key, notice in (("preferred_block", NO_BLOCK_WEIGHTS), ("training", NO_TRAINING_CURVES)):
        assert Image.open(figures[key]).text["Title"] == f"sub-01 (scene_cv)\n{notice}"


def test_selection_by_r_is_cross_fitted_and_only_the_optimistic_value_is_biased(synthetic, tmp_path):
    """Pure-noise predictions: every cross-fitted score stays near 0, the best cell chosen on the same data does not."""
    rng = np.random.default_rng(5)
    noise = tmp_path / "noise.h5"
    write_fit(noise, "foveal", rng.standard_normal(synthetic["data"][: len(synthetic["ids"])].shape),
              synthetic["ids"], synthetic["folds"], synthetic["scenes"])
    figures = {key: tmp_path / f"{key}.png" for key in FIGURES}
    evaluate_meg_subject(synthetic["epochs"], [noise], tmp_path / "m.json", tmp_path / "s.h5", figures,
                         max_distance_px=MAX_DISTANCE_PX, min_pairs=20, n_best_sensors=5)
    foveal = json.loads((tmp_path / "m.json").read_text())["models"]["foveal"]
    sd_r = 1 / np.sqrt(len(synthetic["ids"]))  # of one sensor's r; also of the mean of its two halves' r
    assert foveal["best_sensor_r_optimistic"] > 3 * sd_r  # the best of 204 x 26 cells
    assert abs(foveal["best_sensors_r_at_peak"]) < 4 * sd_r / np.sqrt(5)
    assert abs(foveal["mean_r_at_peak"]) < 4 * sd_r / np.sqrt(204)
    assert abs(foveal["mean_r_at_peak_reliable_sensors"]) < 4 * sd_r / np.sqrt(foveal["n_reliable_sensors"])


def test_mismatching_fits_name_the_file(synthetic, tmp_path):
    names = neuromag_grads()[0]
    swapped = [names[1], names[0]] + names[2:]
    zeros = np.zeros((2, 204, len(TIMES_S)))
    ids, folds = synthetic["ids"][:2], np.array([0, 1])
    figures = {key: tmp_path / f"{key}.png" for key in FIGURES}
    bad = tmp_path / "swapped.h5"
    write_fit(bad, "foveal", zeros, ids, folds, ch_names=swapped)
    short = tmp_path / "short.h5"
    write_fit(short, "foveal", zeros[:, :, :5], ids, folds)
    stranger = tmp_path / "stranger.h5"
    write_fit(stranger, "foveal", zeros, [ids[0], "sub-01_ses-9_trial-001_fix-01"], folds)
    one_fold = tmp_path / "one_fold.h5"
    write_fit(one_fold, "foveal", zeros, ids, np.array([3, 3]))
    old = tmp_path / "old.h5"
    write_fit(old, "foveal", zeros, ids, folds)
    with h5py.File(old, "r+") as h5:
        del h5["fold"]
    for path, match in ((bad, "swapped.h5.*ch_names"), (short, "short.h5.*shape"),
                        (stranger, r"stranger.h5: 1 fixation_id without an epoch \(first \['sub-01_ses-9"),
                        (one_fold, "one_fold.h5: predictions of 1 outer fold"), (old, "old.h5: no dataset 'fold'")):
        with pytest.raises((ValueError, KeyError), match=match):
            evaluate_meg_subject(synthetic["epochs"], [path], tmp_path / "m.json", tmp_path / "s.h5", figures,
                                 max_distance_px=MAX_DISTANCE_PX, min_pairs=2)
    assert not (tmp_path / "m.json").exists()


def test_cli_passes_every_figure_path(synthetic, tmp_path):
    flags = {key: tmp_path / f"{key}.png" for key in FIGURES}
    settings = {"meg.screen": dataclasses.asdict(DEFAULT_SCREEN),
                "meg.noise_ceiling": {"max_distance_dva": 0.25, "min_pairs": 20},
                "meg.evaluation": {"compare": ["foveal", "dual"], "n_best_sensors": 10}}
    args = ["evaluate-meg", "--epochs", str(synthetic["epochs"]), "--fits", *map(str, synthetic["fits"][:2]),
            "--metrics-out", str(tmp_path / "m.json"), "--scores-out", str(tmp_path / "s.h5"),
            "--settings", json.dumps(settings)]
    for key, path in flags.items():
        args += [f"--figure-{key.replace('_', '-')}", str(path)]
    assert main(args) == 0
    # the step turns the gaze distance of a repeat pair into screen pixels
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["max_distance_px"] == pytest.approx(DEFAULT_SCREEN.dva_to_px(0.25))
    # foveal and dual (banded): block weights but no training curves
    assert Image.open(flags["preferred_block"]).text["Title"] == "sub-01 (scene_cv)"
    assert Image.open(flags["training"]).text["Title"] == f"sub-01 (scene_cv)\n{NO_TRAINING_CURVES}"


def test_meg_summary(tmp_path):
    def entry(scheme, r, latency):
        return {"scheme": scheme, "mean_r_at_peak": r, "peak_latency_s": latency, "mean_r_over_time": [0.0, r]}

    files = {
        "sub-01": {"foveal": entry("scene_cv", 0.2, 0.1), "dual": entry("scene_cv", 0.3, 0.12)},
        "sub-02": {"foveal": entry("scene_cv", 0.4, 0.2), "dual": entry("scene_cv", 0.5, 0.14)},
        "sub-60": {"foveal": entry("heldout_subject", 0.1, 0.3), "dual": entry("heldout_subject", 0.15, 0.3)},
    }
    paths = []
    for label, models in files.items():
        paths.append(tmp_path / f"{label}.json")
        paths[-1].write_text(json.dumps({"subject": label, "times": [0.0, 0.1], "models": models}))
    summary = meg_summary(paths)
    assert set(summary["subjects"]) == set(files)
    assert summary["subjects"]["sub-01"] == {"subject": "sub-01", "models": {
        "foveal": {"scheme": "scene_cv", "mean_r_at_peak": 0.2, "peak_latency_s": 0.1},
        "dual": {"scheme": "scene_cv", "mean_r_at_peak": 0.3, "peak_latency_s": 0.12}}}
    assert summary["mean_over_training_subjects"]["foveal"] == pytest.approx(
        {"mean_r_at_peak": 0.3, "peak_latency_s": 0.15, "n_subjects": 2})
    assert summary["mean_over_training_subjects"]["dual"]["mean_r_at_peak"] == pytest.approx(0.4)
    assert summary["heldout"] == {"sub-60": {"foveal": 0.1, "dual": 0.15}}

"""Tests for the synthetic free-viewing MEG dataset (tbdencoder.simulate.meg, tbdencoder.simulate.neuromag)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import mne
import numpy as np
import pandas as pd
import pytest
from mne.io.constants import FIFF
from PIL import Image
from scipy.spatial.transform import Rotation

from tbdencoder.config import section_defaults
from tbdencoder.data.crops import ScreenGeometry, crop_leaves_image, extract_dva_crop
from tbdencoder.simulate.meg import METADATA_COLUMNS, crop_statistics, simulate_meg, subject_response
from tbdencoder.simulate.neuromag import nominal_dev_head_t, subject_dev_head_t, vectorview_info

matplotlib.use("Agg")

ARGS = dict(subjects=[1, 60], n_sessions=2, n_trials_per_session=12, n_scenes=30, scene_size_px=(800, 600),
            repeat_fraction=0.25, crop_dva=3.0, seed=11, parafoveal_gain=0.5, snr=0.3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meg") / "avs"
    simulate_meg(root, **ARGS)
    return root


@pytest.fixture(scope="module")
def metadata(dataset) -> pd.DataFrame:
    return pd.read_csv(dataset / "metadata.csv", sep=";", dtype={"sceneID": str})


@pytest.fixture(scope="module")
def simulation(dataset) -> dict:
    return json.loads((dataset / "ground_truth" / "simulation.json").read_text())


def read_raw(dataset: Path, recording: str) -> mne.io.Raw:
    return mne.io.read_raw_fif(dataset / recording, preload=True, verbose=False)


def test_neuromag_info_has_vectorview_channels_and_plots():
    info = vectorview_info(250.0, subject_dev_head_t(0, 1, shift_mm=3.0, rotation_deg=2.0), 50.0)
    grads, mags = mne.pick_types(info, meg="grad"), mne.pick_types(info, meg="mag")
    assert len(grads) == 204 and len(mags) == 102
    assert info["ch_names"][-1] == "STI101" and len(info["ch_names"]) == 307
    loc = np.array([info["chs"][k]["loc"] for k in range(306)])
    radius = np.linalg.norm(loc[:, :3], axis=1)
    np.testing.assert_allclose(radius, 0.12)
    np.testing.assert_allclose(np.einsum("ij,ij->i", loc[:, 9:12], loc[:, :3] / radius[:, None]), 1.0)  # ez outward
    np.testing.assert_allclose(np.einsum("ij,ij->i", np.cross(loc[:, 3:6], loc[:, 6:9]), loc[:, 9:12]), 1.0)
    pair = loc[grads].reshape(102, 2, 12)  # MEGxxx2 / MEGxxx3 of one location measure orthogonal gradients
    np.testing.assert_allclose(pair[:, 0, :3], pair[:, 1, :3])
    np.testing.assert_allclose(np.einsum("ij,ij->i", pair[:, 0, 3:6], pair[:, 1, 3:6]), 0.0, atol=1e-12)
    position = {"shift_mm": 3.0, "rotation_deg": 2.0}
    assert not np.allclose(subject_dev_head_t(0, 1, **position), subject_dev_head_t(0, 2, **position))
    grad_info = mne.pick_info(info, grads)
    mne.viz.plot_topomap(np.arange(204.0), grad_info, show=False)
    matplotlib.pyplot.close("all")


def test_fif_files_are_neuromag_raw(dataset, metadata):
    recordings = sorted(metadata["recording"].unique())
    assert recordings == [f"meg/sub-{s:02d}/sub-{s:02d}_ses-{n}_meg.fif" for s in (1, 60) for n in (1, 2)]
    transforms = []
    for recording in recordings:
        raw = read_raw(dataset, recording)
        info = raw.info
        grads, mags = mne.pick_types(info, meg="grad"), mne.pick_types(info, meg="mag")
        assert len(mne.pick_types(info, meg=True)) == 306 and len(grads) == 204 and len(mags) == 102
        assert {info["chs"][k]["coil_type"] for k in grads} == {FIFF.FIFFV_COIL_VV_PLANAR_T1}
        assert {info["chs"][k]["coil_type"] for k in mags} == {FIFF.FIFFV_COIL_VV_MAG_T3}
        assert all(info["ch_names"][k].endswith(("2", "3")) for k in grads)
        assert all(info["ch_names"][k].endswith("1") for k in mags)
        assert info["sfreq"] == 250.0 and info["line_freq"] == 50.0 and raw.first_samp == 0
        assert info["dev_head_t"] is not None and not np.allclose(info["dev_head_t"]["trans"], np.eye(4))
        transforms.append(info["dev_head_t"]["trans"])
        grad_sd = np.median(raw.get_data(picks="grad").std(axis=1))
        assert 1e-12 < grad_sd < 1e-10  # tesla/metre: tens of fT/cm
    np.testing.assert_array_equal(transforms[0], transforms[1])  # per subject
    assert not np.allclose(transforms[0], transforms[2])


def test_metadata_columns_events_and_triggers(dataset, metadata):
    header = (dataset / "metadata.csv").read_text().splitlines()[0]
    assert header.split(";") == list(METADATA_COLUMNS)
    assert set(metadata["type"]) == {"fixation", "saccade"}
    for recording, events in metadata.groupby("recording"):
        for _, trial in events.groupby("trial"):
            trial = trial.sort_values("start_time")
            assert list(trial["type"]) == ["fixation", "saccade"] * (len(trial) // 2) + ["fixation"]
            np.testing.assert_allclose(trial["start_time"].to_numpy()[1:], trial["end_time"].to_numpy()[:-1])
            assert trial["sceneID"].nunique() == 1
            fixations = trial[trial["type"] == "fixation"]
            assert list(fixations["fix_sequence"]) == list(range(1, len(fixations) + 1))
        raw = read_raw(dataset, recording)
        found = mne.find_events(raw, stim_channel="STI101", shortest_event=1, verbose=False)[:, 0]
        onsets = events.loc[events["type"] == "fixation", "start_time"].to_numpy()
        np.testing.assert_array_equal(found, np.rint(onsets * raw.info["sfreq"]).astype(int))
        assert events["end_time"].max() < raw.times[-1]
    fixations = metadata[metadata["type"] == "fixation"]
    saccades = metadata[metadata["type"] == "saccade"]
    assert fixations["duration"].min() >= 0.15 and 0.2 < fixations["duration"].mean() < 0.3
    assert saccades["duration"].between(0.02, 0.05).all() and saccades["fix_sequence"].isna().all()
    np.testing.assert_allclose(metadata["duration"], metadata["end_time"] - metadata["start_time"], atol=1e-9)


def test_scenes_crops_and_scene_overlap(dataset, metadata, simulation):
    screen = ScreenGeometry(**simulation["arguments"]["screen"])
    fixations = metadata[metadata["type"] == "fixation"]
    for scene in fixations["sceneID"].unique():
        assert Image.open(dataset / "scenes" / f"{scene}.png").size == (800, 600)
    left, top = (screen.width_px - 800) / 2, (screen.height_px - 600) / 2
    outside = ~(fixations["mean_gx"].between(left, left + 800) & fixations["mean_gy"].between(top, top + 600))
    padded = [crop_leaves_image((600, 800), (x, y), ARGS["crop_dva"], screen)
              for x, y in zip(fixations["mean_gx"], fixations["mean_gy"])]
    assert 0 < outside.mean() < 0.1  # a few fixations past the scene edge
    assert 0.02 < np.mean(padded) < 0.5
    assert simulation["shared_scenes"], "subjects should share scenes"
    assert set(simulation["subjects"]) == {"sub-01", "sub-60"}


def test_repeats_reshow_session_one_scanpaths(metadata, simulation):
    repeats = simulation["repeat_trials"]
    assert len(repeats) == 2 * round(ARGS["repeat_fraction"] * ARGS["n_trials_per_session"])
    fixations = metadata[metadata["type"] == "fixation"].set_index(["subject", "session", "trial"]).sort_index()
    px_per_dva = ScreenGeometry(**simulation["arguments"]["screen"]).dva_to_px(1.0)
    for repeat in repeats:
        again = fixations.loc[(repeat["subject"], repeat["session"], repeat["trial"])]
        first = fixations.loc[(repeat["subject"], 1, repeat["repeat_of_session_1_trial"])]
        assert repeat["session"] >= 2 and len(again) == len(first)
        assert (again["sceneID"].to_numpy() == first["sceneID"].to_numpy()).all()
        shift = np.hypot(again["mean_gx"].to_numpy() - first["mean_gx"].to_numpy(),
                         again["mean_gy"].to_numpy() - first["mean_gy"].to_numpy())
        assert shift.max() < 0.6 * px_per_dva and shift.mean() > 0


def test_same_seed_same_dataset(dataset, metadata, tmp_path):
    again = tmp_path / "again"
    simulate_meg(again, **ARGS)
    assert (again / "metadata.csv").read_bytes() == (dataset / "metadata.csv").read_bytes()
    recording = metadata["recording"].iloc[-1]
    np.testing.assert_array_equal(read_raw(again, recording).get_data(), read_raw(dataset, recording).get_data())
    other = tmp_path / "other"
    simulate_meg(other, **{**ARGS, "seed": 12})
    assert (other / "metadata.csv").read_bytes() != (dataset / "metadata.csv").read_bytes()


def test_foveal_truth_is_in_the_data(dataset, metadata, simulation):
    """Recomputed foveal amplitudes correlate with band-passed single-fixation data at the peak."""
    truth = np.load(dataset / "ground_truth" / "sensor_signal.npz")
    names = list(truth["ch_names"])
    best = names[int(np.argmax(truth["foveal_power"].max(axis=1)))]
    assert best.endswith(("2", "3"))  # a gradiometer
    screen = ScreenGeometry(**simulation["arguments"]["screen"])
    mean, sd = np.array(simulation["stat_mean"]), np.array(simulation["stat_sd"])
    latency_s = float(truth["peak_latency_s"])
    for index, subject in enumerate(truth["subjects"]):
        predicted, measured = [], []
        for recording, events in metadata[(metadata["subject"] == subject) & (metadata["type"] == "fixation")].groupby(
                "recording"):
            raw = read_raw(dataset, recording).filter(1.0, 40.0, picks=[best], verbose=False)
            trace = raw.get_data(picks=[best])[0]
            artefacts = [a for a in simulation["artefacts"] if a["recording"] == recording]
            for row in events.itertuples():
                if any(a["start_s"] - 1.0 < row.start_time < a["end_s"] + 1.0 for a in artefacts):
                    continue
                scene = np.asarray(Image.open(dataset / "scenes" / f"{row.sceneID}.png"))
                crop = extract_dva_crop(scene, (row.mean_gx, row.mean_gy), simulation["arguments"]["crop_dva"], screen)
                predicted.append(truth["foveal_weights"][index, names.index(best)] @ ((crop_statistics(crop) - mean) / sd))
                measured.append(trace[int(round((row.start_time + latency_s) * raw.info["sfreq"]))])
        assert len(predicted) > 100
        r = np.corrcoef(predicted, measured)[0, 1]
        assert r > 0.25, f"sub-{subject:02d}: r = {r:.2f} at {best}"


def test_parafoveal_power_is_localised(dataset):
    truth = np.load(dataset / "ground_truth" / "sensor_signal.npz")
    grads = np.array([not name.endswith("1") for name in truth["ch_names"]])
    foveal = truth["foveal_power"].max(axis=1)[grads]
    parafoveal = truth["parafoveal_power"].max(axis=1)[grads]
    share = parafoveal / (foveal + parafoveal)
    strong_foveal = foveal > 0.25 * foveal.max()
    assert np.sum(strong_foveal & (share < 0.02)) >= 3  # foveal signal, ~no parafoveal signal
    assert parafoveal.max() > 0.1 * foveal.max()
    assert share[np.argmax(parafoveal)] > 0.5
    assert np.sum(parafoveal > 0.5 * parafoveal.max()) >= 2


def test_power_time_course_peaks_at_latency(dataset):
    truth = np.load(dataset / "ground_truth" / "sensor_signal.npz")
    times_s, latency_s = truth["times_s"], float(truth["peak_latency_s"])
    assert latency_s == pytest.approx(0.110)
    assert truth["foveal_power"].shape == truth["parafoveal_power"].shape == (306, times_s.size)
    assert times_s[0] == pytest.approx(-0.1) and times_s[-1] == pytest.approx(0.5)
    for key in ("foveal_power", "parafoveal_power"):
        course = truth[key].max(axis=0)
        assert abs(times_s[np.argmax(course)] - latency_s) <= 1.0 / 250.0
        assert np.all(course[times_s <= 0] == 0) and np.all(course[times_s >= 0.3] < 0.01 * course.max())


def test_too_few_scenes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="n_scenes=5"):
        simulate_meg(tmp_path / "x", **{**ARGS, "n_scenes": 5})
    assert not (tmp_path / "x").exists()



def test_settings_left_out_take_the_params_schema_defaults(tmp_path):
    simulate_meg(tmp_path / "avs", subjects=[1], crop_dva=2.0)
    arguments = json.loads((tmp_path / "avs" / "ground_truth" / "simulation.json").read_text())["arguments"]
    defaults = section_defaults("simulate.meg")
    del defaults["enabled"]  # the workflow's switch, not a setting of the simulator
    assert arguments["snr"] == 0.5  # params.yaml's realistic single-fixation SNR
    assert {key: arguments[key] for key in defaults} == defaults


# ------------------------------------------------------------------ between-subject differences (issue 19)

VARIED = dict(subjects=[1, 2], n_sessions=1, n_trials_per_session=20, n_scenes=40, scene_size_px=(800, 600),
              repeat_fraction=0.0, crop_dva=3.0, seed=11, parafoveal_gain=0.5, snr=20.0, head_shift_mm=0.0,
              head_rotation_deg=0.0, subject_gain_sd=0.5, subject_latency_sd_s=0.03)


@pytest.fixture(scope="module")
def varied(tmp_path_factory) -> Path:
    """Two subjects at the nominal head position (the control) with different gains and latencies, high SNR."""
    root = tmp_path_factory.mktemp("meg_varied") / "avs"
    simulate_meg(root, **VARIED)
    return root


def _fixation_average(dataset: Path, subject: int, picks: list[str], n_after: int) -> tuple[np.ndarray, float]:
    """(len(picks), n_after) 1-40 Hz data averaged over the subject's fixations away from artefacts, samples
    0..n_after - 1 from the onset; and the sampling rate."""
    metadata = pd.read_csv(dataset / "metadata.csv", sep=";", dtype={"sceneID": str})
    artefacts = json.loads((dataset / "ground_truth" / "simulation.json").read_text())["artefacts"]
    fixations = metadata[(metadata["subject"] == subject) & (metadata["type"] == "fixation")]
    epochs = []
    for recording, events in fixations.groupby("recording"):
        raw = read_raw(dataset, recording).pick(picks).filter(1.0, 40.0, verbose=False)
        data, sfreq = raw.get_data(), raw.info["sfreq"]
        bad = [a for a in artefacts if a["recording"] == recording]
        for onset in events["start_time"]:
            first = int(round(onset * sfreq))
            if any(a["start_s"] - 1.0 < onset < a["end_s"] + 1.0 for a in bad) or first + n_after > data.shape[1]:
                continue
            epochs.append(data[:, first:first + n_after])
    assert len(epochs) > 100
    return np.mean(epochs, axis=0), sfreq


def test_same_head_position_for_every_subject_when_the_sds_are_0(dataset, simulation, varied):
    nominal = nominal_dev_head_t()
    for subject in VARIED["subjects"]:
        info = mne.io.read_info(varied / f"meg/sub-{subject:02d}/sub-{subject:02d}_ses-1_meg.fif", verbose=False)
        np.testing.assert_array_equal(info["dev_head_t"]["trans"], nominal.astype(np.float32))  # FIF: float32
    truth = json.loads((varied / "ground_truth" / "simulation.json").read_text())
    for entry in truth["subjects"].values():
        assert entry["dev_head_t"] == nominal.tolist()
        assert entry["head_translation_mm"] == [0.0] * 3 and entry["head_rotation_deg"] == [0.0] * 3
    np.testing.assert_array_equal(
        subject_dev_head_t(VARIED["seed"], 7, shift_mm=0.0, rotation_deg=0.0), nominal)
    # the defaults (3 mm, 2 deg): every subject elsewhere, the truth says where
    assert simulation["between_subjects"]["head_shift_mm"] == 3.0
    assert simulation["between_subjects"]["head_rotation_deg"] == 2.0
    for subject in ARGS["subjects"]:
        entry = simulation["subjects"][f"sub-{subject:02d}"]
        trans = mne.io.read_info(dataset / f"meg/sub-{subject:02d}/sub-{subject:02d}_ses-1_meg.fif",
                                 verbose=False)["dev_head_t"]["trans"]
        assert not np.allclose(trans, nominal)
        np.testing.assert_array_equal(trans, np.float32(entry["dev_head_t"]))
        np.testing.assert_allclose(trans[:3, 3] - nominal[:3, 3], np.array(entry["head_translation_mm"]) / 1e3,
                                   atol=1e-8)
        rotvec = Rotation.from_matrix(trans[:3, :3]).as_rotvec(degrees=True)
        np.testing.assert_allclose(rotvec, entry["head_rotation_deg"], atol=1e-4)
        assert entry["head_translation_mm_norm"] == pytest.approx(np.linalg.norm(entry["head_translation_mm"]))
        assert 0.1 < entry["head_translation_mm_norm"] < 15.0 and 0.1 < entry["head_rotation_deg_angle"] < 10.0


def test_truth_lists_each_subjects_gain_and_latency(simulation, varied):
    for entry in simulation["subjects"].values():  # sds 0 (the defaults)
        assert entry["gain"] == 1.0 and entry["latency_s"] == 0.11 and entry["effective_snr"] == ARGS["snr"]
    truth = json.loads((varied / "ground_truth" / "simulation.json").read_text())
    assert truth["between_subjects"]["subject_gain_sd"] == 0.5
    assert truth["between_subjects"]["subject_latency_sd_s"] == 0.03
    npz = np.load(varied / "ground_truth" / "sensor_signal.npz")
    for index, subject in enumerate(VARIED["subjects"]):
        entry = truth["subjects"][f"sub-{subject:02d}"]
        gain, latency_s = subject_response(VARIED["seed"], subject, latency_s=0.11, gain_sd=0.5, latency_sd_s=0.03)
        assert (entry["gain"], entry["latency_s"]) == (gain, latency_s)
        assert entry["effective_snr"] == pytest.approx(VARIED["snr"] * gain**2)
        assert npz["gain_by_subject"][index] == gain and npz["peak_latency_s_by_subject"][index] == latency_s
        assert npz["times_s"][np.argmax(npz["kernel_by_subject"][index])] == pytest.approx(latency_s, abs=0.002)
    gains = [truth["subjects"][f"sub-{s:02d}"]["gain"] for s in VARIED["subjects"]]
    latencies = [truth["subjects"][f"sub-{s:02d}"]["latency_s"] for s in VARIED["subjects"]]
    assert abs(np.log(gains[0] / gains[1])) > 0.3 and abs(latencies[0] - latencies[1]) > 0.02  # seed 11 draws apart
    # over many subjects the draws follow the sds; the latency stays in its clip range
    draws = np.array([subject_response(3, s, latency_s=0.11, gain_sd=0.4, latency_sd_s=0.02) for s in range(1, 2001)])
    assert np.log(draws[:, 0]).std() == pytest.approx(0.4, rel=0.1)
    assert abs(np.log(draws[:, 0]).mean()) < 0.05
    assert draws[:, 1].std() == pytest.approx(0.02, rel=0.1) and draws[:, 1].mean() == pytest.approx(0.11, abs=0.003)
    wide = np.array([subject_response(3, s, latency_s=0.11, gain_sd=0.0, latency_sd_s=0.2)[1] for s in range(1, 200)])
    assert wide.min() == 0.04 and wide.max() == 0.2


def test_each_subject_peaks_at_its_own_latency_and_scales_with_its_gain(varied):
    npz = np.load(varied / "ground_truth" / "sensor_signal.npz")
    names = list(npz["ch_names"])
    grads = [k for k, name in enumerate(names) if not name.endswith("1")]
    np.testing.assert_allclose(npz["evoked_pattern"][0] / npz["gain_by_subject"][0],
                               npz["evoked_pattern"][1] / npz["gain_by_subject"][1])  # same head position
    pattern = npz["evoked_pattern"][0][grads]
    best = [names[grads[k]] for k in np.argsort(np.abs(pattern))[::-1][:20]]
    averages = []
    for index, subject in enumerate(VARIED["subjects"]):
        average, sfreq = _fixation_average(varied, subject, best, int(0.3 * 250))
        # the best sensor's average peaks at the subject's latency, within a sample
        course = np.abs(average[0])
        latency_s = float(npz["peak_latency_s_by_subject"][index])
        assert abs(np.argmax(course) / sfreq - latency_s) <= 1.0 / sfreq, (subject, np.argmax(course) / sfreq,
                                                                          latency_s)
        averages.append(average[:, int(round(latency_s * sfreq))])  # each at its own peak
    measured = np.linalg.norm(averages[1]) / np.linalg.norm(averages[0])
    expected = npz["gain_by_subject"][1] / npz["gain_by_subject"][0]
    assert measured == pytest.approx(expected, rel=0.1), (measured, expected)

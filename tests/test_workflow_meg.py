"""End to end, MEG half: the tiny workflow run (conftest `workflow_run`) against the simulator's ground truth."""

import json

import h5py
import numpy as np
import pytest

from test_workflow import assert_drawn, assert_report_figure, config_models

pytestmark = pytest.mark.slow

TRAINING, HELDOUT = ["sub-01", "sub-02", "sub-03"], "sub-60"
DATASET = "data/simulated/avs_meg"
MEG_FIGURES = ("r_time", "topomap", "dual_vs_foveal", "preferred_block", "training")  # workflow/report/meg_<figure>.rst


def _truth(workdir, ch_names, times_s):
    """Simulated foveal and parafoveal signal power per gradiometer x epoch time, and the peak latency."""
    truth = np.load(workdir / DATASET / "ground_truth/sensor_signal.npz")
    rows = [list(truth["ch_names"]).index(name) for name in ch_names]
    power = {stream: np.array([np.interp(times_s, truth["times_s"], truth[f"{stream}_power"][row]) for row in rows])
             for stream in ("foveal", "parafoveal")}
    return power, float(truth["peak_latency_s"])


def _scores(workdir, subject):
    with h5py.File(workdir / f"results/scores/meg_{subject}.h5") as h5:
        return {model: h5[f"r/{model}"][:] for model in h5["r"]}, list(h5["ch_names"].asstr()[:]), h5["times"][:]


def test_meg_outputs_exist_with_documented_shapes(workflow_run):
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())["meg"]
    assert set(metrics["subjects"]) == {*TRAINING, HELDOUT}
    assert set(metrics["mean_over_training_subjects"]) == config_models()[1]
    banded = metrics["subjects"]["sub-01"]["models"]["dual_banded"]["block_weights_at_peak"]["mean_weight"]
    assert set(banded) == {f"{s}:block0{l}/global" for s in ("foveal", "parafoveal") for l in (3, 6)}
    assert metrics["subjects"][HELDOUT]["models"]["dual"]["scheme"] == "heldout_subject"
    assert metrics["subjects"]["sub-02"]["models"]["foveal"]["scheme"] == "scene_cv"
    assert metrics["subjects"]["sub-02"]["models"]["dual_adapters"]["scheme"] == "joint_scene_cv"  # one job, 3 subjects
    with h5py.File(workflow_run / "results/meg/sub-01/epochs.h5") as h5:
        onset = h5["grad/onset"]
        assert onset.shape[1:] == (204, 51) and onset.dtype == np.float32  # -0.1..0.4 s at 100 Hz
        assert onset.attrs["times"][0] == pytest.approx(-0.1) and onset.attrs["times"][-1] == pytest.approx(0.4)
        n_epochs, epoch_ids = onset.shape[0], list(h5["fixation_id"].asstr()[:])
    with h5py.File(workflow_run / "results/fits/meg/sub-01/dual.h5") as h5:
        assert h5["prediction"].shape == (n_epochs, 204, 51)
        assert sorted(h5["fixation_id"].asstr()[:]) == sorted(epoch_ids)
    with h5py.File(workflow_run / "results/meg/sub-01/stimuli.h5") as h5:
        assert h5["pixels"].shape[1:] == (76, 76, 3)  # 2 dva on the 37.5 cm / 1024 px screen at 80 cm
    for subject in (*TRAINING, HELDOUT):  # dual_banded has block weights, dual_adapters training curves: no notice
        for figure in MEG_FIGURES if subject in TRAINING else MEG_FIGURES[:3]:
            assert_drawn(workflow_run / f"results/figures/meg_{subject}_{figure}.png")
    assert (workflow_run / "results/features/clip_vitb32/meg_sub-01.h5").exists()  # the shared feature stage


def test_r_peaks_near_the_simulated_latency(workflow_run):
    for subject in TRAINING:
        r, ch_names, times_s = _scores(workflow_run, subject)
        power, latency_s = _truth(workflow_run, ch_names, times_s)
        metrics = json.loads((workflow_run / f"results/metrics/meg_{subject}.json").read_text())["models"]["foveal"]
        assert abs(metrics["peak_latency_s"] - latency_s) <= 0.03, (subject, metrics["peak_latency_s"], latency_s)
        peak = np.argmin(np.abs(times_s - latency_s))
        signal_sensors = np.argsort(power["foveal"][:, peak])[-20:]  # chosen by the ground truth, not by r
        assert r["foveal"][signal_sensors, peak].mean() > 0.15, (subject, r["foveal"][signal_sensors, peak].mean())
        # little to predict before the fixation (only the overlap with the previous fixation's response)
        assert abs(r["foveal"][:, times_s < 0].mean()) < 0.1


def test_dual_stream_beats_foveal_only_where_the_simulator_puts_parafoveal_signal(workflow_run):
    """Cells (sensor x time) with a strong simulated parafoveal signal gain from the parafoveal crop's
    features; cells with foveal but no parafoveal signal do not."""
    gains = {"parafoveal": [], "foveal_only": []}
    for subject in TRAINING:
        r, ch_names, times_s = _scores(workflow_run, subject)
        power, _ = _truth(workflow_run, ch_names, times_s)
        total = power["foveal"] + power["parafoveal"]
        strong = total > 0.25 * total.max()
        share = power["parafoveal"] / np.where(total > 0, total, 1)
        gain = r["dual"] - r["foveal"]
        gains["parafoveal"].extend(gain[strong & (share > 0.3)])
        gains["foveal_only"].extend(gain[strong & (share < 0.02)])
    para, foveal_only = np.array(gains["parafoveal"]), np.array(gains["foveal_only"])
    assert para.size > 20 and foveal_only.size > 20, (para.size, foveal_only.size)
    t_stat = para.mean() / para.std(ddof=1) * np.sqrt(para.size)
    assert para.mean() > 0.02 and t_stat > 3, (para.mean(), t_stat)
    assert foveal_only.mean() < 0.01, foveal_only.mean()


def test_heldout_subject_is_predicted_from_the_others(workflow_run):
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())["meg"]
    heldout = metrics["heldout"][HELDOUT]
    assert heldout["foveal"] > 0.05, heldout
    with h5py.File(workflow_run / f"results/fits/meg/{HELDOUT}/foveal.h5") as h5:
        assert list(h5.attrs["train_subjects"]) == TRAINING


def test_the_heldout_subject_from_k_of_its_fixations(workflow_run, workflow_report):
    """The k-shot comparison of the model of several subjects: every condition scored, the curve in metrics.json
    and drawn, in the report."""
    kshot = json.loads((workflow_run / "results/metrics.json").read_text())["meg"]["kshot"][HELDOUT]["dual_adapters"]
    assert kshot["ks"] == [10, 40]
    assert set(kshot["r_at_peak"]) == {"pooled_ridge", "k0_mean", "k0_shared", "adapters_k10", "ridge_k10",
                                       "adapters_k40", "ridge_k40"}
    assert all(np.isfinite(value) for value in kshot["r_at_peak"].values())
    assert kshot["curve"]["adapters"] == [kshot["r_at_peak"]["adapters_k10"], kshot["r_at_peak"]["adapters_k40"]]
    figure = f"results/figures/kshot_meg_{HELDOUT}_dual_adapters.png"
    assert_drawn(workflow_run / figure)
    assert_report_figure(workflow_report, workflow_run, figure, "meg_kshot.rst", HELDOUT)


def test_report_holds_the_meg_figures(workflow_run, workflow_report):
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())["meg"]["subjects"]
    for subject in (*TRAINING, HELDOUT):
        assert metrics[subject]["random_init_features"] is True  # evaluate_meg puts the RANDOM-INIT note in titles
        for figure in MEG_FIGURES:
            assert_report_figure(workflow_report, workflow_run, f"results/figures/meg_{subject}_{figure}.png",
                                 f"meg_{figure}.rst", subject)

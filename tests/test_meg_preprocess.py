"""preprocess_meg on tiny simulated raw FIFs with a known fixation-locked response and 50 Hz line noise."""

import json

import h5py
import matplotlib
import mne
import numpy as np
import pandas as pd
import pytest

from tbdencoder.data.avs import FIXATION_COLUMNS
from tbdencoder.data.meg import channel_info, preprocess_meg, read_epochs

matplotlib.use("Agg")

RAW_SFREQ_HZ = 1000.0
FIRST_SAMP = 4321  # not a multiple of the resampling factor
DURATION_S = 20.0
PEAK_S = 0.100
BUMP_SCALE = 2e-11  # T/m
NOISE_STD = 1e-12  # T/m per sample
LINE_AMPLITUDE = 1e-11  # T/m at 50 Hz (and 0.4 of it at 150 Hz)
ARTEFACT = 3e-9  # T/m, 10 ms box on one channel
PARAMS = dict(line_freq_hz=50.0, l_freq_hz=1.0, h_freq_hz=100.0, sfreq_hz=250.0, tmin_s=-0.1, tmax_s=0.5,
              baseline_s=(None, 0.0), reject_grad=2e-10, on_bad="drop")


def _info(n_positions: int, with_grads: bool = True) -> mne.Info:
    """Neuromag-style names (MEGgg k1 mag, MEGgg k2/k3 grads) on a helmet-like half sphere."""
    names, types, locs = [], [], []
    golden = np.pi * (3 - np.sqrt(5))
    for p in range(n_positions):
        z = 1 - (p + 0.5) / n_positions
        radius = np.sqrt(1 - z**2)
        normal = np.array([radius * np.cos(golden * p), radius * np.sin(golden * p), z])
        ex = np.cross([0.0, 0.0, 1.0], normal) if radius > 1e-6 else np.array([1.0, 0, 0])
        ex /= np.linalg.norm(ex)
        ey = np.cross(normal, ex)
        prefix = f"MEG{p // 4 + 1:02d}{p % 4 + 1}"
        for suffix, kind, axes in (("1", "mag", (ex, ey)), ("2", "grad", (ex, ey)), ("3", "grad", (ey, -ex))):
            if kind == "grad" and not with_grads:
                continue
            names.append(prefix + suffix)
            types.append(kind)
            locs.append(np.concatenate([0.12 * normal, axes[0], axes[1], normal]))
    info = mne.create_info(names + ["STI101"], RAW_SFREQ_HZ, types + ["stim"])
    for ch, loc in zip(info["chs"], locs):
        ch["loc"][:] = loc
    return info


def _write_raw(path, info, onsets_s, amplitudes, rng, artefact_onset_s=None):
    """Raw FIF: per-fixation Gaussian bump peaking PEAK_S after each onset (amplitude x fixed pattern),
    white noise, 50/150 Hz line noise, STI101 triggers deliberately 50 ms late."""
    n_times = int(DURATION_S * RAW_SFREQ_HZ)
    t = np.arange(n_times) / RAW_SFREQ_HZ
    meg = mne.pick_types(info, meg=True)
    pattern = _pattern(info)
    data = np.zeros((len(info["ch_names"]), n_times))
    bumps = sum(a * np.exp(-0.5 * ((t - onset - PEAK_S) / 0.015) ** 2) for onset, a in zip(onsets_s, amplitudes))
    data[meg] = BUMP_SCALE * pattern[:, None] * bumps + NOISE_STD * rng.standard_normal((len(meg), n_times))
    phase = rng.uniform(0, 2 * np.pi, (len(meg), 1))
    data[meg] += LINE_AMPLITUDE * (np.sin(2 * np.pi * 50 * t + phase) + 0.4 * np.sin(2 * np.pi * 150 * t))
    if artefact_onset_s is not None:
        start = int((artefact_onset_s + 0.25) * RAW_SFREQ_HZ)
        data[mne.pick_types(info, meg="grad")[0], start:start + 10] += ARTEFACT
    data[-1, (np.asarray(onsets_s) * RAW_SFREQ_HZ).astype(int) + 50] = 1
    path.parent.mkdir(parents=True, exist_ok=True)
    mne.io.RawArray(data, info, first_samp=FIRST_SAMP, verbose="error").save(path, fmt="single", verbose="error")


def _pattern(info):
    """Fixed spatial pattern over the MEG channels, +-(0.5..1)."""
    n = len(mne.pick_types(info, meg=True))
    return np.where(np.arange(n) % 3 == 0, -1.0, 1.0) * (0.5 + 0.5 * (np.arange(n) % 5) / 4)


def _rows(session, onsets_s, amplitudes):
    rec = f"meg/sub-01/sub-01_ses-{session}_meg.fif"
    return [dict(fixation_id=f"sub-01_ses-{session}_trial-{i // 4 + 1:03d}_fix-{i % 4 + 1:02d}", subject=1,
                 session=session, trial=i // 4 + 1, fix_sequence=i % 4 + 1, sceneID=f"{i // 4:04d}", recording=rec,
                 onset_s=onset, duration_s=0.3, gx=100.0 + i, gy=200.0, next_gx=np.nan if i % 4 == 3 else 101.0 + i,
                 next_gy=np.nan if i % 4 == 3 else 201.0, scene_path=f"scenes/{i // 4:04d}.png", amplitude=a)
            for i, (onset, a) in enumerate(zip(onsets_s, amplitudes))]


def _write_tsv(path, rows, seed=0):
    """fixations.tsv with rows shuffled (the file order must not matter); returns the table as written."""
    table = pd.DataFrame(rows)[list(FIXATION_COLUMNS)].sample(frac=1, random_state=seed).reset_index(drop=True)
    table.to_csv(path, sep="\t", index=False)
    return table


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two sessions of 16 grads + 8 mags; session 1 has two fixations past its end, session 2 one artefact."""
    root = tmp_path_factory.mktemp("avs")
    rng = np.random.default_rng(3)
    info = _info(8)
    rows = []
    for session in (1, 2):
        onsets = 1.0 + 0.8 * np.arange(22) + rng.uniform(0, 0.1, 22)
        amplitudes = 0.5 + (np.arange(22) % 7) / 6 + 0.1 * session
        artefact = onsets[5] if session == 2 else None
        _write_raw(root / f"meg/sub-01/sub-01_ses-{session}_meg.fif", info, onsets, amplitudes, rng, artefact)
        rows += _rows(session, onsets, amplitudes)
    outside_ids = ["sub-01_ses-1_trial-099_fix-01", "sub-01_ses-1_trial-099_fix-02"]
    rows += [{**rows[0], "fixation_id": fid, "onset_s": onset}
             for fid, onset in zip(outside_ids, [DURATION_S - 0.2, DURATION_S + 3.0])]
    table = _write_tsv(root / "fixations.tsv", rows)
    return dict(root=root, table=table, rows=rows, info=info, outside_ids=outside_ids,
                amplitude={row["fixation_id"]: row["amplitude"] for row in rows},
                artefact_id="sub-01_ses-2_trial-002_fix-02")


@pytest.fixture(scope="module")
def epochs_path(dataset):
    out = dataset["root"] / "epochs.h5"
    preprocess_meg(dataset["root"] / "fixations.tsv", dataset["root"], out, **PARAMS)
    return out


def _projection(data, info):
    """Each epoch's time course projected on the injected pattern of the gradiometers (units of BUMP_SCALE)."""
    grads = mne.pick_types(info, meg="grad")
    pattern = _pattern(info)[np.isin(mne.pick_types(info, meg=True), grads)]
    return np.einsum("nct,c->nt", data, pattern) / (pattern @ pattern) / BUMP_SCALE


def test_layout_times_and_peak_latency(epochs_path, dataset):
    data, ids, times, fixations = read_epochs(epochs_path)
    sfreq = PARAMS["sfreq_hz"]
    assert data.dtype == np.float32 and data.shape == (len(ids), 16, len(times))
    assert times[0] == pytest.approx(PARAMS["tmin_s"]) and times[-1] == pytest.approx(PARAMS["tmax_s"])
    assert np.allclose(np.diff(times), 1 / sfreq)
    with h5py.File(epochs_path, "r") as h5:
        assert h5["grad/onset"].attrs["sfreq_hz"] == sfreq
        assert h5.attrs["subject"] == "sub-01" and json.loads(h5.attrs["baseline_s"]) == [None, 0.0]
        assert list(h5["channels/name"].asstr()[:]) == [n for n in dataset["info"]["ch_names"] if n[-1] in "23"]
        assert h5["channels/loc"].shape == (16, 12) and h5["dev_head_t"].shape == (4, 4)
    peak_s = times[np.argmax(_projection(data, dataset["info"]).mean(axis=0))]
    assert abs(peak_s - PEAK_S) <= 1 / sfreq + 1e-9  # the STI101 triggers (50 ms late) are not used


def test_amplitude_recovered_by_fixation_id_from_shuffled_rows(epochs_path, dataset):
    data, ids, times, fixations = read_epochs(epochs_path)
    dropped = {dataset["artefact_id"], *dataset["outside_ids"]}
    assert ids == [fid for fid in dataset["table"]["fixation_id"] if fid not in dropped]  # table order, by key
    assert list(fixations["fixation_id"]) == ids and fixations["sceneID"].str.len().eq(4).all()
    recovered = _projection(data, dataset["info"])[:, np.argmin(abs(times - PEAK_S))]
    expected = np.array([dataset["amplitude"][fid] for fid in ids])
    assert np.allclose(recovered, expected, rtol=0.1), np.c_[recovered, expected]
    assert np.corrcoef(recovered, expected)[0, 1] > 0.99


def _line_to_floor(segments, sfreq_hz):
    """Power at 50 Hz over the median power at 60-90 Hz, of Hann-windowed (..., n_times) segments."""
    freqs = np.fft.rfftfreq(segments.shape[-1], 1 / sfreq_hz)
    power = (np.abs(np.fft.rfft(segments * np.hanning(segments.shape[-1]), axis=-1)) ** 2).reshape(-1, len(freqs))
    power = power.mean(axis=0)
    return power[np.argmin(abs(freqs - 50))] / np.median(power[(freqs > 60) & (freqs < 90)])


def test_line_noise_removed(epochs_path, dataset):
    """Session 1 only: the session-2 artefact rings at 50 Hz through the (6.6 s) notch FIR."""
    data, ids, times, fixations = read_epochs(epochs_path)
    session_1 = (fixations["session"] == 1).to_numpy()
    recording = fixations["recording"][session_1].iloc[0]
    raw = mne.io.read_raw_fif(dataset["root"] / recording, verbose="error").pick("grad").get_data()
    n_raw = int(len(times) * RAW_SFREQ_HZ / PARAMS["sfreq_hz"])
    before = np.stack([raw[:, int(t * RAW_SFREQ_HZ):][:, :n_raw] for t in fixations["onset_s"][session_1]])
    assert _line_to_floor(before, RAW_SFREQ_HZ) > 1000
    assert _line_to_floor(data[session_1], PARAMS["sfreq_hz"]) < 5


def test_artefact_rejected_and_outside_dropped(epochs_path, dataset):
    with h5py.File(epochs_path, "r") as h5:
        ids = list(h5["fixation_id"].asstr()[:])
        dropped = dict(zip(h5["dropped/fixation_id"].asstr()[:], h5["dropped/reason"].asstr()[:]))
        attrs = dict(h5.attrs)
    assert attrs["n_rejected"] == 1 and attrs["n_outside_recording"] == 2
    assert attrs["n_kept"] == len(ids) == attrs["n_fixations"] - 3
    assert list(attrs["n_rejected_per_recording"]) == [0, 1] and list(attrs["n_outside_per_recording"]) == [2, 0]
    assert dataset["artefact_id"] not in ids and dropped[dataset["artefact_id"]].startswith("rejected:MEG")
    for fid in dataset["outside_ids"]:
        assert fid not in ids and dropped[fid] == "outside_recording"


def test_two_sessions_concatenated(epochs_path):
    _, ids, _, fixations = read_epochs(epochs_path)
    with h5py.File(epochs_path, "r") as h5:
        assert list(h5.attrs["recordings"]) == [f"meg/sub-01/sub-01_ses-{s}_meg.fif" for s in (1, 2)]
        assert list(h5.attrs["n_kept_per_recording"]) == [22, 21]
    assert set(fixations["session"]) == {1, 2} and len(set(ids)) == len(ids) == 43


def test_outside_recording_error_names_fixation(dataset, tmp_path):
    with pytest.raises(ValueError, match="sub-01_ses-1_trial-099_fix-01.*duration 20.000 s"):
        preprocess_meg(dataset["root"] / "fixations.tsv", dataset["root"], tmp_path / "e.h5",
                       **{**PARAMS, "on_bad": "error"})
    assert not (tmp_path / "e.h5").exists()


def test_rejection_is_a_counted_drop_but_no_survivor_is_an_error(dataset, tmp_path):
    _write_tsv(tmp_path / "fixations.tsv", dataset["rows"][:44])  # both sessions, none outside its recording
    params = {**PARAMS, "on_bad": "error"}
    preprocess_meg(tmp_path / "fixations.tsv", dataset["root"], tmp_path / "e.h5", **params)
    with h5py.File(tmp_path / "e.h5", "r") as h5:
        assert h5.attrs["n_rejected"] == 1 and h5.attrs["n_kept"] == 43
    with pytest.raises(ValueError, match=r"fixations.tsv: no epoch of sub-01 survives: of 44 fixations, 44 rejected "
                                         r"by the peak-to-peak threshold reject_grad=1e-15 T/m .*, 0 outside"):
        preprocess_meg(tmp_path / "fixations.tsv", dataset["root"], tmp_path / "none.h5",
                       **{**params, "reject_grad": 1e-15})
    with pytest.raises(ValueError, match=r"of 46 fixations, 44 rejected .*, 2 outside their recording"):
        preprocess_meg(dataset["root"] / "fixations.tsv", dataset["root"], tmp_path / "none.h5",
                       **{**PARAMS, "reject_grad": 1e-15})
    assert not (tmp_path / "none.h5").exists()


def test_recording_without_any_epoch_window_inside_is_an_error(dataset, tmp_path):
    rows = [{**row, "onset_s": row["onset_s"] + 100.0} if row["session"] == 2 else row for row in dataset["rows"][:44]]
    _write_tsv(tmp_path / "fixations.tsv", rows)
    with pytest.raises(ValueError, match=r"sub-01_ses-2_meg.fif: the epoch windows of all 22 fixations lie outside"):
        preprocess_meg(tmp_path / "fixations.tsv", dataset["root"], tmp_path / "e.h5", **PARAMS)


@pytest.mark.parametrize("problem", ["text", "missing"])
def test_unreadable_recording_named(dataset, tmp_path, problem):
    rows = [{**row, "recording": "meg/sub-01/sub-01_ses-3_meg.fif"} for row in dataset["rows"][:3]]
    if problem == "text":
        (tmp_path / "meg/sub-01").mkdir(parents=True)
        (tmp_path / "meg/sub-01/sub-01_ses-3_meg.fif").write_text("not a fif\n")
    _write_tsv(tmp_path / "fixations.tsv", rows)
    with pytest.raises(ValueError, match="sub-01_ses-3_meg.fif.*(cannot read as a raw FIF|not found)"):
        preprocess_meg(tmp_path / "fixations.tsv", tmp_path, tmp_path / "e.h5", **PARAMS)


def test_channel_mismatch_names_both_files(dataset, tmp_path):
    rng = np.random.default_rng(0)
    onsets = [1.0, 2.0, 3.0]
    for session in (1, 2):
        info = _info(8)
        if session == 2:
            info.rename_channels({"MEG0112": "MEG9992"})
        _write_raw(tmp_path / f"meg/sub-01/sub-01_ses-{session}_meg.fif", info, onsets, [1, 1, 1], rng)
    _write_tsv(tmp_path / "fixations.tsv", _rows(1, onsets, [1, 1, 1]) + _rows(2, onsets, [1, 1, 1]))
    with pytest.raises(ValueError, match="sub-01_ses-2_meg.fif.*differ from.*sub-01_ses-1_meg.fif"):
        preprocess_meg(tmp_path / "fixations.tsv", tmp_path, tmp_path / "e.h5", **PARAMS)


def test_no_gradiometers_is_an_error(tmp_path):
    onsets = [1.0, 2.0]
    _write_raw(tmp_path / "meg/sub-01/sub-01_ses-1_meg.fif", _info(4, with_grads=False), onsets, [1, 1],
               np.random.default_rng(0))
    _write_tsv(tmp_path / "fixations.tsv", _rows(1, onsets, [1, 1]))
    with pytest.raises(ValueError, match="sub-01_ses-1_meg.fif: no planar gradiometers"):
        preprocess_meg(tmp_path / "fixations.tsv", tmp_path, tmp_path / "e.h5", **PARAMS)


def test_channel_info_204_gradiometers_for_topomap(tmp_path):
    onsets = [1.0, 1.8, 2.6]
    info = _info(102)
    _write_raw(tmp_path / "meg/sub-01/sub-01_ses-1_meg.fif", info, onsets, [1.0, 1.5, 0.5],
               np.random.default_rng(1))
    _write_tsv(tmp_path / "fixations.tsv", _rows(1, onsets, [1.0, 1.5, 0.5]))
    preprocess_meg(tmp_path / "fixations.tsv", tmp_path, tmp_path / "epochs.h5", **PARAMS)
    data, ids, times, _ = read_epochs(tmp_path / "epochs.h5")
    rebuilt = channel_info(tmp_path / "epochs.h5")
    assert data.shape == (3, 204, len(times)) and len(mne.pick_types(rebuilt, meg="grad")) == 204
    original = {ch["ch_name"]: ch for ch in info["chs"]}
    for ch in rebuilt["chs"]:
        assert np.allclose(ch["loc"], original[ch["ch_name"]]["loc"])
        assert ch["coil_type"] == original[ch["ch_name"]]["coil_type"]
    image, _ = mne.viz.plot_topomap(data[:, :, np.argmin(abs(times - PEAK_S))].mean(axis=0), rebuilt, show=False)
    assert image is not None

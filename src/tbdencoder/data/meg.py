"""MEG preprocessing with MNE: raw FIF recordings -> fixation-locked gradiometer epochs (epochs.h5).

Per recording: read the raw FIF, keep the planar gradiometers, notch the line frequency and its
harmonics, band-pass (zero-phase FIR), resample, and cut epochs around each fixation onset of
fixations.tsv (`onset_s` seconds from the recording's first sample; the STI101 triggers are not used).
Epochs carry their `fixation_id` through `mne.Epochs(metadata=...)`, so kept rows are known by key.

epochs.h5 (docs/meg.md):
    grad/onset (n, n_grad, n_times) float32, T/m; attrs times (n_times,) s, sfreq_hz
    fixation_id (n,) str; fixations/<column> (n,) the fixations.tsv columns of those rows
        (group attr `columns`: their order)
    channels/name (n_grad,) str, channels/loc (n_grad, 12) float64, channels/coil_type (n_grad,) int,
    dev_head_t (4, 4) float64 (of the first recording)
    dropped/fixation_id, dropped/reason (n_dropped,) str: fixations without an epoch, and why
    attrs: subject, line_freq_hz, l_freq_hz, h_freq_hz, sfreq_hz, tmin_s, tmax_s,
        baseline_s (JSON: null or [start, stop] with null ends), reject_grad (NaN: no rejection),
        n_fixations, n_kept, n_rejected, n_outside_recording, recordings (str list),
        n_kept_per_recording, n_rejected_per_recording, n_outside_per_recording (int lists)
Rows follow the order of the fixation_ids in fixations.tsv.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import mne
import numpy as np
import pandas as pd

from tbdencoder.data.avs import ON_BAD, read_fixations
from tbdencoder.io import atomic_path, get_logger, write_strings

log = get_logger("data.meg")


@dataclass
class _RecordingEpochs:
    """One recording's epochs and bookkeeping."""

    path: Path
    data: np.ndarray  # (n_kept, n_grad, n_times) float32
    fixation_id: list[str]
    times_s: np.ndarray
    info: mne.Info
    dropped: dict[str, str]  # fixation_id -> reason
    n_outside: int
    n_rejected: int


def _read_raw(path: Path) -> mne.io.BaseRaw:
    if not path.is_file():
        raise ValueError(f"{path}: recording not found (expected a raw FIF file named in fixations.tsv `recording`)")
    try:
        return mne.io.read_raw_fif(path, preload=True, verbose="error")
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a raw FIF recording (expected Neuromag raw .fif): {exc}") from exc


def _epoch_recording(
    path: Path,
    rows: pd.DataFrame,
    *,
    line_freq_hz: float,
    l_freq_hz: float,
    h_freq_hz: float,
    sfreq_hz: float,
    tmin_s: float,
    tmax_s: float,
    baseline_s: tuple[float | None, float | None] | None,
    reject_grad: float | None,
    on_bad: str,
    n_jobs: int,
) -> _RecordingEpochs:
    """Filter, resample and epoch one recording around the onsets of `rows` (its fixations)."""
    start = time.perf_counter()
    raw = _read_raw(path)
    n_grad = len(mne.pick_types(raw.info, meg="grad", exclude=()))
    if n_grad == 0:
        raise ValueError(f"{path}: no planar gradiometers (expected 204 'grad' channels, found types "
                         f"{sorted(set(raw.get_channel_types()))})")
    raw.pick("grad")
    if n_grad != 204:
        log.warning("%s: %d gradiometers (a Neuromag array has 204)", path, n_grad)
    if raw.info["bads"]:
        log.warning("%s: bad channels kept (excluded from rejection only): %s", path, raw.info["bads"])
    if raw.info["projs"]:
        log.info("%s: applying %d SSP projectors from the file", path, len(raw.info["projs"]))

    nyquist_hz = raw.info["sfreq"] / 2
    notch_hz = np.arange(line_freq_hz, nyquist_hz, line_freq_hz)
    if len(notch_hz):
        raw.notch_filter(notch_hz, n_jobs=n_jobs, verbose="error")
    raw.filter(l_freq_hz, h_freq_hz, method="fir", phase="zero", fir_design="firwin", n_jobs=n_jobs, verbose="error")
    if raw.info["sfreq"] != sfreq_hz:
        raw.resample(sfreq_hz, n_jobs=n_jobs, verbose="error")

    rows = rows.sort_values("onset_s", kind="stable")
    onset_s = rows["onset_s"].to_numpy(float)
    if not np.all(np.isfinite(onset_s)):
        bad = rows["fixation_id"][~np.isfinite(onset_s)].tolist()
        raise ValueError(f"{path}: fixations {bad[:5]} have no onset_s")
    onset_sample = np.round(onset_s * sfreq_hz).astype(np.int64)
    first_offset = int(np.round(tmin_s * sfreq_hz))
    last_offset = int(np.round(tmax_s * sfreq_hz))
    inside = (onset_sample + first_offset >= 0) & (onset_sample + last_offset <= raw.n_times - 1)
    fixation_id = rows["fixation_id"].to_numpy(str)
    duration_s = raw.n_times / sfreq_hz
    outside_ids = fixation_id[~inside].tolist()
    if outside_ids and on_bad == "error":
        first = np.flatnonzero(~inside)[0]
        window_s = f"{onset_s[first] + tmin_s:.3f}..{onset_s[first] + tmax_s:.3f} s"
        raise ValueError(
            f"{path}: fixation {fixation_id[first]} epoch window {window_s} lies outside the recording "
            f"(duration {duration_s:.3f} s); {len(outside_ids)} such fixations"
        )
    if not inside.any():
        raise ValueError(f"{path}: the epoch windows of all {len(rows)} fixations lie outside the recording "
                         f"(duration {duration_s:.3f} s, onsets {onset_s.min():.3f}..{onset_s.max():.3f} s; "
                         "expected onset_s in seconds from the recording's first sample)")
    dropped = {fid: "outside_recording" for fid in outside_ids}

    samples = onset_sample[inside] + raw.first_samp
    repeated = np.flatnonzero(np.diff(samples) == 0)
    if len(repeated):
        pair = fixation_id[inside][[repeated[0], repeated[0] + 1]].tolist()
        raise ValueError(f"{path}: fixations {pair} start on the same sample at {sfreq_hz} Hz "
                         "(expected distinct onsets)")
    events = np.column_stack([samples, np.zeros_like(samples), np.ones_like(samples)])
    epochs = mne.Epochs(
        raw, events, event_id={"fixation": 1}, tmin=tmin_s, tmax=tmax_s,
        baseline=tuple(baseline_s) if baseline_s is not None else None,
        reject=dict(grad=reject_grad) if reject_grad is not None else None,
        metadata=pd.DataFrame({"fixation_id": fixation_id[inside]}),
        preload=True, on_outside="raise", verbose="error",
    )
    for fid, reasons in zip(fixation_id[inside], epochs.drop_log):
        if reasons:
            dropped[fid] = "rejected:" + ",".join(reasons)
    kept_ids = epochs.metadata["fixation_id"].tolist()
    result = _RecordingEpochs(
        path=path, data=epochs.get_data(copy=False, verbose="error").astype(np.float32), fixation_id=kept_ids,
        times_s=epochs.times.copy(), info=epochs.info, dropped=dropped,
        n_outside=len(outside_ids), n_rejected=int(inside.sum()) - len(kept_ids),
    )
    log.info("%s: %d fixations -> %d kept, %d rejected (reject_grad=%s), %d outside the recording "
             "(%.1f s); epochs %s in %.1f s", path, len(rows), len(kept_ids), result.n_rejected, reject_grad,
             result.n_outside, duration_s, result.data.shape, time.perf_counter() - start)
    return result


def _channel_arrays(info: mne.Info) -> tuple[list[str], np.ndarray, np.ndarray]:
    return (
        list(info["ch_names"]),
        np.array([ch["loc"] for ch in info["chs"]], dtype=np.float64),
        np.array([int(ch["coil_type"]) for ch in info["chs"]], dtype=np.int64),
    )


def _baseline_json(baseline_s: tuple[float | None, float | None] | None) -> str:
    return json.dumps(None if baseline_s is None else [None if b is None else float(b) for b in baseline_s])


def _write_column(group: h5py.Group, name: str, column: pd.Series) -> None:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        group.create_dataset(name, data=column.to_numpy())
    else:
        write_strings(group, name, column.fillna("").astype(str))


def preprocess_meg(
    fixations_path: str | Path,
    dataset_dir: str | Path,
    out_path: str | Path,
    *,
    line_freq_hz: float,
    l_freq_hz: float,
    h_freq_hz: float,
    sfreq_hz: float,
    tmin_s: float,
    tmax_s: float,
    baseline_s: tuple[float | None, float | None] | None,
    reject_grad: float | None,
    on_bad: str,
    n_jobs: int = 1,
) -> None:
    """Write epochs.h5: fixation-locked gradiometer epochs of every recording named in fixations.tsv.

    on_bad: what to do with a fixation whose epoch window lies outside its recording,
    'drop' (counted in `n_outside_recording`) or 'error' (ValueError naming the fixation).
    reject_grad: peak-to-peak rejection threshold in T/m (None: no rejection). Rejection is the documented
    artefact policy, so a rejected epoch is a counted drop (`n_rejected`) whatever `on_bad`; a subject with no
    surviving epoch is a ValueError with the counts.
    """
    start = time.perf_counter()
    if on_bad not in ON_BAD:
        raise ValueError(f"on_bad must be one of {ON_BAD}, got {on_bad!r}")
    if not h_freq_hz < sfreq_hz / 2:
        raise ValueError(f"h_freq_hz={h_freq_hz} must be below the Nyquist frequency of sfreq_hz={sfreq_hz}")
    if not tmin_s < tmax_s:
        raise ValueError(f"tmin_s={tmin_s} must be below tmax_s={tmax_s}")
    fixations_path, dataset_dir = Path(fixations_path), Path(dataset_dir)
    table = read_fixations(fixations_path)
    duplicated = table["fixation_id"][table["fixation_id"].duplicated()].tolist()
    if duplicated:
        raise ValueError(f"{fixations_path}: repeated fixation_id {duplicated[:5]} (expected unique keys)")
    if table.empty:
        raise ValueError(f"{fixations_path}: no fixations (expected one row per fixation)")
    no_recording = table["fixation_id"][table["recording"].fillna("").eq("")].tolist()
    if no_recording:
        raise ValueError(f"{fixations_path}: fixations {no_recording[:5]} have no recording")
    subjects = table["subject"].unique()
    if len(subjects) != 1:
        raise ValueError(f"{fixations_path}: expected one subject, found {sorted(subjects.tolist())}")
    subject = f"sub-{int(subjects[0]):02d}"
    log.info("%s: %d fixations of %s in %d recordings", fixations_path, len(table), subject,
             table["recording"].nunique())

    recordings: list[_RecordingEpochs] = []
    for recording, rows in table.groupby("recording", sort=True):
        result = _epoch_recording(
            dataset_dir / recording, rows, line_freq_hz=line_freq_hz, l_freq_hz=l_freq_hz, h_freq_hz=h_freq_hz,
            sfreq_hz=sfreq_hz, tmin_s=tmin_s, tmax_s=tmax_s, baseline_s=baseline_s, reject_grad=reject_grad,
            on_bad=on_bad, n_jobs=n_jobs,
        )
        if recordings and result.info["ch_names"] != recordings[0].info["ch_names"]:
            first = recordings[0]
            differ = sorted(set(first.info["ch_names"]) ^ set(result.info["ch_names"]))
            raise ValueError(f"{result.path}: gradiometer names differ from {first.path} "
                             f"(expected the same channels in the same order; differing: {differ[:6]})")
        recordings.append(result)

    n_rejected = sum(rec.n_rejected for rec in recordings)
    n_outside = sum(rec.n_outside for rec in recordings)
    data_by_id = {fid: (rec, i) for rec in recordings for i, fid in enumerate(rec.fixation_id)}
    if not data_by_id:
        raise ValueError(
            f"{fixations_path}: no epoch of {subject} survives: of {len(table)} fixations, {n_rejected} rejected by "
            f"the peak-to-peak threshold reject_grad={reject_grad} T/m (meg.preprocessing.reject_grad), "
            f"{n_outside} outside their recording; raise reject_grad (or 'none') or check the recordings"
        )
    kept = table[table["fixation_id"].isin(data_by_id)].reset_index(drop=True)
    n_times = len(recordings[0].times_s)
    data = np.empty((len(kept), len(recordings[0].info["ch_names"]), n_times), dtype=np.float32)
    for row, fid in enumerate(kept["fixation_id"]):
        rec, i = data_by_id[fid]
        data[row] = rec.data[i]
    dropped = {fid: reason for rec in recordings for fid, reason in rec.dropped.items()}
    dropped_ids = [fid for fid in table["fixation_id"] if fid in dropped]
    names, loc, coil_type = _channel_arrays(recordings[0].info)
    dev_head_t = recordings[0].info["dev_head_t"]

    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as h5:
        onset = h5.create_dataset("grad/onset", data=data)
        onset.attrs["times"] = recordings[0].times_s
        onset.attrs["sfreq_hz"] = float(sfreq_hz)
        write_strings(h5, "fixation_id", kept["fixation_id"])
        group = h5.create_group("fixations")
        group.attrs["columns"] = list(kept.columns)
        for name in kept.columns:
            _write_column(group, name, kept[name])
        write_strings(h5, "channels/name", names)
        h5.create_dataset("channels/loc", data=loc)
        h5.create_dataset("channels/coil_type", data=coil_type)
        h5.create_dataset("dev_head_t", data=np.eye(4) if dev_head_t is None else dev_head_t["trans"])
        write_strings(h5, "dropped/fixation_id", dropped_ids)
        write_strings(h5, "dropped/reason", [dropped[fid] for fid in dropped_ids])
        h5.attrs.update(
            subject=subject, line_freq_hz=float(line_freq_hz), l_freq_hz=float(l_freq_hz),
            h_freq_hz=float(h_freq_hz), sfreq_hz=float(sfreq_hz), tmin_s=float(tmin_s), tmax_s=float(tmax_s),
            baseline_s=_baseline_json(baseline_s),
            reject_grad=np.nan if reject_grad is None else float(reject_grad),
            n_fixations=len(table), n_kept=len(kept), n_rejected=n_rejected, n_outside_recording=n_outside,
            recordings=[str(rec.path.relative_to(dataset_dir)) for rec in recordings],
            n_kept_per_recording=[len(rec.fixation_id) for rec in recordings],
            n_rejected_per_recording=[rec.n_rejected for rec in recordings],
            n_outside_per_recording=[rec.n_outside for rec in recordings],
        )
    log.info("%s: grad/onset %s (%d kept of %d; %d rejected, %d outside) in %.1f s", out_path, data.shape,
             len(kept), len(table), n_rejected, n_outside, time.perf_counter() - start)


def read_epochs(path: str | Path) -> tuple[np.ndarray, list[str], np.ndarray, pd.DataFrame]:
    """(data (n, n_grad, n_times) float32 T/m, fixation_ids, times (n_times,) s, fixations rows) of epochs.h5."""
    with h5py.File(path, "r") as h5:
        onset = h5["grad/onset"]
        group = h5["fixations"]
        columns = {}
        for name in group.attrs["columns"]:
            dataset = group[name]
            columns[name] = dataset.asstr()[:] if h5py.check_string_dtype(dataset.dtype) else dataset[:]
        return onset[:], list(h5["fixation_id"].asstr()[:]), onset.attrs["times"][:], pd.DataFrame(columns)


def read_fixation_column(path: str | Path, column: str) -> np.ndarray:
    """One fixations column of epochs.h5 (e.g. `sceneID`), without reading the epochs."""
    with h5py.File(path, "r") as h5:
        if f"fixations/{column}" not in h5:
            raise ValueError(f"{path}: no fixations column {column!r}; expected an epochs.h5 of `meg-epochs`")
        dataset = h5[f"fixations/{column}"]
        return dataset.asstr()[:] if h5py.check_string_dtype(dataset.dtype) else dataset[:]


def channel_info(path: str | Path) -> mne.Info:
    """A gradiometer-only `mne.Info` (names, locations, coil types, dev_head_t) rebuilt from epochs.h5."""
    with h5py.File(path, "r") as h5:
        names = list(h5["channels/name"].asstr()[:])
        loc = h5["channels/loc"][:]
        coil_type = h5["channels/coil_type"][:]
        dev_head_t = h5["dev_head_t"][:]
        sfreq_hz = float(h5["grad/onset"].attrs["sfreq_hz"])
    info = mne.create_info(names, sfreq_hz, ch_types="grad")
    for ch, ch_loc, ch_coil in zip(info["chs"], loc, coil_type):
        ch["loc"][:] = ch_loc
        ch["coil_type"] = int(ch_coil)
    info["dev_head_t"] = mne.transforms.Transform("meg", "head", dev_head_t)
    return info

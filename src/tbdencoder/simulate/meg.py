"""Synthetic free-viewing MEG with eye tracking in the AVS layout of docs/meg.md, from a known ground truth.

The generative model is spelled out in MODEL_DESCRIPTION, which is also written to
ground_truth/simulation.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mne
import numpy as np
import pandas as pd
from PIL import Image

from tbdencoder.config import section_defaults
from tbdencoder.data.avs import subject_label
from tbdencoder.data.crops import DEFAULT_SCREEN, ScreenGeometry, extract_dva_crop
from tbdencoder.io import atomic_directory, get_logger
from tbdencoder.simulate.neuromag import (nominal_dev_head_t, sensor_geometry, subject_dev_head_t, subject_head_offset,
                                          vectorview_info)
from tbdencoder.simulate.scenes import scene_for_id

MODEL_DESCRIPTION = (
    "Head: a spherical conductor (MEG sphere model) centred at HEAD_SPHERE_ORIGIN_M in head coordinates "
    "(= MRI coordinates, identity transform); sensors: the Vectorview-style helmet of simulate.neuromag, placed "
    "by a per-subject device->head transform: the nominal one (device origin at DEVICE_ORIGIN_IN_HEAD_M) "
    "rotated about the device origin by a rotation vector with sd head_rotation_deg per axis, then translated "
    "by sd head_shift_mm per axis (both 0: every subject at the nominal head position). Sources, background "
    "dipoles and the sphere stay fixed in head coordinates, so the head position changes every sensor pattern.",
    "Sources: fixed-orientation tangential current dipoles (radial ones are silent in a sphere). Foveal "
    "sources (bilateral early visual) respond to the foveal crop of the current fixation, the parafoveal "
    "source (right dorsal occipito-parietal, far from them) to the crop at the NEXT fixation of the same trial "
    "(zero for the last fixation).",
    "Crop statistics: mean luminance, RMS contrast, red-green and blue-yellow opponency, edge energy of "
    "extract_dva_crop(scene, (mean_gx, mean_gy), crop_dva, screen) (constant padding), standardised with "
    "the mean / sd over all simulated fixations (stat_mean, stat_sd).",
    "Amplitudes (nAm): foveal source s: evoked_nam_s + modulation_nam_s * w_s . z(current crop); parafoveal "
    "source p: modulation_nam_p * w_p . z(next crop). Random weights w, shared by all subjects, are scaled so "
    "that w . z has unit variance over all simulated fixations; foveal modulation_nam = SOURCE_MODULATION_NAM, "
    "the parafoveal one makes, for the nominal head position, the parafoveal signal sd at its best gradiometer "
    "parafoveal_gain times the foveal signal sd at its best gradiometer.",
    "Between subjects: each subject has a response gain g = exp(subject_gain_sd * u) and a latency "
    "latency_s + subject_latency_sd_s * v, clipped to SUBJECT_LATENCY_RANGE_S (widened to include latency_s), "
    "u, v standard normal from a (seed, subject) RNG stream (0 sds: g = 1, latency = latency_s). The gain "
    "multiplies all of the subject's signal source amplitudes, the evoked part included (foveal and "
    "parafoveal alike); weights w, modulation_nam and the crop statistics are shared. Values per subject "
    "under 'subjects' (gain, latency_s, head_translation_mm, head_rotation_deg).",
    "Time course: every fixation adds amplitude * kernel(t - onset) to its sources, kernel(t) = "
    "(t / latency)^k exp(k (1 - t / latency)) for t > 0 (peak 1 at the subject's latency); responses of "
    "successive fixations overlap and sum.",
    "Background: BACKGROUND_SOURCES random tangential dipoles with independent 1/f time courses, scaled per "
    "subject so that at the gradiometer with the largest foveal variance the foveal variance at the peak "
    "of the subject's signal at gain 1 over the background variance in SNR_BAND_HZ (brain 1/f plus white "
    "sensor noise, which carries WHITE_NOISE_SHARE of the brain part there) equals snr; the subject's gain "
    "then scales the signal, not the noise, so its own SNR is snr * gain^2 ('effective_snr' per subject); "
    "line noise at line_freq_hz and its harmonic; a few large artefact transients (listed under 'artefacts').",
)
STAT_NAMES = ("mean_luminance", "rms_contrast", "red_green", "blue_yellow", "edge_energy")
METADATA_COLUMNS = ("subject", "session", "trial", "sceneID", "type", "recording", "start_time", "end_time",
                    "duration", "fix_sequence", "mean_gx", "mean_gy")
HEAD_SPHERE_ORIGIN_M = (0.0, 0.0, 0.04)
SOURCE_RADIUS_M = 0.065  # distance of the signal dipoles from the sphere origin


@dataclass(frozen=True)
class Source:
    """A signal dipole: direction from the sphere origin (head coords), tangent angle and evoked amplitude."""

    name: str
    stream: str  # 'foveal' | 'parafoveal'
    direction: tuple[float, float, float]
    tangent_deg: float  # 0 = horizontal tangent, 90 = tangent toward the vertex
    evoked_nam: float  # fixation-invariant part of the amplitude, nAm

    def position_m(self) -> np.ndarray:
        direction = np.asarray(self.direction, dtype=np.float64)
        return np.asarray(HEAD_SPHERE_ORIGIN_M) + SOURCE_RADIUS_M * direction / np.linalg.norm(direction)

    def orientation(self) -> np.ndarray:
        radial = np.asarray(self.direction, dtype=np.float64)
        radial /= np.linalg.norm(radial)
        horizontal = np.cross([0.0, 0.0, 1.0], radial)
        horizontal /= np.linalg.norm(horizontal)
        upward = np.cross(radial, horizontal)
        angle = np.radians(self.tangent_deg)
        return np.cos(angle) * horizontal + np.sin(angle) * upward


SOURCES = (
    Source("early_visual_left", "foveal", (-0.12, -1.0, 0.05), 30.0, 15.0),
    Source("early_visual_right", "foveal", (0.12, -1.0, 0.05), 120.0, -10.0),
    Source("ventral_visual_left", "foveal", (-0.30, -0.95, -0.15), 75.0, 10.0),
    Source("ventral_visual_right", "foveal", (0.30, -0.95, -0.15), 160.0, -15.0),
    Source("dorsal_parietal_right", "parafoveal", (0.65, -0.60, 0.45), 45.0, 0.0),
)
SOURCE_MODULATION_NAM = 10.0
KERNEL_SHAPE = 8.0  # gamma exponent k: with latency 0.11 s the kernel is ~3 % of its peak at 0.25 s
KERNEL_LENGTH_S = 0.5
SUBJECT_LATENCY_RANGE_S = (0.04, 0.2)  # a subject's latency is clipped to this range (widened to hold latency_s)
TRUTH_TMIN_S, TRUTH_TMAX_S = -0.1, 0.5
BACKGROUND_SOURCES = 100
BACKGROUND_RADIUS_M = (0.02, 0.075)
PINK_FLOOR_HZ = 0.1  # the 1/f spectrum is flat below this
SNR_BAND_HZ = (0.5, 40.0)
WHITE_NOISE_SHARE = 0.25
MAG_PER_GRAD_NOISE_M = 0.01  # white noise sd of magnetometers (T) per gradiometer sd (T/m)
LINE_AMPLITUDE = {"grad": 4e-12, "mag": 2e-12}  # T/m, T; the harmonic has HARMONIC_RATIO of it
HARMONIC_RATIO = 0.3
ARTEFACTS_PER_RECORDING = (1, 3)  # inclusive range
# biphasic transients sin(2 pi x) sin^2(pi x), x = 0..1 over the duration (zero mean, so a high-pass filter
# does not smear them over neighbouring epochs; the shape peaks at 0.65 of the amplitude)
ARTEFACT_AMPLITUDE = {"movement": {"grad": 1.5e-9, "mag": 3e-11}, "glitch": {"grad": 5e-9, "mag": 1e-10}}
ARTEFACT_DURATION_S = {"movement": (0.3, 0.8), "glitch": (0.02, 0.05)}
TRIGGER_WIDTH_S = 0.01
# behaviour (milliseconds, screen pixels, degrees of visual angle)
FIXATIONS_PER_TRIAL = (6, 10)  # inclusive range
FIXATION_MIN_MS, FIXATION_GAMMA_SHAPE, FIXATION_GAMMA_SCALE_MS = 150.0, 2.0, 50.0  # mean 250 ms
SACCADE_MS = (20.0, 50.0)
SACCADE_MS_PER_DVA = 2.5
SACCADE_GAMMA_SHAPE, SACCADE_GAMMA_SCALE_DVA = 2.0, 2.0  # mean amplitude 4 dva
EDGE_FIXATION_PROBABILITY = 0.06  # fixation drawn near the scene edge (inside or outside)
EDGE_SD_DVA = 0.6
START_SD_DVA = 0.5
REPEAT_JITTER_DVA = 0.1
LEAD_IN_MS, TAIL_MS = 2000, 1500
INTER_TRIAL_MS = (1000, 1500)
_PLAN_STREAM, _WEIGHT_STREAM, _HEAD_STREAM, _NOISE_STREAM = 21, 22, 23, 24  # RNG stream tags (neuromag: 20)
_SUBJECT_STREAM = 25

log = get_logger("simulate")


def recording_path(subject: int, session: int) -> str:
    """FIF path of one session relative to the dataset folder."""
    label = subject_label(subject)
    return f"meg/{label}/{label}_ses-{session}_meg.fif"


def crop_statistics(crop: np.ndarray) -> np.ndarray:
    """(len(STAT_NAMES),) statistics of an RGB uint8 crop, in STAT_NAMES order."""
    rgb = np.asarray(crop, dtype=np.float64)[..., :3] / 255.0
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    gradient_y, gradient_x = np.gradient(luminance)
    return np.array([
        luminance.mean(),
        luminance.std(),
        (rgb[..., 0] - rgb[..., 1]).mean(),
        (rgb[..., 2] - (rgb[..., 0] + rgb[..., 1]) / 2.0).mean(),
        np.hypot(gradient_x, gradient_y).mean(),
    ])


def kernel(times_s: np.ndarray, latency_s: float) -> np.ndarray:
    """Fixation-locked time course: 0 for t <= 0, gamma-shaped with peak 1 at latency_s."""
    ratio = np.clip(np.asarray(times_s, dtype=np.float64), 0.0, None) / latency_s
    with np.errstate(divide="ignore"):
        values = np.exp(KERNEL_SHAPE * (np.log(ratio) + 1.0 - ratio))
    return np.where(ratio > 0, values, 0.0)


def subject_response(seed: int, subject: int, *, latency_s: float, gain_sd: float, latency_sd_s: float
                     ) -> tuple[float, float]:
    """(gain, latency in s) of one subject: exp(gain_sd * u) and latency_s + latency_sd_s * v clipped to
    SUBJECT_LATENCY_RANGE_S (widened to hold latency_s); u, v standard normal from a (seed, subject) stream,
    both always drawn, so one sd does not change the other's draw nor do other subjects change them."""
    u, v = np.random.default_rng([seed, _SUBJECT_STREAM, subject]).standard_normal(2)
    low, high = min(SUBJECT_LATENCY_RANGE_S[0], latency_s), max(SUBJECT_LATENCY_RANGE_S[1], latency_s)
    return float(np.exp(gain_sd * u)), float(np.clip(latency_s + latency_sd_s * v, low, high))


def scene_image(seed: int, scene_number: int, scene_size_px: tuple[int, int]) -> np.ndarray:
    """(height, width, 3) uint8 scene: the centre of a square simulate.scenes view."""
    width, height = scene_size_px
    side = max(width, height)
    square = scene_for_id(seed, scene_number, side)
    top, left = (side - height) // 2, (side - width) // 2
    return np.ascontiguousarray(square[top:top + height, left:left + width])


def scene_id(scene_number: int) -> str:
    return f"scene-{scene_number:04d}"


# ---------------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True)
class Trial:
    """One scene viewing: gaze (screen px, rounded to 0.1), fixation and following-saccade durations (ms)."""

    scene_number: int
    gaze_px: np.ndarray  # (n_fixations, 2)
    fixation_ms: np.ndarray  # (n_fixations,) int
    saccade_ms: np.ndarray  # (n_fixations - 1,) int
    repeat_of: int | None  # session-1 trial number this trial repeats


def _scene_box(screen: ScreenGeometry, scene_size_px: tuple[int, int]) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) of the centred scene in screen pixels."""
    width, height = scene_size_px
    left, top = screen.scene_offset((height, width))
    return left, top, left + width, top + height


def _next_gaze(rng: np.random.Generator, gaze: np.ndarray, box: tuple[float, float, float, float],
               screen: ScreenGeometry, px_per_dva: float) -> np.ndarray:
    """The next fixation: mostly a gamma-distributed saccade landing inside the scene, sometimes near an edge."""
    left, top, right, bottom = box
    if rng.random() < EDGE_FIXATION_PROBABILITY:
        side = rng.integers(4)
        along = rng.uniform(0.0, 1.0)
        across = rng.normal(0.0, EDGE_SD_DVA * px_per_dva)
        x = left + along * (right - left) if side < 2 else (left, right)[side - 2] + across
        y = (top, bottom)[side] + across if side < 2 else top + along * (bottom - top)
        target = np.array([x, y])
    else:
        for _ in range(50):
            amplitude = rng.gamma(SACCADE_GAMMA_SHAPE, SACCADE_GAMMA_SCALE_DVA) * px_per_dva
            angle = rng.uniform(0.0, 2.0 * np.pi)
            target = gaze + amplitude * np.array([np.cos(angle), np.sin(angle)])
            if left <= target[0] < right and top <= target[1] < bottom:
                break
        else:
            target = np.array([rng.uniform(left, right), rng.uniform(top, bottom)])
    return np.clip(target, 0.0, [screen.width_px - 1.0, screen.height_px - 1.0])


def _saccade_ms(gaze: np.ndarray, px_per_dva: float) -> np.ndarray:
    amplitude_dva = np.linalg.norm(np.diff(gaze, axis=0), axis=1) / px_per_dva
    return np.rint(np.clip(SACCADE_MS[0] + SACCADE_MS_PER_DVA * amplitude_dva, *SACCADE_MS)).astype(np.int64)


def _new_trial(rng: np.random.Generator, scene_number: int, box: tuple[float, float, float, float],
               screen: ScreenGeometry, px_per_dva: float) -> Trial:
    n_fixations = int(rng.integers(FIXATIONS_PER_TRIAL[0], FIXATIONS_PER_TRIAL[1] + 1))
    centre = np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])
    gaze = [centre + rng.normal(0.0, START_SD_DVA * px_per_dva, 2)]
    for _ in range(n_fixations - 1):
        gaze.append(_next_gaze(rng, gaze[-1], box, screen, px_per_dva))
    gaze = np.round(np.stack(gaze), 1)
    fixation_ms = np.rint(FIXATION_MIN_MS + rng.gamma(FIXATION_GAMMA_SHAPE, FIXATION_GAMMA_SCALE_MS, n_fixations))
    return Trial(scene_number, gaze, fixation_ms.astype(np.int64), _saccade_ms(gaze, px_per_dva), None)


def _repeat_trial(rng: np.random.Generator, original: Trial, original_number: int, screen: ScreenGeometry,
                  px_per_dva: float) -> Trial:
    """The same scene, scanpath and durations, gaze jittered by REPEAT_JITTER_DVA."""
    gaze = original.gaze_px + rng.normal(0.0, REPEAT_JITTER_DVA * px_per_dva, original.gaze_px.shape)
    gaze = np.round(np.clip(gaze, 0.0, [screen.width_px - 1.0, screen.height_px - 1.0]), 1)
    return Trial(original.scene_number, gaze, original.fixation_ms, original.saccade_ms, original_number)


def plan_subject(subject: int, *, n_sessions: int, n_trials_per_session: int, n_scenes: int,
                 scene_size_px: tuple[int, int], repeat_fraction: float, screen: ScreenGeometry,
                 seed: int) -> list[list[Trial]]:
    """Per session, the trials in presentation order; repeats re-show session-1 trials."""
    rng = np.random.default_rng([seed, _PLAN_STREAM, subject])
    n_repeats = round(repeat_fraction * n_trials_per_session) if n_sessions > 1 else 0
    n_distinct = n_trials_per_session + (n_sessions - 1) * (n_trials_per_session - n_repeats)
    if n_distinct > n_scenes:
        raise ValueError(f"n_scenes={n_scenes}: subject {subject} needs {n_distinct} distinct scenes "
                         f"({n_sessions} sessions x {n_trials_per_session} trials, {n_repeats} repeats per session)")
    scenes = iter(rng.choice(np.arange(1, n_scenes + 1), size=n_distinct, replace=False).tolist())
    box = _scene_box(screen, scene_size_px)
    px_per_dva = screen.dva_to_px(1.0)
    first = [_new_trial(rng, next(scenes), box, screen, px_per_dva) for _ in range(n_trials_per_session)]
    sessions = [first]
    for _ in range(1, n_sessions):
        repeated = np.sort(rng.choice(n_trials_per_session, size=n_repeats, replace=False))
        trials = [_repeat_trial(rng, first[k], k + 1, screen, px_per_dva) for k in repeated]
        trials += [_new_trial(rng, next(scenes), box, screen, px_per_dva) for _ in range(n_trials_per_session - n_repeats)]
        sessions.append([trials[k] for k in rng.permutation(len(trials))])
    return sessions


def session_events(subject: int, session: int, trials: list[Trial], rng: np.random.Generator
                   ) -> tuple[pd.DataFrame, int]:
    """Fixation and saccade rows (times in integer ms from the recording start) and the recording length (ms)."""
    rows = []
    now_ms = LEAD_IN_MS
    recording = recording_path(subject, session)
    for trial_number, trial in enumerate(trials, start=1):
        if trial_number > 1:
            now_ms += int(rng.integers(INTER_TRIAL_MS[0], INTER_TRIAL_MS[1] + 1))
        base = {"subject": subject, "session": session, "trial": trial_number,
                "sceneID": scene_id(trial.scene_number), "recording": recording, "repeat_of": trial.repeat_of}
        for index, ((gx, gy), fixation_ms) in enumerate(zip(trial.gaze_px, trial.fixation_ms)):
            rows.append({**base, "type": "fixation", "start_ms": now_ms, "end_ms": now_ms + int(fixation_ms),
                         "fix_sequence": index + 1, "mean_gx": gx, "mean_gy": gy})
            now_ms += int(fixation_ms)
            if index < len(trial.saccade_ms):
                middle = (trial.gaze_px[index] + trial.gaze_px[index + 1]) / 2.0
                rows.append({**base, "type": "saccade", "start_ms": now_ms,
                             "end_ms": now_ms + int(trial.saccade_ms[index]), "fix_sequence": None,
                             "mean_gx": round(float(middle[0]), 1), "mean_gy": round(float(middle[1]), 1)})
                now_ms += int(trial.saccade_ms[index])
    return pd.DataFrame(rows), now_ms + TAIL_MS


# ---------------------------------------------------------------------------------------------- physics

_FOVEAL = np.array([s.stream == "foveal" for s in SOURCES])
_EVOKED_NAM = np.array([s.evoked_nam for s in SOURCES])


@dataclass(frozen=True)
class Head:
    """One subject's forward model: gains of the signal sources and of the background dipoles."""

    signal_gain: np.ndarray  # (306, len(SOURCES)) T or T/m per A m
    background_gain: np.ndarray  # (306, BACKGROUND_SOURCES)


def fixed_gain(info: mne.Info, rr: np.ndarray, nn: np.ndarray) -> np.ndarray:
    """(306, n_dipoles) sphere-model gain of dipoles at rr (head = MRI coords, m) with orientations nn."""
    sphere = mne.make_sphere_model(r0=HEAD_SPHERE_ORIGIN_M, head_radius=None, verbose=False)
    src = mne.setup_volume_source_space(pos={"rr": rr, "nn": nn}, mindist=0.0, verbose=False)
    if src[0]["nuse"] != len(rr):
        raise RuntimeError(f"the volume source space kept {src[0]['nuse']} of {len(rr)} dipoles")
    identity = mne.transforms.Transform("head", "mri")
    fwd = mne.make_forward_solution(info, trans=identity, src=src, bem=sphere, meg=True, eeg=False, mindist=0.0,
                                    verbose=False)
    free = fwd["sol"]["data"].reshape(fwd["sol"]["data"].shape[0], len(rr), 3)  # x, y, z per dipole
    return np.einsum("cdk,dk->cd", free, nn)


def make_head(subject: int, seed: int, info: mne.Info) -> Head:
    """Forward model of SOURCES and of random tangential background dipoles (uniform in a shell) for one subject."""
    rng = np.random.default_rng([seed, _HEAD_STREAM, subject])
    radial = rng.standard_normal((BACKGROUND_SOURCES, 3))
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    low, high = BACKGROUND_RADIUS_M
    distance = (low**3 + rng.random(BACKGROUND_SOURCES) * (high**3 - low**3)) ** (1.0 / 3.0)
    background_rr = np.asarray(HEAD_SPHERE_ORIGIN_M) + distance[:, None] * radial
    tangent = rng.standard_normal((BACKGROUND_SOURCES, 3))
    tangent -= np.sum(tangent * radial, axis=1, keepdims=True) * radial
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    rr = np.concatenate([np.stack([s.position_m() for s in SOURCES]), background_rr])
    nn = np.concatenate([np.stack([s.orientation() for s in SOURCES]), tangent])
    gain = fixed_gain(info, rr, nn)
    return Head(gain[:, :len(SOURCES)], gain[:, len(SOURCES):])


def source_weights(seed: int, z: np.ndarray) -> np.ndarray:
    """(len(SOURCES), len(STAT_NAMES)) random weights of the standardised crop statistics, shared by subjects,
    scaled so that weights @ z has unit variance over the rows of `z` (all simulated fixations)."""
    weights = np.random.default_rng([seed, _WEIGHT_STREAM]).standard_normal((len(SOURCES), len(STAT_NAMES)))
    return weights / (z @ weights.T).std(axis=0)[:, None]


def next_fixation(z: np.ndarray) -> np.ndarray:
    """One trial's per-fixation rows moved up by one: row i holds fixation i + 1's values, zeros for the last."""
    return np.concatenate([z[1:], np.zeros_like(z[:1])])


def modulation_nam(weights: np.ndarray, current_z: np.ndarray, next_z: np.ndarray, parafoveal_gain: float,
                   sfreq_hz: float) -> np.ndarray:
    """(len(SOURCES),) scale of each source's stimulus-driven amplitude: SOURCE_MODULATION_NAM for foveal sources;
    parafoveal ones scaled so that, for the nominal head and the simulated fixations, the parafoveal signal sd at
    its best gradiometer is parafoveal_gain times the foveal signal sd at its best gradiometer."""
    info = vectorview_info(sfreq_hz, nominal_dev_head_t())
    gain = fixed_gain(info, np.stack([s.position_m() for s in SOURCES]), np.stack([s.orientation() for s in SOURCES]))
    grad_gain = gain[mne.pick_types(info, meg="grad")]
    foveal_sd = ((current_z @ weights[_FOVEAL].T) @ grad_gain[:, _FOVEAL].T).std(axis=0).max()
    parafoveal_sd = ((next_z @ weights[~_FOVEAL].T) @ grad_gain[:, ~_FOVEAL].T).std(axis=0).max()
    return SOURCE_MODULATION_NAM * np.where(_FOVEAL, 1.0, parafoveal_gain * foveal_sd / parafoveal_sd)


def source_amplitudes_nam(current_z: np.ndarray, next_z: np.ndarray, weights: np.ndarray,
                          modulation: np.ndarray) -> np.ndarray:
    """(n_fixations, len(SOURCES)) dipole amplitudes from the standardised statistics of the current and next crops."""
    return _EVOKED_NAM + modulation * np.where(_FOVEAL, current_z @ weights.T, next_z @ weights.T)


def sensor_patterns(head: Head, weights: np.ndarray, modulation: np.ndarray) -> dict[str, np.ndarray]:
    """Sensor values at the kernel peak: 'foveal' / 'parafoveal' (306, n_stats) per unit standardised statistic,
    'evoked' (306,) the fixation-invariant part."""
    per_weight = head.signal_gain * modulation * 1e-9
    return {
        "foveal": per_weight[:, _FOVEAL] @ weights[_FOVEAL],
        "parafoveal": per_weight[:, ~_FOVEAL] @ weights[~_FOVEAL],
        "evoked": head.signal_gain @ (_EVOKED_NAM * 1e-9),
    }


def _band_fraction(n_samples: int, sfreq_hz: float, shaping: np.ndarray, band_hz: tuple[float, float]) -> float:
    """Expected variance within band_hz of unit white noise filtered by the rfft-bin gains `shaping`."""
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sfreq_hz)
    bin_weight = np.where((freqs == 0) | (freqs == sfreq_hz / 2.0), 1.0, 2.0)
    in_band = (freqs >= band_hz[0]) & (freqs <= band_hz[1])
    return float(np.sum(bin_weight[in_band] * shaping[in_band] ** 2) / n_samples)


def pink_noise(rng: np.random.Generator, n_series: int, n_samples: int, sfreq_hz: float,
               band_hz: tuple[float, float]) -> np.ndarray:
    """(n_series, n_samples) 1/f noise (flat below PINK_FLOOR_HZ, no DC) with expected unit variance in band_hz."""
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sfreq_hz)
    shaping = np.where(freqs > 0, 1.0 / np.sqrt(np.maximum(freqs, PINK_FLOOR_HZ)), 0.0)
    shaping /= np.sqrt(_band_fraction(n_samples, sfreq_hz, shaping, band_hz))
    spectrum = np.fft.rfft(rng.standard_normal((n_series, n_samples)), axis=1) * shaping
    return np.fft.irfft(spectrum, n=n_samples, axis=1)


@dataclass(frozen=True)
class NoiseLevels:
    """One subject's background scaling, chosen to meet snr at its best gradiometer."""

    best_gradiometer: str
    foveal_variance: float  # over fixations, at the best gradiometer at the kernel peak at gain 1, (T/m)^2
    background_source_nam: float  # in-band sd of every background dipole
    white_grad_t_per_m: float  # broadband sd of the gradiometer sensor noise
    white_mag_t: float


def noise_levels(head: Head, ch_names: list[str], foveal_peak: np.ndarray, snr: float, sfreq_hz: float
                 ) -> NoiseLevels:
    """Background levels for the subject's (n_fixations, 306) foveal sensor values at the peak."""
    grads = np.flatnonzero([not name.endswith("1") for name in ch_names[:306]])
    variance = foveal_peak.var(axis=0)
    best = grads[np.argmax(variance[grads])]
    brain = variance[best] / snr / (1.0 + WHITE_NOISE_SHARE)
    brain_per_nam2 = float(np.sum(head.background_gain[best] ** 2)) * 1e-18
    white_band_fraction = (SNR_BAND_HZ[1] - SNR_BAND_HZ[0]) / (sfreq_hz / 2.0)
    white_grad = np.sqrt(WHITE_NOISE_SHARE * brain / white_band_fraction)
    return NoiseLevels(ch_names[best], float(variance[best]), float(np.sqrt(brain / brain_per_nam2)),
                       float(white_grad), float(white_grad * MAG_PER_GRAD_NOISE_M))


@dataclass(frozen=True)
class Artefact:
    """A large biphasic transient on some MEG channels."""

    kind: str  # a key of ARTEFACT_AMPLITUDE
    start_s: float
    end_s: float
    channels: np.ndarray  # indices into the 306 MEG channels
    gain: np.ndarray  # signed multiplier of ARTEFACT_AMPLITUDE per channel

    def record(self, recording: str, ch_names: list[str]) -> dict:
        channels = "all MEG" if self.channels.size == 306 else [ch_names[c] for c in self.channels]
        return {"recording": recording, "kind": self.kind, "start_s": self.start_s, "end_s": self.end_s,
                "channels": channels}


def draw_artefacts(rng: np.random.Generator, duration_s: float) -> list[Artefact]:
    """ARTEFACTS_PER_RECORDING movements (all channels) or electronic glitches (1-4 channels) at random times."""
    artefacts = []
    for _ in range(int(rng.integers(ARTEFACTS_PER_RECORDING[0], ARTEFACTS_PER_RECORDING[1] + 1))):
        kind = str(rng.choice(sorted(ARTEFACT_AMPLITUDE)))
        length_s = float(rng.uniform(*ARTEFACT_DURATION_S[kind]))
        start_s = round(float(rng.uniform(1.0, duration_s - 1.0 - length_s)), 3)
        if kind == "movement":
            channels, gain = np.arange(306), rng.standard_normal(306)
        else:
            channels = np.sort(rng.choice(306, size=int(rng.integers(1, 5)), replace=False))
            gain = rng.choice([-1.0, 1.0], size=channels.size)
        artefacts.append(Artefact(kind, start_s, round(start_s + length_s, 3), channels, gain))
    return artefacts


def add_artefacts(meg: np.ndarray, artefacts: list[Artefact], is_mag: np.ndarray, sfreq_hz: float) -> None:
    """Add the artefacts to (306, n_samples) MEG data in place."""
    for artefact in artefacts:
        samples = np.arange(int(np.ceil(artefact.start_s * sfreq_hz)), int(np.floor(artefact.end_s * sfreq_hz)) + 1)
        x = (samples / sfreq_hz - artefact.start_s) / (artefact.end_s - artefact.start_s)
        envelope = np.sin(2.0 * np.pi * x) * np.sin(np.pi * x) ** 2
        amplitude = ARTEFACT_AMPLITUDE[artefact.kind]
        scale = artefact.gain * np.where(is_mag[artefact.channels], amplitude["mag"], amplitude["grad"])
        meg[artefact.channels[:, None], samples[None, :]] += scale[:, None] * envelope


def render_recording(onsets_s: np.ndarray, amplitudes_nam: np.ndarray, n_samples: int, head: Head,
                     noise: NoiseLevels, info: mne.Info, latency_s: float, line_freq_hz: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, list[Artefact]]:
    """(307, n_samples) data of one session (MEG in T and T/m, then STI101) and its artefacts.

    Each fixation (onset, amplitudes (len(SOURCES),) nAm) adds amplitude * kernel(t - onset) to its sources.
    """
    sfreq_hz = info["sfreq"]
    sources = np.zeros((len(SOURCES), n_samples))
    n_kernel = int(round(KERNEL_LENGTH_S * sfreq_hz))
    for onset_s, amplitude in zip(onsets_s, amplitudes_nam):
        first = int(np.ceil(onset_s * sfreq_hz))
        samples = np.arange(first, min(first + n_kernel, n_samples))
        sources[:, samples] += amplitude[:, None] * kernel(samples / sfreq_hz - onset_s, latency_s)
    data = np.zeros((307, n_samples))
    meg = data[:306]
    meg += head.signal_gain @ (sources * 1e-9)
    background = pink_noise(rng, BACKGROUND_SOURCES, n_samples, sfreq_hz, SNR_BAND_HZ)
    meg += head.background_gain @ (background * noise.background_source_nam * 1e-9)
    is_mag = np.array([name.endswith("1") for name in info["ch_names"][:306]])
    meg += np.where(is_mag, noise.white_mag_t, noise.white_grad_t_per_m)[:, None] * rng.standard_normal(meg.shape)
    times_s = np.arange(n_samples) / sfreq_hz
    line = np.where(is_mag, LINE_AMPLITUDE["mag"], LINE_AMPLITUDE["grad"]) * rng.uniform(0.5, 1.5, 306)
    for harmonic, ratio in ((1, 1.0), (2, HARMONIC_RATIO)):
        phase = rng.uniform(0.0, 2.0 * np.pi, 306)[:, None]
        meg += ratio * line[:, None] * np.sin(2.0 * np.pi * harmonic * line_freq_hz * times_s + phase)
    artefacts = draw_artefacts(rng, n_samples / sfreq_hz)
    add_artefacts(meg, artefacts, is_mag, sfreq_hz)
    width = max(1, int(round(TRIGGER_WIDTH_S * sfreq_hz)))
    for sample in np.rint(onsets_s * sfreq_hz).astype(np.int64):
        data[306, sample:sample + width] = 1.0
    return data, artefacts


# ---------------------------------------------------------------------------------------------- driver


def _check_arguments(subjects: list[int], n_sessions: int, n_trials_per_session: int, scene_size_px: tuple[int, int],
                     repeat_fraction: float, sfreq_hz: float, latency_s: float, parafoveal_gain: float, snr: float,
                     line_freq_hz: float, screen: ScreenGeometry, crop_dva: float) -> None:
    if not subjects or len(set(subjects)) != len(subjects) or any(s < 1 for s in subjects):
        raise ValueError(f"subjects {subjects}: expected distinct positive integers")
    if n_sessions < 1 or n_trials_per_session < 1:
        raise ValueError(f"n_sessions={n_sessions}, n_trials_per_session={n_trials_per_session}: each must be >= 1")
    width, height = scene_size_px
    if not (0 < width <= screen.width_px and 0 < height <= screen.height_px):
        raise ValueError(f"scene_size_px={scene_size_px} (width, height) must fit the "
                         f"{screen.width_px}x{screen.height_px} screen")
    if not 0.0 <= repeat_fraction <= 1.0:
        raise ValueError(f"repeat_fraction={repeat_fraction} must lie in [0, 1]")
    if not max(2.0 * line_freq_hz, SNR_BAND_HZ[1]) < sfreq_hz / 2.0:
        raise ValueError(f"sfreq_hz={sfreq_hz}: the Nyquist frequency must exceed {SNR_BAND_HZ[1]} Hz and the "
                         f"line harmonic {2.0 * line_freq_hz} Hz (line_freq_hz={line_freq_hz})")
    if not 0.0 < latency_s < KERNEL_LENGTH_S / 2.0:
        raise ValueError(f"latency_s={latency_s} must lie in (0, {KERNEL_LENGTH_S / 2.0}) s")
    if parafoveal_gain < 0.0 or snr <= 0.0 or crop_dva <= 0.0:
        raise ValueError(f"parafoveal_gain={parafoveal_gain} must be >= 0, snr={snr} and crop_dva={crop_dva} > 0")


def _crop_statistics(plans: dict[int, list[list[Trial]]], seed: int, scene_size_px: tuple[int, int],
                     crop_dva: float, screen: ScreenGeometry, scene_dir: Path) -> dict[tuple[int, int, int], np.ndarray]:
    """Write every viewed scene's PNG; (subject, session, trial) -> (n_fixations, n_stats) crop statistics."""
    by_scene: dict[int, list[tuple[tuple[int, int, int], Trial]]] = {}
    for subject, sessions in plans.items():
        for session, trials in enumerate(sessions, start=1):
            for number, trial in enumerate(trials, start=1):
                by_scene.setdefault(trial.scene_number, []).append(((subject, session, number), trial))
    scene_dir.mkdir(parents=True)
    statistics = {}
    for scene_number in sorted(by_scene):
        image = scene_image(seed, scene_number, scene_size_px)
        Image.fromarray(image).save(scene_dir / f"{scene_id(scene_number)}.png", format="PNG", compress_level=1)
        for key, trial in by_scene[scene_number]:
            statistics[key] = np.stack([
                crop_statistics(extract_dva_crop(image, (float(gx), float(gy)), crop_dva, screen))
                for gx, gy in trial.gaze_px])
    return statistics


def _metadata(events: pd.DataFrame) -> pd.DataFrame:
    """AVS metadata rows (seconds from the recording start) of simulated events."""
    table = events.copy()
    table["start_time"] = table["start_ms"] / 1000.0
    table["end_time"] = table["end_ms"] / 1000.0
    table["duration"] = (table["end_ms"] - table["start_ms"]) / 1000.0
    table["fix_sequence"] = table["fix_sequence"].astype("Int64")
    return table[list(METADATA_COLUMNS)]


@dataclass
class _SubjectResult:
    events: list[pd.DataFrame]
    artefacts: list[dict]
    patterns: dict[str, np.ndarray]
    foveal_power: np.ndarray  # (306, T)
    parafoveal_power: np.ndarray
    summary: dict


def _simulate_subject(root: Path, subject: int, sessions: list[list[Trial]], z: dict[tuple[int, int, int], np.ndarray],
                      weights: np.ndarray, modulation: np.ndarray, arguments: dict, times_s: np.ndarray
                      ) -> _SubjectResult:
    """Write one subject's FIF files; return its events, artefacts and ground truth.

    `z`: (subject, session, trial) -> (n_fixations, n_stats) standardised crop statistics; `times_s`: the
    times of the truth kernel."""
    seed, sfreq_hz = arguments["seed"], arguments["sfreq_hz"]
    position = {"shift_mm": arguments["head_shift_mm"], "rotation_deg": arguments["head_rotation_deg"]}
    info = vectorview_info(sfreq_hz, subject_dev_head_t(seed, subject, **position), arguments["line_freq_hz"])
    rotation_rad, translation_m = subject_head_offset(seed, subject, **position)
    gain, latency_s = subject_response(seed, subject, latency_s=arguments["latency_s"],
                                       gain_sd=arguments["subject_gain_sd"],
                                       latency_sd_s=arguments["subject_latency_sd_s"])
    truth_kernel = kernel(times_s, latency_s)
    head = make_head(subject, seed, info)
    nominal_patterns = sensor_patterns(head, weights, modulation)  # at gain 1: sets the noise level
    patterns = {key: gain * pattern for key, pattern in nominal_patterns.items()}
    rng = np.random.default_rng([seed, _NOISE_STREAM, subject])
    timelines = [session_events(subject, session, trials, rng) for session, trials in enumerate(sessions, start=1)]
    drives = []  # per session, standardised statistics of the current and the next crop of every fixation
    for session, trials in enumerate(sessions, start=1):
        trial_z = [z[(subject, session, number)] for number in range(1, len(trials) + 1)]
        drives.append((np.concatenate(trial_z), np.concatenate([next_fixation(values) for values in trial_z])))
    nominal_foveal_peak = np.concatenate([current for current, _ in drives]) @ nominal_patterns["foveal"].T
    noise = noise_levels(head, info["ch_names"], nominal_foveal_peak, arguments["snr"], sfreq_hz)
    foveal_peak = gain * nominal_foveal_peak
    parafoveal_peak = np.concatenate([following for _, following in drives]) @ patterns["parafoveal"].T
    artefacts = []
    for session, ((events, length_ms), (current, following)) in enumerate(zip(timelines, drives), start=1):
        onsets_s = events.loc[events["type"] == "fixation", "start_ms"].to_numpy() / 1000.0
        amplitudes = gain * source_amplitudes_nam(current, following, weights, modulation)
        n_samples = int(np.ceil(length_ms / 1000.0 * sfreq_hz))
        data, session_artefacts = render_recording(onsets_s, amplitudes, n_samples, head, noise, info,
                                                   latency_s, arguments["line_freq_hz"], rng)
        raw = mne.io.RawArray(data, info, verbose=False)
        raw.set_meas_date(datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=session - 1))
        path = root / recording_path(subject, session)
        path.parent.mkdir(parents=True, exist_ok=True)
        raw.save(path, fmt="single", verbose=False)
        artefacts += [a.record(recording_path(subject, session), info["ch_names"]) for a in session_artefacts]
    summary = {
        "gain": gain,
        "latency_s": latency_s,
        "effective_snr": arguments["snr"] * gain**2,
        "head_translation_mm": (translation_m * 1e3).tolist(),
        "head_translation_mm_norm": float(np.linalg.norm(translation_m) * 1e3),
        "head_rotation_deg": np.degrees(rotation_rad).tolist(),
        "head_rotation_deg_angle": float(np.degrees(np.linalg.norm(rotation_rad))),
        "dev_head_t": info["dev_head_t"]["trans"].tolist(),
        "n_trials": sum(len(trials) for trials in sessions),
        "n_repeat_trials": sum(trial.repeat_of is not None for trials in sessions for trial in trials),
        "n_fixations": len(foveal_peak),
        "scenes": sorted({scene_id(trial.scene_number) for trials in sessions for trial in trials}),
        "noise": dataclasses.asdict(noise),
    }
    log.info("%s: %d sessions, %d fixations, best gradiometer %s, background dipoles %.1f nAm, gain %.2f, "
             "latency %.0f ms, head shift %.1f mm, rotation %.1f deg", subject_label(subject), len(sessions),
             len(foveal_peak), noise.best_gradiometer, noise.background_source_nam, gain, 1e3 * latency_s,
             summary["head_translation_mm_norm"], summary["head_rotation_deg_angle"])
    return _SubjectResult([events for events, _ in timelines], artefacts, patterns,
                          np.outer(foveal_peak.var(axis=0), truth_kernel**2),
                          np.outer(parafoveal_peak.var(axis=0), truth_kernel**2), summary)


DEFAULTS = section_defaults("simulate.meg")  # the params schema holds every setting's default


def simulate_meg(
    out_dir: str | os.PathLike,
    *,
    subjects: list[int],
    crop_dva: float,
    n_sessions: int = DEFAULTS["n_sessions"],
    n_trials_per_session: int = DEFAULTS["n_trials_per_session"],
    n_scenes: int = DEFAULTS["n_scenes"],
    scene_size_px: tuple[int, int] = DEFAULTS["scene_size_px"],
    repeat_fraction: float = DEFAULTS["repeat_fraction"],
    seed: int = DEFAULTS["seed"],
    sfreq_hz: float = DEFAULTS["sfreq_hz"],
    latency_s: float = DEFAULTS["latency_s"],
    parafoveal_gain: float = DEFAULTS["parafoveal_gain"],
    snr: float = DEFAULTS["snr"],
    line_freq_hz: float = DEFAULTS["line_freq_hz"],
    head_shift_mm: float = DEFAULTS["head_shift_mm"],
    head_rotation_deg: float = DEFAULTS["head_rotation_deg"],
    subject_gain_sd: float = DEFAULTS["subject_gain_sd"],
    subject_latency_sd_s: float = DEFAULTS["subject_latency_sd_s"],
    screen: ScreenGeometry = DEFAULT_SCREEN,
) -> None:
    """Write a synthetic free-viewing MEG dataset (docs/meg.md layout) with its ground truth to `out_dir`, atomically.

    `snr`: foveal signal variance over background variance at the best gradiometer at the response peak
    (background in SNR_BAND_HZ, without line noise and artefacts). `parafoveal_gain`: parafoveal signal sd at
    its best gradiometer over the foveal signal sd at its best gradiometer (nominal head position). `crop_dva`:
    the crop size whose statistics drive the signal (meg.crops.dva). Between subjects: `head_shift_mm` /
    `head_rotation_deg`, sds per axis of the head position around the nominal one (both 0: the same head
    position for every subject); `subject_gain_sd` (sd of the log gain that multiplies a subject's signal
    after its noise level is set from snr, so its SNR is snr * gain^2) and `subject_latency_sd_s` (sd of its
    response latency around latency_s). Defaults: the params schema's (`simulate.meg`). Same arguments give
    byte-identical files.
    """
    out_dir = Path(out_dir)
    subjects = [int(s) for s in subjects]
    scene_size_px = (int(scene_size_px[0]), int(scene_size_px[1]))
    _check_arguments(subjects, n_sessions, n_trials_per_session, scene_size_px, repeat_fraction, sfreq_hz, latency_s,
                     parafoveal_gain, snr, line_freq_hz, screen, crop_dva)
    spreads = {"head_shift_mm": head_shift_mm, "head_rotation_deg": head_rotation_deg,
               "subject_gain_sd": subject_gain_sd, "subject_latency_sd_s": subject_latency_sd_s}
    if any(not value >= 0.0 for value in spreads.values()):
        raise ValueError(f"{spreads}: between-subject sds must be >= 0")
    start = time.perf_counter()
    arguments = {
        "subjects": subjects, "n_sessions": int(n_sessions), "n_trials_per_session": int(n_trials_per_session),
        "n_scenes": int(n_scenes), "scene_size_px": list(scene_size_px), "repeat_fraction": float(repeat_fraction),
        "crop_dva": float(crop_dva), "seed": int(seed), "sfreq_hz": float(sfreq_hz), "latency_s": float(latency_s),
        "parafoveal_gain": float(parafoveal_gain), "snr": float(snr), "line_freq_hz": float(line_freq_hz),
        **{key: float(value) for key, value in spreads.items()},
        "screen": dataclasses.asdict(screen),
    }
    plans = {subject: plan_subject(subject, n_sessions=n_sessions, n_trials_per_session=n_trials_per_session,
                                   n_scenes=n_scenes, scene_size_px=scene_size_px, repeat_fraction=repeat_fraction,
                                   screen=screen, seed=seed) for subject in subjects}
    times_s = np.arange(round(TRUTH_TMIN_S * sfreq_hz), round(TRUTH_TMAX_S * sfreq_hz) + 1) / sfreq_hz
    with atomic_directory(out_dir) as root:
        statistics = _crop_statistics(plans, seed, scene_size_px, crop_dva, screen, root / "scenes")
        pooled = np.concatenate(list(statistics.values()))
        stat_mean, stat_sd = pooled.mean(axis=0), pooled.std(axis=0)
        stat_sd = np.where(stat_sd > 0, stat_sd, 1.0)
        z = {key: (values - stat_mean) / stat_sd for key, values in statistics.items()}
        current_z = np.concatenate(list(z.values()))
        weights = source_weights(seed, current_z)
        next_z = np.concatenate([next_fixation(trial_z) for trial_z in z.values()])
        modulation = modulation_nam(weights, current_z, next_z, parafoveal_gain, sfreq_hz)
        results = [_simulate_subject(root, subject, plans[subject], z, weights, modulation, arguments, times_s)
                   for subject in subjects]
        events = pd.concat([e for result in results for e in result.events], ignore_index=True)
        _metadata(events).to_csv(root / "metadata.csv", sep=";", index=False, float_format="%.3f")
        share = np.array([r.summary["n_fixations"] for r in results], dtype=np.float64)
        share /= share.sum()
        foveal_power = np.stack([r.foveal_power for r in results])
        parafoveal_power = np.stack([r.parafoveal_power for r in results])
        (root / "ground_truth").mkdir()
        np.savez(
            root / "ground_truth" / "sensor_signal.npz",
            times_s=times_s, ch_names=np.array(sensor_geometry()[0]),
            foveal_power=np.tensordot(share, foveal_power, axes=1),
            parafoveal_power=np.tensordot(share, parafoveal_power, axes=1),
            peak_latency_s=np.float64(latency_s), kernel=kernel(times_s, latency_s), subjects=np.array(subjects),
            peak_latency_s_by_subject=np.array([r.summary["latency_s"] for r in results]),
            gain_by_subject=np.array([r.summary["gain"] for r in results]),
            kernel_by_subject=np.stack([kernel(times_s, r.summary["latency_s"]) for r in results]),
            stat_names=np.array(STAT_NAMES),
            foveal_weights=np.stack([r.patterns["foveal"] for r in results]),
            parafoveal_weights=np.stack([r.patterns["parafoveal"] for r in results]),
            evoked_pattern=np.stack([r.patterns["evoked"] for r in results]),
            foveal_power_by_subject=foveal_power, parafoveal_power_by_subject=parafoveal_power,
        )
        description = _description(arguments, weights, modulation, stat_mean, stat_sd, results, events)
        (root / "ground_truth" / "simulation.json").write_text(json.dumps(description, indent=2) + "\n")
    log.info("simulated MEG of %d subjects into %s in %.1f s", len(subjects), out_dir, time.perf_counter() - start)


def _description(arguments: dict, weights: np.ndarray, modulation: np.ndarray, stat_mean: np.ndarray,
                 stat_sd: np.ndarray,
                 results: list[_SubjectResult], events: pd.DataFrame) -> dict:
    """Contents of ground_truth/simulation.json."""
    summaries = {subject_label(s): r.summary for s, r in zip(arguments["subjects"], results)}
    repeats = events[events["repeat_of"].notna()].drop_duplicates(["subject", "session", "trial"])
    return {
        "arguments": arguments,
        "generative_model": list(MODEL_DESCRIPTION),
        "stat_names": list(STAT_NAMES),
        "stat_mean": stat_mean.tolist(),
        "stat_sd": stat_sd.tolist(),
        "head_sphere_origin_m": list(HEAD_SPHERE_ORIGIN_M),
        "sources": [{"name": s.name, "stream": s.stream, "position_head_m": s.position_m().round(6).tolist(),
                     "orientation_head": s.orientation().round(6).tolist(), "weights": w.tolist(),
                     "evoked_nam": s.evoked_nam, "modulation_nam": float(m)}
                    for s, w, m in zip(SOURCES, weights, modulation)],
        "kernel": {"shape": KERNEL_SHAPE, "peak_s": arguments["latency_s"], "length_s": KERNEL_LENGTH_S},
        "between_subjects": {
            "head_shift_mm": arguments["head_shift_mm"], "head_rotation_deg": arguments["head_rotation_deg"],
            "subject_gain_sd": arguments["subject_gain_sd"],
            "subject_latency_sd_s": arguments["subject_latency_sd_s"],
            "subject_latency_range_s": [min(SUBJECT_LATENCY_RANGE_S[0], arguments["latency_s"]),
                                        max(SUBJECT_LATENCY_RANGE_S[1], arguments["latency_s"])],
            "nominal_dev_head_t": nominal_dev_head_t().tolist(),
            "per_subject": "under 'subjects': gain, latency_s (its kernel peak), effective_snr = snr * gain^2, "
                           "head_translation_mm (x, y, z; norm) and head_rotation_deg (rotation vector, degrees; "
                           "angle) of its device->head transform relative to nominal_dev_head_t",
        },
        "noise": {"snr_band_hz": list(SNR_BAND_HZ), "background_sources": BACKGROUND_SOURCES,
                  "white_noise_share": WHITE_NOISE_SHARE, "line_amplitude": LINE_AMPLITUDE,
                  "harmonic_ratio": HARMONIC_RATIO},
        "artefacts": [a for r in results for a in r.artefacts],
        "subjects": summaries,
        "shared_scenes": sorted(set.intersection(*(set(s["scenes"]) for s in summaries.values()))),
        "repeat_trials": [{"subject": int(r.subject), "session": int(r.session), "trial": int(r.trial),
                           "repeat_of_session_1_trial": int(r.repeat_of)} for r in repeats.itertuples()],
        "units": {
            "meg": "magnetometers T, gradiometers T/m; STI101 = 1 for TRIGGER_WIDTH_S from each fixation onset "
                   "(sample round(start_time * sfreq))",
            "times": "metadata times in seconds from the first sample of the recording (first_samp = 0)",
            "sensor_signal.npz": "foveal_weights / parafoveal_weights (n_subjects, 306, n_stats): sensor value at "
                                 "the kernel peak per unit standardised statistic, the subject's gain included; "
                                 "evoked_pattern (n_subjects, 306); noiseless fixation-locked signal of subject i = "
                                 "kernel_by_subject[i](t) * (evoked_pattern + foveal_weights . z(crop) + "
                                 "parafoveal_weights . z(next crop)), z = (stats - stat_mean) / stat_sd; "
                                 "peak_latency_s / kernel: the nominal latency_s, peak_latency_s_by_subject / "
                                 "gain_by_subject per subject; foveal_power / parafoveal_power pooled over subjects "
                                 "weighted by their fixation counts",
        },
    }

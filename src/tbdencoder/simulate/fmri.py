"""Synthetic fMRI in the Algonauts 2023 (NSD) release layout, generated from a known ground truth.

The generative model is spelled out in MODEL_DESCRIPTION, which is also written to
ground_truth/simulation.json.
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy.ndimage import gaussian_filter

from tbdencoder.config import section_defaults
from tbdencoder.io import atomic_directory, get_logger
from tbdencoder.simulate.scenes import assign_image_ids, scene_for_id

MODEL_DESCRIPTION = (
    "Cortex: the challenge vertices of a hemisphere are the fsaverage5 vertices (= fsaverage 0..10241) nearest "
    "a slightly jittered occipital pole, in polar coordinates about it: radius (0 at the pole, 1 at the patch "
    "edge) and angle (0 lateral, +90 deg dorsal, -90 deg ventral, 180 deg medial).",
    "Retinotopy: RF eccentricity grows with radius; visual polar angle = -90 deg * sin(angle), so dorsal "
    "cortex sees the lower field; the lh maps the right half of the image, the rh the left; RF size grows "
    "with radius.",
    "Families: vertices inside the early disk respond to the Gaussian-RF-weighted mean of one feature map "
    "(luminance, local contrast energy |L - blur(L)| or red-green opponency R - G); vertices further out "
    "('global') respond to tanh of a fixed random projection of a whole-image descriptor (3x3x3 colour "
    "histogram + luminance quantiles + mean contrast energy, no spatial layout, z-scored over the subject's "
    "images) and ignore their RF; about "
    "10 % of vertices carry no signal ('none').",
    "Signal: the family response z-scored over the subject's images, times the vertex's ncsnr "
    "(log-uniform 0.3..2). Trials: signal + N(0, 1) noise, n_repeats per image; trial betas are z-scored "
    "per vertex over all the subject's trials (one session) and averaged over repeats, as NSD / Algonauts "
    "release them.",
)
FSAVERAGE_VERTICES = 163842
FSAVERAGE5_VERTICES = 10242
HEMISPHERES = ("lh", "rh")
RETINOTOPIC_FAMILIES = ("luminance", "contrast", "colour")
FAMILIES = RETINOTOPIC_FAMILIES + ("global", "none")
ROI_MAPPINGS = {
    "prf-visualrois": {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4"},
    "floc-bodies": {0: "Unknown", 1: "EBA", 2: "FBA-1", 3: "FBA-2", 4: "mTL-bodies"},
    "floc-faces": {0: "Unknown", 1: "OFA", 2: "FFA-1", 3: "FFA-2", 4: "mTL-faces", 5: "aTL-faces"},
    "floc-places": {0: "Unknown", 1: "OPA", 2: "PPA", 3: "RSC"},
    "floc-words": {0: "Unknown", 1: "OWFA", 2: "VWFA-1", 3: "VWFA-2", 4: "mfs-words", 5: "mTL-words"},
    "streams": {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral", 4: "midparietal",
                5: "ventral", 6: "lateral", 7: "parietal"},
}
EARLY_RADIUS = 0.6  # early visual cortex (prf ROIs, 'early' stream, retinotopic families) lies inside
MID_RADIUS = 0.8  # the mid streams lie between EARLY_RADIUS and MID_RADIUS, the higher streams beyond
# (label, lower, upper) angle bounds in degrees, within the early disk
_PRF_SECTORS = ((1, -180, -135), (2, 135, 181), (3, -135, -90), (4, 90, 135), (5, -90, -45), (6, 45, 90), (7, -45, -10))
_STREAM_SECTORS = ((2, -150, -45), (3, -45, 45), (4, 45, 150))  # midventral, midlateral, midparietal
# floc ROIs: discs (label, radius, angle in degrees, disc radius) in the pole-centred polar plane
_FLOC_DISCS = {
    "floc-bodies": ((1, 0.78, 10, 0.20), (2, 0.75, -55, 0.20), (3, 0.88, -65, 0.16), (4, 0.92, -130, 0.12)),
    "floc-faces": ((1, 0.75, -20, 0.20), (2, 0.75, -75, 0.20), (3, 0.90, -85, 0.16), (4, 0.93, -115, 0.12),
                   (5, 0.95, -45, 0.10)),
    "floc-places": ((1, 0.80, 62, 0.20), (2, 0.82, -110, 0.20), (3, 0.85, 150, 0.20)),
    "floc-words": ((1, 0.72, -38, 0.20), (2, 0.85, -60, 0.20), (3, 0.95, -30, 0.12), (4, 0.92, -95, 0.12),
                   (5, 0.95, -125, 0.10)),
}
FEATURE_PX = 64  # feature maps are computed on images resized to this size
NO_SIGNAL_FRACTION = 0.1
NCSNR_RANGE = (0.3, 2.0)
_IDS_STREAM, _CORTEX_STREAM, _NOISE_STREAM = 0, 2, 3  # RNG stream tags (1 is scenes.py's)

log = get_logger("simulate")


@dataclass(frozen=True)
class CorticalPatch:
    """Challenge-space vertices of one hemisphere in polar coordinates about the occipital pole."""

    fsaverage_index: np.ndarray  # ascending fsaverage indices (= challenge-space order)
    radius: np.ndarray  # geodesic distance from the pole over the patch's largest, 0..1
    angle: np.ndarray  # radians: 0 lateral, +pi/2 dorsal, -pi/2 ventral, pi medial


@functools.lru_cache(maxsize=2)
def _sphere_and_pole(hemi: str) -> tuple[np.ndarray, np.ndarray]:
    """fsaverage5 unit-sphere coordinates and the occipital pole (most posterior pial vertex)."""
    from nilearn.datasets import load_fsaverage

    mesh = load_fsaverage("fsaverage5")
    part = {"lh": "left", "rh": "right"}[hemi]
    sphere = np.asarray(mesh["sphere"].parts[part].coordinates, dtype=np.float64)
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    pial_y = np.asarray(mesh["pial"].parts[part].coordinates)[:, 1]
    return sphere, sphere[np.argmin(pial_y)]


def _unit_tangent(vector: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """`vector` projected onto the plane orthogonal to the unit `normal`, normalised."""
    tangent = vector - (vector @ normal) * normal
    return tangent / np.linalg.norm(tangent)


def select_patch(hemi: str, n_vertices: int, rng: np.random.Generator) -> CorticalPatch:
    """The `n_vertices` fsaverage5 vertices nearest a pole jittered by ~3 degrees."""
    sphere, pole = _sphere_and_pole(hemi)
    pole = pole + 0.05 * _unit_tangent(rng.standard_normal(3), pole)
    pole /= np.linalg.norm(pole)
    distance = np.arccos(np.clip(sphere @ pole, -1.0, 1.0))
    index = np.sort(np.argsort(distance, kind="stable")[:n_vertices])
    dorsal = _unit_tangent(np.array([0.0, 0.0, 1.0]), pole)
    lateral = _unit_tangent(np.array([-1.0 if hemi == "lh" else 1.0, 0.0, 0.0]), pole)
    lateral = _unit_tangent(lateral, dorsal)
    xyz = sphere[index]
    offset = xyz - np.outer(xyz @ pole, pole)
    return CorticalPatch(
        fsaverage_index=index,
        radius=distance[index] / distance[index].max(),
        angle=np.arctan2(offset @ dorsal, offset @ lateral),
    )


def roi_labels(patch: CorticalPatch) -> dict[str, np.ndarray]:
    """Integer label per vertex (float32, 0 = unlabelled) for every ROI class."""
    degrees = np.degrees(patch.angle)
    early = patch.radius < EARLY_RADIUS
    labels = {}
    prf = np.zeros(patch.radius.size, np.float32)
    for label, low, high in _PRF_SECTORS:
        prf[early & (degrees >= low) & (degrees < high)] = label
    labels["prf-visualrois"] = prf
    plane = np.stack([patch.radius * np.cos(patch.angle), patch.radius * np.sin(patch.angle)], axis=1)
    for roi_class, discs in _FLOC_DISCS.items():
        floc = np.zeros(patch.radius.size, np.float32)
        for label, radius, angle, size in reversed(discs):  # earlier discs win overlaps
            centre = radius * np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
            floc[np.linalg.norm(plane - centre, axis=1) < size] = label
        labels[roi_class] = floc
    streams = np.where(early, 1, 0).astype(np.float32)
    for label, low, high in _STREAM_SECTORS:
        sector = ~early & (degrees >= low) & (degrees < high)
        streams[sector] = np.where(patch.radius[sector] < MID_RADIUS, label, label + 3)
    labels["streams"] = streams
    return {roi_class: labels[roi_class] for roi_class in ROI_MAPPINGS}


def vertex_ground_truth(patch: CorticalPatch, hemi: str, rng: np.random.Generator) -> pd.DataFrame:
    """Receptive field, feature family and ncsnr of every vertex (gain and noise ceiling come later)."""
    n = patch.radius.size
    eccentricity = 0.02 + 0.40 * patch.radius**1.3  # fraction of image width
    polar = -0.5 * np.pi * np.sin(patch.angle)  # visual-field angle, positive = upper field
    side = 1.0 if hemi == "lh" else -1.0  # lh sees the right half of the image
    family = np.where(
        patch.radius < EARLY_RADIUS,
        rng.choice(np.array(RETINOTOPIC_FAMILIES), size=n, p=[0.25, 0.5, 0.25]),
        "global",
    ).astype(object)
    silent = rng.random(n) < NO_SIGNAL_FRACTION
    family[silent] = "none"
    ncsnr = np.exp(rng.uniform(*np.log(NCSNR_RANGE), size=n))
    ncsnr[silent] = 0.0
    return pd.DataFrame({
        "challenge_index": np.arange(n),
        "fsaverage_index": patch.fsaverage_index,
        "rf_x": 0.5 + side * eccentricity * np.cos(polar),
        "rf_y": 0.5 - eccentricity * np.sin(polar),  # image y runs downward
        "rf_sigma": 0.02 + 0.10 * patch.radius**1.5,
        "family": family,
        "ncsnr": ncsnr,
    })


def image_features(image: np.ndarray) -> dict[str, np.ndarray]:
    """Flattened FEATURE_PX^2 luminance, contrast-energy and red-green maps, plus a 33-d non-spatial global descriptor."""
    small = Image.fromarray(image).resize((FEATURE_PX, FEATURE_PX), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    luminance = rgb @ np.array([0.299, 0.587, 0.114])
    bins = np.minimum((rgb * 3).astype(int), 2)
    histogram = np.bincount((bins @ np.array([9, 3, 1])).ravel(), minlength=27) / luminance.size
    contrast = np.abs(luminance - gaussian_filter(luminance, 1.5))
    quantiles = np.quantile(luminance, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {
        "luminance": luminance.ravel(),
        "contrast": contrast.ravel(),
        "colour": (rgb[..., 0] - rgb[..., 1]).ravel(),
        "global": np.concatenate([histogram, quantiles, [contrast.mean()]]),
    }


def rf_weights(rf_x: np.ndarray, rf_y: np.ndarray, rf_sigma: np.ndarray) -> np.ndarray:
    """(V, FEATURE_PX^2) Gaussian RF weights over the feature-map pixels, each row summing to 1."""
    centres = (np.arange(FEATURE_PX) + 0.5) / FEATURE_PX
    gx = np.exp(-0.5 * ((centres[None, :] - rf_x[:, None]) / rf_sigma[:, None]) ** 2)
    gy = np.exp(-0.5 * ((centres[None, :] - rf_y[:, None]) / rf_sigma[:, None]) ** 2)
    weights = (gy[:, :, None] * gx[:, None, :]).reshape(rf_x.size, -1)
    return weights / weights.sum(axis=1, keepdims=True)


def _zscore(values: np.ndarray) -> np.ndarray:
    """Z-score columns over rows; constant columns become 0."""
    std = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(std > 0, std, 1.0)


def family_responses(features: dict[str, np.ndarray], truth: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """(n_images, V) noiseless family response of every vertex (0 for 'none')."""
    n_images = features["global"].shape[0]
    responses = np.zeros((n_images, len(truth)))
    family = truth["family"].to_numpy()
    for name in RETINOTOPIC_FAMILIES:
        index = np.flatnonzero(family == name)
        for start in range(0, index.size, 1024):  # bounds the (vertices, pixels) weight matrix
            chunk = index[start:start + 1024]
            rf = truth.iloc[chunk]
            weights = rf_weights(rf["rf_x"].to_numpy(), rf["rf_y"].to_numpy(), rf["rf_sigma"].to_numpy())
            responses[:, chunk] = features[name] @ weights.T
    global_index = np.flatnonzero(family == "global")
    projection = rng.standard_normal((global_index.size, features["global"].shape[1]))
    projection /= np.linalg.norm(projection, axis=1, keepdims=True)
    responses[:, global_index] = np.tanh(_zscore(features["global"]) @ projection.T)
    return responses


@dataclass(frozen=True)
class Release:
    """What NSD / Algonauts would release for one hemisphere, plus the matching ground truth."""

    fmri: np.ndarray  # (n_images, V) float32, z-scored trials averaged over repeats
    signal: np.ndarray  # (n_images, V) noiseless signal in the same units
    noise_ceiling: np.ndarray  # (V,) float32, estimated from the trials
    gain: np.ndarray  # (V,) released units per unit of z-scored family response


def simulate_trials(signal: np.ndarray, ncsnr: np.ndarray, n_repeats: int, rng: np.random.Generator) -> Release:
    """Noisy trials, NSD z-scoring, repeat averaging and the NSD noise-ceiling estimate."""
    trials = signal[:, None, :] + rng.standard_normal((signal.shape[0], n_repeats, signal.shape[1]))
    mean, std = trials.mean(axis=(0, 1)), trials.std(axis=(0, 1))
    zscored = (trials - mean) / std
    noise_var = zscored.var(axis=1, ddof=1).mean(axis=0)
    ncsnr_hat_sq = np.maximum(1.0 - noise_var, 0.0) / noise_var
    return Release(
        fmri=zscored.mean(axis=1).astype(np.float32),
        signal=(signal - mean) / std,
        noise_ceiling=(ncsnr_hat_sq / (ncsnr_hat_sq + 1.0 / n_repeats)).astype(np.float32),
        gain=ncsnr / std,
    )


def _save_npy(path: Path, array: np.ndarray, allow_pickle: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=allow_pickle)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG", compress_level=1)  # fast; still lossless


def _write_images(folder: Path, split: str, nsd_ids: np.ndarray, seed: int, image_size_px: int) -> dict[str, np.ndarray]:
    """Write the split's PNGs in numbered order; return their stacked image features."""
    features = []
    for number, nsd_id in enumerate(nsd_ids, start=1):
        image = scene_for_id(seed, int(nsd_id), image_size_px)
        _write_png(folder / f"{split}-{number:04d}_nsd-{nsd_id:05d}.png", image)
        features.append(image_features(image))
    return {name: np.stack([f[name] for f in features]) for name in features[0]}


def _write_hemisphere(root: Path, subject: str, hemi: str, release: Release, truth: pd.DataFrame,
                      labels: dict[str, np.ndarray], n_train: int) -> None:
    """Write one hemisphere's fMRI, noise ceiling, ROI masks and ground truth."""
    subject_dir = root / subject
    _save_npy(subject_dir / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy", release.fmri[:n_train])
    _save_npy(subject_dir / "test_split" / "test_fmri" / f"{hemi}_test_fmri.npy", release.fmri[n_train:])
    _save_npy(subject_dir / "test_split" / "noise_ceiling" / f"{hemi}_noise_ceiling.npy", release.noise_ceiling)
    index = truth["fsaverage_index"].to_numpy()
    mask = np.zeros(FSAVERAGE_VERTICES, np.float32)
    mask[index] = 1.0
    _save_npy(subject_dir / "roi_masks" / f"{hemi}.all-vertices_fsaverage_space.npy", mask)
    for roi_class, label in labels.items():
        full = np.zeros(FSAVERAGE_VERTICES, np.float32)
        full[index] = label
        _save_npy(subject_dir / "roi_masks" / f"{hemi}.{roi_class}_challenge_space.npy", label)
        _save_npy(subject_dir / "roi_masks" / f"{hemi}.{roi_class}_fsaverage_space.npy", full)
    truth_dir = root / "ground_truth" / subject
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth.to_csv(truth_dir / f"{hemi}_vertices.csv", index=False)
    np.savez(truth_dir / f"{hemi}_signal.npz", train=release.signal[:n_train], test=release.signal[n_train:])


def _simulate_subject(root: Path, subject_number: int, subject: str, n_vertices: int, train_ids: np.ndarray,
                      test_ids: np.ndarray, image_size_px: int, n_repeats: int, seed: int) -> None:
    """Write one subject's images, fMRI, masks and ground truth."""
    split_features = [
        _write_images(root / subject / "training_split" / "training_images", "train", train_ids, seed, image_size_px),
        _write_images(root / subject / "test_split" / "test_images", "test", test_ids, seed, image_size_px),
    ]
    features = {name: np.concatenate([f[name] for f in split_features]) for name in split_features[0]}
    for hemi_number, hemi in enumerate(HEMISPHERES):
        rng = np.random.default_rng([seed, _CORTEX_STREAM, subject_number, hemi_number])
        patch = select_patch(hemi, n_vertices, rng)
        truth = vertex_ground_truth(patch, hemi, rng)
        ncsnr = truth["ncsnr"].to_numpy()
        signal = ncsnr * _zscore(family_responses(features, truth, rng))
        noise_rng = np.random.default_rng([seed, _NOISE_STREAM, subject_number, hemi_number])
        release = simulate_trials(signal, ncsnr, n_repeats, noise_rng)
        truth.insert(6, "gain", release.gain)
        truth["noise_ceiling"] = ncsnr**2 / (ncsnr**2 + 1.0 / n_repeats)
        _write_hemisphere(root, subject, hemi, release, truth, roi_labels(patch), len(train_ids))
    for roi_class, mapping in ROI_MAPPINGS.items():
        _save_npy(root / subject / "roi_masks" / f"mapping_{roi_class}.npy", mapping, allow_pickle=True)


def _check_arguments(subjects: list[str], n_vertices: list[int], n_train_images: int, n_test_images: int,
                     n_repeats: int) -> None:
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"subjects {subjects}: names must be distinct")
    if len(subjects) != len(n_vertices):
        raise ValueError(f"n_vertices has {len(n_vertices)} entries, expected one per subject ({len(subjects)})")
    if not all(1 <= n <= FSAVERAGE5_VERTICES for n in n_vertices):
        raise ValueError(f"n_vertices {n_vertices}: each must lie in 1..{FSAVERAGE5_VERTICES} (fsaverage5 vertices)")
    if n_train_images < 1 or n_test_images < 1:
        raise ValueError(f"n_train_images={n_train_images}, n_test_images={n_test_images}: each split needs an image")
    if n_repeats < 2:
        raise ValueError(f"n_repeats={n_repeats}: at least 2 repeats are needed to estimate the noise ceiling")


DEFAULTS = section_defaults("simulate.fmri")  # the params schema holds every setting's default


def simulate_fmri(
    out_dir: str | os.PathLike,
    *,
    subjects: list[str],
    n_vertices: list[int] = DEFAULTS["n_vertices"],
    n_train_images: int = DEFAULTS["n_train_images"],
    n_test_images: int = DEFAULTS["n_test_images"],
    n_shared_images: int = DEFAULTS["n_shared_images"],
    image_size_px: int = DEFAULTS["image_size_px"],
    n_repeats: int = DEFAULTS["n_repeats"],
    seed: int = DEFAULTS["seed"],
) -> Path:
    """Write a synthetic Algonauts 2023 dataset with its ground truth to `out_dir`, atomically; return it.

    `n_vertices` gives challenge-space vertices per hemisphere for each subject; every subject sees
    `n_shared_images` images from a common pool among its train + test images. Defaults: the params
    schema's (`simulate.fmri`). Same arguments give byte-identical files.
    """
    out_dir = Path(out_dir)
    _check_arguments(subjects, n_vertices, n_train_images, n_test_images, n_repeats)
    start = time.perf_counter()
    id_rng = np.random.default_rng([seed, _IDS_STREAM])
    splits = assign_image_ids(id_rng, len(subjects), n_train_images, n_test_images, n_shared_images)
    arguments = {
        "subjects": [str(s) for s in subjects], "n_vertices": [int(n) for n in n_vertices],
        "n_train_images": int(n_train_images), "n_test_images": int(n_test_images),
        "n_shared_images": int(n_shared_images), "image_size_px": int(image_size_px),
        "n_repeats": int(n_repeats), "seed": int(seed),
    }
    shared = functools.reduce(np.intersect1d, [np.concatenate(split) for split in splits])
    with atomic_directory(out_dir) as root:
        for number, (subject, n_vert, (train_ids, test_ids)) in enumerate(zip(subjects, n_vertices, splits)):
            _simulate_subject(root, number, subject, n_vert, train_ids, test_ids, image_size_px, n_repeats, seed)
            log.info("%s: %d train + %d test images, %d vertices per hemisphere", subject, len(train_ids),
                     len(test_ids), n_vert)
        (root / "ground_truth" / "simulation.json").write_text(json.dumps(_description(arguments, shared), indent=2) + "\n")
    log.info("simulated %d subjects into %s in %.1f s", len(subjects), out_dir, time.perf_counter() - start)
    return out_dir


def _description(arguments: dict, shared_ids: np.ndarray) -> dict:
    """Contents of ground_truth/simulation.json."""
    return {
        "arguments": arguments,
        "shared_nsd_ids": [int(i) for i in shared_ids],
        "families": list(FAMILIES),
        "retinotopic_families": list(RETINOTOPIC_FAMILIES),
        "generative_model": list(MODEL_DESCRIPTION),
        "units": {
            "rf_x, rf_y": "RF centre as a fraction of image width / height; x to the right, y downward",
            "rf_sigma": "Gaussian RF sd as a fraction of image width (ignored by the 'global' and 'none' families)",
            "gain": "released-fMRI units per unit of the z-scored family response (signal = gain * z + offset)",
            "ncsnr": "true noise-ceiling SNR: signal sd / noise sd before z-scoring",
            "noise_ceiling": "ncsnr^2 / (ncsnr^2 + 1 / n_repeats), a fraction; the released file holds the "
                             "estimate from the simulated trials",
            "signal npz": "noiseless signal, z-scored with the trials' affine map; rows as in the released fMRI",
        },
        "hemisphere_visual_field": {"lh": "right half of the image", "rh": "left half of the image"},
        "challenge_vertices": "fsaverage indices < 10242 (fsaverage5) nearest the occipital pole, ascending",
    }

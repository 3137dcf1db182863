"""Tests for the synthetic Algonauts 2023 fMRI dataset (tbdencoder.simulate)."""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tbdencoder.config import section_defaults
from tbdencoder.simulate import fmri, simulate_fmri

HEMIS = ("lh", "rh")
RELEASED_MAPPINGS = {
    "prf-visualrois": {0: "Unknown", 1: "V1v", 2: "V1d", 3: "V2v", 4: "V2d", 5: "V3v", 6: "V3d", 7: "hV4"},
    "floc-bodies": {0: "Unknown", 1: "EBA", 2: "FBA-1", 3: "FBA-2", 4: "mTL-bodies"},
    "floc-faces": {0: "Unknown", 1: "OFA", 2: "FFA-1", 3: "FFA-2", 4: "mTL-faces", 5: "aTL-faces"},
    "floc-places": {0: "Unknown", 1: "OPA", 2: "PPA", 3: "RSC"},
    "floc-words": {0: "Unknown", 1: "OWFA", 2: "VWFA-1", 3: "VWFA-2", 4: "mfs-words", 5: "mTL-words"},
    "streams": {0: "Unknown", 1: "early", 2: "midventral", 3: "midlateral", 4: "midparietal",
                5: "ventral", 6: "lateral", 7: "parietal"},
}
ARGS = dict(subjects=["subj01", "subj02"], n_vertices=[120, 90], n_train_images=200, n_test_images=60,
            n_shared_images=30, image_size_px=32, n_repeats=3, seed=7)
TINY = dict(subjects=["subj01"], n_vertices=[60], n_train_images=12, n_test_images=4,
            n_shared_images=0, image_size_px=16, n_repeats=2, seed=1)
IMAGE_NAME = {"train": re.compile(r"^train-(\d{4})_nsd-(\d{5})\.png$"), "test": re.compile(r"^test-(\d{4})_nsd-(\d{5})\.png$")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return simulate_fmri(tmp_path_factory.mktemp("sim") / "algonauts", **ARGS)


def image_dir(root: Path, subject: str, split: str) -> Path:
    return root / subject / ("training_split/training_images" if split == "train" else "test_split/test_images")


def nsd_images(root: Path, subject: str) -> dict[int, Path]:
    """nsd id -> PNG path over both splits."""
    return {int(IMAGE_NAME[split].match(p.name).group(2)): p
            for split in IMAGE_NAME for p in image_dir(root, subject, split).iterdir()}


def hemi_arrays(root: Path, subject: str, hemi: str) -> dict:
    subj = root / subject
    return {
        "train": np.load(subj / f"training_split/training_fmri/{hemi}_training_fmri.npy"),
        "test": np.load(subj / f"test_split/test_fmri/{hemi}_test_fmri.npy"),
        "nc": np.load(subj / f"test_split/noise_ceiling/{hemi}_noise_ceiling.npy"),
        "truth": pd.read_csv(root / "ground_truth" / subject / f"{hemi}_vertices.csv"),
        "signal": np.load(root / "ground_truth" / subject / f"{hemi}_signal.npz"),
    }


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_dtypes_and_shapes(dataset):
    for subject, n_vert in zip(ARGS["subjects"], ARGS["n_vertices"]):
        for split, n_images in (("train", ARGS["n_train_images"]), ("test", ARGS["n_test_images"])):
            names = sorted(p.name for p in image_dir(dataset, subject, split).iterdir())
            matches = [IMAGE_NAME[split].match(name) for name in names]
            assert all(matches) and len(names) == n_images
            assert [int(m.group(1)) for m in matches] == list(range(1, n_images + 1))
            with Image.open(image_dir(dataset, subject, split) / names[0]) as image:
                assert image.mode == "RGB" and image.size == (ARGS["image_size_px"],) * 2
        masks = dataset / subject / "roi_masks"
        for hemi in HEMIS:
            arrays = hemi_arrays(dataset, subject, hemi)
            assert arrays["train"].dtype == arrays["test"].dtype == arrays["nc"].dtype == np.float32
            assert arrays["train"].shape == (ARGS["n_train_images"], n_vert)
            assert arrays["test"].shape == (ARGS["n_test_images"], n_vert)
            assert arrays["nc"].shape == (n_vert,)
            assert arrays["signal"]["train"].shape == arrays["train"].shape
            assert arrays["signal"]["test"].shape == arrays["test"].shape
            mask = np.load(masks / f"{hemi}.all-vertices_fsaverage_space.npy")
            assert mask.dtype == np.float32 and mask.shape == (163842,) and set(np.unique(mask)) == {0.0, 1.0}
            index = np.flatnonzero(mask)
            assert index.size == n_vert and index.max() < 10242
            truth = arrays["truth"]
            assert list(truth.columns) == ["challenge_index", "fsaverage_index", "rf_x", "rf_y", "rf_sigma",
                                           "family", "gain", "ncsnr", "noise_ceiling"]
            assert np.array_equal(truth["fsaverage_index"], index)
            assert set(truth["family"]) <= set(fmri.FAMILIES)
            for roi_class in RELEASED_MAPPINGS:
                labels = np.load(masks / f"{hemi}.{roi_class}_challenge_space.npy")
                assert labels.dtype == np.float32 and labels.shape == (n_vert,)
                assert set(np.unique(labels).astype(int)) <= set(RELEASED_MAPPINGS[roi_class])
        for roi_class, mapping in RELEASED_MAPPINGS.items():
            assert np.load(masks / f"mapping_{roi_class}.npy", allow_pickle=True).item() == mapping
    description = json.loads((dataset / "ground_truth" / "simulation.json").read_text())
    assert description["arguments"] == ARGS


def test_roi_classes_have_two_sizeable_rois_at_demo_size():
    for hemi in HEMIS:
        labels = fmri.roi_labels(fmri.select_patch(hemi, 500, np.random.default_rng(0)))
        for roi_class, values in labels.items():
            counts = np.bincount(values.astype(int), minlength=len(RELEASED_MAPPINGS[roi_class]))[1:]
            assert (counts >= 10).sum() >= 2, (hemi, roi_class, counts)


def test_subjects_share_only_the_shared_pool(dataset):
    first, second = (nsd_images(dataset, subject) for subject in ARGS["subjects"])
    n_vertices = [np.load(dataset / s / "training_split/training_fmri/lh_training_fmri.npy").shape[1]
                  for s in ARGS["subjects"]]
    assert n_vertices[1] < n_vertices[0]
    shared = set(first) & set(second)
    assert len(shared) == ARGS["n_shared_images"]
    assert all(first[i].read_bytes() == second[i].read_bytes() for i in shared)
    all_paths = list(first.values()) + [second[i] for i in set(second) - shared]
    assert len({hashlib.sha256(p.read_bytes()).digest() for p in all_paths}) == len(all_paths)


def test_same_seed_is_byte_identical_and_other_seed_differs(dataset, tmp_path):
    again = simulate_fmri(tmp_path / "again", **ARGS)
    assert tree_hashes(again) == tree_hashes(dataset)
    other = tree_hashes(simulate_fmri(tmp_path / "other", **{**ARGS, "seed": ARGS["seed"] + 1}))
    reference = tree_hashes(dataset)
    assert set(other.values()) != set(reference.values())
    fmri_file = "subj01/training_split/training_fmri/lh_training_fmri.npy"
    assert other[fmri_file] != reference[fmri_file]


def test_estimated_noise_ceiling_tracks_truth(dataset):
    for subject in ARGS["subjects"]:
        for hemi in HEMIS:
            arrays = hemi_arrays(dataset, subject, hemi)
            truth, estimate = arrays["truth"], arrays["nc"]
            assert np.corrcoef(estimate, truth["noise_ceiling"])[0, 1] > 0.9
            silent = (truth["family"] == "none").to_numpy()
            assert silent.any() and np.all(truth.loc[silent, "ncsnr"] == 0)
            assert estimate[silent].mean() < 0.15 and estimate[~silent].mean() > 0.4


def test_residual_matches_noise_level(dataset):
    for subject in ARGS["subjects"]:
        for hemi in HEMIS:
            arrays = hemi_arrays(dataset, subject, hemi)
            released = np.concatenate([arrays["train"], arrays["test"]])
            signal = np.concatenate([arrays["signal"]["train"], arrays["signal"]["test"]])
            ncsnr = arrays["truth"]["ncsnr"].to_numpy()
            # raw trials: signal var ncsnr^2 + noise var 1, so z-scoring leaves noise var 1 / (ncsnr^2 + 1)
            noise_var = 1.0 / (ncsnr**2 + 1.0)
            residual_var = (released - signal).var(axis=0)
            ratio = residual_var / (noise_var / ARGS["n_repeats"])
            assert 0.9 < ratio.mean() < 1.1
            assert abs((released - signal).mean()) < 0.02


def test_receptive_fields_are_smooth_and_contralateral(dataset):
    rng = np.random.default_rng(0)
    for subject in ARGS["subjects"]:
        for hemi in HEMIS:
            sphere, _ = fmri._sphere_and_pole(hemi)
            truth = hemi_arrays(dataset, subject, hemi)["truth"]
            xyz = sphere[truth["fsaverage_index"]]
            centres = truth[["rf_x", "rf_y"]].to_numpy()
            distance = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
            np.fill_diagonal(distance, np.inf)
            neighbour = distance.argmin(axis=1)
            neighbour_gap = np.linalg.norm(centres - centres[neighbour], axis=1).mean()
            random_gap = np.linalg.norm(centres - centres[rng.permutation(len(centres))], axis=1).mean()
            assert neighbour_gap < 0.5 * random_gap
            right = (truth["rf_x"] > 0.5).mean()
            assert right > 0.9 if hemi == "lh" else right < 0.1


def _fail_on_third_call(monkeypatch):
    calls = []
    real = fmri._save_npy

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        real(*args, **kwargs)

    monkeypatch.setattr(fmri, "_save_npy", failing)


def test_failure_leaves_no_dataset(tmp_path, monkeypatch):
    _fail_on_third_call(monkeypatch)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_fmri(tmp_path / "out", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_previous_dataset_and_success_replaces_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "previous.txt").write_text("old")
    with monkeypatch.context() as patch:
        _fail_on_third_call(patch)
        with pytest.raises(RuntimeError):
            simulate_fmri(out, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in out.iterdir()] == ["previous.txt"]
    simulate_fmri(out, **TINY)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["ground_truth", "subj01"]


def test_settings_left_out_take_the_params_schema_defaults():
    parameters = inspect.signature(simulate_fmri).parameters.values()
    defaults = section_defaults("simulate.fmri")
    del defaults["enabled"]  # the workflow's switch, not a setting of the simulator
    assert {p.name: p.default for p in parameters if p.default is not p.empty} == defaults

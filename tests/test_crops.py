"""Fixation crops: visual-angle geometry, padding, and the foveal/parafoveal stimuli file."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from tbdencoder.data.avs import prepare_fixations
from tbdencoder.data.crop_stimuli import write_crop_stimuli
from tbdencoder.data.crops import ScreenGeometry, crop_leaves_image, crop_side_px, extract_dva_crop
from tbdencoder.data.stimuli import pixels_sha256
from tbdencoder.features.extract import read_stimuli

AVS_SCREEN = ScreenGeometry(width_px=1024, height_px=768, width_cm=37.5, viewing_distance_cm=80.0)
# 2 px/cm and ~1 cm per degree at 57.3 cm: 5 dva -> 2 * 57.3 * tan(2.5 deg) * 2 = 10.007 -> 10 px crops
SMALL_SCREEN = ScreenGeometry(width_px=64, height_px=48, width_cm=32.0, viewing_distance_cm=57.3)
SMALL_DVA, SMALL_SIDE, PAD = 5.0, 10, 77


@pytest.fixture
def scene() -> np.ndarray:
    """An 800 x 600 scene of random pixels, shown centred on the 1024 x 768 screen."""
    return np.random.default_rng(0).integers(0, 256, size=(600, 800, 3), dtype=np.uint8)


def test_crop_side_for_2_dva_at_80_cm():
    cm = 2 * 80 * math.tan(math.radians(1))  # 2 dva: 1 degree either side of the line of sight
    assert crop_side_px(2.0, AVS_SCREEN) == round(cm * 1024 / 37.5) == 76


def test_screen_centre_gives_scene_centre(scene):
    assert AVS_SCREEN.scene_offset(scene.shape) == (112, 84)
    crop = extract_dva_crop(scene, (512, 384), 2.0, AVS_SCREEN)
    np.testing.assert_array_equal(crop, scene[300 - 38:300 + 38, 400 - 38:400 + 38])
    assert not crop_leaves_image(scene.shape, (512, 384), 2.0, AVS_SCREEN)


def test_padding_at_the_left_edge(scene):
    fixation = (112 + 10, 384)  # scene x = 10: the 76 px window starts 28 px left of the scene
    rows = slice(300 - 38, 300 + 38)
    constant = extract_dva_crop(scene, fixation, 2.0, AVS_SCREEN, padding="constant", pad_value=PAD)
    assert (constant[:, :28] == PAD).all()
    np.testing.assert_array_equal(constant[:, 28:], scene[rows, :48])
    edge = extract_dva_crop(scene, fixation, 2.0, AVS_SCREEN, padding="edge")
    np.testing.assert_array_equal(edge[:, :28], np.repeat(scene[rows, :1], 28, axis=1))
    np.testing.assert_array_equal(edge[:, 28:], scene[rows, :48])
    assert crop_leaves_image(scene.shape, fixation, 2.0, AVS_SCREEN)


def test_crop_fully_outside_the_scene_is_all_padding(scene):
    fixation = (20, 20)  # on the screen's grey border, > 38 px from the scene
    assert (extract_dva_crop(scene, fixation, 2.0, AVS_SCREEN, pad_value=PAD) == PAD).all()
    assert (extract_dva_crop(scene, fixation, 2.0, AVS_SCREEN, padding="edge") == scene[0, 0]).all()


def small_dataset(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Two 40 x 30 scenes (s2 greyscale) at offset (12, 9) on the small screen, three fixations per trial.

    Trial 2's fixation 2 lies 2 px inside the scene's left edge, so its crop (and fixation 1's parafoveal crop)
    leaves the scene.
    """
    rng = np.random.default_rng(1)
    scenes = {"s1": rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8),
              "s2": rng.integers(0, 256, size=(30, 40), dtype=np.uint8)}
    (root / "scenes").mkdir(parents=True)
    for name, pixels in scenes.items():
        Image.fromarray(pixels).save(root / "scenes" / f"{name}.png")
    gaze = {1: [(32, 24), (25, 20), (40, 28)], 2: [(30, 24), (14, 24), (35, 24)]}
    lines = ["subject;session;trial;sceneID;type;recording;start_time;end_time;duration;fix_sequence;mean_gx;mean_gy"]
    for trial, points in gaze.items():
        for fix, (gx, gy) in enumerate(points, start=1):
            onset = 10 * trial + fix
            lines.append(f"1;1;{trial};s{trial};fixation;meg/sub-01/sub-01_ses-1_meg.fif;{onset};{onset + .2};.2;"
                         f"{fix};{gx};{gy}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    prepare_fixations(root, 1, root / "fixations.tsv", on_bad="error")
    return root / "fixations.tsv", scenes


def read_crops(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as h5:
        columns = {name: h5[name].asstr()[:] for name in ("stimulus_id", "content_hash")}
        columns.update({name: h5[f"provenance/{name}"].asstr()[:] for name in h5["provenance"]})
        columns["pixels"] = h5["pixels"][:]
    return columns


def test_crop_stimuli_pair_foveal_and_parafoveal(tmp_path):
    fixations, scenes = small_dataset(tmp_path / "avs")
    out = tmp_path / "stimuli.h5"
    write_crop_stimuli(fixations, out, dva=SMALL_DVA, screen=SMALL_SCREEN, padding="constant", pad_value=PAD)
    crops = read_crops(out)
    fixation_ids = [f"sub-01_ses-1_trial-00{trial}_fix-0{fix}" for trial in (1, 2) for fix in (1, 2, 3)]
    assert crops["stimulus_id"].tolist() == [f"{f}_{s}" for f in fixation_ids for s in ("foveal", "parafoveal")]
    assert crops["pixels"].shape == (12, SMALL_SIDE, SMALL_SIDE, 3) and crops["pixels"].dtype == np.uint8
    assert crops["fixation_id"].tolist() == [f for f in fixation_ids for _ in range(2)]
    assert crops["stream"].tolist() == ["foveal", "parafoveal"] * 6
    assert crops["sceneID"].tolist() == ["s1"] * 6 + ["s2"] * 6
    assert set(crops["dva"]) == {"5.0"}
    assert crops["has_next"].tolist() == ["1"] * 4 + ["0"] * 2 + ["1"] * 4 + ["0"] * 2
    assert crops["padded"].tolist() == ["0"] * 6 + ["0", "1", "1"] + ["0"] * 3

    foveal, parafoveal = crops["pixels"][0::2], crops["pixels"][1::2]
    # trial 1, fixation 1 at screen (32, 24) -> scene (20, 15): rows 10..19, columns 15..24
    np.testing.assert_array_equal(foveal[0], scenes["s1"][10:20, 15:25])
    for k in (0, 1, 3, 4):  # parafoveal crop of k = foveal crop of k + 1, computed once downstream
        np.testing.assert_array_equal(parafoveal[k], foveal[k + 1])
        assert crops["content_hash"][2 * k + 1] == crops["content_hash"][2 * k + 2]
    assert crops["content_hash"][0] == pixels_sha256(foveal[0]) != crops["content_hash"][2]
    for k in (2, 5):  # last fixation of a trial: a uniform crop
        assert (parafoveal[k] == PAD).all()
    # trial 2, fixation 2 at scene x = 2: the first 3 columns are padding; greyscale s2 comes back as RGB
    assert (foveal[4][:, :3] == PAD).all()
    np.testing.assert_array_equal(foveal[3], np.repeat(scenes["s2"][10:20, 13:23, None], 3, axis=2))

    stimuli = read_stimuli(out)
    assert stimuli.ids == crops["stimulus_id"].tolist() and stimuli.image_paths is None
    assert stimuli.copies()[1] == [1, 2]  # stimulus row 1 (parafoveal 1) and row 2 (foveal 2) share one image


def test_drop_policy_drops_fixations_whose_crops_leave_the_scene(tmp_path, logs):
    fixations, _ = small_dataset(tmp_path / "avs")
    out = tmp_path / "stimuli.h5"
    write_crop_stimuli(fixations, out, dva=SMALL_DVA, screen=SMALL_SCREEN, padding="drop", pad_value=PAD)
    crops = read_crops(out)
    assert sorted(set(crops["fixation_id"])) == [
        "sub-01_ses-1_trial-001_fix-01", "sub-01_ses-1_trial-001_fix-02", "sub-01_ses-1_trial-001_fix-03",
        "sub-01_ses-1_trial-002_fix-03"]  # trial 2's fix 2 leaves the scene, and fix 1's parafoveal crop with it
    assert crops["pixels"].shape == (8, SMALL_SIDE, SMALL_SIDE, 3) and set(crops["padded"]) == {"0"}
    assert "leaving the scene: 1 of 6 foveal, 1 of 4 parafoveal" in logs.text
    assert "dropped 2 of 6 fixations whose crop leaves the scene" in logs.text


def test_edge_padding_replicates_the_scene_border(tmp_path):
    fixations, scenes = small_dataset(tmp_path / "avs")
    write_crop_stimuli(fixations, tmp_path / "stimuli.h5", dva=SMALL_DVA, screen=SMALL_SCREEN, padding="edge",
                       pad_value=PAD)
    foveal = read_crops(tmp_path / "stimuli.h5")["pixels"][8]  # trial 2, fixation 2
    np.testing.assert_array_equal(foveal[:, :4, 0], np.repeat(scenes["s2"][10:20, :1], 4, axis=1))

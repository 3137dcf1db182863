"""AVS metadata -> fixations.tsv: column and type checks, bad-row policy, next-fixation pairing."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tbdencoder.data.avs import (
    FIXATION_COLUMNS,
    REQUIRED_COLUMNS,
    fixation_label,
    prepare_fixations,
    read_fixations,
    read_metadata,
    subject_label,
)
from tbdencoder.data.crops import ScreenGeometry


def event(fix: int | None, *, subject: int = 1, session: int = 1, trial: int = 1, scene: str = "s1",
          gx: float = 500.0, gy: float = 400.0, kind: str = "fixation") -> dict:
    onset = 10.0 * trial + 0.5 * (fix or 0)
    return {"subject": subject, "session": session, "trial": trial, "sceneID": scene, "type": kind,
            "recording": f"meg/sub-{subject:02d}/sub-{subject:02d}_ses-{session}_meg.fif",
            "start_time": onset, "end_time": onset + 0.25, "duration": 0.25,
            "fix_sequence": "" if fix is None else fix, "mean_gx": gx, "mean_gy": gy}


def write_dataset(root: Path, events: list[dict], scenes: tuple[str, ...] = ("s1", "s2"),
                  columns: tuple[str, ...] = REQUIRED_COLUMNS) -> Path:
    """metadata.csv with the events in the given order, and an 8 x 6 PNG per scene."""
    (root / "scenes").mkdir(parents=True)
    for scene in scenes:
        Image.new("RGB", (8, 6)).save(root / "scenes" / f"{scene}.png")
    lines = [";".join(columns)] + [";".join(str(e[c]) for c in columns) for e in events]
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    return root


def test_labels():
    assert fixation_label(1, 1, 3, 2) == "sub-01_ses-1_trial-003_fix-02"
    assert subject_label(60) == "sub-60"


def test_missing_column_names_file_and_column(tmp_path):
    root = write_dataset(tmp_path, [event(1)], columns=tuple(c for c in REQUIRED_COLUMNS if c != "mean_gy"))
    with pytest.raises(ValueError, match=r"metadata\.csv: missing column\(s\) \['mean_gy'\]") as error:
        read_metadata(root / "metadata.csv")
    assert str(root) in str(error.value) and "'fix_sequence'" in str(error.value)  # lists the expected columns


def test_wrong_type_names_line_and_column(tmp_path):
    events = [event(1), event(2), event(3)]
    events[1]["trial"] = "two"
    root = write_dataset(tmp_path, events)
    with pytest.raises(ValueError, match=r"metadata\.csv: line 3, column 'trial': expected an integer, got 'two'"):
        read_metadata(root / "metadata.csv")


def test_fixation_rows_need_fix_sequence(tmp_path):
    root = write_dataset(tmp_path, [event(None, kind="saccade"), event(None)])
    with pytest.raises(ValueError, match=r"line 3, column 'fix_sequence': expected an integer \(required"):
        read_metadata(root / "metadata.csv")


def test_next_fixation_pairing_with_shuffled_rows_and_saccades(tmp_path):
    trial1 = [event(fix, gx=100.0 * fix, gy=10.0 * fix) for fix in (1, 2, 3)]
    trial2 = [event(fix, trial=2, scene="s2", gx=7.0 * fix, gy=3.0 * fix) for fix in (1, 2)]
    saccades = [event(None, kind="saccade", gx=np.nan, gy=np.nan), event(None, trial=2, kind="saccade")]
    other_subject = [event(fix, subject=2) for fix in (1, 2)]
    events = trial1 + trial2 + saccades + other_subject
    random.Random(0).shuffle(events)
    root = write_dataset(tmp_path / "avs", events)
    out = tmp_path / "results" / "sub-01" / "fixations.tsv"
    prepare_fixations(root, 1, out, on_bad="error")

    table = read_fixations(out)
    assert list(table.columns) == list(FIXATION_COLUMNS)
    assert table["fixation_id"].tolist() == [
        "sub-01_ses-1_trial-001_fix-01", "sub-01_ses-1_trial-001_fix-02", "sub-01_ses-1_trial-001_fix-03",
        "sub-01_ses-1_trial-002_fix-01", "sub-01_ses-1_trial-002_fix-02"]
    np.testing.assert_array_equal(table["gx"], [100, 200, 300, 7, 14])
    np.testing.assert_array_equal(table["next_gx"], [200, 300, np.nan, 14, np.nan])
    np.testing.assert_array_equal(table["next_gy"], [20, 30, np.nan, 6, np.nan])
    assert table["subject"].tolist() == [1] * 5 and table["trial"].tolist() == [1, 1, 1, 2, 2]
    np.testing.assert_array_equal(table["onset_s"], [10.5, 11.0, 11.5, 20.5, 21.0])
    assert table["scene_path"].tolist() == [str(root / "scenes" / "s1.png")] * 3 + [str(root / "scenes" / "s2.png")] * 2
    assert table["recording"].iloc[0] == "meg/sub-01/sub-01_ses-1_meg.fif"
    for column, dtype in FIXATION_COLUMNS.items():
        assert table[column].map(type).eq(str).all() if dtype is str else table[column].dtype == dtype, column
    last = out.read_text().splitlines()[3].split("\t")  # fix-03: next_gx and next_gy written empty
    assert last[11:13] == ["", ""]


def test_missing_scene_dropped_or_raised(tmp_path, logs):
    events = [event(1), event(2), event(3, scene="gone"), event(1, trial=2, scene="gone")]
    root = write_dataset(tmp_path / "avs", events)
    out = tmp_path / "fixations.tsv"
    with pytest.raises(ValueError, match=r"metadata\.csv: line 4 \(sub-01_ses-1_trial-001_fix-03, scene 'gone'\): "
                                         r"no scene image"):
        prepare_fixations(root, 1, out, on_bad="error")
    assert not out.exists()

    prepare_fixations(root, 1, out, on_bad="drop")
    table = read_fixations(out)
    assert table["fixation_id"].tolist() == ["sub-01_ses-1_trial-001_fix-01", "sub-01_ses-1_trial-001_fix-02"]
    np.testing.assert_array_equal(table["next_gx"], [500, np.nan])  # fix-03 is nobody's next
    assert "dropped 2 of 4 fixations of subject 1 (no scene image scenes/<sceneID>.png or .jpg: 2)" in logs.text


def test_jpg_scene_is_found(tmp_path):
    root = write_dataset(tmp_path / "avs", [event(1, scene="photo")], scenes=())
    Image.new("RGB", (8, 6)).save(root / "scenes" / "photo.jpg")
    prepare_fixations(root, 1, tmp_path / "fixations.tsv", on_bad="error")
    assert read_fixations(tmp_path / "fixations.tsv")["scene_path"].tolist() == [str(root / "scenes" / "photo.jpg")]


@pytest.mark.parametrize("gaze, reason, kept", [
    ([dict(gx=1.0), dict(gx=np.nan), dict(gx=3.0), dict(gy=float("inf"))], "non-finite gaze", [1, 3]),
    ([{}, dict(gx=5000.0), dict(gy=-1.0), dict(gx=1024.0, gy=768.0)],  # the screen's corner is on it
     "gaze off the screen (outside 0..1024 x 0..768 px)", [1, 4]),
])
def test_bad_gaze_dropped_or_raised(tmp_path, logs, gaze, reason, kept):
    root = write_dataset(tmp_path / "avs", [event(fix, **xy) for fix, xy in enumerate(gaze, start=1)])
    out = tmp_path / "fixations.tsv"
    with pytest.raises(ValueError, match=r"line 3 \(sub-01_ses-1_trial-001_fix-02, scene 's1'\): "
                                         rf"{re.escape(reason)}; 2 bad fixation rows"):
        prepare_fixations(root, 1, out, on_bad="error")

    prepare_fixations(root, 1, out, on_bad="drop")
    table = read_fixations(out)
    assert table["fix_sequence"].tolist() == kept
    assert table["next_gx"].isna().all()  # fix-1's next (fix-2) was dropped; the other is last or lost its next
    assert f"({reason}: 2)" in logs.text and "line 3 (sub-01_ses-1_trial-001_fix-02" in logs.text


def test_gaze_checked_against_the_given_screen(tmp_path):
    root = write_dataset(tmp_path / "avs", [event(1), event(2, gx=5000.0)])
    prepare_fixations(root, 1, tmp_path / "fixations.tsv", on_bad="error",
                      screen=ScreenGeometry(width_px=6000, height_px=768))
    assert read_fixations(tmp_path / "fixations.tsv")["gx"].tolist() == [500.0, 5000.0]


def test_duplicate_keys_dropped_or_raised(tmp_path, logs):
    root = write_dataset(tmp_path / "avs", [event(1), event(2, gx=1.0), event(2, gx=2.0), event(3)])
    with pytest.raises(ValueError, match=r"line 3 \(sub-01_ses-1_trial-001_fix-02, scene 's1'\): duplicate key"):
        prepare_fixations(root, 1, tmp_path / "fixations.tsv", on_bad="error")
    prepare_fixations(root, 1, tmp_path / "fixations.tsv", on_bad="drop")
    assert read_fixations(tmp_path / "fixations.tsv")["fix_sequence"].tolist() == [1, 3]
    assert "(duplicate key: 2)" in logs.text


def test_unknown_subject_lists_subjects_present(tmp_path):
    events = [event(1, subject=3), event(1, subject=5), event(None, subject=9, kind="saccade")]
    root = write_dataset(tmp_path / "avs", events)
    with pytest.raises(ValueError, match=r"no fixation rows for subject 4; subjects with fixations: \[3, 5\]"):
        prepare_fixations(root, 4, tmp_path / "fixations.tsv", on_bad="drop")


def test_read_fixations_keeps_scene_ids_as_text(tmp_path):
    root = write_dataset(tmp_path / "avs", [event(1, scene="NA"), event(2, scene="NA")], scenes=("NA",))
    prepare_fixations(root, 1, tmp_path / "fixations.tsv", on_bad="error")
    table = read_fixations(tmp_path / "fixations.tsv")
    assert table["sceneID"].tolist() == ["NA", "NA"]
    assert pd.isna(table["next_gx"].iloc[1])


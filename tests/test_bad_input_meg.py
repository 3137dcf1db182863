"""Bad MEG input named where it is read (issue 18): a scene image cut short is found with the fixations."""

import numpy as np
import pytest
from PIL import Image

from test_avs import event, write_dataset
from tbdencoder.data.avs import prepare_fixations, read_fixations


def test_truncated_scene_dropped_and_counted_or_raised(tmp_path, logs):
    """A scene image cut short is found where fixations are read, not when crops are cut."""
    root = write_dataset(tmp_path / "avs", [event(1), event(2, scene="s2"), event(1, trial=2, scene="s2")])
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "scenes/s2.png")
    data = (root / "scenes/s2.png").read_bytes()
    (root / "scenes/s2.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "fixations.tsv"
    with pytest.raises(ValueError, match=r"line 3 \(sub-01_ses-1_trial-001_fix-02, scene 's2'\): the scene image "
                                         r"cannot be decoded"):
        prepare_fixations(root, 1, out, on_bad="error")
    prepare_fixations(root, 1, out, on_bad="drop")
    assert read_fixations(out)["fixation_id"].tolist() == ["sub-01_ses-1_trial-001_fix-01"]
    assert "dropped 2 of 3 fixations of subject 1 (the scene image cannot be decoded (truncated or not an image): 2)" \
        in logs.text

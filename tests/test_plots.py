"""Figures shared by the fMRI and MEG evaluations: preferred block per ROI, training curves, notices."""

import h5py
import numpy as np
import pytest
from PIL import Image

from tbdencoder.evaluate import plots
from tbdencoder.evaluate.metrics import preferred_block_fractions, roi_block_fractions
from tbdencoder.evaluate.training import TrainingCurve, read_training_curves

# 6 targets x 3 blocks; the largest weight of each row: 0, 2, 2, 1, 0 (a tie of 0 and 1 goes to the first), 2
BLOCK_WEIGHT = np.array([[0.6, 0.3, 0.1],
                         [0.2, 0.3, 0.5],
                         [0.1, 0.1, 0.8],
                         [0.2, 0.7, 0.1],
                         [0.4, 0.4, 0.2],
                         [0.3, 0.3, 0.4]])
ROIS = {
    # labels 1 = V1 (targets 0, 1, 4), 2 = V2 (3), 3 = V3 (absent: skipped), 0 unlabelled (2, 5)
    "visual": (np.array([1, 1, 0, 2, 1, 0]), {0: "Unknown", 1: "V1", 2: "V2", 3: "V3"}),
    "faces": (np.array([0, 0, 5, 0, 0, 5]), {5: "FFA"}),
    "unused": (np.ones(6, int), {1: "X"}),
}


def test_preferred_block_fractions_by_hand():
    np.testing.assert_allclose(preferred_block_fractions(BLOCK_WEIGHT), [2 / 6, 1 / 6, 3 / 6])
    with pytest.raises(ValueError, match="expected"):
        preferred_block_fractions(np.zeros((0, 3)))


def test_roi_block_fractions_by_hand():
    rows = roi_block_fractions(BLOCK_WEIGHT, ROIS, ["visual", "faces", "not_in_file"])
    assert [row[:3] for row in rows] == [("visual", "V1", 3), ("visual", "V2", 1), ("faces", "FFA", 2)]
    np.testing.assert_allclose(rows[0][3], [2 / 3, 0, 1 / 3])  # targets 0, 1, 4 prefer blocks 0, 2, 0
    np.testing.assert_allclose(rows[1][3], [0, 1, 0])
    np.testing.assert_allclose(rows[2][3], [0, 0, 1])  # targets 2, 5 prefer block 2


def test_preferred_block_bars_stack_the_fractions(tmp_path, captured):
    rows = roi_block_fractions(BLOCK_WEIGHT, ROIS, ["visual", "faces"])
    blocks = ["block03/global", "block03/grid", "block06/global"]
    out = tmp_path / "preferred.png"
    plots.plot_preferred_block_rois({"banded lh": (blocks, rows)}, "subj01: preferred", out)
    (title, axes), = captured.values()
    ax = axes[0][1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["V1 (3)", "V2 (1)", "FFA (2)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == blocks
    # bars are drawn block by block: heights of block b over the ROIs, stacked on the blocks before it
    heights = np.array([p.get_height() for p in ax.patches]).reshape(3, 3)
    bottoms = np.array([p.get_y() for p in ax.patches]).reshape(3, 3)
    np.testing.assert_allclose(heights, np.array([r[3] for r in rows]).T)
    np.testing.assert_allclose(bottoms, np.vstack([np.zeros(3), np.cumsum(heights, 0)[:-1]]))
    assert Image.open(out).text["Title"] == "subj01: preferred"


@pytest.mark.parametrize("plot, notice", [(plots.plot_preferred_block_rois, plots.NO_BLOCK_WEIGHTS),
                                          (plots.plot_training_curves, plots.NO_TRAINING_CURVES)])
def test_nothing_to_show_writes_a_notice(tmp_path, captured, plot, notice):
    out = tmp_path / "figure.png"
    title = plots.fmri_title("subj01", "something", random_init=True)
    plot({}, title, out)
    saved_title, axes = captured[out]
    assert saved_title == f"{title}\n{notice}" and "RANDOM-INIT" in saved_title
    assert [t.get_text() for t in axes[0][1].texts] == [saved_title]
    assert Image.open(out).text["Title"] == saved_title


def write_curves(path, folds: dict[str, dict]):
    with h5py.File(path, "w") as h5:
        h5["test_prediction"] = np.zeros((2, 3), np.float32)
        for name, datasets in folds.items():
            group = h5.create_group(f"folds/{name}")
            for key, value in datasets.items():
                group[key] = value


def curve(train, validation, best):
    return {"train_loss": np.asarray(train, np.float32), "validation_loss": np.asarray(validation, np.float32),
            "best_epoch": np.int64(best)}


def test_read_training_curves_from_a_hand_written_fits_file(tmp_path):
    path = tmp_path / "fit.h5"
    write_curves(path, {"2": curve([1.0, 0.5, 0.25], [1.0, 0.75, 0.875], 1),
                        "0": curve([0.9, 0.8], [0.95, 0.9], 1),
                        "1": {"alpha": np.ones(3)}})  # a fold without curves (not gradient-trained)
    curves = read_training_curves(path)
    assert list(curves) == [0, 2]
    np.testing.assert_array_equal(curves[2].train_loss, [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(curves[2].validation_loss, [1.0, 0.75, 0.875])
    assert curves[2].best_epoch == 1 and curves[0].best_epoch == 1
    np.testing.assert_allclose(curves[0].validation_loss, [0.95, 0.9], rtol=1e-6)
    write_curves(tmp_path / "none.h5", {})
    assert read_training_curves(tmp_path / "none.h5") == {}


@pytest.mark.parametrize("folds, error, match", [
    ({"0": {"train_loss": np.ones(3), "best_epoch": np.int64(0)}}, KeyError, r"folds/0 has train_loss but no \['validation_loss'\]"),
    ({"0": curve([1, 1, 1], [1, 1], 0)}, ValueError, "folds/0: train_loss"),
    ({"0": curve([1, 1], [1, 1], 2)}, ValueError, r"folds/0/best_epoch is 2 \(int64\); expected one 0-based"),
    ({"0": {**curve([1, 1], [1, 1], 0), "best_epoch": 1.0}}, ValueError, r"folds/0/best_epoch is 1.0 \(float64\)"),
    ({"last": curve([1, 1], [1, 1], 0)}, ValueError, "folds/last: expected fold groups named by their index"),
])
def test_bad_training_curves_name_the_file_and_key(tmp_path, folds, error, match):
    path = tmp_path / "bad_fit.h5"
    write_curves(path, folds)
    with pytest.raises(error, match="bad_fit.h5: " + match):
        read_training_curves(path)


def test_training_curves_plot_the_losses_with_1_based_epochs(tmp_path, captured):
    curves = {0: TrainingCurve(np.array([1.0, 0.5, 0.25]), np.array([1.0, 0.75, 0.875]), 1),
              3: TrainingCurve(np.array([0.9, 0.8]), np.array([0.95, 0.9]), 1)}
    plots.plot_training_curves({"mlp": curves}, "sub-01", tmp_path / "training.png")
    (title, axes), = captured.values()
    panel_title, ax = axes[0]
    assert panel_title == "mlp\nbest epochs 2, 2"
    train, validation, best = ax.lines[:3]  # fold 0
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(train.get_ydata(), [1.0, 0.5, 0.25])
    np.testing.assert_array_equal(validation.get_ydata(), [1.0, 0.75, 0.875])
    assert validation.get_linewidth() > train.get_linewidth()
    assert (best.get_xdata()[0], best.get_ydata()[0]) == (2, 0.75)
    assert ax.lines[5].get_xdata()[0] == 2 and ax.lines[5].get_ydata()[0] == 0.9  # fold 3's best epoch
    assert ax.lines[3].get_color() != train.get_color()  # one colour per fold

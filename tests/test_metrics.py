import numpy as np
import pytest

from tbdencoder.evaluate.metrics import block_preference, challenge_score, pearson_r, pearson_r_within_folds, roi_medians


def test_pearson_r_matches_hand_computation():
    prediction = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 0.0], [4.0, 4.0]])
    target = np.array([[2.0, 1.0], [4.0, 2.0], [6.0, 3.0], [8.0, 0.0]])
    # column 0: target = 2 * prediction -> r = 1
    # column 1: x = [2,1,0,4] (mean 1.75), y = [1,2,3,0] (mean 1.5)
    dx = np.array([0.25, -0.75, -1.75, 2.25])
    dy = np.array([-0.5, 0.5, 1.5, -1.5])
    expected = (dx * dy).sum() / np.sqrt((dx**2).sum() * (dy**2).sum())  # -6.5 / sqrt(8.75 * 5)
    r = pearson_r(prediction, target)
    assert r[0] == pytest.approx(1.0)
    assert r[1] == pytest.approx(expected)
    assert r[1] == pytest.approx(-6.5 / np.sqrt(43.75), abs=1e-12)
    np.testing.assert_allclose(r, [np.corrcoef(prediction[:, j], target[:, j])[0, 1] for j in range(2)])


def test_pearson_r_constant_column_is_zero_and_shapes_checked():
    r = pearson_r(np.ones((5, 1)), np.arange(5.0)[:, None])
    assert r[0] == 0.0
    with pytest.raises(ValueError, match="shape"):
        pearson_r(np.ones((5, 2)), np.ones((4, 2)))


def test_pearson_r_within_folds_matches_hand_computation():
    prediction = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [10.0, 10.0], [10.0, 10.0], [11.0, 11.0], [13.0, 13.0]])
    target = np.array([[1.0, 1.0], [3.0, 3.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0], [1.0, 1.0], [1.0, 5.0]])
    folds = np.array([0, 0, 0, 1, 1, 1, 1])
    # fold 0 (3 rows), both columns: prediction - 2 = [-1, 0, 1], target - 2 = [-1, 1, 0]: r = 1 / sqrt(2 * 2)
    # fold 1 (4 rows): prediction - 11 = [-1, -1, 0, 2]; column 0: target - 1 = [1, -1, 0, 0]: r = 0;
    # column 1: target - 2 = [-2, 0, -1, 3]: r = (2 + 6) / sqrt(6 * 14)
    fold_0, fold_1 = 0.5, np.array([0.0, 8 / np.sqrt(84)])
    expected = (3 * fold_0 + 4 * fold_1) / 7
    np.testing.assert_allclose(pearson_r_within_folds(prediction, target, folds), expected)
    np.testing.assert_allclose(expected, [1.5 / 7, (1.5 + 32 / np.sqrt(84)) / 7])
    assert pearson_r(prediction, target)[0] < 0 < expected[0]  # pooled, the fold means dominate
    np.testing.assert_allclose(pearson_r_within_folds(prediction, target, np.zeros(7)), pearson_r(prediction, target))
    with pytest.raises(ValueError, match="same number of rows"):
        pearson_r_within_folds(prediction, target, folds[:3])


def test_challenge_score_clips_normalises_and_caps():
    r = np.array([-0.3, 0.2, 0.5, 0.9, 0.4])
    noise_ceiling = np.array([0.5, 0.5, 0.25, 0.5, 0.0])
    score = challenge_score(r, noise_ceiling)
    # -0.3 -> 0; 100*0.04/0.5 = 8; 100*0.25/0.25 = 100; 100*0.81/0.5 = 162 -> capped 100; NC 0 -> undefined
    np.testing.assert_allclose(score[:4], [0.0, 8.0, 100.0, 100.0])
    assert np.isnan(score[4])
    assert np.nanmean(score) == pytest.approx(52.0)


def test_roi_medians_skip_unlabelled_and_absent_rois():
    values = np.array([1.0, 2.0, 3.0, 10.0, 20.0, 5.0])
    labels = np.array([1, 1, 1, 2, 2, 0])
    medians = roi_medians(values, labels, {0: "Unknown", 1: "V1v", 2: "V1d", 3: "hV4"})
    assert medians == {"V1v": (3, 2.0), "V1d": (2, 15.0)}


def test_r_within_folds_refuses_a_fold_too_small_to_correlate():
    values = np.arange(8.0)[:, None]
    with pytest.raises(ValueError, match="fold 1 holds 2 rows"):
        pearson_r_within_folds(values, values, np.array([0, 0, 0, 0, 0, 0, 1, 1]))


def test_block_preference_counts_each_targets_largest_weight():
    weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    summary = block_preference(weights, ["block03", "block06", "block09"])
    assert summary["preferred"] == {"block03": 0.5, "block06": 0.25, "block09": 0.25}
    assert summary["mean_weight"]["block03"] == pytest.approx(0.4) and "share" not in summary


def test_block_preference_gives_each_backbones_share_when_blocks_are_prefixed():
    weights = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    summary = block_preference(weights, ["clip:block06/global", "clip:block12/global", "alexnet:features.12/global"])
    # per vertex, clip's share is 0.9, 0.9, 0.9, 0.4: mean 0.775; alexnet's is the rest
    assert summary["share"] == pytest.approx({"clip": 0.775, "alexnet": 0.225})

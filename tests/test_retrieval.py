"""Retrieval scores: ranks with ties against a hand computation, chance exactly where nothing is known,
informative queries above the derived chance band, intervals over groups."""

import numpy as np
import pytest

from tbdencoder.evaluate.retrieval import chance_interval, retrieval_scores, top_k, true_rank


def test_ranks_and_top_k_with_ties_by_hand():
    scores = np.array([[0.5, 0.9, 0.5, 0.1],
                       [0.5, 0.9, 0.5, 0.1],
                       [0.2, 0.2, 0.2, 0.2]])
    higher, tied = true_rank(scores, np.array([0, 1, 3]))
    assert higher.tolist() == [1, 0, 0] and tied.tolist() == [1, 0, 3]
    # query 0: true rank 2 or 3, equally likely; query 2: any of 1..4
    assert top_k(higher, tied, 1).tolist() == [0.0, 1.0, 0.25]
    assert top_k(higher, tied, 2).tolist() == [0.5, 1.0, 0.5]
    assert top_k(higher, tied, 5).tolist() == [1.0, 1.0, 1.0]


def test_perfect_and_uninformative_queries():
    rng = np.random.default_rng(0)
    actual = rng.standard_normal((40, 8))
    perfect = retrieval_scores(actual * 3.0, actual)
    assert perfect["top1"]["value"] == 1.0 and perfect["median_rank"]["value"] == 1.0
    constant = retrieval_scores(np.zeros((40, 8)), actual)  # zero queries: every candidate tied
    assert constant["top1"]["value"] == pytest.approx(1 / 40) and constant["top5"]["value"] == pytest.approx(5 / 40)
    assert constant["median_rank"]["value"] == 20.5 == constant["median_rank"]["chance"]
    assert constant["top5"]["chance"] == 5 / 40 and constant["n_candidates"] == 40


def test_candidates_are_the_rows_of_the_querys_fold():
    """Two folds of 10 and 30 rows: a query is ranked among its fold's rows only, chance per fold."""
    rng = np.random.default_rng(3)
    actual = rng.standard_normal((40, 8))
    folds = np.repeat([0, 1], [10, 30])
    predicted = actual.copy()
    predicted[10:] = 0.0  # fold 1 knows nothing
    scores = retrieval_scores(predicted, actual, folds=folds)
    assert scores["top1"]["value"] == pytest.approx((10 * 1.0 + 30 * (1 / 30)) / 40)
    assert scores["top5"]["chance"] == pytest.approx((10 * 0.5 + 30 * 5 / 30) / 40)
    assert scores["n_candidates"] == 25.0
    assert retrieval_scores(predicted, actual, folds=np.r_[folds[:-1], 2]) is None  # a fold of one row


def test_random_queries_fall_in_the_chance_band_and_informative_ones_above_it():
    rng = np.random.default_rng(1)
    n, d = 200, 16
    actual = rng.standard_normal((n, d))
    low, high = chance_interval(n, 5 / n)
    assert low < 5 / n < high
    inside = [low <= retrieval_scores(rng.standard_normal((n, d)), actual, resamples=10)["top5"]["value"] <= high
              for _ in range(40)]
    assert np.mean(inside) >= 0.85  # a 95 % band: about 38 of 40 draws
    informative = retrieval_scores(actual + 1.5 * rng.standard_normal((n, d)), actual, resamples=200)
    assert informative["top5"]["value"] > high
    low_ci, high_ci = informative["top5"]["ci"]
    assert low_ci <= informative["top5"]["value"] <= high_ci and low_ci > informative["top5"]["chance"]
    assert informative["median_rank"]["value"] < informative["median_rank"]["chance"]


def test_intervals_resample_whole_groups():
    """Queries of a group succeed or fail together (fixations of one scene): resampling groups, not rows,
    widens the interval."""
    rng = np.random.default_rng(2)
    candidates = rng.standard_normal((60, 8))
    groups = np.arange(60) // 10
    noise = np.where(groups % 2 == 0, 0.3, 10.0)[:, None]  # every other group uninformative
    queries = candidates + noise * rng.standard_normal((60, 8))
    rows = retrieval_scores(queries, candidates, resamples=500)["top5"]["ci"]
    grouped = retrieval_scores(queries, candidates, groups=groups, resamples=500)["top5"]["ci"]
    assert grouped[1] - grouped[0] > 1.5 * (rows[1] - rows[0])
    one_group = retrieval_scores(queries, candidates, groups=np.zeros(60))
    assert one_group["top5"]["ci"] is None and one_group["top5"]["value"] > 0


def test_too_few_rows_give_no_number_and_mismatched_rows_are_named():
    assert retrieval_scores(np.ones((1, 4)), np.ones((1, 4))) is None
    with pytest.raises(ValueError, match=r"one actual embedding per prediction, got 5 for 3"):
        retrieval_scores(np.ones((3, 4)), np.ones((5, 4)))

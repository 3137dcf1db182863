"""Retrieval scores of the decoding direction: is the true stimulus found among the test candidates?

Each query (a test row's brain data mapped into the image embedding) ranks every candidate (the embeddings of
the stimuli of the test rows of its outer fold) by cosine similarity, as `models.losses.ClipLoss.scores` does in training. The rank of
the true candidate is taken under uniform random tie-breaking, so a query that cannot tell candidates apart (a
constant prediction) sits exactly at chance: rank = 1 + (candidates scored higher) + (others tied) / 2, and
top-k is the probability that the true candidate is among the first k.

Reported as the field does (Benchetrit et al. 2024): top-1, top-5 and the median rank, each with its chance
level (k / candidates; (candidates + 1) / 2) and a bootstrap interval over the queries' groups (MEG: scenes,
whose fixations are not independent; fMRI: images). `chance_interval` is the band a model with no
information falls in (binomial over independent queries): the shuffled-label control's reference.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

TOP_K = (1, 5)
MIN_QUERIES = 2  # fewer queries (or candidates) than this give no retrieval score


def cosine_scores(queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """(n_queries, n_candidates) cosine similarities of the rows; a zero row scores 0 against everything."""
    def unit(rows):
        rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
        norm = np.linalg.norm(rows, axis=1, keepdims=True)
        return np.divide(rows, norm, out=np.zeros_like(rows), where=norm > 0)
    return unit(queries) @ unit(candidates).T


def true_rank(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: (candidates scored strictly higher than the true one, other candidates tied with it)."""
    scores = np.asarray(scores, np.float64)
    true = scores[np.arange(len(scores)), truth][:, None]
    higher = (scores > true).sum(1)
    tied = (scores == true).sum(1) - 1
    return higher, tied


def top_k(higher: np.ndarray, tied: np.ndarray, k: int) -> np.ndarray:
    """Per query, P(true rank <= k) with ties broken uniformly at random."""
    return np.clip((k - higher) / (tied + 1), 0.0, 1.0)


def chance_interval(n_queries: int, chance: float, level: float = 0.95) -> tuple[float, float]:
    """The interval of the top-k accuracy of a model without information whose expected accuracy is `chance`
    (independent queries, binomial)."""
    low, high = stats.binom.interval(level, n_queries, chance)
    return float(low / n_queries), float(high / n_queries)


def retrieval_scores(predicted: np.ndarray, actual: np.ndarray, *, folds: np.ndarray | None = None,
                     groups: np.ndarray | None = None, resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict | None:
    """Top-1, top-5 and median rank of each row's `actual` embedding (n, d) among the candidates when its
    `predicted` embedding is the query. Candidates: the actual embeddings of the rows of the query's outer fold
    (`folds`, default one fold: every row), one per row (distinct stimuli). Chance: the mean over queries of
    k / its fold's candidates; intervals: a bootstrap over `groups` (default: each row its own). None when a fold
    has fewer than MIN_QUERIES rows (never a number for what could not be measured)."""
    predicted, actual = np.asarray(predicted), np.asarray(actual)
    if len(predicted) != len(actual):
        raise ValueError(f"expected one actual embedding per prediction, got {len(actual)} for {len(predicted)}")
    folds = np.zeros(len(actual), np.int64) if folds is None else np.asarray(folds)
    higher, tied, candidates = (np.zeros(len(actual)) for _ in range(3))
    for fold in np.unique(folds):
        rows = np.flatnonzero(folds == fold)
        if len(rows) < MIN_QUERIES:
            return None
        higher[rows], tied[rows] = true_rank(cosine_scores(predicted[rows], actual[rows]), np.arange(len(rows)))
        candidates[rows] = len(rows)
    per_query = {f"top{k}": top_k(higher, tied, k) for k in TOP_K}
    per_query["rank"] = 1 + higher + tied / 2
    point = {name: (float(np.median(values)) if name == "rank" else float(values.mean()))
             for name, values in per_query.items()}
    intervals = _bootstrap(per_query, np.arange(len(actual)) if groups is None else np.asarray(groups),
                           resamples, level, seed)
    n, m = len(actual), float(candidates.mean())
    out = {"n_queries": n, "n_candidates": m, "ci_level": level}
    for k in TOP_K:
        chance = float(np.minimum(k / candidates, 1.0).mean())
        out[f"top{k}"] = {"value": point[f"top{k}"], "ci": intervals[f"top{k}"], "chance": chance,
                          "chance_interval": list(chance_interval(n, chance, level))}
    out["median_rank"] = {"value": point["rank"], "ci": intervals["rank"], "chance": float(np.median(candidates + 1) / 2)}
    return out


def _bootstrap(per_query: dict[str, np.ndarray], groups: np.ndarray, resamples: int, level: float,
               seed: int) -> dict[str, list[float] | None]:
    """Percentile intervals of each statistic over resamples of whole groups (None with fewer than 2 groups or
    no resamples)."""
    names, index = np.unique(groups, return_inverse=True)
    if len(names) < 2 or resamples < 1:
        return {name: None for name in per_query}
    members = [np.flatnonzero(index == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    draws = {name: np.empty(resamples) for name in per_query}
    for b in range(resamples):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(names), len(names))])
        for name, values in per_query.items():
            draws[name][b] = np.median(values[rows]) if name == "rank" else values[rows].mean()
    tail = 100 * (1 - level) / 2
    return {name: [float(v) for v in np.percentile(values, [tail, 100 - tail])] for name, values in draws.items()}

"""MEG metrics of scored fits (meg_fit.MegFit): peak latency, r at the peak, over the best sensors and relative
to the noise ceiling, and one model against another.

Whatever is chosen by r (a peak latency, the best sensors) is chosen on one half of the outer folds and scored
on the other, and vice versa (`cross_fit`); the one value still chosen on the same data is named so
(`best_sensor_r_optimistic`).
"""

from __future__ import annotations

import numpy as np

from tbdencoder.evaluate.meg_fit import MegFit
from tbdencoder.evaluate.metrics import block_preference


def cross_fit(choose_by: np.ndarray, score_on: np.ndarray, choose, score):
    """Mean over the two fold halves h of score(score_on[h], choose(choose_by[1 - h])): what is chosen by r
    (a peak latency, the best sensors) is scored on the other half of the folds, so the choice adds no optimism."""
    return np.mean([score(score_on[h], choose(choose_by[1 - h])) for h in (0, 1)], axis=0)


def peak_index(r: np.ndarray) -> int:
    """Time index of the peak of the mean r over sensors."""
    return int(np.argmax(r.mean(0)))


def best_sensors(r: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` sensors with the highest peak r over time, best first."""
    return np.argsort(-r.max(1), kind="stable")[:n]


def at_peak(choose_by: np.ndarray, score_on: np.ndarray, score=lambda values, t: values[:, t]):
    """score(values, t) (default: the sensor map at t) at the peak t of the mean r over sensors, cross-fitted:
    t is chosen on one half of `choose_by` (2, ch, t) and the values are taken from the other half of `score_on`."""
    return cross_fit(choose_by, score_on, peak_index, score)


def best_sensors_r(choose_by: np.ndarray, score_on: np.ndarray, n: int) -> np.ndarray:
    """Mean over the `n` best sensors of `score_on` (ch, t) over time, the sensors chosen by r on the other half."""
    return cross_fit(choose_by, score_on, lambda r: best_sensors(r, n), lambda values, best: values[best].mean(0))


RELIABLE_FRACTION = 0.1  # share of sensors, those with the highest noise ceiling, in the "reliable" summary


def model_metrics(fit: MegFit, times_s: np.ndarray, ch_names: list[str], nc: np.ndarray, n_best: int) -> dict:
    """Peak latency of the mean-over-sensors r, r at the peak, over the `n_best` best sensors and relative to the
    ceiling, all cross-fitted (`cross_fit`), and the best sensor x time cell chosen on the same data (optimistic).

    `mean_r_at_peak_reliable_sensors`: mean r at the peak over the RELIABLE_FRACTION of sensors with the
    highest noise ceiling there (chosen from the data's repeats, not from r).
    """
    mean_r = fit.r.mean(0)
    peak = peak_index(fit.r)
    halves = fit.r_halves
    sensor, time = np.unravel_index(int(np.argmax(fit.r)), fit.r.shape)
    has_nc = bool(np.isfinite(nc).any())
    mean_nc = np.nanmean(nc, 0) if has_nc else np.full(len(times_s), np.nan)
    mean_nc[~(mean_nc > 0)] = np.nan  # no ratio to a zero ceiling
    n_reliable = max(1, round(RELIABLE_FRACTION * len(ch_names)))

    def reliable(t: int) -> np.ndarray:
        return np.argsort(-np.nan_to_num(nc[:, t], nan=-np.inf), kind="stable")[:n_reliable]

    metrics = {
        "scheme": fit.scheme,
        "streams": fit.streams,
        "n_fixations": fit.n_fixations,
        "peak_latency_s": float(times_s[peak]),
        "mean_r_at_peak": float(at_peak(halves, halves).mean()),
        "mean_r_over_time": [float(v) for v in mean_r],
        "n_best_sensors": n_best,
        "best_sensors_r_at_peak": float(cross_fit(halves, halves, lambda r: (best_sensors(r, n_best), peak_index(r)),
                                                  lambda r, chosen: r[chosen].mean())),
        "best_sensor": ch_names[sensor],
        "best_sensor_r_optimistic": float(fit.r[sensor, time]),
        "best_sensor_latency_s": float(times_s[time]),
        "median_noise_ceiling_at_peak": float(np.nanmedian(nc[:, peak])) if has_nc else np.nan,
        # ratio of means over sensors at the peak: the fraction of the ceiling the model reaches
        "mean_r_at_peak_over_nc": float(at_peak(halves, halves, lambda r, t: r[:, t].mean() / mean_nc[t])),
        "mean_r_at_peak_reliable_sensors": float(at_peak(halves, halves, lambda r, t: r[reliable(t), t].mean())
                                                 if has_nc else np.nan),
        "n_reliable_sensors": n_reliable,
    }
    if fit.block_weight is not None:  # each sensor's preferred block (layer, stream) at the peak latency
        metrics["block_weights_at_peak"] = block_preference(fit.block_weight[:, peak], fit.block_names)
    return metrics


def compare_models(fit_a: MegFit, fit_b: MegFit, times_s: np.ndarray) -> dict:
    """b - a: mean over sensors at a's peak latency (cross-fitted), and the fraction of sensor x time cells
    where b > a."""
    return {
        "reference_latency_s": float(times_s[peak_index(fit_a.r)]),
        "mean_delta_r_at_peak": float(at_peak(fit_a.r_halves, fit_b.r_halves - fit_a.r_halves).mean()),
        "fraction_cells_improved": float((fit_b.r > fit_a.r).mean()),
    }

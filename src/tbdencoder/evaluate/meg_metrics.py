"""MEG metrics of scored fits (meg_fit.MegFit): peak latency, r at the peak, over the best sensors and relative
to the noise ceiling, and one model against another.

Whatever is chosen by r (a peak latency, the best sensors) is chosen on one half of the outer folds and scored
on the other, and vice versa (`cross_fit`); the one value still chosen on the same data is named so
(`best_sensor_r_optimistic`).

The model's peak latency is that of the sensors that carry its signal (`best_sensors_estimate`), with a bootstrap
interval over scenes (meg_bootstrap); the peak of the mean over all sensors (`peak_index`), most of which may carry
no signal, is kept for the mean-over-sensors summaries and named so (`mean_over_sensors_peak_latency_s`).
"""

from __future__ import annotations

import numpy as np

from tbdencoder.evaluate.meg_bootstrap import bootstrap, percentile_interval
from tbdencoder.evaluate.meg_fit import MegFit
from tbdencoder.evaluate.metrics import block_preference


def cross_fit(choose_by: np.ndarray, score_on: np.ndarray, choose, score):
    """Mean over the two fold halves h of score(score_on[h], choose(choose_by[1 - h])): what is chosen by r
    (a peak latency, the best sensors) is scored on the other half of the folds, so the choice adds no optimism."""
    return np.mean([score(score_on[h], choose(choose_by[1 - h])) for h in (0, 1)], axis=0)


def peak_index(r: np.ndarray) -> int:
    """Time index of the peak of the mean r over all sensors (the mean-over-sensors peak)."""
    return int(np.argmax(r.mean(0)))


def best_sensors(r: np.ndarray, n: int) -> np.ndarray:
    """Indices (..., n) of the `n` sensors of r (..., ch, t) with the highest peak r over time, best first."""
    return np.argsort(-r.max(-1), axis=-1, kind="stable")[..., :n]


def sensors_mean(r: np.ndarray, sensors: np.ndarray) -> np.ndarray:
    """(..., t) mean of r (..., ch, t) over `sensors` (..., n)."""
    return np.take_along_axis(r, sensors[..., None], -2).mean(-2)


def best_sensors_peak(r: np.ndarray, n: int) -> np.ndarray:
    """Time index (...) of the peak of the mean of r (..., ch, t) over its own `n` best sensors."""
    return np.argmax(sensors_mean(r, best_sensors(r, n)), -1)


def at_peak(choose_by: np.ndarray, score_on: np.ndarray, n_best: int, score=lambda values, t: values[:, t]):
    """score(values, t) (default: the sensor map at t) at the model's peak t, that of its `n_best` best sensors
    (`best_sensors_peak`), cross-fitted: t is chosen on one half of `choose_by` (2, ch, t) and the values are taken
    from the other half of `score_on`."""
    return cross_fit(choose_by, score_on, lambda r: best_sensors_peak(r, n_best), score)


def best_sensors_r(choose_by: np.ndarray, score_on: np.ndarray, n: int) -> np.ndarray:
    """Mean over the `n` best sensors of `score_on` (ch, t) over time, the sensors chosen by r on the other half."""
    return cross_fit(choose_by, score_on, lambda r: best_sensors(r, n), sensors_mean)


def best_sensors_estimate(r_halves: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """The model's r(t) and peak from its `n` best sensors, for r_halves (..., 2, ch, t) (a leading batch of
    bootstrap resamples or none):

    - `curve` (..., t): mean over the two halves h of the mean r of half h over the sensors chosen on half 1 - h
      (`best_sensors_r`): the sensor choice adds no optimism;
    - `peak` (...): time index of the curve's maximum (the latency is read off the curve itself);
    - `r_at_peak` (...): mean over h of r of half h over the sensors and at the peak of their mean, both chosen
      on half 1 - h: fully cross-fitted, so not the curve's maximum, which is chosen on the data it scores.
    """
    other = best_sensors(r_halves, n)[..., ::-1, :]  # (..., 2, n): for half h, half 1 - h's best sensors
    curves = sensors_mean(r_halves, other)  # (..., 2, t): half h over the sensors of half 1 - h
    peak_other = best_sensors_peak(r_halves, n)[..., ::-1]  # (..., 2): for half h, half 1 - h's own peak
    return {"curve": curves.mean(-2), "peak": np.argmax(curves.mean(-2), -1),
            "r_at_peak": np.take_along_axis(curves, peak_other[..., None], -1)[..., 0].mean(-1)}


def latency_interval(fit: MegFit, times_s: np.ndarray, n_best: int, n_resamples: int, level: float,
                     seed: int) -> dict:
    """Percentile intervals at `level` of `best_sensors_estimate` over `n_resamples` scene resamples
    (meg_bootstrap, seeded by `seed`): `peak_latency_s_ci`, `best_sensors_r_at_peak_ci` ([lo, hi]) and
    `best_sensors_r_over_time_ci` ([lo (t), hi (t)], pointwise); null without an interval."""
    draws = bootstrap(fit.scene_sums, lambda halves: best_sensors_estimate(halves, n_best), n_resamples, seed)
    latency = np.where(np.isfinite(draws["peak"]), times_s[np.nan_to_num(draws["peak"]).astype(int)], np.nan)
    return {"peak_latency_s_ci": percentile_interval(latency, level).tolist(),
            "best_sensors_r_at_peak_ci": percentile_interval(draws["r_at_peak"], level).tolist(),
            "best_sensors_r_over_time_ci": percentile_interval(draws["curve"], level).tolist(),
            "ci_level": float(level), "bootstrap_resamples": int(n_resamples),
            "bootstrap_resamples_used": int(np.isfinite(draws["r_at_peak"]).sum())}


RELIABLE_FRACTION = 0.1  # share of sensors, those with the highest noise ceiling, in the "reliable" summary


def model_metrics(fit: MegFit, times_s: np.ndarray, ch_names: list[str], nc: np.ndarray, n_best: int, *,
                  bootstrap_resamples: int = 1000, ci_level: float = 0.95, bootstrap_seed: int = 0) -> dict:
    """The model's peak latency and r at the peak from its `n_best` best sensors (`best_sensors_estimate`) with
    bootstrap intervals over scenes (`latency_interval`); the mean over all sensors over time and at its own
    peak (`mean_over_sensors_peak_latency_s`), over the `n_best` best sensors and relative to the ceiling, all
    cross-fitted (`cross_fit`), and the best sensor x time cell chosen on the same data (optimistic).

    Every `*_at_peak` value is taken at the model's peak (`at_peak`: that of its best sensors, chosen on the other
    half of the folds). `mean_r_at_peak_reliable_sensors`: mean r there over the RELIABLE_FRACTION of sensors with
    the highest noise ceiling (chosen from the data's repeats, not from r).
    """
    mean_r = fit.r.mean(0)
    peak = peak_index(fit.r)
    halves = fit.r_halves
    best = best_sensors_estimate(halves, n_best)
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
        "peak_latency_s": float(times_s[best["peak"]]),
        "n_best_sensors": n_best,
        "best_sensors_r_at_peak": float(best["r_at_peak"]),
        "best_sensors_r_over_time": [float(v) for v in best["curve"]],
        **latency_interval(fit, times_s, n_best, bootstrap_resamples, ci_level, bootstrap_seed),
        "mean_over_sensors_peak_latency_s": float(times_s[peak]),
        "mean_r_at_peak": float(at_peak(halves, halves, n_best).mean()),
        "mean_r_over_time": [float(v) for v in mean_r],
        "best_sensor": ch_names[sensor],
        "best_sensor_r_optimistic": float(fit.r[sensor, time]),
        "best_sensor_latency_s": float(times_s[time]),
        "median_noise_ceiling_at_peak": float(np.nanmedian(nc[:, best["peak"]])) if has_nc else np.nan,
        # ratio of means over sensors at the peak: the fraction of the ceiling the model reaches
        "mean_r_at_peak_over_nc": float(at_peak(halves, halves, n_best, lambda r, t: r[:, t].mean() / mean_nc[t])),
        "mean_r_at_peak_reliable_sensors": float(at_peak(halves, halves, n_best,
                                                         lambda r, t: r[reliable(t), t].mean()) if has_nc else np.nan),
        "n_reliable_sensors": n_reliable,
    }
    if fit.block_weight is not None:  # each sensor's preferred block (layer, stream) at the model's peak
        metrics["block_weights_at_peak"] = block_preference(fit.block_weight[:, best["peak"]], fit.block_names)
    return metrics


def compare_models(fit_a: MegFit, fit_b: MegFit, times_s: np.ndarray, n_best: int) -> dict:
    """b - a: mean over sensors at a's peak latency (that of a's `n_best` best sensors, `best_sensors_estimate`;
    the delta cross-fitted, `at_peak`), and the fraction of sensor x time cells where b > a."""
    return {
        "reference_latency_s": float(times_s[best_sensors_estimate(fit_a.r_halves, n_best)["peak"]]),
        "mean_delta_r_at_peak": float(at_peak(fit_a.r_halves, fit_b.r_halves - fit_a.r_halves, n_best).mean()),
        "fraction_cells_improved": float((fit_b.r > fit_a.r).mean()),
    }

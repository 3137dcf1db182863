"""Step `evaluate_meg`: one subject's MEG fits scored per sensor x time against a noise ceiling, with figures.

r is the Pearson r within each outer fold, averaged over the folds (metrics.pearson_r_within_folds: 0 in
expectation on pure noise), of each fit's out-of-fold predictions with the epochs, joined by fixation id
(meg_fit.read_fit, one opening of each fits file). Whatever is chosen by r (a peak latency, the best sensors) is
cross-fitted over halves of the outer folds (meg_metrics); the peak latency and r at the peak come with percentile
intervals from a bootstrap over scenes (meg_bootstrap); figures in meg_plots.

metrics json: {subject, n_pairs, max_distance_px, min_pairs, times (s), random_init_features,
models: {model: {scheme, streams, n_fixations, peak_latency_s (of the n_best_sensors best sensors' r(t)),
n_best_sensors, best_sensors_r_at_peak, best_sensors_r_over_time, peak_latency_s_ci, best_sensors_r_at_peak_ci
([lo, hi]), best_sensors_r_over_time_ci ([lo (t), hi (t)]), ci_level, bootstrap_resamples, bootstrap_resamples_used,
mean_over_sensors_peak_latency_s, mean_r_at_peak, mean_r_over_time, best_sensor, best_sensor_r_optimistic,
best_sensor_latency_s, median_noise_ceiling_at_peak, mean_r_at_peak_over_nc, mean_r_at_peak_reliable_sensors,
n_reliable_sensors (every *_at_peak value at the model's peak, cross-fitted), and for models with block
weights (banded ridge) block_weights_at_peak: {preferred: {block: fraction of sensors}, mean_weight: {block: ...}}}},
<b>_minus_<a> (for compare = (a, b), when both fitted): {reference_latency_s, mean_delta_r_at_peak,
fraction_cells_improved}}. Undefined values (no noise ceiling) are null.
scores h5: `r/<model>` (ch, t), `noise_ceiling` (ch, t; NaN without enough repeats), `times` (t,) s,
`ch_names` (ch,), `repeat_pairs` (n_pairs, 2) fixation ids, `preferred_block/<model>` (ch, t) index into its
attr `blocks` (models with block weights); attrs subject, n_pairs, max_distance_px, min_pairs.
figures (meg_plots.FIGURES): r over time, topomaps at the peak, dual - foveal, each block's weight at the peak of
the models with block weights, training curves of the gradient-trained models; a figure with nothing to show says
so.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.data.meg import channel_info, read_epochs
from tbdencoder.evaluate.meg_fit import MegFit, read_fit
from tbdencoder.evaluate.meg_metrics import compare_models, model_metrics
from tbdencoder.evaluate.meg_plots import FIGURES, pair_topomap_info, plot_figures
from tbdencoder.evaluate.noise_ceiling_meg import noise_ceiling, repeat_pairs
from tbdencoder.io import atomic_path, atomic_write_text, get_logger, write_strings

log = get_logger("evaluate_meg")


def _finite(value):
    """JSON has no NaN: undefined numbers become null, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _interval(bounds: list[float], scale: float = 1.0, unit: str = "") -> str:
    """'lo-hi unit' of an interval, or 'no interval'."""
    if not np.isfinite(bounds).all():
        return "no interval"
    return f"{scale * bounds[0]:.3g}-{scale * bounds[1]:.3g}{' ' + unit if unit else ''}"


def evaluate_meg_subject(
    epochs_path: str | Path,
    fit_paths: list[str | Path],
    metrics_out: str | Path,
    scores_out: str | Path,
    figure_paths: dict[str, Path],
    *,
    max_distance_px: float,
    min_pairs: int,
    n_best_sensors: int = 10,
    compare: tuple[str, str] | None = ("foveal", "dual"),
    bootstrap_resamples: int = 1000,
    ci_level: float = 0.95,
    bootstrap_seed: int = 0,
) -> None:
    """Score every fit of one subject, compute the noise ceiling from repeated fixations, write metrics,
    scores and the figures `figure_paths` (keys FIGURES); intervals at `ci_level` from `bootstrap_resamples`
    resamples of the scenes, drawn by a generator seeded with `bootstrap_seed`."""
    missing = [k for k in FIGURES if k not in figure_paths]
    if missing:
        raise KeyError(f"figure_paths lacks {missing} (expected keys {list(FIGURES)})")
    if not fit_paths:
        raise ValueError(f"no fits files to evaluate for {epochs_path}")
    if compare and len(compare) != 2:
        raise ValueError(f"compare must name two models (reference, other), got {compare}")
    data, fixation_ids, times_s, fixations = read_epochs(epochs_path)
    times_s = np.asarray(times_s, dtype=np.float64)
    info = channel_info(epochs_path)
    ch_names = list(info["ch_names"])
    topo_info, grad_pairs = pair_topomap_info(info, epochs_path)
    with h5py.File(epochs_path, "r") as h5:
        if "subject" not in h5.attrs:
            raise KeyError(f"{epochs_path}: no attr 'subject' (expected the epochs layout of docs/meg.md)")
        subject = str(h5.attrs["subject"])

    fits: dict[str, MegFit] = {}
    for path in fit_paths:
        fit = read_fit(path, data, fixation_ids, ch_names, times_s)
        if fit.subject != subject:
            raise ValueError(f"{path}: subject {fit.subject!r}, expected {subject!r} of {epochs_path}")
        if fit.model in fits:
            raise ValueError(f"{path}: model {fit.model!r} also in {fits[fit.model].path} "
                             "(expected one file per model)")
        fits[fit.model] = fit

    pairs = repeat_pairs(fixations, max_distance_px)
    nc = noise_ceiling(data, pairs, min_pairs=min_pairs)
    log.info("%s: %d repeat pairs within %.1f px among %d fixations; median noise ceiling %s", subject, len(pairs),
             max_distance_px, len(fixation_ids), "n/a" if np.isnan(nc).all() else f"{np.nanmedian(nc):.3f}")

    random_init = any(f.random_init_features for f in fits.values())
    metrics = {"subject": subject, "n_pairs": len(pairs), "max_distance_px": float(max_distance_px),
               "min_pairs": int(min_pairs), "times": [float(t) for t in times_s],
               "random_init_features": random_init, "models": {}}
    for model, fit in fits.items():
        entry = metrics["models"][model] = model_metrics(
            fit, times_s, ch_names, nc, n_best_sensors, bootstrap_resamples=bootstrap_resamples, ci_level=ci_level,
            bootstrap_seed=bootstrap_seed)
        log.info("%s %s (%s): %d best sensors peak at %.0f ms (%s), r %.3f (%s) (cross-fitted); mean over sensors "
                 "peaks at %.0f ms, r %.3f; best sensor %s r %.3f at %.0f ms (chosen on the same data: optimistic)",
                 subject, model, fit.scheme, n_best_sensors, 1e3 * entry["peak_latency_s"],
                 _interval(entry["peak_latency_s_ci"], 1e3, "ms"), entry["best_sensors_r_at_peak"],
                 _interval(entry["best_sensors_r_at_peak_ci"]), 1e3 * entry["mean_over_sensors_peak_latency_s"],
                 entry["mean_r_at_peak"], entry["best_sensor"], entry["best_sensor_r_optimistic"],
                 1e3 * entry["best_sensor_latency_s"])
    if compare and all(m in fits for m in compare):
        a, b = compare
        metrics[f"{b}_minus_{a}"] = compare_models(fits[a], fits[b], times_s, n_best_sensors)
    elif compare:
        log.warning("%s: cannot compare %s (models fitted: %s); %s shows a notice", subject, list(compare),
                    sorted(fits), figure_paths["dual_vs_foveal"])

    with atomic_path(scores_out) as tmp, h5py.File(tmp, "w") as h5:
        for model, fit in fits.items():
            h5[f"r/{model}"] = fit.r.astype(np.float32)
            if fit.block_weight is not None:
                h5[f"preferred_block/{model}"] = fit.block_weight.argmax(-1).astype(np.int16)
                h5[f"preferred_block/{model}"].attrs["blocks"] = fit.block_names
        h5["noise_ceiling"] = nc.astype(np.float32)
        h5["times"] = times_s
        write_strings(h5, "ch_names", ch_names)
        ids = np.asarray(fixation_ids, dtype=object)
        h5.create_dataset("repeat_pairs", data=ids[pairs].reshape(-1, 2), dtype=h5py.string_dtype())
        h5.attrs.update(subject=subject, n_pairs=len(pairs), max_distance_px=float(max_distance_px),
                        min_pairs=int(min_pairs))

    plot_figures(subject, fits, metrics["models"], times_s, nc, topo_info, grad_pairs, n_best_sensors, compare,
                 figure_paths)
    atomic_write_text(metrics_out, json.dumps(_finite(metrics), indent=2, allow_nan=False))

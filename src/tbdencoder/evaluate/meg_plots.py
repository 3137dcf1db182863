"""MEG figures of one subject's scored fits (meg_fit.MegFit): r over time, topomaps at the peak, one model against
another, each block's weight at the peak of the models with block weights, training curves of the
gradient-trained models; a figure with nothing to show says so.

Topomaps show one value per planar gradiometer pair (`pair_topomap_info`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402

from tbdencoder.evaluate.meg_fit import MegFit  # noqa: E402
from tbdencoder.evaluate.meg_metrics import (  # noqa: E402
    at_peak,
    best_sensors_estimate,
    best_sensors_r,
    peak_index,
)
from tbdencoder.evaluate.metrics import preferred_block_fractions  # noqa: E402
from tbdencoder.evaluate.plots import (  # noqa: E402
    NO_BLOCK_WEIGHTS,
    plot_notice,
    plot_training_curves,
    save_figure,
    suptitle,
)

FIGURES = ("r_time", "topomap", "dual_vs_foveal", "preferred_block", "training")
PLANAR_COIL_TYPES = {3011, 3012, 3013, 3014, 3015}  # FIFFV_COIL_VV_PLANAR_*
RANDOM_INIT_NOTE = "(features from a RANDOM-INIT network)"


def plot_figures(subject: str, fits: dict[str, MegFit], metrics: dict[str, dict], times_s: np.ndarray,
                 nc: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray, n_best: int,
                 compare: tuple[str, str] | None, figure_paths: dict[str, Path]) -> None:
    """Write every figure of FIGURES to `figure_paths`; `metrics`: each model's meg_metrics.model_metrics;
    `dual_vs_foveal` compares the models `compare` (reference, other), or says why it cannot."""
    title = _title(subject, fits, any(f.random_init_features for f in fits.values()))
    plot_r_time(fits, metrics, times_s, nc, n_best, title, figure_paths["r_time"])
    plot_topomaps(fits, times_s, topo_info, grad_pairs, n_best, title, figure_paths["topomap"])
    if compare and all(m in fits for m in compare):
        plot_comparison(fits[compare[0]], fits[compare[1]], times_s, topo_info, grad_pairs, n_best, title,
                        figure_paths["dual_vs_foveal"])
    else:
        reason = f"needs models {list(compare)}, fitted {sorted(fits)}" if compare else "none requested"
        plot_notice(f"{title}\nno model comparison: {reason}", figure_paths["dual_vs_foveal"])
    plot_preferred_block(fits, times_s, topo_info, grad_pairs, n_best, title, figure_paths["preferred_block"])
    plot_training_curves({model: fit.training_curves for model, fit in fits.items() if fit.training_curves}, title,
                         figure_paths["training"])


def pair_topomap_info(info: mne.Info, epochs_path: str | Path) -> tuple[mne.Info, np.ndarray]:
    """One sensor per planar gradiometer pair (MEGxxx2 with MEGxxx3, at the pair's location) and the
    (n_pairs, 2) channel indices of the pairs.

    MNE combines a pair by RMS, which drops the sign of r and of delta r; we average the pair instead and
    hand MNE the pair positions as magnetometer-typed sensors, which it plots as they are.
    """
    names = list(info["ch_names"])
    coil_types = {int(ch["coil_type"]) for ch in info["chs"]}
    if not coil_types <= PLANAR_COIL_TYPES:
        raise ValueError(f"{epochs_path}: channels/coil_type {sorted(coil_types)} are not all planar gradiometers "
                         f"(expected {sorted(PLANAR_COIL_TYPES)})")
    index = {name: i for i, name in enumerate(names)}
    firsts = [name for name in names if name.endswith("2")]
    unpaired = [name for name in firsts if name[:-1] + "3" not in index]
    if unpaired or 2 * len(firsts) != len(names):
        raise ValueError(f"{epochs_path}: channels/name do not form MEGxxx2/MEGxxx3 gradiometer pairs "
                         f"({len(firsts)} ending in 2 of {len(names)}; unpaired {unpaired[:5]})")
    pairs = np.array([[index[name], index[name[:-1] + "3"]] for name in firsts])
    topo = mne.create_info([name[:-1] + "X" for name in firsts], info["sfreq"], ch_types="mag")
    for ch, first in zip(topo["chs"], pairs[:, 0]):
        ch["loc"][:] = info["chs"][first]["loc"]
    topo["dev_head_t"] = info["dev_head_t"]
    return topo, pairs


def _title(subject: str, fits: dict[str, MegFit], random_init: bool) -> str:
    schemes = sorted({f.scheme for f in fits.values()})
    title = f"{subject} ({', '.join(schemes)})"
    return f"{title} {RANDOM_INIT_NOTE}" if random_init else title


def plot_r_time(fits: dict[str, MegFit], metrics: dict[str, dict], times_s: np.ndarray, nc: np.ndarray, n_best: int,
                title: str, out_path: str | Path) -> None:
    """Left: the model's r(t), mean of its `n_best` sensors chosen on the other half of the folds, with its
    pointwise bootstrap band over scenes (shaded), its peak latency and that latency's interval (dotted: the
    sensors' mean noise ceiling). Right: r over time, mean over all sensors (noise ceiling shaded), each model's
    mean-over-sensors peak marked."""
    times_ms = 1e3 * times_s
    has_nc = bool(np.isfinite(nc).any())
    fig, (ax_best, ax_mean) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    if has_nc:
        ax_mean.fill_between(times_ms, 0, np.nanmean(nc, 0), color="0.85", label="noise ceiling")
    for i, (model, fit) in enumerate(fits.items()):
        color, entry = f"C{i}", metrics[model]
        _plot_best_sensors(ax_best, times_ms, entry, color, model, i)
        if has_nc:
            ax_best.plot(times_ms, best_sensors_r(fit.r_halves, np.stack([nc, nc]), n_best), color=color,
                         linestyle=":", linewidth=1)
        mean_r = fit.r.mean(0)
        peak = peak_index(fit.r)
        ax_mean.plot(times_ms, mean_r, color=color, label=model)
        ax_mean.axvline(times_ms[peak], color=color, linestyle="--", linewidth=0.8)
        ax_mean.annotate(f"{times_ms[peak]:.0f} ms", (times_ms[peak], mean_r[peak]), xytext=(4, 4 + 10 * i),
                         textcoords="offset points", color=color, fontsize="small")
    level = next(iter(metrics.values()))["ci_level"]
    ax_best.set_title(f"mean of each model's {n_best} best sensors, chosen on the other half of the folds\n"
                      f"(shaded: {100 * level:.0f}% bootstrap band over scenes; bar: the peak's interval"
                      + ("; dotted: their ceiling)" if has_nc else ")"), fontsize="medium")
    ax_mean.set_title("mean over all sensors (its own peak marked)")
    for ax in (ax_best, ax_mean):
        ax.axhline(0, color="black", linewidth=0.5)
        ax.axvline(0, color="0.5", linewidth=0.5)
        ax.set_xlabel("time from fixation onset (ms)")
    ax_best.set_ylabel("Pearson r")
    ax_best.legend(fontsize="small")
    suptitle(fig, title)
    fig.tight_layout()
    save_figure(fig, out_path, title)


def _plot_best_sensors(ax, times_ms: np.ndarray, entry: dict, color: str, model: str, i: int) -> None:
    """One model's best-sensors curve, its bootstrap band, its peak and the peak's interval (a bar at the peak's
    r; none where the metrics have no interval)."""
    curve = np.asarray(entry["best_sensors_r_over_time"])
    band = np.asarray(entry["best_sensors_r_over_time_ci"], dtype=np.float64)
    peak_ms, r_peak = 1e3 * entry["peak_latency_s"], entry["best_sensors_r_at_peak"]
    interval = np.asarray(entry["peak_latency_s_ci"], dtype=np.float64) * 1e3
    ax.plot(times_ms, curve, color=color, label=model)
    if np.isfinite(band).all():
        ax.fill_between(times_ms, band[0], band[1], color=color, alpha=0.2, linewidth=0)
    ax.axvline(peak_ms, color=color, linestyle="--", linewidth=0.8)
    label = f"{peak_ms:.0f} ms"
    if np.isfinite(interval).all():
        ax.plot(interval, [r_peak, r_peak], color=color, linewidth=3, solid_capstyle="butt")
        label += f" [{interval[0]:.0f}, {interval[1]:.0f}]"
    ax.annotate(label, (peak_ms, r_peak), xytext=(4, 4 + 10 * i), textcoords="offset points", color=color,
                fontsize="small")


def _topomap(ax, values_per_pair: np.ndarray, topo_info: mne.Info, vlim: float | tuple[float, float],
             cmap: str = "RdBu_r"):
    """A topomap of one value per gradiometer pair; a single `vlim` means the symmetric range (-vlim, vlim)."""
    im, _ = mne.viz.plot_topomap(values_per_pair, topo_info, axes=ax, show=False, cmap=cmap,
                                 vlim=vlim if isinstance(vlim, tuple) else (-vlim, vlim), contours=0)
    return im


def _pair_mean(values: np.ndarray, grad_pairs: np.ndarray) -> np.ndarray:
    return values[grad_pairs].mean(1)


def plot_topomaps(fits: dict[str, MegFit], times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                  n_best: int, title: str, out_path: str | Path) -> None:
    """r (mean of each gradiometer pair) at each model's peak, that of its `n_best` best sensors (cross-fitted: the
    map of each fold half at the peak of the other half), one panel per model, shared scale."""
    maps = {model: at_peak(fit.r_halves, fit.r_halves, n_best) for model, fit in fits.items()}
    vlim = max(float(np.abs(_pair_mean(m, grad_pairs)).max()) for m in maps.values()) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps) + 1, 3.8), squeeze=False)
    for ax, (model, values) in zip(axes[0], maps.items()):
        im = _topomap(ax, _pair_mean(values, grad_pairs), topo_info, vlim)
        latency_ms = 1e3 * times_s[int(best_sensors_estimate(fits[model].r_halves, n_best)["peak"])]
        ax.set_title(f"{model}\n{latency_ms:.0f} ms ({n_best} best sensors' peak), mean r {values.mean():.3f}",
                     fontsize="small")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8,
                 label="Pearson r (gradiometer pair mean)\nat the peak chosen on the other half of the folds")
    suptitle(fig, title)
    save_figure(fig, out_path, title)


def plot_comparison(fit_a: MegFit, fit_b: MegFit, times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                    n_best: int, title: str, out_path: str | Path) -> None:
    """delta r = b - a over time (mean over sensors and over a's `n_best` sensors), and its topomap at a's peak
    (that of its `n_best` best sensors, as `compare_models`); a's best sensors and peak are chosen on the other
    half of the folds."""
    times_ms = 1e3 * times_s
    delta_halves = fit_b.r_halves - fit_a.r_halves
    peak = int(best_sensors_estimate(fit_a.r_halves, n_best)["peak"])
    fig, (ax_time, ax_map) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.8, 1]})
    ax_time.plot(times_ms, (fit_b.r - fit_a.r).mean(0), color="C0", label="mean over sensors")
    ax_time.plot(times_ms, best_sensors_r(fit_a.r_halves, delta_halves, n_best), color="C1",
                 label=f"{fit_a.model}'s {n_best} best sensors (chosen on the other half of the folds)")
    ax_time.axhline(0, color="black", linewidth=0.5)
    ax_time.axvline(times_ms[peak], color="0.4", linestyle="--", linewidth=0.8)
    ax_time.annotate(f"{fit_a.model} peak {times_ms[peak]:.0f} ms", (times_ms[peak], 0), xytext=(4, 4),
                     textcoords="offset points", fontsize="small")
    ax_time.set_xlabel("time from fixation onset (ms)")
    ax_time.set_ylabel(f"delta r ({fit_b.model} - {fit_a.model})")
    ax_time.legend(fontsize="small")
    values = _pair_mean(at_peak(fit_a.r_halves, delta_halves, n_best), grad_pairs)
    im = _topomap(ax_map, values, topo_info, float(np.abs(values).max()) or 1.0)
    ax_map.set_title(f"delta r at {times_ms[peak]:.0f} ms", fontsize="small")
    fig.colorbar(im, ax=ax_map, shrink=0.8,
                 label="delta r (gradiometer pair mean)\nat the peak chosen on the other half of the folds")
    suptitle(fig, title)
    save_figure(fig, out_path, title)


def block_weight_maps(fit: MegFit, grad_pairs: np.ndarray, n_best: int) -> tuple[int, np.ndarray, np.ndarray]:
    """(peak time index, block weights there per gradiometer pair (pairs, blocks) (mean of the pair),
    fraction of sensors whose largest weight each block has there (blocks,)) of a fit with block weights; the
    peak is the model's (its `n_best` best sensors'), as in its `block_weights_at_peak` metric."""
    peak = int(best_sensors_estimate(fit.r_halves, n_best)["peak"])
    weight = fit.block_weight[:, peak]  # (ch, blocks)
    return peak, _pair_mean(weight, grad_pairs), preferred_block_fractions(weight)


def plot_preferred_block(fits: dict[str, MegFit], times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                         n_best: int, title: str, out_path: str | Path) -> None:
    """One row per model with block weights (banded ridge): at the model's peak latency (the time of its
    `block_weights_at_peak` metric) one topomap per block of that block's weight (mean of each gradiometer pair),
    shared scale from 0; each panel names the fraction of sensors whose largest weight the block has there.
    A notice when no model has block weights."""
    banded = {model: fit for model, fit in fits.items() if fit.block_weight is not None}
    if not banded:
        plot_notice(f"{title}\n{NO_BLOCK_WEIGHTS}", out_path)
        return
    maps = {model: block_weight_maps(fit, grad_pairs, n_best) for model, fit in banded.items()}
    vmax = max(float(pair_weight.max()) for _, pair_weight, _ in maps.values()) or 1.0
    n_cols = max(len(fit.block_names) for fit in banded.values())
    fig, axes = plt.subplots(len(banded), n_cols, figsize=(2.9 * n_cols + 1.6, 3.1 * len(banded) + 0.6),
                             squeeze=False)
    for row, (model, (peak, pair_weight, preferred)) in zip(axes, maps.items()):
        names = banded[model].block_names
        for ax, name, values, share in zip(row, names, pair_weight.T, preferred):
            im = _topomap(ax, values, topo_info, (0.0, vmax), cmap="viridis")
            ax.set_title(f"{name}\npreferred by {100 * share:.0f}% of sensors", fontsize="small")
        row[0].text(-0.12, 0.5, f"{model}\n{1e3 * times_s[peak]:.0f} ms", transform=row[0].transAxes,
                    rotation=90, ha="right", va="center", fontsize="medium")
        for ax in row[len(names):]:
            ax.set_axis_off()
    fig.colorbar(im, ax=list(axes.ravel()), shrink=0.8,
                 label="block weight (gradiometer pair mean)\nat the model's peak latency")
    suptitle(fig, title)
    save_figure(fig, out_path, title)

"""Step `evaluate_meg`: one subject's MEG fits scored per sensor x time against a noise ceiling, with figures.

r is the Pearson r within each outer fold, averaged over the folds (metrics.pearson_r_within_folds: 0 in
expectation on pure noise), of each fit's out-of-fold predictions with the epochs, joined by fixation id.
Whatever is chosen by r (a peak latency, the best sensors) is chosen on one half of the outer folds and scored
on the other, and vice versa (`cross_fit`); the one value still chosen on the same data is named so
(`best_sensor_r_optimistic`).

metrics json: {subject, n_pairs, max_distance_px, min_pairs, times (s), random_init_features,
models: {model: {scheme, streams, n_fixations, peak_latency_s, mean_r_at_peak, mean_r_over_time, n_best_sensors,
best_sensors_r_at_peak, best_sensor, best_sensor_r_optimistic, best_sensor_latency_s, median_noise_ceiling_at_peak,
mean_r_at_peak_over_nc, mean_r_at_peak_reliable_sensors, n_reliable_sensors, and for models with block weights
(banded ridge) block_weights_at_peak: {preferred: {block: fraction of sensors}, mean_weight: {block: ...}}}},
<b>_minus_<a> (for compare = (a, b), when both fitted): {reference_latency_s, mean_delta_r_at_peak,
fraction_cells_improved}}. Undefined values (no noise ceiling) are null.
scores h5: `r/<model>` (ch, t), `noise_ceiling` (ch, t; NaN without enough repeats), `times` (t,) s,
`ch_names` (ch,), `repeat_pairs` (n_pairs, 2) fixation ids, `preferred_block/<model>` (ch, t) index into its
attr `blocks` (models with block weights); attrs subject, n_pairs, max_distance_px, min_pairs.
figures (FIGURES): r over time, topomaps at the peak, dual - foveal, each block's weight at the peak of the models
with block weights, training curves of the gradient-trained models; a figure with nothing to show says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402

from tbdencoder.data.meg import channel_info, read_epochs  # noqa: E402
from tbdencoder.evaluate.metrics import (  # noqa: E402
    block_preference,
    pearson_r_within_folds,
    preferred_block_fractions,
)
from tbdencoder.evaluate.noise_ceiling_meg import noise_ceiling, repeat_pairs  # noqa: E402
from tbdencoder.evaluate.plots import (  # noqa: E402
    NO_BLOCK_WEIGHTS,
    plot_notice,
    plot_training_curves,
    save_figure,
    suptitle,
)
from tbdencoder.evaluate.training import TrainingCurve, read_training_curves  # noqa: E402
from tbdencoder.io import atomic_path, atomic_write_text, get_logger, write_strings  # noqa: E402

log = get_logger("evaluate_meg")

FIGURES = ("r_time", "topomap", "dual_vs_foveal", "preferred_block", "training")
PLANAR_COIL_TYPES = {3011, 3012, 3013, 3014, 3015}  # FIFFV_COIL_VV_PLANAR_*
RANDOM_INIT_NOTE = "(features from a RANDOM-INIT network)"


@dataclass
class MegFit:
    """What the evaluation needs of one fits file, scored against the epochs."""

    path: Path
    model: str
    scheme: str
    streams: list[str]
    subject: str
    random_init_features: bool
    n_fixations: int
    r: np.ndarray  # (ch, t) within-fold r over all folds
    r_halves: np.ndarray  # (2, ch, t) within-fold r over alternate outer folds (1st, 3rd, ... / 2nd, 4th, ...)
    block_weight: np.ndarray | None = None  # (ch, t, blocks) for families with block weights (banded ridge)
    block_names: list[str] | None = None
    training_curves: dict[int, TrainingCurve] = field(default_factory=dict)  # per outer fold (gradient-trained)


def _strings(value) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


def read_fit(path: str | Path, data: np.ndarray, fixation_ids: list[str], ch_names: list[str],
             times_s: np.ndarray) -> MegFit:
    """A fits file's attrs, checked against the epochs' channels and times, and the within-fold r of its
    predictions with the epochs `data` (n, ch, t) of `fixation_ids`, rows joined by fixation id.

    r is invariant to fit_meg's per-column z-scoring of the targets, so the raw epochs serve as targets.
    """
    path = Path(path)
    with h5py.File(path, "r") as h5:
        for key in ("prediction", "fold", "fixation_id"):
            if key not in h5:
                raise KeyError(f"{path}: no dataset {key!r} (expected the fits layout of docs/meg.md)")
        attrs = dict(h5.attrs)
        missing = [k for k in ("model", "scheme", "streams", "subject", "random_init_features", "ch_names", "times")
                   if k not in attrs]
        if missing:
            raise KeyError(f"{path}: missing attrs {missing} (expected the fits layout of docs/meg.md)")
        fit_ids = list(h5["fixation_id"].asstr()[:])
        prediction, folds = h5["prediction"][:], h5["fold"][:]
        block_weight = h5["block_weight"][:] if "block_weight" in h5 else None
        block_names = list(h5["feature_blocks"].asstr()[:]) if block_weight is not None else None
    expected = (len(ch_names), len(times_s))
    if prediction.shape[1:] != expected:
        raise ValueError(f"{path}: prediction has shape {prediction.shape}, expected (fixations, channels, times) "
                         f"= (n, *{expected}) of the epochs")
    fit_names = _strings(attrs["ch_names"])
    if fit_names != list(ch_names):
        differ = [(a, b) for a, b in zip(fit_names, ch_names) if a != b][:3]
        raise ValueError(f"{path}: ch_names differ from the epochs' channels/name "
                         f"(expected the same {len(ch_names)} names in the same order; first differences "
                         f"(fit, epochs): {differ}, counts {len(fit_names)} vs {len(ch_names)})")
    fit_times = np.asarray(attrs["times"], dtype=np.float64)
    if fit_times.shape != times_s.shape or not np.allclose(fit_times, times_s, atol=1e-6):
        raise ValueError(f"{path}: attrs times differ from the epochs' grad/onset times "
                         f"({fit_times.min():.3f}..{fit_times.max():.3f} s, {len(fit_times)} samples; expected "
                         f"{times_s.min():.3f}..{times_s.max():.3f} s, {len(times_s)} samples)")
    row = {fid: i for i, fid in enumerate(fixation_ids)}
    no_epoch = [fid for fid in fit_ids if fid not in row]
    if no_epoch:
        raise ValueError(f"{path}: {len(no_epoch)} fixation_id without an epoch (first {no_epoch[:3]}); "
                         "expected the fit's rows among the epochs' fixation_id")
    fold_values = np.unique(folds)
    if len(fold_values) < 2:
        raise ValueError(f"{path}: predictions of {len(fold_values)} outer fold; expected at least 2 (`fold`)")
    target = data[[row[fid] for fid in fit_ids]]
    half = np.searchsorted(fold_values, folds) % 2
    return MegFit(path=path, model=str(attrs["model"]), scheme=str(attrs["scheme"]),
                  streams=_strings(attrs["streams"]), subject=str(attrs["subject"]),
                  random_init_features=bool(attrs["random_init_features"]), n_fixations=len(fit_ids),
                  r=pearson_r_within_folds(prediction, target, folds),
                  r_halves=np.stack([pearson_r_within_folds(prediction[half == h], target[half == h], folds[half == h])
                                     for h in (0, 1)]),
                  block_weight=block_weight, block_names=block_names, training_curves=read_training_curves(path))


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


def _finite(value):
    """JSON has no NaN: undefined numbers become null, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


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
) -> None:
    """Score every fit of one subject, compute the noise ceiling from repeated fixations, write metrics,
    scores and the figures `figure_paths` (keys FIGURES)."""
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
        entry = metrics["models"][model] = model_metrics(fit, times_s, ch_names, nc, n_best_sensors)
        log.info("%s %s (%s): peak %.0f ms, mean r at peak %.3f, %d best sensors %.3f (cross-fitted); best sensor %s "
                 "r %.3f at %.0f ms (chosen on the same data: optimistic)", subject, model, fit.scheme,
                 1e3 * entry["peak_latency_s"], entry["mean_r_at_peak"], n_best_sensors,
                 entry["best_sensors_r_at_peak"], entry["best_sensor"], entry["best_sensor_r_optimistic"],
                 1e3 * entry["best_sensor_latency_s"])
    comparable = bool(compare) and all(m in fits for m in compare)
    if comparable:
        a, b = compare
        metrics[f"{b}_minus_{a}"] = compare_models(fits[a], fits[b], times_s)
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

    title = _title(subject, fits, random_init)
    plot_r_time(fits, times_s, nc, n_best_sensors, title, figure_paths["r_time"])
    plot_topomaps(fits, times_s, topo_info, grad_pairs, title, figure_paths["topomap"])
    if comparable:
        plot_comparison(fits[compare[0]], fits[compare[1]], times_s, topo_info, grad_pairs, n_best_sensors, title,
                        figure_paths["dual_vs_foveal"])
    else:
        reason = f"needs models {list(compare)}, fitted {sorted(fits)}" if compare else "none requested"
        plot_notice(f"{title}\nno model comparison: {reason}", figure_paths["dual_vs_foveal"])
    plot_preferred_block(fits, times_s, topo_info, grad_pairs, title, figure_paths["preferred_block"])
    plot_training_curves({model: fit.training_curves for model, fit in fits.items() if fit.training_curves}, title,
                         figure_paths["training"])
    atomic_write_text(metrics_out, json.dumps(_finite(metrics), indent=2, allow_nan=False))


def meg_summary(metric_paths: list[str | Path]) -> dict:
    """The MEG part of results/metrics.json: every subject's metrics without the per-time lists (compact for
    `dvc metrics show`), the mean over training subjects (models scored with scheme scene_cv) of peak r and
    latency, and the held-out subjects' peak r."""
    subjects = {}
    for path in metric_paths:
        data = json.loads(Path(path).read_text())
        data.pop("times", None)
        for entry in data["models"].values():
            entry.pop("mean_r_over_time", None)
        subjects[data["subject"]] = data
    training: dict[str, list[dict]] = {}
    heldout: dict[str, dict[str, float]] = {}
    for label, data in subjects.items():
        for model, entry in data["models"].items():
            if entry["scheme"] == "scene_cv":
                training.setdefault(model, []).append(entry)
            elif entry["scheme"] == "heldout_subject":
                heldout.setdefault(label, {})[model] = entry["mean_r_at_peak"]
    mean_over_training = {
        model: {"mean_r_at_peak": float(np.mean([e["mean_r_at_peak"] for e in entries])),
                "peak_latency_s": float(np.mean([e["peak_latency_s"] for e in entries])),
                "n_subjects": len(entries)}
        for model, entries in sorted(training.items())
    }
    return {"subjects": subjects, "mean_over_training_subjects": mean_over_training, "heldout": heldout}


# ---- figures ----


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


def plot_r_time(fits: dict[str, MegFit], times_s: np.ndarray, nc: np.ndarray, n_best: int, title: str,
                out_path: str | Path) -> None:
    """Left: r over time, mean over sensors (noise ceiling shaded), each model's peak marked.
    Right: mean of each model's `n_best` sensors, chosen on the other half of the folds (dotted: their mean
    noise ceiling)."""
    times_ms = 1e3 * times_s
    has_nc = bool(np.isfinite(nc).any())
    fig, (ax_mean, ax_best) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    if has_nc:
        ax_mean.fill_between(times_ms, 0, np.nanmean(nc, 0), color="0.85", label="noise ceiling")
    for i, (model, fit) in enumerate(fits.items()):
        color = f"C{i}"
        mean_r = fit.r.mean(0)
        peak = peak_index(fit.r)
        ax_mean.plot(times_ms, mean_r, color=color, label=model)
        ax_mean.axvline(times_ms[peak], color=color, linestyle="--", linewidth=0.8)
        ax_mean.annotate(f"{times_ms[peak]:.0f} ms", (times_ms[peak], mean_r[peak]), xytext=(4, 4 + 10 * i),
                         textcoords="offset points", color=color, fontsize="small")
        ax_best.plot(times_ms, best_sensors_r(fit.r_halves, fit.r_halves, n_best), color=color, label=model)
        if has_nc:
            ax_best.plot(times_ms, best_sensors_r(fit.r_halves, np.stack([nc, nc]), n_best), color=color,
                         linestyle=":", linewidth=1)
    ax_mean.set_title("mean over sensors")
    ax_best.set_title(f"mean of each model's {n_best} best sensors, chosen on the other half of the folds"
                      + ("\n(dotted: their ceiling)" if has_nc else ""), fontsize="medium")
    for ax in (ax_mean, ax_best):
        ax.axhline(0, color="black", linewidth=0.5)
        ax.axvline(0, color="0.5", linewidth=0.5)
        ax.set_xlabel("time from fixation onset (ms)")
    ax_mean.set_ylabel("Pearson r")
    ax_mean.legend(fontsize="small")
    suptitle(fig, title)
    fig.tight_layout()
    save_figure(fig, out_path, title)


def _topomap(ax, values_per_pair: np.ndarray, topo_info: mne.Info, vlim: float | tuple[float, float],
             cmap: str = "RdBu_r"):
    """A topomap of one value per gradiometer pair; a single `vlim` means the symmetric range (-vlim, vlim)."""
    im, _ = mne.viz.plot_topomap(values_per_pair, topo_info, axes=ax, show=False, cmap=cmap,
                                 vlim=vlim if isinstance(vlim, tuple) else (-vlim, vlim), contours=0)
    return im


def _pair_mean(values: np.ndarray, grad_pairs: np.ndarray) -> np.ndarray:
    return values[grad_pairs].mean(1)


def plot_topomaps(fits: dict[str, MegFit], times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                  title: str, out_path: str | Path) -> None:
    """r (mean of each gradiometer pair) at each model's peak latency (cross-fitted: the map of each fold half at
    the peak of the other half), one panel per model, shared scale."""
    maps = {model: at_peak(fit.r_halves, fit.r_halves) for model, fit in fits.items()}
    vlim = max(float(np.abs(_pair_mean(m, grad_pairs)).max()) for m in maps.values()) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps) + 1, 3.8), squeeze=False)
    for ax, (model, values) in zip(axes[0], maps.items()):
        im = _topomap(ax, _pair_mean(values, grad_pairs), topo_info, vlim)
        latency_ms = 1e3 * times_s[peak_index(fits[model].r)]
        ax.set_title(f"{model}\n{latency_ms:.0f} ms, mean r {values.mean():.3f}", fontsize="small")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8,
                 label="Pearson r (gradiometer pair mean)\nat the peak chosen on the other half of the folds")
    suptitle(fig, title)
    save_figure(fig, out_path, title)


def plot_comparison(fit_a: MegFit, fit_b: MegFit, times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                    n_best: int, title: str, out_path: str | Path) -> None:
    """delta r = b - a over time (mean over sensors and over a's `n_best` sensors), and its topomap at a's peak;
    a's best sensors and peak are chosen on the other half of the folds."""
    times_ms = 1e3 * times_s
    delta_halves = fit_b.r_halves - fit_a.r_halves
    peak = peak_index(fit_a.r)
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
    values = _pair_mean(at_peak(fit_a.r_halves, delta_halves), grad_pairs)
    im = _topomap(ax_map, values, topo_info, float(np.abs(values).max()) or 1.0)
    ax_map.set_title(f"delta r at {times_ms[peak]:.0f} ms", fontsize="small")
    fig.colorbar(im, ax=ax_map, shrink=0.8,
                 label="delta r (gradiometer pair mean)\nat the peak chosen on the other half of the folds")
    suptitle(fig, title)
    save_figure(fig, out_path, title)


def block_weight_maps(fit: MegFit, grad_pairs: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(peak time index, block weights there per gradiometer pair (pairs, blocks) (mean of the pair),
    fraction of sensors whose largest weight each block has there (blocks,)) of a fit with block weights; the
    peak is that of the mean r over sensors over all folds, as in its `block_weights_at_peak` metric."""
    peak = peak_index(fit.r)
    weight = fit.block_weight[:, peak]  # (ch, blocks)
    return peak, _pair_mean(weight, grad_pairs), preferred_block_fractions(weight)


def plot_preferred_block(fits: dict[str, MegFit], times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                         title: str, out_path: str | Path) -> None:
    """One row per model with block weights (banded ridge): at the model's peak latency (the time of its
    `block_weights_at_peak` metric) one topomap per block of that block's weight (mean of each gradiometer pair),
    shared scale from 0; each panel names the fraction of sensors whose largest weight the block has there.
    A notice when no model has block weights."""
    banded = {model: fit for model, fit in fits.items() if fit.block_weight is not None}
    if not banded:
        plot_notice(f"{title}\n{NO_BLOCK_WEIGHTS}", out_path)
        return
    maps = {model: block_weight_maps(fit, grad_pairs) for model, fit in banded.items()}
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
                 label="block weight (gradiometer pair mean)\nat the model's peak latency (all folds)")
    suptitle(fig, title)
    save_figure(fig, out_path, title)

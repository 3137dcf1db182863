"""Step `evaluate_meg`: one subject's MEG fits scored per sensor x time against a noise ceiling, with figures.

metrics json: {subject, n_pairs, max_distance_px, min_pairs, times (s), random_init_features,
models: {model: {scheme, streams, n_fixations, peak_latency_s, mean_r_at_peak, best_sensor, best_sensor_r,
best_sensor_latency_s, mean_r_over_time, median_noise_ceiling_at_peak, mean_r_at_peak_over_nc}},
<b>_minus_<a> (for compare = (a, b), when both fitted): {reference_latency_s, mean_delta_r_at_peak,
fraction_cells_improved}}. Undefined values (no noise ceiling) are null.
scores h5: `r/<model>` (ch, t), `noise_ceiling` (ch, t; NaN without enough repeats), `times` (t,) s,
`ch_names` (ch,), `repeat_pairs` (n_pairs, 2) fixation ids; attrs subject, n_pairs, max_distance_px, min_pairs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mne  # noqa: E402
import numpy as np  # noqa: E402

from tbdencoder.data.meg import channel_info, read_epochs  # noqa: E402
from tbdencoder.evaluate.noise_ceiling_meg import noise_ceiling, repeat_pairs  # noqa: E402
from tbdencoder.io import atomic_path, atomic_write_text, get_logger, write_strings  # noqa: E402

log = get_logger("evaluate_meg")

FIGURES = ("r_time", "topomap", "dual_vs_foveal")
PLANAR_COIL_TYPES = {3011, 3012, 3013, 3014, 3015}  # FIFFV_COIL_VV_PLANAR_*
RANDOM_INIT_NOTE = "(features from a RANDOM-INIT network)"


@dataclass
class MegFit:
    """What the evaluation needs of one fits file."""

    path: Path
    model: str
    scheme: str
    streams: list[str]
    subject: str
    random_init_features: bool
    n_fixations: int
    r: np.ndarray  # (ch, t)


def _strings(value) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


def read_fit(path: str | Path, ch_names: list[str], times_s: np.ndarray) -> MegFit:
    """A fits file's r and attrs, checked against the epochs' channels and times."""
    path = Path(path)
    with h5py.File(path, "r") as h5:
        for key in ("r", "fixation_id"):
            if key not in h5:
                raise KeyError(f"{path}: no dataset {key!r} (expected the fits layout of docs/meg.md)")
        attrs = dict(h5.attrs)
        missing = [k for k in ("model", "scheme", "streams", "subject", "random_init_features", "ch_names", "times")
                   if k not in attrs]
        if missing:
            raise KeyError(f"{path}: missing attrs {missing} (expected the fits layout of docs/meg.md)")
        fit = MegFit(path=path, model=str(attrs["model"]), scheme=str(attrs["scheme"]),
                     streams=_strings(attrs["streams"]), subject=str(attrs["subject"]),
                     random_init_features=bool(attrs["random_init_features"]),
                     n_fixations=len(h5["fixation_id"]), r=h5["r"][:].astype(np.float64))
    expected = (len(ch_names), len(times_s))
    if fit.r.shape != expected:
        raise ValueError(f"{path}: r has shape {fit.r.shape}, expected (channels, times) = {expected} of the epochs")
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
    return fit


def best_sensors(r: np.ndarray, n: int) -> np.ndarray:
    """Indices of the `n` sensors with the highest peak r over time, best first."""
    return np.argsort(-r.max(1), kind="stable")[:n]


RELIABLE_FRACTION = 0.1  # share of sensors, those with the highest noise ceiling, in the "reliable" summary


def model_metrics(fit: MegFit, times_s: np.ndarray, ch_names: list[str], nc: np.ndarray) -> dict:
    """Peak latency of the mean-over-sensors r, the best sensor x time cell, and r relative to the ceiling.

    `mean_r_at_peak_reliable_sensors`: mean r at the peak over the RELIABLE_FRACTION of sensors with the
    highest noise ceiling there; chosen from the data's repeats, not from r, so it is not biased upwards
    the way the best sensor's r is.
    """
    mean_r = fit.r.mean(0)
    peak = int(np.argmax(mean_r))
    sensor, time = np.unravel_index(int(np.argmax(fit.r)), fit.r.shape)
    nc_at_peak = nc[:, peak]
    has_nc = bool(np.isfinite(nc_at_peak).any())
    mean_nc_at_peak = float(np.nanmean(nc_at_peak)) if has_nc else np.nan
    n_reliable = max(1, round(RELIABLE_FRACTION * len(ch_names)))
    reliable = np.argsort(-np.nan_to_num(nc_at_peak, nan=-np.inf), kind="stable")[:n_reliable]
    return {
        "scheme": fit.scheme,
        "streams": fit.streams,
        "n_fixations": fit.n_fixations,
        "peak_latency_s": float(times_s[peak]),
        "mean_r_at_peak": float(mean_r[peak]),
        "best_sensor": ch_names[sensor],
        "best_sensor_r": float(fit.r[sensor, time]),
        "best_sensor_latency_s": float(times_s[time]),
        "mean_r_over_time": [float(v) for v in mean_r],
        "median_noise_ceiling_at_peak": float(np.nanmedian(nc_at_peak)) if has_nc else np.nan,
        # ratio of means over sensors at the peak: the fraction of the ceiling the model reaches
        "mean_r_at_peak_over_nc": float(mean_r[peak] / mean_nc_at_peak) if mean_nc_at_peak > 0 else np.nan,
        "mean_r_at_peak_reliable_sensors": float(fit.r[reliable, peak].mean()) if has_nc else np.nan,
        "n_reliable_sensors": n_reliable,
    }


def compare_models(r_a: np.ndarray, r_b: np.ndarray, peak_a: int, times_s: np.ndarray) -> dict:
    """b - a: mean over sensors at a's peak latency, and the fraction of sensor x time cells where b > a."""
    delta = r_b - r_a
    return {
        "reference_latency_s": float(times_s[peak_a]),
        "mean_delta_r_at_peak": float(delta[:, peak_a].mean()),
        "fraction_cells_improved": float((delta > 0).mean()),
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
    scores and the figures `figure_paths` ('r_time', 'topomap', 'dual_vs_foveal')."""
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
        fit = read_fit(path, ch_names, times_s)
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
        entry = metrics["models"][model] = model_metrics(fit, times_s, ch_names, nc)
        log.info("%s %s (%s): peak %.0f ms, mean r at peak %.3f, best sensor %s r %.3f at %.0f ms", subject, model,
                 fit.scheme, 1e3 * entry["peak_latency_s"], entry["mean_r_at_peak"], entry["best_sensor"],
                 entry["best_sensor_r"], 1e3 * entry["best_sensor_latency_s"])
    comparable = bool(compare) and all(m in fits for m in compare)
    if comparable:
        a, b = compare
        peak_a = int(np.argmax(fits[a].r.mean(0)))
        metrics[f"{b}_minus_{a}"] = compare_models(fits[a].r, fits[b].r, peak_a, times_s)
    elif compare:
        log.warning("%s: cannot compare %s (models fitted: %s); %s shows a notice", subject, list(compare),
                    sorted(fits), figure_paths["dual_vs_foveal"])

    with atomic_path(scores_out) as tmp, h5py.File(tmp, "w") as h5:
        for model, fit in fits.items():
            h5[f"r/{model}"] = fit.r.astype(np.float32)
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
        _plot_notice(f"{title}\nno model comparison: {reason}", figure_paths["dual_vs_foveal"])
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


def _save(fig, out_path: str | Path) -> None:
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _plot_notice(text: str, out_path: str | Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    _save(fig, out_path)


def plot_r_time(fits: dict[str, MegFit], times_s: np.ndarray, nc: np.ndarray, n_best: int, title: str,
                out_path: str | Path) -> None:
    """Left: r over time, mean over sensors (noise ceiling shaded), each model's peak marked.
    Right: mean of each model's `n_best` sensors (dotted: their mean noise ceiling)."""
    times_ms = 1e3 * times_s
    has_nc = bool(np.isfinite(nc).any())
    fig, (ax_mean, ax_best) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    if has_nc:
        ax_mean.fill_between(times_ms, 0, np.nanmean(nc, 0), color="0.85", label="noise ceiling")
    for i, (model, fit) in enumerate(fits.items()):
        color = f"C{i}"
        mean_r = fit.r.mean(0)
        peak = int(np.argmax(mean_r))
        ax_mean.plot(times_ms, mean_r, color=color, label=model)
        ax_mean.axvline(times_ms[peak], color=color, linestyle="--", linewidth=0.8)
        ax_mean.annotate(f"{times_ms[peak]:.0f} ms", (times_ms[peak], mean_r[peak]), xytext=(4, 4 + 10 * i),
                         textcoords="offset points", color=color, fontsize="small")
        best = best_sensors(fit.r, n_best)
        ax_best.plot(times_ms, fit.r[best].mean(0), color=color, label=model)
        if has_nc:
            ax_best.plot(times_ms, nc[best].mean(0), color=color, linestyle=":", linewidth=1)
    ax_mean.set_title("mean over sensors")
    ax_best.set_title(f"mean of each model's {n_best} best sensors" + (" (dotted: their ceiling)" if has_nc else ""))
    for ax in (ax_mean, ax_best):
        ax.axhline(0, color="black", linewidth=0.5)
        ax.axvline(0, color="0.5", linewidth=0.5)
        ax.set_xlabel("time from fixation onset (ms)")
    ax_mean.set_ylabel("Pearson r")
    ax_mean.legend(fontsize="small")
    fig.suptitle(title, color="firebrick" if RANDOM_INIT_NOTE in title else "black")
    fig.tight_layout()
    _save(fig, out_path)


def _topomap(ax, values_per_pair: np.ndarray, topo_info: mne.Info, vlim: float):
    im, _ = mne.viz.plot_topomap(values_per_pair, topo_info, axes=ax, show=False, cmap="RdBu_r",
                                 vlim=(-vlim, vlim), contours=0)
    return im


def _pair_mean(values: np.ndarray, grad_pairs: np.ndarray) -> np.ndarray:
    return values[grad_pairs].mean(1)


def plot_topomaps(fits: dict[str, MegFit], times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                  title: str, out_path: str | Path) -> None:
    """r (mean of each gradiometer pair) at each model's peak latency, one panel per model, shared scale."""
    maps = {}
    for model, fit in fits.items():
        peak = int(np.argmax(fit.r.mean(0)))
        maps[model] = (times_s[peak], _pair_mean(fit.r[:, peak], grad_pairs))
    vlim = max(float(np.abs(m).max()) for _, m in maps.values()) or 1.0
    fig, axes = plt.subplots(1, len(maps), figsize=(3.4 * len(maps) + 1, 3.8), squeeze=False)
    for ax, (model, (latency_s, values)) in zip(axes[0], maps.items()):
        im = _topomap(ax, values, topo_info, vlim)
        ax.set_title(f"{model}\n{1e3 * latency_s:.0f} ms, mean r {fits[model].r.mean(0).max():.3f}", fontsize="small")
    fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="Pearson r (gradiometer pair mean)")
    fig.suptitle(title, color="firebrick" if RANDOM_INIT_NOTE in title else "black")
    _save(fig, out_path)


def plot_comparison(fit_a: MegFit, fit_b: MegFit, times_s: np.ndarray, topo_info: mne.Info, grad_pairs: np.ndarray,
                    n_best: int, title: str, out_path: str | Path) -> None:
    """delta r = b - a over time (mean over sensors and over a's `n_best` sensors), and its topomap at a's peak."""
    times_ms = 1e3 * times_s
    delta = fit_b.r - fit_a.r
    peak = int(np.argmax(fit_a.r.mean(0)))
    fig, (ax_time, ax_map) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.8, 1]})
    ax_time.plot(times_ms, delta.mean(0), color="C0", label="mean over sensors")
    ax_time.plot(times_ms, delta[best_sensors(fit_a.r, n_best)].mean(0), color="C1",
                 label=f"{fit_a.model}'s {n_best} best sensors")
    ax_time.axhline(0, color="black", linewidth=0.5)
    ax_time.axvline(times_ms[peak], color="0.4", linestyle="--", linewidth=0.8)
    ax_time.annotate(f"{fit_a.model} peak {times_ms[peak]:.0f} ms", (times_ms[peak], 0), xytext=(4, 4),
                     textcoords="offset points", fontsize="small")
    ax_time.set_xlabel("time from fixation onset (ms)")
    ax_time.set_ylabel(f"delta r ({fit_b.model} - {fit_a.model})")
    ax_time.legend(fontsize="small")
    values = _pair_mean(delta[:, peak], grad_pairs)
    im = _topomap(ax_map, values, topo_info, float(np.abs(values).max()) or 1.0)
    ax_map.set_title(f"delta r at {times_ms[peak]:.0f} ms", fontsize="small")
    fig.colorbar(im, ax=ax_map, shrink=0.8, label="delta r (gradiometer pair mean)")
    fig.suptitle(title, color="firebrick" if RANDOM_INIT_NOTE in title else "black")
    _save(fig, out_path)

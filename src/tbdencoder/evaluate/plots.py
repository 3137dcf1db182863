"""Figures of the fMRI evaluation (per-ROI bar charts, preferred blocks per ROI) and those shared with the MEG
evaluation (meg_plots): training curves, a notice figure for what a run cannot show, titles and saving."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from tbdencoder.evaluate.training import TrainingCurve  # noqa: E402
from tbdencoder.io import atomic_path  # noqa: E402

FMRI_RANDOM_INIT_NOTE = ", features from a RANDOM-INIT network (no pretrained weights)"
NO_BLOCK_WEIGHTS = "no model in this run has block weights (family banded_ridge)"
NO_TRAINING_CURVES = "no model in this run has training curves (gradient-trained families)"


def fmri_title(subject: str, what: str, random_init: bool) -> str:
    """'<subject>: <what>', with the RANDOM-INIT note when the features come from a random-init network."""
    return f"{subject}: {what}" + (FMRI_RANDOM_INIT_NOTE if random_init else "")


def suptitle(fig, title: str) -> None:
    """The figure's title, in red when it carries a RANDOM-INIT note."""
    fig.suptitle(title, color="firebrick" if "RANDOM-INIT" in title else "black", wrap=True)


def plot_roi_bars(metrics: dict, roi_classes: list[str], out_path: str | Path) -> None:
    """One panel per hemisphere: median noise-normalised score (or median r without a noise ceiling) per ROI, a bar per model."""
    models = list(metrics["models"])
    hemis = [h for h in ("lh", "rh") if h in metrics["models"][models[0]]]
    first = metrics["models"][models[0]][hemis[0]]
    use_score = first["challenge_score"] is not None
    key, label = ("median_score", "median noise-normalised score (%)") if use_score else ("median_r", "median Pearson r")
    fig, axes = plt.subplots(len(hemis), 1, figsize=(13, 3.2 * len(hemis)), squeeze=False)
    for ax, hemi in zip(axes[:, 0], hemis):
        rois = [(c, roi) for c in roi_classes for roi in metrics["models"][models[0]][hemi]["roi"].get(c, {})]
        x = np.arange(len(rois))
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            values = [metrics["models"][model][hemi]["roi"][c][roi][key] for c, roi in rois]
            ax.bar(x + i * width - 0.4 + width / 2, [np.nan if v is None else v for v in values], width,
                   label=_cost_label(model, metrics["models"][model]))
        ax.set_xticks(x, [roi for _, roi in rois], rotation=45, ha="right")
        ax.set_ylabel(label)
        ax.set_title(f"{metrics['subject']} {hemi} ({metrics['eval_split']} split)")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0, 0].legend(title="model", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    title = fmri_title(metrics["subject"], "per-ROI scores", bool(metrics.get("random_init_features")))
    if metrics.get("random_init_features"):
        suptitle(fig, title)
    fig.tight_layout()
    save_figure(fig, out_path, title)


def _cost_label(model: str, entry: dict) -> str:
    """`model (fit 12 s, 0.46 M parameters)` from a model's hemispheres (fit time summed, parameters of the
    largest), with what is known of either."""
    hemis = [value for key, value in entry.items() if key in ("lh", "rh")]
    seconds = [h.get("fit_seconds") for h in hemis if h.get("fit_seconds") is not None]
    counts = [h.get("n_parameters") for h in hemis if h.get("n_parameters") is not None]
    parts = ([f"fit {sum(seconds):.0f} s"] if seconds else []) + ([f"{max(counts) / 1e6:.2f} M parameters"]
                                                                  if counts else [])
    return f"{model} ({', '.join(parts)})" if parts else model


def save_figure(fig, out_path: str | Path, title: str) -> None:
    """Write `fig` as PNG atomically, with its title (and so any RANDOM-INIT note) in the PNG's Title text."""
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Title": title})
    plt.close(fig)


def plot_notice(text: str, out_path: str | Path) -> None:
    """A figure that only says `text` (centred): what a run cannot show, written so that the output exists."""
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    ax.set_axis_off()
    save_figure(fig, out_path, text)


def plot_preferred_block_rois(panels: dict[str, tuple[list[str], list[tuple[str, str, int, np.ndarray]]]],
                              title: str, out_path: str | Path) -> None:
    """One panel per entry of `panels` ({label: (block names, metrics.roi_block_fractions rows)}): per ROI a
    stacked bar of the fraction of its vertices whose largest block weight is each block, blocks in order.
    Without panels, a notice (NO_BLOCK_WEIGHTS)."""
    if not panels:
        plot_notice(f"{title}\n{NO_BLOCK_WEIGHTS}", out_path)
        return
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.4 * len(panels)), squeeze=False)
    for ax, (label, (blocks, rows)) in zip(axes[:, 0], panels.items()):
        x = np.arange(len(rows))
        fractions = np.array([row[3] for row in rows]).reshape(len(rows), len(blocks))
        bottom = np.zeros(len(rows))
        colors = plt.get_cmap("tab10" if len(blocks) <= 10 else "tab20")(np.arange(len(blocks)) % 20)
        for values, block, color in zip(fractions.T, blocks, colors):
            ax.bar(x, values, 0.8, bottom=bottom, color=color, label=block)
            bottom += values
        ax.set_xticks(x, [f"{roi} ({n})" for _, roi, n, _ in rows], rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of vertices")
        ax.set_title(f"{label}: preferred block (largest block weight) per ROI (vertex count)", fontsize="medium")
        ax.legend(title="block", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    suptitle(fig, title)
    fig.tight_layout()
    save_figure(fig, out_path, title)


def plot_training_curves(panels: dict[str, dict[int, TrainingCurve]], title: str, out_path: str | Path) -> None:
    """One panel per entry of `panels` ({label: {fold: curve}}): every fold's train (thin, dashed) and validation
    (thick) loss over epochs (1-based), one colour per fold, a marker at each fold's best epoch.
    Without panels, a notice (NO_TRAINING_CURVES)."""
    if not panels:
        plot_notice(f"{title}\n{NO_TRAINING_CURVES}", out_path)
        return
    n_cols = min(3, len(panels))
    n_rows = -(-len(panels) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(max(4.6 * n_cols, 8.0), 3.6 * n_rows + 0.6), squeeze=False)
    for ax, (label, curves) in zip(axes.ravel(), panels.items()):
        for fold, curve in curves.items():
            color = f"C{fold % 10}"
            epochs = np.arange(1, len(curve.train_loss) + 1)
            ax.plot(epochs, curve.train_loss, color=color, linewidth=0.9, linestyle="--")
            ax.plot(epochs, curve.validation_loss, color=color, linewidth=2)
            ax.plot(curve.best_epoch + 1, curve.validation_loss[curve.best_epoch], marker="*", markersize=12,
                    color=color, markeredgecolor="black", linestyle="none")
        handles = [Line2D([], [], color="0.3", linewidth=0.9, linestyle="--", label="train"),
                   Line2D([], [], color="0.3", linewidth=2, label="validation"),
                   Line2D([], [], color="0.3", marker="*", markersize=10, markeredgecolor="black", linestyle="none",
                          label="best epoch (kept)")]
        if len(curves) > 1:
            handles += [Line2D([], [], color=f"C{fold % 10}", linewidth=2, label=f"fold {fold}") for fold in curves]
        best = ", ".join(str(c.best_epoch + 1) for c in curves.values())
        ax.set_title(f"{label}\nbest epoch{'s' if len(curves) > 1 else ''} {best}", fontsize="medium")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (standardised targets)")
        ax.legend(handles=handles, fontsize="x-small", ncol=2 if len(handles) > 5 else 1)
    for ax in axes.ravel()[len(panels):]:
        ax.set_axis_off()
    suptitle(fig, title)
    fig.tight_layout()
    save_figure(fig, out_path, title)


def plot_kshot(metrics: dict, values: dict[str, float], rules: tuple[str, ...], samples: str, what: str,
               out_path: str | Path, random_init: bool) -> None:
    """A held-out subject's k-shot comparison: `what` (values[condition]) against k for the model calibrated on k
    `samples` and ridge on them alone, the new-subject rules (k = 0) and, where given, pooled ridge as lines."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ks, model = metrics["ks"], metrics["model"]
    ax.plot(ks, [values[f"adapters_k{k}"] for k in ks], "o-", color="C0", label=f"{model}, calibrated on k {samples}")
    ax.plot(ks, [values[f"ridge_k{k}"] for k in ks], "s--", color="C1", label=f"ridge on the same k {samples} alone")
    if "pooled_ridge" in values:
        ax.axhline(values["pooled_ridge"], color="0.3", linestyle=":", label="ridge pooled over subjects")
    for i, rule in enumerate(rules):
        ax.axhline(values[f"k0_{rule}"], color=f"C{2 + i}", linestyle="-.", label=f"{model}, k = 0 ({rule} adapter)")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel(f"k: the held-out subject's {samples} used")
    ax.set_ylabel(what)
    ax.legend(fontsize="small")
    title = f"{metrics['subject']} (held out): a new subject from k of its {samples}" + \
        ("\n(features from a RANDOM-INIT network)" if random_init else "")
    suptitle(fig, title)
    save_figure(fig, out_path, title)


def plot_decoding(subject: str, scores: dict[str, dict], what: str, out_path: str | Path, random_init: bool) -> None:
    """A subject's decoding scores for each decoding model: top-5 retrieval per window with its interval shaded
    (MEG: a time course), or top-1 and top-5 bars with intervals (fMRI: one window), with chance and the band of
    a model without information."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    first = next(w for entry in scores.values() for w in entry["windows"] if w)
    if all(len(entry["windows"]) == 1 for entry in scores.values()):
        for i, (name, entry) in enumerate(scores.items()):
            window = entry["windows"][0]
            for j, key in enumerate(("top1", "top5")):
                value, ci = (window[key]["value"], window[key]["ci"]) if window else (np.nan, None)
                error = None if not ci else [[value - ci[0]], [ci[1] - value]]
                ax.bar(i + 0.4 * j - 0.2, value, 0.4, yerr=error, color=f"C{j}", label=key if i == 0 else None)
        ax.set_xticks(range(len(scores)), [f"{name}\n({entry['family']})" for name, entry in scores.items()])
        ax.axhline(first["top1"]["chance"], color="C0", linestyle=":", label="top-1 chance")
        ax.axhline(first["top5"]["chance"], color="C1", linestyle=":", label="top-5 chance")
        ax.set_ylabel(f"retrieval among {first['n_candidates']:.0f} candidates")
        ax.set_ylim(0, 1.2)  # room for the legend above the bars
    else:
        for i, (name, entry) in enumerate(scores.items()):
            centres = np.asarray(entry["window_s"]) * 1000
            windows = entry["windows"]
            ax.plot(centres, [w["top5"]["value"] if w else np.nan for w in windows], "o-", color=f"C{i}",
                    label=f"{name} ({entry['family']})")
            intervals = [w["top5"]["ci"] if w and w["top5"]["ci"] else [np.nan, np.nan] for w in windows]
            ax.fill_between(centres, *np.asarray(intervals).T, color=f"C{i}", alpha=0.2, linewidth=0)
        ax.axhline(first["top5"]["chance"], color="0.3", linestyle=":", label="chance (5 / candidates)")
        ax.axhspan(*first["top5"]["chance_interval"], color="0.5", alpha=0.15,
                   label=f"{first['ci_level']:.0%} band without information")
        ax.set_xlabel("window centre (ms from fixation onset)")
        ax.set_ylabel(f"top-5 retrieval among ~{first['n_candidates']:.0f} candidates")
    bars = all(len(entry["windows"]) == 1 for entry in scores.values())
    ax.legend(fontsize="small", ncol=2 if bars else 1, loc="upper center" if bars else "best")
    title = f"{subject}: decoding {what}" + ("\n(features from a RANDOM-INIT network)" if random_init else "")
    suptitle(fig, title)
    save_figure(fig, out_path, title)

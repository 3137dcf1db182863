"""Figures: per-ROI bar charts of encoding accuracy."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tbdencoder.io import atomic_path  # noqa: E402


def plot_roi_bars(metrics: dict, roi_classes: list[str], out_path: str | Path) -> None:
    """One panel per hemisphere: median noise-normalised score (or median r without a noise ceiling) per ROI, a bar per model."""
    models = list(metrics["models"])
    hemis = [h for h in ("lh", "rh") if h in metrics["models"][models[0]]]
    first = metrics["models"][models[0]][hemis[0]]
    use_score = first["challenge_score"] is not None
    key, label = ("median_score", "median noise-normalised score (%)") if use_score else ("median_r", "median Pearson r")
    fig, axes = plt.subplots(len(hemis), 1, figsize=(11, 3.2 * len(hemis)), squeeze=False)
    for ax, hemi in zip(axes[:, 0], hemis):
        rois = [(c, roi) for c in roi_classes for roi in metrics["models"][models[0]][hemi]["roi"].get(c, {})]
        x = np.arange(len(rois))
        width = 0.8 / len(models)
        for i, model in enumerate(models):
            values = [metrics["models"][model][hemi]["roi"][c][roi][key] for c, roi in rois]
            ax.bar(x + i * width - 0.4 + width / 2, [np.nan if v is None else v for v in values], width, label=model)
        ax.set_xticks(x, [roi for _, roi in rois], rotation=45, ha="right")
        ax.set_ylabel(label)
        ax.set_title(f"{metrics['subject']} {hemi} ({metrics['eval_split']} split)")
        ax.axhline(0, color="black", linewidth=0.5)
    axes[0, 0].legend(fontsize="small", ncol=len(models))
    title = f"{metrics['subject']}: per-ROI scores"
    if metrics.get("random_init_features"):
        title += ", features from a RANDOM-INIT network (no pretrained weights)"
        fig.suptitle(title, color="firebrick")
    fig.tight_layout()
    save_figure(fig, out_path, title)


def save_figure(fig, out_path: str | Path, title: str) -> None:
    """Write `fig` as PNG atomically, with its title (and so any RANDOM-INIT note) in the PNG's Title text."""
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png", metadata={"Title": title})
    plt.close(fig)

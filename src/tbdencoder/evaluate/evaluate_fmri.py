"""Step `evaluate`: score one subject's fits, write its metrics, bar chart and submission files.

metrics json: {subject, eval_split, random_init_features, models: {model: {lh|rh|all: {n_vertices, mean_r,
median_r, challenge_score (mean over vertices, null without a noise ceiling), noise_ceiling_mean,
roi: {class: {roi: {n_vertices, median_r, median_score}}}, and for models with block weights (banded ridge)
block_weights: {preferred: {block: fraction of vertices whose largest weight it has}, mean_weight: {block: ...}}}}}}.
tsv: one row per subject x model x hemisphere x ROI (roi_class/roi 'all' for every vertex).
scores h5: per-vertex `<model>/<hemi>/r` and `<model>/<hemi>/score` (NaN without a noise ceiling), and
`<model>/<hemi>/preferred_block` (index into its attr `blocks`) for models with block weights.
figures: per-ROI scores (plots.plot_roi_bars); per model x hemisphere with block weights, the fraction of each
ROI's vertices preferring each block (plots.plot_preferred_block_rois); per model x hemisphere of a
gradient-trained family, its training curves (plots.plot_training_curves). A figure with nothing to show says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from tbdencoder.data.responses import Responses, read_noise_ceiling, read_rois, read_targets
from tbdencoder.evaluate.metrics import (
    block_preference,
    challenge_score,
    pearson_r,
    preferred_block_fractions,
    roi_block_fractions,
    roi_medians,
)
from tbdencoder.evaluate.plots import (
    fmri_title,
    plot_preferred_block_rois,
    plot_roi_bars,
    plot_training_curves,
)
from tbdencoder.evaluate.training import TrainingCurve, read_training_curves
from tbdencoder.io import atomic_path, atomic_save_npy, atomic_write_text, get_logger

log = get_logger("evaluate")


def _summary(r: np.ndarray, score: np.ndarray | None, noise_ceiling: np.ndarray | None) -> dict:
    """The json summary of a set of vertices: the table row's statistics, with null for undefined ones."""
    row = _row(r, score)
    return {
        "n_vertices": row["n_vertices"],
        "mean_r": row["mean_r"],
        "median_r": row["median_r"],
        "challenge_score": _finite(row["mean_score"]),
        "noise_ceiling_mean": float(noise_ceiling.mean()) if noise_ceiling is not None else None,
    }


def score_fit(responses_path: str | Path, fit_path: str | Path) -> tuple[str, str, np.ndarray, np.ndarray | None]:
    """(model, hemisphere, r per vertex, challenge score per vertex or None) of one fits file."""
    with h5py.File(fit_path, "r") as h5:
        model, hemi = h5.attrs["model"], h5.attrs["hemisphere"]
        prediction = h5["test_prediction"][:]
    target = read_targets(responses_path, hemi, "test")
    r = pearson_r(prediction, target)
    noise_ceiling = read_noise_ceiling(responses_path, hemi)
    return model, hemi, r, None if noise_ceiling is None else challenge_score(r, noise_ceiling)


def evaluate_subject(
    responses_path: str | Path,
    fit_paths: list[str | Path],
    metrics_out: str | Path,
    table_out: str | Path,
    scores_out: str | Path,
    figure_out: str | Path,
    submission_dir: str | Path,
    submission_model: str,
    figure_roi_classes: list[str],
    *,
    figure_preferred_block_out: str | Path,
    figure_training_out: str | Path,
) -> None:
    """Score every fits file of one subject (one per model x hemisphere) and write the metrics json, the table,
    the per-vertex scores, the figures (per-ROI scores, preferred block per ROI, training curves) and the
    submission files of `submission_model`."""
    responses = Responses.read(responses_path)
    metrics = {"subject": responses.subject, "eval_split": responses.eval_split, "models": {}}
    rows, random_init = [], False
    per_vertex: dict[str, dict[str, tuple[np.ndarray, np.ndarray | None]]] = {}
    block_weights: dict[tuple[str, str], tuple[np.ndarray, list[str]]] = {}
    preferred_by_roi: dict[str, tuple[list[str], list[tuple[str, str, int, np.ndarray]]]] = {}
    training_curves: dict[tuple[str, str], dict[int, TrainingCurve]] = {}
    for fit_path in fit_paths:
        model, hemi, r, score = score_fit(responses_path, fit_path)
        with h5py.File(fit_path, "r") as h5:
            random_init |= bool(h5.attrs["random_init_features"])
            if "block_weight" in h5:
                block_weights[model, hemi] = (h5["block_weight"][:], list(h5["feature_blocks"].asstr()[:]))
        per_vertex.setdefault(model, {})[hemi] = (r, score)
        curves = read_training_curves(fit_path)
        if curves:
            training_curves[model, hemi] = curves
    for model, hemis in per_vertex.items():
        entry = metrics["models"][model] = {}
        for hemi, (r, score) in hemis.items():
            noise_ceiling = read_noise_ceiling(responses_path, hemi)
            rois = read_rois(responses_path, hemi)
            entry[hemi] = _summary(r, score, noise_ceiling)
            if (model, hemi) in block_weights:
                weight, blocks = block_weights[model, hemi]
                entry[hemi]["block_weights"] = block_preference(weight, blocks)
                preferred_by_roi[f"{model} {hemi}"] = (blocks, [
                    ("all", "all vertices", len(weight), preferred_block_fractions(weight)),
                    *roi_block_fractions(weight, rois, figure_roi_classes)])
            rows.append(dict(model=model, hemisphere=hemi, roi_class="all", roi="all", **_row(r, score)))
            entry[hemi]["roi"] = {}
            for roi_class, (labels, names) in rois.items():
                r_medians = roi_medians(r, labels, names)
                s_medians = roi_medians(score, labels, names) if score is not None else {}
                entry[hemi]["roi"][roi_class] = {
                    roi: {"n_vertices": n, "median_r": med, "median_score": _finite(s_medians.get(roi, (0, None))[1])}
                    for roi, (n, med) in r_medians.items()
                }
                for roi in r_medians:
                    mask = labels == next(k for k, v in names.items() if v == roi)
                    rows.append(dict(model=model, hemisphere=hemi, roi_class=roi_class, roi=roi,
                                     **_row(r[mask], None if score is None else score[mask])))
        all_r = np.concatenate([r for r, _ in hemis.values()])
        scores = [s for _, s in hemis.values()]
        all_score = None if any(s is None for s in scores) else np.concatenate(scores)
        entry["all"] = _summary(all_r, all_score, None)
        log.info("%s %s: mean r %.3f, challenge score %s", responses.subject, model, entry["all"]["mean_r"],
                 "n/a" if entry["all"]["challenge_score"] is None else f"{entry['all']['challenge_score']:.1f}")
    metrics["random_init_features"] = random_init

    with atomic_path(scores_out) as tmp, h5py.File(tmp, "w") as h5:
        for model, hemis in per_vertex.items():
            for hemi, (r, score) in hemis.items():
                h5[f"{model}/{hemi}/r"] = r.astype(np.float32)
                h5[f"{model}/{hemi}/score"] = np.full(r.shape, np.nan, np.float32) if score is None else score.astype(np.float32)
                if (model, hemi) in block_weights:
                    weight, names = block_weights[model, hemi]
                    h5[f"{model}/{hemi}/preferred_block"] = weight.argmax(1).astype(np.int16)
                    h5[f"{model}/{hemi}/preferred_block"].attrs["blocks"] = names
    table = pd.DataFrame(rows)
    table.insert(0, "subject", responses.subject)
    with atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    plot_roi_bars(metrics, figure_roi_classes, figure_out)
    plot_preferred_block_rois(
        preferred_by_roi, fmri_title(responses.subject, "preferred feature block per ROI (banded ridge)", random_init),
        figure_preferred_block_out)
    plot_training_curves({f"{model} {hemi}": training_curves[model, hemi] for model, hemis in per_vertex.items()
                          for hemi in hemis if (model, hemi) in training_curves},
                         fmri_title(responses.subject, "training curves", random_init), figure_training_out)
    write_submission(fit_paths, submission_model, submission_dir)
    atomic_write_text(metrics_out, json.dumps(metrics, indent=2, allow_nan=False))


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: undefined values (e.g. an ROI whose noise ceiling is 0 everywhere) become null."""
    return None if value is None or not np.isfinite(value) else value


def _row(r: np.ndarray, score: np.ndarray | None) -> dict:
    has_score = score is not None and np.isfinite(score).any()
    return {
        "n_vertices": int(r.size),
        "mean_r": float(r.mean()),
        "median_r": float(np.median(r)),
        "mean_score": float(np.nanmean(score)) if has_score else np.nan,
        "median_score": float(np.nanmedian(score)) if has_score else np.nan,
    }


def write_submission(fit_paths: list[str | Path], model: str, submission_dir: str | Path) -> None:
    """Challenge submission files <dir>/{lh,rh}_pred_test.npy (float32, one row per test image) from `model`."""
    written = 0
    for fit_path in fit_paths:
        with h5py.File(fit_path, "r") as h5:
            if h5.attrs["model"] != model:
                continue
            atomic_save_npy(Path(submission_dir) / f"{h5.attrs['hemisphere']}_pred_test.npy",
                            h5["submission_prediction"][:].astype(np.float32))
            written += 1
    if not written:
        raise ValueError(f"submission model {model!r} is not among the fits {[str(p) for p in fit_paths]}")

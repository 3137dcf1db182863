"""Step `evaluate`: score one subject's fits (fmri_fit.read_fit, one opening of each fits file), write its
metrics, bar chart and submission files.

metrics json: {subject, eval_split, random_init_features, models: {model: {lh|rh|all: {n_vertices, mean_r,
median_r, challenge_score (mean over vertices, null without a noise ceiling), noise_ceiling_mean,
roi: {class: {roi: {n_vertices, median_r, median_score}}}, for models with block weights (banded ridge)
block_weights: {preferred: {block: fraction of vertices whose largest weight it has}, mean_weight: {block: ...}},
and for models with selectors (FactorTopy) hierarchy: {slope, intercept, r, n_vertices, n_per_level} or null
(brain_maps.hierarchy_slope)}}}}.
tsv: one row per subject x model x hemisphere x ROI (roi_class/roi 'all' for every vertex).
scores h5: per-vertex `<model>/<hemi>/r` and `<model>/<hemi>/score` (NaN without a noise ceiling), and
`<model>/<hemi>/preferred_block` (index into its attr `blocks`) for models with block weights.
figures: per-ROI scores (plots.plot_roi_bars); per model x hemisphere with block weights, the fraction of each
ROI's vertices preferring each block (plots.plot_preferred_block_rois); per model x hemisphere of a
gradient-trained family, its training curves (plots.plot_training_curves); brain maps on the fsaverage surface
(brain_maps): every model's per-vertex score, and each FactorTopy model's layer colouring, retinotopy and scale.
A figure with nothing to show says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from tbdencoder.data.responses import Responses, read_noise_ceiling, read_rois
from tbdencoder.evaluate.brain_maps import hierarchy_levels, hierarchy_slope, plot_score_maps, plot_selector_maps
from tbdencoder.evaluate.fmri_fit import FmriFit, read_fit
from tbdencoder.evaluate.metrics import (
    block_preference,
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
    figure_brain_scores_out: str | Path,
    figure_brain_selectors_out: str | Path,
    brain_map_view: str = "posterior",
) -> None:
    """Score every fits file of one subject (one per model x hemisphere) and write the metrics json, the table,
    the per-vertex scores, the figures (per-ROI scores, preferred block per ROI, training curves, brain maps seen
    from `brain_map_view`) and the submission files of `submission_model`."""
    responses = Responses.read(responses_path)
    fits = [read_fit(path, responses_path, submission_model) for path in fit_paths]
    by_model: dict[str, dict[str, FmriFit]] = {}
    for fit in fits:
        by_model.setdefault(fit.model, {})[fit.hemisphere] = fit
    random_init = any(fit.random_init_features for fit in fits)
    metrics = {"subject": responses.subject, "eval_split": responses.eval_split, "models": {},
               "random_init_features": random_init}
    rows = []
    preferred_by_roi: dict[str, tuple[list[str], list[tuple[str, str, int, np.ndarray]]]] = {}
    for model, hemis in by_model.items():
        entry = metrics["models"][model] = {}
        for hemi, fit in hemis.items():
            r, score = fit.r, fit.score
            noise_ceiling = read_noise_ceiling(responses_path, hemi)
            rois = read_rois(responses_path, hemi)
            entry[hemi] = {**_summary(r, score, noise_ceiling), "fit_seconds": fit.fit_seconds,
                           "n_parameters": fit.n_parameters}
            if fit.selection is not None:
                entry[hemi]["hierarchy"] = _hierarchy(fit.selection["layer_weights"], rois)
            if fit.block_weight is not None:
                weight, blocks = fit.block_weight, fit.block_names
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
        all_r = np.concatenate([fit.r for fit in hemis.values()])
        scores = [fit.score for fit in hemis.values()]
        all_score = None if any(s is None for s in scores) else np.concatenate(scores)
        entry["all"] = _summary(all_r, all_score, None)
        if all(fit.selection is not None for fit in hemis.values()):
            both = [read_rois(responses_path, hemi) for hemi in hemis]
            entry["all"]["hierarchy"] = _hierarchy(
                np.concatenate([fit.selection["layer_weights"] for fit in hemis.values()]),
                {roi_class: (np.concatenate([rois[roi_class][0] for rois in both]), names)
                 for roi_class, (_, names) in both[0].items()})
        log.info("%s %s: mean r %.3f, challenge score %s", responses.subject, model, entry["all"]["mean_r"],
                 "n/a" if entry["all"]["challenge_score"] is None else f"{entry['all']['challenge_score']:.1f}")

    with atomic_path(scores_out) as tmp, h5py.File(tmp, "w") as h5:
        for model, hemis in by_model.items():
            for hemi, fit in hemis.items():
                h5[f"{model}/{hemi}/r"] = fit.r.astype(np.float32)
                h5[f"{model}/{hemi}/score"] = (np.full(fit.r.shape, np.nan, np.float32) if fit.score is None
                                               else fit.score.astype(np.float32))
                if fit.block_weight is not None:
                    h5[f"{model}/{hemi}/preferred_block"] = fit.block_weight.argmax(1).astype(np.int16)
                    h5[f"{model}/{hemi}/preferred_block"].attrs["blocks"] = fit.block_names
    table = pd.DataFrame(rows)
    table.insert(0, "subject", responses.subject)
    with atomic_path(table_out) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.5f")
    plot_roi_bars(metrics, figure_roi_classes, figure_out)
    plot_preferred_block_rois(
        preferred_by_roi, fmri_title(responses.subject, "preferred feature block per ROI (banded ridge)", random_init),
        figure_preferred_block_out)
    plot_training_curves({f"{model} {hemi}": fit.training_curves for model, hemis in by_model.items()
                          for hemi, fit in hemis.items() if fit.training_curves},
                         fmri_title(responses.subject, "training curves", random_init), figure_training_out)
    _plot_brain_maps(responses_path, by_model, brain_map_view, random_init, figure_brain_scores_out,
                     figure_brain_selectors_out)
    write_submission(fits, submission_model, submission_dir)
    atomic_write_text(metrics_out, json.dumps(metrics, indent=2, allow_nan=False))


def _hierarchy(layer_weights: np.ndarray, rois: dict) -> dict | None:
    """The hierarchy slope of a FactorTopy fit's layer weights, None without the ROIs that define the levels."""
    try:
        levels = hierarchy_levels(rois)
    except KeyError as missing:
        log.warning("no hierarchy slope: %s", missing)
        return None
    return hierarchy_slope(layer_weights, levels)


def _plot_brain_maps(responses_path: str | Path, by_model: dict[str, dict[str, FmriFit]], view: str,
                     random_init: bool, scores_out: str | Path, selectors_out: str | Path) -> None:
    """Every model's per-vertex score, and the selectors of FactorTopy models, on the fsaverage surface."""
    subject = Responses.read(responses_path).subject
    hemis = list(dict.fromkeys(hemi for fits in by_model.values() for hemi in fits))
    with h5py.File(responses_path, "r") as h5:
        indices = {hemi: h5[hemi]["fsaverage_index"][:] for hemi in hemis}
        fsaverage_dir = str(h5.attrs.get("fsaverage_dir", "")) or None
    use_score = all(fit.score is not None for hemis_ in by_model.values() for fit in hemis_.values())
    scores = {model: {hemi: fit.score if use_score else fit.r for hemi, fit in fits.items()}
              for model, fits in by_model.items()}
    what = "challenge score per vertex" if use_score else "Pearson r per vertex (no noise ceiling)"
    plot_score_maps(scores, indices, use_score, view, fmri_title(subject, what, random_init), scores_out, fsaverage_dir)
    selections = {model: {hemi: fit.selection for hemi, fit in fits.items()} for model, fits in by_model.items()
                  if all(fit.selection is not None for fit in fits.values())}
    plot_selector_maps(selections, indices, view, fmri_title(subject, "FactorTopy selectors", random_init),
                       selectors_out, fsaverage_dir)


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


def write_submission(fits: list[FmriFit], model: str, submission_dir: str | Path) -> None:
    """Challenge submission files <dir>/{lh,rh}_pred_test.npy (float32, one row per test image) from the `fits`
    of `model` (read with their submission predictions)."""
    chosen = [fit for fit in fits if fit.model == model]
    if not chosen:
        raise ValueError(f"submission model {model!r} is not among the fits {[str(fit.path) for fit in fits]}")
    for fit in chosen:
        atomic_save_npy(Path(submission_dir) / f"{fit.hemisphere}_pred_test.npy",
                        fit.submission_prediction.astype(np.float32))

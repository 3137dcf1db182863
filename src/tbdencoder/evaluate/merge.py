"""Step `merge_metrics`: every subject's metrics, fMRI (evaluate_fmri) and MEG (evaluate_meg), in one
results/metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tbdencoder.io import atomic_write_text


def merge_metrics(subject_metrics: list[str | Path], out_path: str | Path,
                  meg_inputs: list[str | Path] | None = None, kshot_inputs: list[str | Path] | None = None,
                  fmri_kshot_inputs: list[str | Path] | None = None,
                  decoding_inputs: list[str | Path] | None = None,
                  fmri_decoding_inputs: list[str | Path] | None = None) -> None:
    """results/metrics.json, compact enough for `dvc metrics show`: the fMRI summary (fmri_summary) and, under
    `meg`, the MEG summary (meg_summary) when MEG metrics are given, with the k-shot comparisons of held-out
    subjects (evaluate.kshot_meg) under `meg.kshot.<subject>.<model>`, those of held-out fMRI subjects
    (evaluate.kshot_fmri) under `kshot.<subject>.<model>`, and the decoding scores (evaluate.decoding) under
    `meg.decoding` and `decoding` (fMRI) (decoding_summary)."""
    merged = fmri_summary(subject_metrics)
    if meg_inputs:
        merged["meg"] = meg_summary(meg_inputs)
    for path in kshot_inputs or []:
        data = json.loads(Path(path).read_text())
        merged.setdefault("meg", {}).setdefault("kshot", {}).setdefault(data["subject"], {})[data["model"]] = {
            key: data[key] for key in ("ks", "r_at_peak", "curve")}
    for path in fmri_kshot_inputs or []:
        data = json.loads(Path(path).read_text())
        merged.setdefault("kshot", {}).setdefault(data["subject"], {})[data["model"]] = {
            key: data[key] for key in ("ks", "challenge_score", "mean_r", "curve")}
    if decoding_inputs:
        merged.setdefault("meg", {})["decoding"] = decoding_summary(decoding_inputs)
    if fmri_decoding_inputs:
        merged["decoding"] = decoding_summary(fmri_decoding_inputs)
    atomic_write_text(out_path, json.dumps(merged, indent=2))


def fmri_summary(metric_paths: list[str | Path]) -> dict:
    """The fMRI part of results/metrics.json: per model the mean over subjects (and of a FactorTopy model's
    hierarchy slope), and per subject x model x hemisphere (and 'all') the summary without the per-ROI detail."""
    subjects = {}
    for path in metric_paths:
        data = json.loads(Path(path).read_text())
        subjects[data["subject"]] = {
            model: {hemi: {k: v for k, v in entry.items() if k != "roi"} for hemi, entry in hemis.items()}
            for model, hemis in data["models"].items()
        }
    summary = {}
    for model in sorted({m for s in subjects.values() for m in s}):
        alls = [s[model]["all"] for s in subjects.values() if model in s]
        scores = [a["challenge_score"] for a in alls]
        summary[model] = {
            "mean_r": float(np.mean([a["mean_r"] for a in alls])),
            "challenge_score": None if None in scores else float(np.mean(scores)),
            "n_subjects": len(alls),
        }
        if any("hierarchy" in a for a in alls):  # FactorTopy: the mean hierarchy slope, null where one is undefined
            slopes = [(a.get("hierarchy") or {}).get("slope") for a in alls]
            summary[model]["hierarchy_slope"] = None if None in slopes else float(np.mean(slopes))
    return {"summary": summary, "subjects": subjects}


def meg_summary(metric_paths: list[str | Path]) -> dict:
    """The MEG part of results/metrics.json: every subject's metrics without the per-time lists (compact for
    `dvc metrics show`), the mean over training subjects (models scored with scheme scene_cv) of peak r and
    latency, and the held-out subjects' peak r."""
    subjects = {}
    for path in metric_paths:
        data = json.loads(Path(path).read_text())
        data.pop("times", None)
        for entry in data["models"].values():
            for key in [key for key in entry if "_over_time" in key]:  # per-time lists: in the subject's json
                del entry[key]
        subjects[data["subject"]] = data
    training: dict[str, list[dict]] = {}
    heldout: dict[str, dict[str, float]] = {}
    for label, data in subjects.items():
        for model, entry in data["models"].items():
            if entry["scheme"] in ("scene_cv", "joint_scene_cv"):
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


def decoding_summary(metric_paths: list[str | Path]) -> dict:
    """Per subject and decoding model: top-1 and top-5 (MEG: at the cross-fitted peak, with the time course's
    centre; fMRI: of its one window); per model the mean over the training subjects (held-out subjects are
    listed per subject only), and its top-5 over that of each ridge decoder (`top5_over_<ridge model>`: the
    anchor's ratio); a value that could not be measured stays null."""
    subjects = {}
    for path in metric_paths:
        data = json.loads(Path(path).read_text())
        subjects[data["subject"]] = {model: _decoding_entry(entry) for model, entry in data["models"].items()}
    mean = {}
    for model in sorted({m for s in subjects.values() for m in s}):
        entries = [s[model] for s in subjects.values() if model in s and s[model]["scheme"] != "heldout_subject"]
        if entries:
            mean[model] = {key: _mean_or_none([e.get(key) for e in entries]) for key in entries[0]
                           if key not in ("family", "peak_window_s", "scheme")}
    ridges = [m for m in mean if any(s.get(m, {}).get("family") == "ridge" for s in subjects.values())]
    for model, entry in mean.items():
        for ridge in ridges:
            if model != ridge and entry["top5"] is not None and mean[ridge]["top5"]:
                entry[f"top5_over_{ridge}"] = entry["top5"] / mean[ridge]["top5"]
    return {"subjects": subjects, "mean_over_subjects": mean}


def _decoding_entry(entry: dict) -> dict:
    if len(entry["windows"]) == 1:  # fMRI: one window, nothing to choose
        window = entry["windows"][0] or {}
        return {"family": entry["family"], "scheme": entry["scheme"], "top1": window.get("top1", {}).get("value"),
                "top5": window.get("top5", {}).get("value"), "top5_chance": window.get("top5", {}).get("chance"),
                "median_rank": window.get("median_rank", {}).get("value")}
    peak = entry["peak"] or {}
    chance = [w["top5"]["chance"] for w in entry["windows"] if w]
    return {"family": entry["family"], "scheme": entry["scheme"], "top1": peak.get("top1"), "top5": peak.get("top5"),
            "top5_chance": float(np.mean(chance)) if chance else None, "peak_window_s": peak.get("window_s"),
            "centre_s": entry["centre_s"]}


def _mean_or_none(values: list) -> float | None:
    return None if not values or any(v is None for v in values) else float(np.mean(values))

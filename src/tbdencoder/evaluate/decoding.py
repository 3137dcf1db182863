"""Retrieval scores of decoded embeddings (fit.decode): per window a decoding time course, and its peak.

For each window of a decoding file: top-1, top-5 and median rank of every row's stimulus among its fold's
candidates (evaluate.retrieval), with chance and bootstrap intervals over the rows' groups (scenes / images).
The peak is cross-fitted, like the encoding peak (evaluate.meg_metrics): the window with the best top-5 on the
rows of alternate outer folds (fold % 2) is scored on the other rows, and the two halves' scores are averaged;
the maximum of the time course itself would be biased upward. Its latency: `centre_s`, the windows' centres
weighted by their top-5 above the chance band (`time_course_centre`).
"""

from __future__ import annotations

from pathlib import Path

import json

import h5py
import numpy as np

from tbdencoder.evaluate.plots import plot_decoding
from tbdencoder.evaluate.retrieval import retrieval_scores
from tbdencoder.io import atomic_write_text, get_logger

log = get_logger("evaluate_decoding")


def read_decoding(path: str | Path) -> dict:
    """The arrays and attrs of a decoding file that scoring reads."""
    with h5py.File(path, "r") as h5:
        if "prediction" not in h5 or "actual" not in h5:
            raise ValueError(f"{path}: not a decoding file (no prediction / actual); expected the output of "
                             "`tbdencoder decode-meg` or `decode-fmri`")
        ids = "fixation_id" if "fixation_id" in h5 else "stimulus_id"
        groups = h5["scene_id"].asstr()[:] if "scene_id" in h5 else h5[ids].asstr()[:]
        return {"prediction": h5["prediction"][:], "actual": h5["actual"][:], "fold": h5["fold"][:],
                "groups": groups, "window_s": h5["window_s"][:], "attrs": dict(h5.attrs)}


def decoding_scores(path: str | Path, *, resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """{subject, model, window_s, windows: [retrieval scores per window], peak: {window_s, top5, top1},
    centre_s} of a
    decoding file; rows of no fold (fMRI training images) are not scored."""
    data = read_decoding(path)
    scored = data["fold"] >= 0
    fold, groups, actual = data["fold"][scored], data["groups"][scored], data["actual"][scored]
    per_window = [retrieval_scores(prediction[scored], actual, folds=fold, groups=groups, resamples=resamples,
                                   level=level, seed=seed) for prediction in data["prediction"]]
    out = {"subject": str(data["attrs"]["subject"]), "model": str(data["attrs"]["model"]),
           "family": str(data["attrs"]["family"]), "scheme": str(data["attrs"].get("scheme", "")),
           "window_s": data["window_s"].tolist(), "windows": per_window,
           "peak": _cross_fitted_peak(data["prediction"][:, scored], actual, fold, data["window_s"]),
           "centre_s": time_course_centre(data["window_s"], per_window)}
    return out


def time_course_centre(window_s: np.ndarray, per_window: list[dict | None]) -> float | None:
    """The windows' centres weighted by how far their top-5 lies above the chance band's upper edge: where a
    broad decoding time course is centred (a 250 ms window decodes alike wherever it holds the whole response,
    so the maximum wanders over a plateau); None when no window is above the band, or one window (fMRI)."""
    if len(window_s) < 2:
        return None
    excess = np.array([max(w["top5"]["value"] - w["top5"]["chance_interval"][1], 0.0) if w else 0.0
                       for w in per_window])
    return float(np.dot(excess, window_s) / excess.sum()) if excess.sum() > 0 else None


def _cross_fitted_peak(prediction: np.ndarray, actual: np.ndarray, fold: np.ndarray, window_s: np.ndarray) -> dict | None:
    """Top-1 / top-5 at the window chosen on the other half of the folds, mean over the two halves (None with
    one fold: nothing to choose on)."""
    half = fold % 2
    if len(np.unique(half)) < 2:
        return None
    scores, chosen = {"top1": [], "top5": []}, []
    for h in (0, 1):
        choose, score = half != h, half == h
        top5 = [(retrieval_scores(p[choose], actual[choose], folds=fold[choose], resamples=0) or {})
                .get("top5", {}).get("value", -np.inf) for p in prediction]
        w = int(np.argmax(top5))
        chosen.append(float(window_s[w]))
        result = retrieval_scores(prediction[w][score], actual[score], folds=fold[score], resamples=0)
        if result is None:
            return None
        for key in scores:
            scores[key].append(result[key]["value"])
    return {"window_s": chosen, "top1": float(np.mean(scores["top1"])), "top5": float(np.mean(scores["top5"]))}


def evaluate_decoding(decoding_paths: list[str | Path], metrics_out: str | Path, figure_out: str | Path, *,
                      resamples: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """One subject's decoding files (one per model) scored: metrics json {subject, models: {model:
    decoding_scores}} and the time-course figure; returns the json."""
    scores = {}
    random_init, meg = False, False
    for path in decoding_paths:
        entry = decoding_scores(path, resamples=resamples, level=level, seed=seed)
        scores[entry["model"]] = entry
        with h5py.File(path, "r") as h5:
            random_init |= bool(h5.attrs.get("random_init_features", False))
            meg |= "fixation_id" in h5
    subjects = {entry["subject"] for entry in scores.values()}
    if len(subjects) != 1:
        raise ValueError(f"{[str(p) for p in decoding_paths]}: expected one subject's decoding files, got {sorted(subjects)}")
    subject = subjects.pop()
    metrics = {"subject": subject, "random_init_features": random_init, "models": scores}
    atomic_write_text(metrics_out, json.dumps(metrics, indent=2))
    plot_decoding(subject, scores, "the foveal crop's embedding" if meg else "the image's embedding", figure_out,
                  random_init)
    for name, entry in scores.items():
        peak = entry["peak"] or {}
        log.info("%s %s: top-5 at the cross-fitted peak %s, centred at %s s", subject, name, peak.get("top5"),
                 entry["centre_s"])
    return metrics

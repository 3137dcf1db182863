"""Step `kshot-fmri`: an fMRI subject left out of training (`fmri.heldout_subjects`) predicted by a model of several
subjects (subject_adapters) fitted on the training subjects, from k of its own training images (fit.kshot).

Per hemisphere the model is fitted on every training subject's training rows (each its own vertices); the held-out
subject's scored rows (its test split) are predicted by the new-subject rule(s) (k = 0: its vertices read out by
the mean / shared adapter through their fsaverage vertex), by the model calibrated on k of its training images,
and by ridge fitted on those k images alone. There is no pooled ridge for fMRI: subjects' vertices differ.

metrics json: {subject, model, ks, challenge_score: {condition: value}, mean_r: {condition: value}, curve:
{adapters: [score per k], ridge_alone: [score per k]}}; the challenge score is the Algonauts one (100 r^2 / noise
ceiling, mean over both hemispheres' vertices with a ceiling), the mean r when the subject has no noise ceiling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tbdencoder.data.responses import Responses, read_noise_ceiling, read_targets
from tbdencoder.evaluate.metrics import challenge_score, pearson_r
from tbdencoder.evaluate.plots import plot_kshot
from tbdencoder.features.featureset import FeatureSet, load_model_features
from tbdencoder.fit.driver import Rows
from tbdencoder.fit.fmri import fmri_targets, random_init_features
from tbdencoder.fit.kshot import new_subject_curve, new_subject_rules, ridge_spec
from tbdencoder.io import atomic_write_text, get_logger
from tbdencoder.models.base import build_encoder

log = get_logger("kshot_fmri")


def kshot_fmri_subject(train_features: list[str | Path], train_responses: list[str | Path],
                       features: list[str | Path], responses: str | Path, metrics_out: str | Path,
                       figure_out: str | Path, *, model_name: str, spec: dict[str, Any], ks: list[int],
                       device: str = "auto") -> dict:
    """The k-shot comparison of the module docstring for the held-out subject of `responses`; `train_features`
    holds per training subject (in the order of `train_responses`) one file per backbone, `features` the held-out
    subject's. Returns the json."""
    per = len(features)
    if len(train_features) != per * len(train_responses):
        raise ValueError(f"expected {per} features file(s) per training subject, got {len(train_features)} for "
                         f"{len(train_responses)} subjects")
    new = Responses.read(responses)
    usable = [k for k in ks if k <= len(new.train_stimulus_id)]
    rules = new_subject_rules(spec)
    r_parts: dict[str, list[np.ndarray]] = {}
    score_parts: dict[str, list[np.ndarray]] = {}
    for index, hemi in enumerate(new.hemispheres):
        model, targets = _fit_training_subjects(train_features, train_responses, per, hemi, spec, device)
        target = Rows(load_model_features(features, new.train_stimulus_id, spec), read_targets(responses, hemi, "train"),
                      subjects=np.full(len(new.train_stimulus_id), new.subject))
        scored = Rows(load_model_features(features, new.test_stimulus_id, spec))
        truth = read_targets(responses, hemi, "test")
        order = np.random.default_rng([spec["seed"], index]).permutation(len(new.train_stimulus_id))
        curve = new_subject_curve(model, ridge_spec(spec), target, scored, order, usable, rules, new.subject,
                                  fmri_targets(responses, hemi), device)
        ceiling = read_noise_ceiling(responses, hemi)
        for name, prediction in curve.items():
            r = pearson_r(prediction, truth)
            r_parts.setdefault(name, []).append(r)
            score_parts.setdefault(name, []).append(challenge_score(r, ceiling) if ceiling is not None
                                                    else np.full(len(r), np.nan))
    mean_r = {name: float(np.mean(np.concatenate(parts))) for name, parts in r_parts.items()}
    has_ceiling = all(np.isfinite(np.concatenate(parts)).any() for parts in score_parts.values())
    score = {name: float(np.nanmean(np.concatenate(parts))) for name, parts in score_parts.items()} \
        if has_ceiling else None
    shown = score or mean_r
    metrics = {"subject": new.subject, "model": model_name, "ks": usable, "challenge_score": score, "mean_r": mean_r,
               "curve": {"adapters": [shown[f"adapters_k{k}"] for k in usable],
                         "ridge_alone": [shown[f"ridge_k{k}"] for k in usable]}}
    atomic_write_text(metrics_out, json.dumps(metrics, indent=2))
    plot_kshot(metrics, shown, rules, "images", f"{'challenge score' if score else 'mean r'} on its scored images",
               figure_out, any(random_init_features(str(path)) for path in features))
    log.info("%s %s: k = 0 %s; adapters %s, ridge alone %s (k = %s)", new.subject, model_name,
             " / ".join(f"{shown[f'k0_{rule}']:.3g}" for rule in rules),
             " ".join(f"{v:.3g}" for v in metrics["curve"]["adapters"]),
             " ".join(f"{v:.3g}" for v in metrics["curve"]["ridge_alone"]), usable)
    return metrics


def _fit_training_subjects(train_features: list[str | Path], train_responses: list[str | Path], per: int, hemi: str,
                           spec: dict[str, Any], device: str):
    """The model fitted on every training subject's training rows of `hemi` (each its own vertices)."""
    X, Y, subjects, targets = [], {}, [], {}
    for i, path in enumerate(train_responses):
        read = Responses.read(path)
        X.append(load_model_features(train_features[i * per:(i + 1) * per], read.train_stimulus_id, spec))
        Y[read.subject] = read_targets(path, hemi, "train")
        subjects.append(np.full(len(read.train_stimulus_id), read.subject))
        targets[read.subject] = fmri_targets(path, hemi)
    model = build_encoder(spec, device).fit(FeatureSet.stack(X), Y, subjects=np.concatenate(subjects), targets=targets)
    return model, targets

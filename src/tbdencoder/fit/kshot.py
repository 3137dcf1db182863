"""The k-shot scheme: a subject never trained on, predicted from the training subjects and k of its own samples.

Within each outer fold of the new subject's scenes (or images), with nothing of the fold's scenes in training:

- `pooled_ridge`: ridge fitted on the training subjects' rows pooled (k = 0, the baseline of the held-out scheme);
- `<model>_k0_<rule>`: a family fitted on several subjects at once (`many_subjects`, e.g. subject_adapters),
  reading the new subject out by its new-subject rule(s) (k = 0);
- `<model>_k<k>`: the same model calibrated on k of the new subject's rows outside the fold (`calibrate`);
- `ridge_k<k>`: ridge fitted on those k rows alone, the per-subject reference at the same k.

The k rows of a fold are the first k of one seeded permutation of the rows outside it, so a larger k adds rows
to a smaller k's (the curve is not jagged by redrawing). A k larger than the rows outside some fold is left out,
with a warning. Scoring (`kshot_scores`): per condition, r within folds; for MEG the model's peak from its best
sensors (evaluate.meg_metrics), for fMRI the mean r over targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tbdencoder.fit.driver import Fold, Rows
from tbdencoder.io import get_logger
from tbdencoder.models.base import build_encoder

log = get_logger("kshot")


@dataclass
class KShot:
    """Out-of-fold predictions of the new subject's rows per condition (see the module docstring)."""

    ks: list[int]  # the calibration sizes that every fold could give
    predictions: dict[str, np.ndarray]  # condition -> (n_target, t)
    fold: np.ndarray  # (n_target,) the outer fold that predicted each row


def new_subject_rules(spec: dict[str, Any]) -> tuple[str, ...]:
    """The new-subject rules a model of `spec` offers: the mean adapter, and the shared one when it is trained
    (subject dropout above 0; the family's default when the spec leaves it out)."""
    from tbdencoder.config import family_defaults

    dropout = {**family_defaults(spec["family"]), **spec}.get("subject_dropout", 0)
    return ("mean", "shared") if dropout else ("mean",)


def ridge_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The ridge baseline of a model spec: the same features and fit settings."""
    keep = ("backbone", "layers", "tokens", "streams", "alphas", "cv_folds", "seed")
    return {"family": "ridge", **{key: spec[key] for key in keep if key in spec}}


def new_subject_curve(model, baseline: dict[str, Any], target: Rows, rows: Rows, order: np.ndarray, ks: list[int],
                      rules: tuple[str, ...], subject: str, targets: dict[str, Any] | None,
                      device: str) -> dict[str, np.ndarray]:
    """The new subject's `rows` predicted by `model` (fitted on other subjects): by each new-subject rule
    (`k0_<rule>`), then per k calibrated on its rows `order[:k]` of `target` (`adapters_k<k>`), and by ridge
    (`baseline`) fitted on those k rows alone (`ridge_k<k>`)."""
    per_subject = {subject: targets}
    out = {}
    for rule in rules:
        model.new_subject = rule
        out[f"k0_{rule}"] = model.predict(rows.X, subjects=np.full(rows.X.n_rows, subject), targets=per_subject)[subject]
    model.new_subject = rules[0]
    for k in ks:
        calibration = target.take(np.sort(order[:k]))
        model.calibrate(calibration.X, calibration.Y, subject, groups=calibration.groups, targets=targets)
        out[f"adapters_k{k}"] = model.predict(rows.X, subjects=np.full(rows.X.n_rows, subject),
                                              targets=per_subject)[subject]
        folds = max(2, min(baseline.get("cv_folds", 5), k // 2))  # each fold keeps 2 validation rows
        alone = build_encoder({**baseline, "cv_folds": folds}, device)
        out[f"ridge_k{k}"] = alone.fit(calibration.X, calibration.Y).predict(rows.X)
    return out


def kshot_heldout(spec: dict[str, Any], pool: Rows, target: Rows, folds: list[Fold], ks: list[int], *,
                  targets: dict[str, Any] | None = None, rules: tuple[str, ...] = ("mean",), seed: int = 0,
                  device: str = "auto", label: str = "") -> KShot:
    """Every condition of the module docstring for the new subject `target` (one subject's rows, with groups),
    the training subjects' rows `pool` and the folds of `target` (`fit.driver.scene_folds`)."""
    (subject,) = set(target.subjects)
    outside = [np.setdiff1d(np.arange(target.X.n_rows), fold.predict) for fold in folds]
    usable = [k for k in ks if all(k <= len(rows) for rows in outside)]
    if len(usable) < len(ks):
        log.warning("%s: k = %s left out: a fold has only %d rows outside it", label,
                    sorted(set(ks) - set(usable)), min(len(rows) for rows in outside))
    names = ["pooled_ridge", *(f"k0_{rule}" for rule in rules), *(f"{kind}_k{k}" for k in usable
                                                                 for kind in ("adapters", "ridge"))]
    out = {name: np.zeros((target.X.n_rows, pool.Y.shape[1]), np.float32) for name in names}
    row_fold = np.full(target.X.n_rows, -1, np.int64)
    baseline = ridge_spec(spec)
    per_subject = {s: targets for s in {*pool.subjects, subject}}
    for index, fold in enumerate(folds):
        train, rows = pool.take(fold.train), target.take(fold.predict)
        row_fold[fold.predict] = index
        out["pooled_ridge"][fold.predict] = build_encoder(baseline, device).fit(train.X, train.Y).predict(rows.X)
        model = build_encoder(spec, device)
        names_in = list(dict.fromkeys(train.subjects))
        model.fit(train.X, {s: train.Y[train.subjects == s] for s in names_in}, groups=train.groups,
                  subjects=train.subjects, targets=per_subject)
        order = np.random.default_rng([seed, index]).permutation(outside[index])
        for name, values in new_subject_curve(model, baseline, target, rows, order, usable, rules, subject, targets,
                                              device).items():
            out[name][fold.predict] = values
        log.info("%s fold %d/%d: %s on %d rows of %d subjects, k = %s", label, index + 1, len(folds), spec["family"],
                 int(fold.train.sum()), len(names_in), usable)
    return KShot(usable, out, row_fold)

"""Step `kshot-meg`: a held-out MEG subject predicted by a model of several subjects (subject_adapters) with k of
its own fixations, side by side with ridge on the same folds (fit.kshot).

metrics json: {subject, model, n_fixations, n_best_sensors, ks, r_at_peak: {condition: value}, curve:
{adapters: [r per k], ridge_alone: [r per k]}}: conditions pooled_ridge (ridge pooled over the training subjects,
k = 0), k0_mean / k0_shared (the model's new-subject rules, k = 0), adapters_k<k> (calibrated on k fixations
outside each fold), ridge_k<k> (ridge fitted on those k fixations alone). r at the peak is that of the
`n_best_sensors` best sensors, sensors and peak chosen on the other half of the outer folds (meg_metrics).
The figure draws both curves against k, the k = 0 values as horizontal lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tbdencoder.evaluate.meg_fit import r_halves
from tbdencoder.evaluate.meg_metrics import best_sensors_estimate
from tbdencoder.evaluate.plots import plot_kshot
from tbdencoder.fit.kshot import kshot_heldout, new_subject_rules
from tbdencoder.fit.meg import family_spec, meg_problem, meg_targets
from tbdencoder.io import atomic_write_text, get_logger

log = get_logger("kshot_meg")


def kshot_meg_subject(train_epochs: list[str | Path], train_features: list[str | Path], epochs_path: str | Path,
                      features_path: str | Path, metrics_out: str | Path, figure_out: str | Path, *, model_name: str,
                      spec: dict[str, Any], ks: list[int], n_best_sensors: int, device: str = "auto") -> dict:
    """The k-shot comparison of the module docstring for the held-out subject of `epochs_path`; returns the json."""
    problem = meg_problem(spec, str(epochs_path), str(features_path), [str(e) for e in train_epochs],
                          [str(f) for f in train_features])
    rules = new_subject_rules(spec)
    result = kshot_heldout(family_spec(spec), problem.pool, problem.target.rows(), problem.folds, ks,
                           targets=meg_targets(problem.target), rules=rules, seed=spec["seed"], device=device,
                           label=f"{problem.target.subject} {model_name}")
    channels = len(problem.target.ch_names)
    r_at_peak = {name: float(best_sensors_estimate(r_halves(prediction, problem.target.Y, result.fold)
                                                   .reshape(2, channels, -1), n_best_sensors)["r_at_peak"])
                 for name, prediction in result.predictions.items()}
    metrics = {"subject": problem.target.subject, "model": model_name, "n_fixations": problem.target.X.n_rows,
               "n_best_sensors": n_best_sensors, "ks": result.ks, "r_at_peak": r_at_peak,
               "curve": {"adapters": [r_at_peak[f"adapters_k{k}"] for k in result.ks],
                         "ridge_alone": [r_at_peak[f"ridge_k{k}"] for k in result.ks]}}
    atomic_write_text(metrics_out, json.dumps(metrics, indent=2))
    plot_kshot(metrics, r_at_peak, rules, "fixations", f"r at the peak ({n_best_sensors} best sensors, cross-fitted)",
               figure_out, problem.target.random_init_features)
    log.info("%s %s: r at the peak, pooled ridge %.3f, k = 0 %s, adapters %s, ridge alone %s (k = %s)",
             problem.target.subject, model_name, r_at_peak["pooled_ridge"],
             " / ".join(f"{r_at_peak[f'k0_{rule}']:.3f}" for rule in rules),
             " ".join(f"{v:.3f}" for v in metrics["curve"]["adapters"]),
             " ".join(f"{v:.3f}" for v in metrics["curve"]["ridge_alone"]), result.ks)
    return metrics

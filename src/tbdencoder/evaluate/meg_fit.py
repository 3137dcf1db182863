"""One MEG fits file as the evaluation reads it: attrs, block weights and training curves, and the within-fold r
of its out-of-fold predictions with the epochs, read in one opening of the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.evaluate.meg_bootstrap import SceneSums, scene_sums
from tbdencoder.evaluate.metrics import pearson_r_within_folds
from tbdencoder.evaluate.training import TrainingCurve, read_training_curves


@dataclass
class MegFit:
    """What the evaluation needs of one fits file, scored against the epochs."""

    path: Path
    model: str
    scheme: str
    streams: list[str]
    subject: str
    random_init_features: bool
    n_fixations: int
    r: np.ndarray  # (ch, t) within-fold r over all folds
    r_halves: np.ndarray  # (2, ch, t) within-fold r over alternate outer folds (1st, 3rd, ... / 2nd, 4th, ...)
    scene_sums: SceneSums | None = None  # per scene sums of the rows, for the bootstrap over scenes
    block_weight: np.ndarray | None = None  # (ch, t, blocks) for families with block weights (banded ridge)
    block_names: list[str] | None = None
    training_curves: dict[int, TrainingCurve] = field(default_factory=dict)  # per outer fold (gradient-trained)


def r_halves(prediction: np.ndarray, target: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """(2, ...) within-fold r over alternate outer folds (1st, 3rd, ... / 2nd, 4th, ...): what is chosen by r on
    one half is scored on the other (meg_metrics.cross_fit)."""
    half = np.searchsorted(np.unique(folds), folds) % 2
    return np.stack([pearson_r_within_folds(prediction[half == h], target[half == h], folds[half == h]) for h in (0, 1)])


def _strings(value) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


def read_fit(path: str | Path, data: np.ndarray, fixation_ids: list[str], ch_names: list[str],
             times_s: np.ndarray) -> MegFit:
    """A fits file's attrs, checked against the epochs' channels and times, and the within-fold r of its
    predictions with the epochs `data` (n, ch, t) of `fixation_ids`, rows joined by fixation id, and the sums per
    scene (`scene_id`) behind it, for the bootstrap over scenes.

    r is invariant to fit_meg's per-column z-scoring of the targets, so the raw epochs serve as targets.
    """
    path = Path(path)
    with h5py.File(path, "r") as h5:
        for key in ("prediction", "fold", "fixation_id", "scene_id"):
            if key not in h5:
                raise KeyError(f"{path}: no dataset {key!r} (expected the fits layout of docs/meg.md)")
        attrs = dict(h5.attrs)
        missing = [k for k in ("model", "scheme", "streams", "subject", "random_init_features", "ch_names", "times")
                   if k not in attrs]
        if missing:
            raise KeyError(f"{path}: missing attrs {missing} (expected the fits layout of docs/meg.md)")
        fit_ids = list(h5["fixation_id"].asstr()[:])
        scenes = h5["scene_id"].asstr()[:]
        prediction, folds = h5["prediction"][:], h5["fold"][:]
        block_weight = h5["block_weight"][:] if "block_weight" in h5 else None
        block_names = list(h5["feature_blocks"].asstr()[:]) if block_weight is not None else None
        training_curves = read_training_curves(h5)
    expected = (len(ch_names), len(times_s))
    if prediction.shape[1:] != expected:
        raise ValueError(f"{path}: prediction has shape {prediction.shape}, expected (fixations, channels, times) "
                         f"= (n, *{expected}) of the epochs")
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
    row = {fid: i for i, fid in enumerate(fixation_ids)}
    no_epoch = [fid for fid in fit_ids if fid not in row]
    if no_epoch:
        raise ValueError(f"{path}: {len(no_epoch)} fixation_id without an epoch (first {no_epoch[:3]}); "
                         "expected the fit's rows among the epochs' fixation_id")
    fold_values = np.unique(folds)
    if len(fold_values) < 2:
        raise ValueError(f"{path}: predictions of {len(fold_values)} outer fold; expected at least 2 (`fold`)")
    target = data[[row[fid] for fid in fit_ids]]
    return MegFit(path=path, model=str(attrs["model"]), scheme=str(attrs["scheme"]),
                  streams=_strings(attrs["streams"]), subject=str(attrs["subject"]),
                  random_init_features=bool(attrs["random_init_features"]), n_fixations=len(fit_ids),
                  r=pearson_r_within_folds(prediction, target, folds),
                  r_halves=r_halves(prediction, target, folds),
                  scene_sums=scene_sums(prediction, target, folds, scenes),
                  block_weight=block_weight, block_names=block_names, training_curves=training_curves)

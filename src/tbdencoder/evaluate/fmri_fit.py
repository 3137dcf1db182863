"""One fMRI fits file as the evaluation reads it: attrs, block weights, training curves, the submission
predictions of the submission model, and the r and challenge score of its test predictions with the held-out
responses, read in one opening of the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.data.responses import read_noise_ceiling, read_targets
from tbdencoder.evaluate.metrics import challenge_score, pearson_r
from tbdencoder.evaluate.training import TrainingCurve, read_training_curves

SELECTION = ("space_x", "space_y", "layer_weights", "scale")  # a FactorTopy fit's per-vertex selectors


@dataclass
class FmriFit:
    """What the evaluation needs of one fits file (one model x hemisphere), scored against the responses."""

    path: Path
    model: str
    hemisphere: str
    random_init_features: bool
    r: np.ndarray  # (vertices,) Pearson r of the test predictions
    score: np.ndarray | None  # (vertices,) challenge score; None without a noise ceiling
    block_weight: np.ndarray | None = None  # (vertices, blocks) for families with block weights (banded ridge)
    block_names: list[str] | None = None
    training_curves: dict[int, TrainingCurve] = field(default_factory=dict)  # gradient-trained families
    submission_prediction: np.ndarray | None = None  # (images, vertices), read for the submission model only
    selection: dict[str, np.ndarray] | None = None  # FactorTopy: per-vertex space_x, space_y, layer_weights, scale
    fit_seconds: float | None = None  # the fit's time (a model of several subjects: all of theirs)
    n_parameters: int | None = None  # what the fit learnt (LINEAR families: coefficients and intercepts)


LINEAR = ("ridge", "roi_ridge", "banded_ridge")  # fits keep penalties, not coefficients: counted from the shapes


def _n_parameters(h5: h5py.File, n_targets: int) -> int | None:
    """The fit's `n_parameters` attr; a linear family's coefficients and intercepts; a FactorTopy-style fit's
    per-vertex readout, bias and scale with its stored network weights (alignment, selectors; the standardisation
    buffers left out); None when unknown. A model of several subjects counts its shared weights in each file."""
    if "n_parameters" in h5.attrs:
        return int(h5.attrs["n_parameters"])
    if h5.attrs.get("family") in LINEAR and "block_sizes" in h5:
        return int((int(h5["block_sizes"][:].sum()) + 1) * n_targets)
    if "readout_weight" in h5 and "folds/0/weights" in h5:
        weights = []
        h5["folds/0/weights"].visititems(lambda name, item: weights.append(item.size) if isinstance(item, h5py.Dataset)
                                         and "_mean_" not in name and "_scale_" not in name else None)
        per_vertex = h5["readout_weight"].size + h5["readout_bias"].size + (h5["scale"].size if "scale" in h5 else 0)
        return int(per_vertex + sum(weights))
    return None


def read_fit(fit_path: str | Path, responses_path: str | Path, submission_model: str | None = None) -> FmriFit:
    """A fits file's record, its test predictions scored against the test responses of `responses_path`."""
    path = Path(fit_path)
    with h5py.File(path, "r") as h5:
        model, hemi = str(h5.attrs["model"]), str(h5.attrs["hemisphere"])
        prediction = h5["test_prediction"][:]
        random_init = bool(h5.attrs["random_init_features"])
        block_weight = h5["block_weight"][:] if "block_weight" in h5 else None
        block_names = list(h5["feature_blocks"].asstr()[:]) if block_weight is not None else None
        training_curves = read_training_curves(h5)
        submission = h5["submission_prediction"][:] if model == submission_model else None
        learnt = h5.attrs.get("family") == "factortopy"  # neck_readout fits keep a neck's selections, frozen
        selection = ({key: h5[key][:] for key in SELECTION} if learnt and all(key in h5 for key in SELECTION)
                     else None)
        fit_seconds = float(h5.attrs["fit_seconds"]) if "fit_seconds" in h5.attrs else None
        n_parameters = _n_parameters(h5, prediction.shape[1])
    r = pearson_r(prediction, read_targets(responses_path, hemi, "test"))
    noise_ceiling = read_noise_ceiling(responses_path, hemi)
    return FmriFit(path=path, model=model, hemisphere=hemi, random_init_features=random_init, r=r,
                   score=None if noise_ceiling is None else challenge_score(r, noise_ceiling),
                   block_weight=block_weight, block_names=block_names, training_curves=training_curves,
                   submission_prediction=submission, selection=selection, fit_seconds=fit_seconds,
                   n_parameters=n_parameters)


def score_fit(responses_path: str | Path, fit_path: str | Path) -> tuple[str, str, np.ndarray, np.ndarray | None]:
    """(model, hemisphere, r per vertex, challenge score per vertex or None) of one fits file."""
    fit = read_fit(fit_path, responses_path)
    return fit.model, fit.hemisphere, fit.r, fit.score

"""The interface every model family implements, and the registry the fit driver builds models from.

A family is one module that registers a class under its `family` name. The fit driver never knows which
family it runs, and a family never knows which modality it serves: fMRI vertices and MEG sensor x time
samples are all just targets (columns of Y).

A model spec is one JSON object: the model's entry of params.yaml (`family`, `backbone`, `layers`,
`tokens`, `streams` for MEG crops, and the family's own hyper-parameters) together with the modality's
fit settings (`alphas`, `cv_folds` = the folds a family uses to choose its own hyper-parameters, `seed`).
`build_encoder` passes each family the keys its constructor names, so a new hyper-parameter travels from
the schema to the family without any code in between.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import numpy as np

from tbdencoder.features.featureset import FeatureSet

FAMILIES: dict[str, type] = {}
FEATURE_KEYS = ("family", "backbone", "layers", "tokens", "streams")  # read by the driver, not by the family


class Encoder(Protocol):
    """scikit-learn style: fit on features and targets, predict targets for new features.

    groups : (n,) labels no CV split may separate (scenes for MEG, images for fMRI).
    subjects : (n,) subject of each row (for families shared across subjects).
    targets : what a topographic family needs about the targets: ROI labels (`roi/<class>`), vertex or
        sensor coordinates, times.
    """

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict[str, Any] | None = None) -> "Encoder": ...

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]:
        """Per-target arrays a fits file keeps: what reloading needs, and what evaluation may report."""
        ...

    # Optional: `artifacts() -> dict[str, np.ndarray]`, arrays that are not per target (network weights,
    # loss curves); fits files keep them per fold (`folds/<k>/<name>`) and `reload` gets them with the state.


def register(name: str):
    """Class decorator: make a family available under `name` in model specs."""

    def add(cls: type) -> type:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice ({FAMILIES[name]} and {cls})")
        FAMILIES[name] = cls
        return cls

    return add


def build_encoder(spec: dict[str, Any], device: str = "auto", checkpoint=None) -> Encoder:
    """An unfitted model of `spec['family']` with the spec's hyper-parameters that its constructor takes.

    `device` and `checkpoint` (a file a gradient-trained family resumes from) go to families that take them.
    """
    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    accepted = inspect.signature(cls).parameters
    kwargs = {key: value for key, value in spec.items() if key in accepted and key not in FEATURE_KEYS}
    if "device" in accepted:
        kwargs["device"] = device
    if "checkpoint" in accepted:
        kwargs["checkpoint"] = checkpoint
    return cls(**kwargs)

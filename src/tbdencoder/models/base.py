"""The interface every model family implements, and the registry the fit driver builds models from.

A family is one module that registers a class under its `family` name. The fit driver never knows which
family it runs, and a family never knows which modality it serves: fMRI vertices and MEG sensor x time
samples are all just targets (columns of Y).

A model spec is one JSON object: the model's entry of params.yaml (`family`, `backbone`, `layers`,
`tokens`, `streams` for MEG crops, and the family's own hyper-parameters) together with the modality's
fit settings (`alphas`, `cv_folds` = the folds a family uses to choose its own hyper-parameters, `seed`).
A family's hyper-parameters, their defaults and descriptions live in the params schema only
(`$defs.families.<family>`); `build_encoder` fills the defaults and refuses keys of other families, so a
new hyper-parameter travels from the schema to the family without any code in between.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tbdencoder.features.featureset import FeatureSet

FAMILIES: dict[str, type] = {}
FEATURE_KEYS = ("family", "backbone", "layers", "tokens", "streams", "from_models")  # read by the driver
FIT_KEYS = ("alphas", "cv_folds", "seed", "outer_folds", "inner_folds")  # the modality's fit settings


class Encoder(Protocol):
    """scikit-learn style: fit on features and targets, predict targets for new features.

    groups : (n,) labels no CV split may separate (scenes for MEG, images for fMRI).
    subjects : (n,) subject of each row (for families shared across subjects).
    targets : what a family may know about the targets (the columns of Y), given to fit and predict alike.
        fMRI: `roi` ({class: labels}), `fsaverage_index`, `positions` (V, 3) on the fsaverage sphere with
        both hemispheres in one frame (data.cortex), `hemisphere`. MEG: `ch_names`, `times`,
        `sensor_positions` (channels, 3), and per target (channel-major) `target_channel`, `target_time`.
    """

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict[str, Any] | None = None) -> "Encoder": ...

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict[str, Any] | None = None) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]:
        """Per-target arrays a fits file keeps: what reloading needs, and what evaluation may report."""
        ...

    # Optional: `artifacts() -> dict[str, np.ndarray]`, arrays that are not per target (network weights,
    # loss curves); fits files keep them per fold (`folds/<k>/<name>`) and `reload` gets them with the state.


class SubjectsEncoder(Protocol):
    """A family fitted on several subjects at once (class attribute `many_subjects = True`).

    X stacks every subject's rows; `subjects` (n,) says whose each row is. Y, the targets' metadata and the
    predictions are per subject (dicts keyed by subject): fMRI subjects have different vertex counts, MEG
    subjects share sensors x times. A subject's rows in X are in the order of its rows of Y.
    """

    many_subjects: bool

    def fit(self, X: FeatureSet, Y: dict[str, np.ndarray], *, groups: np.ndarray | None = None,
            subjects: np.ndarray, targets: dict[str, dict[str, Any]]) -> "SubjectsEncoder": ...

    def predict(self, X: FeatureSet, *, subjects: np.ndarray,
                targets: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]: ...

    def subject_state(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """A predicted subject's per-target arrays (its fits file's state)."""
        ...

    def subject_artifacts(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The arrays a predicted subject's fits file keeps beside the state (a shared trunk may be in each), so
        that the family's `reload` gives back that subject's predictions."""
        ...


class PerSubject:
    """A single-subject family as a SubjectsEncoder: one model per subject, fitted on that subject's rows
    only. `make(subject)` builds a subject's unfitted model. The family never sees the difference."""

    many_subjects = True

    def __init__(self, make):
        self.make = make

    def fit(self, X: FeatureSet, Y: dict[str, np.ndarray], *, groups: np.ndarray | None = None,
            subjects: np.ndarray, targets: dict[str, dict[str, Any]]) -> "PerSubject":
        self.models_ = {}
        for subject, Y_subject in Y.items():
            rows = subjects == subject
            self.models_[subject] = self.make(subject).fit(
                X.take(rows), Y_subject, groups=None if groups is None else groups[rows], subjects=subjects[rows],
                targets=targets[subject])
        return self

    def predict(self, X: FeatureSet, *, subjects: np.ndarray,
                targets: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
        return {subject: self.models_[subject].predict(X.take(subjects == subject), subjects=subjects[subjects == subject],
                                                        targets=targets[subject])
                for subject in dict.fromkeys(subjects)}

    def subject_state(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        return self.models_[subject].state()

    def subject_artifacts(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        model = self.models_[subject]
        return model.artifacts() if hasattr(model, "artifacts") else {}


def register(name: str):
    """Class decorator: make a family available under `name` in model specs."""

    def add(cls: type) -> type:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice ({FAMILIES[name]} and {cls})")
        FAMILIES[name] = cls
        return cls

    return add


def build_encoder(spec: dict[str, Any], device: str = "auto", checkpoint=None,
                  from_fits: dict[str, str] | None = None) -> Encoder:
    """An unfitted model of `spec['family']`: its hyper-parameters from the spec, the schema's defaults for
    those the spec leaves out, and the fit settings (`alphas`, `cv_folds`, `seed`) its constructor names.

    A key that is neither a model key, a fit setting nor one of the family's hyper-parameters is refused.
    `device` and `checkpoint` (a file a gradient-trained family resumes from) go to families that take them,
    and `from_fits` ({model name: fits file} of the spec's `from_models`) to families that read other fits.
    """
    from tbdencoder.config import family_defaults, load_schema

    family = spec.get("family")
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {sorted(FAMILIES)}")
    cls = FAMILIES[family]
    accepted = inspect.signature(cls).parameters
    schema = load_schema()["$defs"]["families"].get(family)
    # a family registered without a schema entry (one under development) takes what its constructor names
    own = set(schema["properties"]) if schema else set(accepted) - set(FIT_KEYS)
    unknown = sorted(set(spec) - set(FEATURE_KEYS) - set(FIT_KEYS) - own)
    if unknown:
        raise ValueError(f"model family {family!r} does not take {unknown}; its hyper-parameters are {sorted(own)}")
    kwargs = {**(family_defaults(family) if schema else {}),
              **{key: value for key, value in spec.items() if key in own or (key in FIT_KEYS and key in accepted)}}
    if "device" in accepted:
        kwargs["device"] = device
    if "checkpoint" in accepted:
        kwargs["checkpoint"] = checkpoint
    if sorted(from_fits or {}) != sorted(spec.get("from_models", [])):
        raise ValueError(f"model spec names from_models {spec.get('from_models', [])} but got fits of "
                         f"{sorted(from_fits or {})}")
    if from_fits:
        if "from_fits" not in accepted:
            raise ValueError(f"model family {family!r} reads no other model's fits (from_models)")
        kwargs["from_fits"] = dict(from_fits)
    return cls(**kwargs)


def build_subjects_encoder(spec: dict[str, Any], device: str = "auto", checkpoint_dir: str | Path | None = None,
                           from_fits: dict[str, str] | None = None) -> SubjectsEncoder:
    """A model of `spec` for several subjects: the family's own when it has `many_subjects`, else one model
    per subject (PerSubject). Checkpoints: `<checkpoint_dir>/joint.pt`, or one `<subject>.pt` each."""
    checkpoint = (lambda name: None) if checkpoint_dir is None else (lambda name: Path(checkpoint_dir) / f"{name}.pt")
    if getattr(FAMILIES.get(spec.get("family")), "many_subjects", False):
        return build_encoder(spec, device, checkpoint("joint"), from_fits)
    return PerSubject(lambda subject: build_encoder(spec, device, checkpoint(subject), from_fits))


def reload_encoder(spec: dict[str, Any], state: dict[str, np.ndarray], X: FeatureSet, Y: np.ndarray,
                   device: str = "auto", from_fits: dict[str, str] | None = None) -> Encoder:
    """A stored model made usable again by its family's `reload` (from its state and training rows); a
    family that reads other models' fits gets them again."""
    cls = FAMILIES[spec["family"]]
    extra = {"from_fits": from_fits} if "from_fits" in inspect.signature(cls.reload).parameters else {}
    return cls.reload(state, X, Y, device=device, **extra)

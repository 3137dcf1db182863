"""responses.h5: a subject's fMRI targets, splits, noise ceiling and vertex metadata.

    attrs: subject, eval_split ('test' = the official test split with its fMRI, or
           'heldout_train' = a held-out part of the training split when the test fMRI is withheld),
           source (dataset folder), fsaverage_dir (fmri.fsaverage_dir: the FreeSurfer fsaverage folder
           for positions and brain maps; empty: nilearn's meshes)
    train_stimulus_id (n_train,)      rows the models are fitted on
    test_stimulus_id (n_test,)        rows the models are scored on
    submission_stimulus_id (n_sub,)   the challenge test images (predictions go to the submission)
    <hemi>/train (n_train, V) float32, <hemi>/test (n_test, V) float32
    <hemi>/noise_ceiling (V,) float32 fraction in [0, 1] (absent when unknown)
    <hemi>/fsaverage_index (V,) int: the vertex on the full fsaverage mesh
    <hemi>/roi/<class> (V,) int16 labels, attrs['names'] = JSON {label id: ROI name}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


@dataclass
class Responses:
    subject: str
    eval_split: str
    train_stimulus_id: list[str]
    test_stimulus_id: list[str]
    submission_stimulus_id: list[str]
    hemispheres: list[str]

    @classmethod
    def read(cls, path: str | Path) -> "Responses":
        with h5py.File(path, "r") as h5:
            hemis = [name for name in ("lh", "rh") if name in h5]
            return cls(
                subject=h5.attrs["subject"],
                eval_split=h5.attrs["eval_split"],
                train_stimulus_id=list(h5["train_stimulus_id"].asstr()[:]),
                test_stimulus_id=list(h5["test_stimulus_id"].asstr()[:]),
                submission_stimulus_id=list(h5["submission_stimulus_id"].asstr()[:]),
                hemispheres=hemis,
            )


def read_targets(path: str | Path, hemi: str, split: str) -> np.ndarray:
    """The `split` ('train' or 'test') responses of one hemisphere, images x vertices."""
    with h5py.File(path, "r") as h5:
        if hemi not in h5:
            raise KeyError(f"{path}: no hemisphere '{hemi}' (has {[k for k in h5 if k in ('lh', 'rh')]})")
        return h5[hemi][split][:]


def read_noise_ceiling(path: str | Path, hemi: str) -> np.ndarray | None:
    with h5py.File(path, "r") as h5:
        return h5[hemi]["noise_ceiling"][:] if "noise_ceiling" in h5[hemi] else None


def read_rois(path: str | Path, hemi: str) -> dict[str, tuple[np.ndarray, dict[int, str]]]:
    """{roi class: (labels per vertex, {label id: ROI name})}; empty when the file has no ROI labels."""
    with h5py.File(path, "r") as h5:
        return {
            roi_class: (ds[:], {int(k): v for k, v in json.loads(ds.attrs["names"]).items()})
            for roi_class, ds in h5[hemi].get("roi", {}).items()
        }

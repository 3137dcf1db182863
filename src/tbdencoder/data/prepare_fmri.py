"""Step `prepare-fmri`: an Algonauts 2023 subject -> responses.h5 + stimuli.h5.

MIN_SCORED_IMAGES: the fewest images a subject may be scored on (a Pearson r over fewer is not a
measurement); MIN_FIT_IMAGES: the fewest training images left to fit on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.data.algonauts import SubjectData, load_subject
from tbdencoder.data.stimuli import check_images, write_image_paths
from tbdencoder.io import atomic_path, get_logger, write_strings

log = get_logger("prepare_fmri")

MIN_SCORED_IMAGES = 10
MIN_FIT_IMAGES = 10


def heldout_rows(n_images: int, heldout_fraction: float, seed: int) -> np.ndarray:
    """Sorted row indices of the training images held out for scoring."""
    n_heldout = max(1, round(n_images * heldout_fraction))
    return np.sort(np.random.default_rng(seed).permutation(n_images)[:n_heldout])


def prepare_fmri(
    dataset_dir: str | Path,
    subject: str,
    hemispheres: list[str],
    roi_classes: list[str],
    heldout_fraction: float,
    split_seed: int,
    responses_out: str | Path,
    stimuli_out: str | Path,
    fsaverage_dir: str | None = None,
) -> None:
    """Check and convert one subject; score on the test split when its fMRI exists, else on held-out training images.
    `fsaverage_dir` (fmri.fsaverage_dir, or None for nilearn's meshes) is recorded for whatever reads the
    vertices' positions or draws them on the cortex later."""
    start = time.perf_counter()
    data = load_subject(dataset_dir, subject, tuple(hemispheres), tuple(roi_classes))
    train_ids = [SubjectData.stimulus_id(p) for p in data.train_images]
    test_ids = [SubjectData.stimulus_id(p) for p in data.test_images]
    test_withheld = [hemi for hemi, h in data.hemispheres.items() if h.test_fmri is None]
    if test_withheld and len(test_withheld) != len(hemispheres):
        raise ValueError(f"{dataset_dir}/{subject}: test fMRI present for some hemispheres only (missing {test_withheld})")
    eval_split = "heldout_train" if test_withheld else "test"
    fit_rows = np.arange(len(train_ids))
    if eval_split == "heldout_train":
        eval_rows = heldout_rows(len(train_ids), heldout_fraction, split_seed)
        fit_rows = np.setdiff1d(fit_rows, eval_rows)
        if len(eval_rows) < MIN_SCORED_IMAGES or len(fit_rows) < MIN_FIT_IMAGES:
            raise ValueError(
                f"{dataset_dir}/{subject}: key 'fmri.heldout_fraction': {heldout_fraction} holds out {len(eval_rows)} of "
                f"{len(train_ids)} training images to score and leaves {len(fit_rows)} to fit; expected at least "
                f"{MIN_SCORED_IMAGES} scored and {MIN_FIT_IMAGES} to fit"
            )
    elif len(test_ids) < MIN_SCORED_IMAGES or len(fit_rows) < MIN_FIT_IMAGES:
        raise ValueError(
            f"{data.test_images[0].parent}: {len(test_ids)} test images with test fMRI and "
            f"{len(fit_rows)} training images; "
            f"expected at least {MIN_SCORED_IMAGES} test images to score and {MIN_FIT_IMAGES} to fit"
        )
    check_images(data.train_images + data.test_images)

    write_image_paths(
        stimuli_out,
        train_ids + test_ids,
        data.train_images + data.test_images,
        provenance={"source_split": ["train"] * len(train_ids) + ["test"] * len(test_ids)},
    )
    with atomic_path(responses_out) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update(subject=subject, eval_split=eval_split, source=str(dataset_dir),
                        fsaverage_dir="" if fsaverage_dir is None else str(fsaverage_dir))
        write_strings(h5, "train_stimulus_id", [train_ids[i] for i in fit_rows])
        eval_ids = test_ids if eval_split == "test" else [train_ids[i] for i in eval_rows]
        write_strings(h5, "test_stimulus_id", eval_ids)
        write_strings(h5, "submission_stimulus_id", test_ids)
        for hemi, hemi_data in data.hemispheres.items():
            group = h5.create_group(hemi)
            group["train"] = hemi_data.train_fmri[fit_rows]
            group["test"] = hemi_data.test_fmri if eval_split == "test" else hemi_data.train_fmri[eval_rows]
            if hemi_data.noise_ceiling is not None:
                group["noise_ceiling"] = hemi_data.noise_ceiling
            group["fsaverage_index"] = hemi_data.fsaverage_index
            for roi_class, labels in hemi_data.roi_labels.items():
                ds = group.create_dataset(f"roi/{roi_class}", data=labels)
                ds.attrs["names"] = json.dumps(hemi_data.roi_names[roi_class])
            log.info("%s %s: %d vertices, %d fit / %d scored images (%s)", subject, hemi,
                     hemi_data.train_fmri.shape[1], len(fit_rows), len(eval_ids), eval_split)
    log.info("%s: %d training + %d test images prepared in %.1f s", subject, len(train_ids), len(test_ids),
             time.perf_counter() - start)

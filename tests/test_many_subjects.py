"""Several subjects in one model (models.base.SubjectsEncoder, fit.driver.fit_subjects): targets per subject
of different widths reach a `many_subjects` family together; any other family is fitted per subject exactly
as if each subject were fitted alone."""

import json

import h5py
import numpy as np
import pytest

from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.fit.fmri import FmriUnit, fit_fmri, fit_fmri_subjects
from tbdencoder.io import write_strings
from tbdencoder.models.base import FAMILIES, register


class SharedOffset:
    """A toy joint family: per subject and target the training mean, plus one offset shared by all subjects
    (the mean over subjects of their grand means). Records what it receives."""

    many_subjects = True
    received = {}

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, X, Y, *, groups=None, subjects, targets):
        SharedOffset.received = {"widths": {s: y.shape[1] for s, y in Y.items()}, "rows": X.n_rows,
                                 "subjects": list(dict.fromkeys(subjects)), "targets": targets}
        self.shared_ = float(np.mean([y.mean() for y in Y.values()]))
        self.means_ = {s: y.mean(0) for s, y in Y.items()}
        return self

    def predict(self, X, *, subjects, targets):
        return {s: np.tile(self.means_[s] + self.shared_, ((subjects == s).sum(), 1)) for s in self.means_}

    def subject_state(self, subject, targets=None):
        return {"mean": self.means_[subject]}

    def subject_artifacts(self, subject, targets=None):
        return {"shared": np.array(self.shared_)}


@pytest.fixture
def two_subjects(tiny_fmri_dataset, tmp_path):
    units = []
    for subject in ("subj01", "subj02"):
        responses = tmp_path / f"{subject}_responses.h5"
        prepare_fmri(tiny_fmri_dataset, subject, ["lh"], ["streams"], 0.2, 0, responses, tmp_path / f"{subject}.h5")
        with h5py.File(responses) as h5:
            ids = list(dict.fromkeys([*h5["train_stimulus_id"].asstr()[:], *h5["test_stimulus_id"].asstr()[:],
                                      *h5["submission_stimulus_id"].asstr()[:]]))
        features = tmp_path / f"{subject}_features.h5"
        with h5py.File(features, "w") as h5:
            write_strings(h5, "stimulus_id", ids)
            h5["layers/block01/global"] = np.random.default_rng(len(units)).standard_normal((len(ids), 5)).astype(
                np.float32)
        units.append(FmriUnit(features, responses, tmp_path / f"{subject}_fit.h5"))
    return units


SPEC = {"backbone": "b", "layers": [1], "tokens": ["global"], "alphas": [0.1, 10.0, 1000.0], "cv_folds": 3, "seed": 0}


def test_a_joint_family_gets_every_subject_with_its_own_width(two_subjects):
    register("shared_offset")(SharedOffset)
    try:
        fit_fmri_subjects(two_subjects, "lh", "joint", {**SPEC, "family": "shared_offset"}, device="cpu")
    finally:
        del FAMILIES["shared_offset"]
    received = SharedOffset.received
    assert received["subjects"] == ["subj01", "subj02"] and received["widths"] == {"subj01": 120, "subj02": 90}
    assert set(received["targets"]) == {"subj01", "subj02"}
    assert received["targets"]["subj02"]["roi"]["streams"].shape == (90,)
    shared = []
    for unit, width in zip(two_subjects, (120, 90)):
        with h5py.File(unit.out) as h5, h5py.File(unit.responses) as responses:
            train = responses["lh/train"][:]
            assert h5["test_prediction"].shape[1] == width and h5.attrs["subject"] == unit.out.name[:6]
            np.testing.assert_allclose(h5["mean"][:], train.mean(0), rtol=1e-5)
            shared.append(float(h5["folds/0/shared"][()]))
            np.testing.assert_allclose(h5["test_prediction"][0], train.mean(0) + shared[-1], rtol=1e-5)
    assert shared[0] == shared[1]  # one offset learnt from both subjects


def test_a_single_subject_family_over_several_subjects_fits_each_alone(two_subjects, tmp_path):
    fit_fmri_subjects(two_subjects, "lh", "ridge", {**SPEC, "family": "ridge"}, device="cpu")
    for unit in two_subjects:
        alone = tmp_path / f"alone_{unit.out.name}"
        fit_fmri(unit.features, unit.responses, "lh", "ridge", {**SPEC, "family": "ridge"}, alone, device="cpu")
        with h5py.File(unit.out) as together, h5py.File(alone) as expected:
            np.testing.assert_array_equal(together["test_prediction"][:], expected["test_prediction"][:])
            np.testing.assert_array_equal(together["alpha"][:], expected["alpha"][:])


def test_a_subject_given_twice_is_refused(two_subjects):
    with pytest.raises(ValueError, match="subject subj01 is given twice"):
        fit_fmri_subjects([two_subjects[0], two_subjects[0]], "lh", "m", {**SPEC, "family": "ridge"}, device="cpu")


def test_the_joint_fit_step_writes_each_subjects_fits_and_they_reload(two_subjects):
    """`tbdencoder fit-joint`: subject_adapters over both subjects (120 and 90 vertices), one fits file each,
    reloaded to the stored predictions."""
    from tbdencoder.cli import main
    from tbdencoder.fit.fmri import load_fitted

    spec = {**SPEC, "family": "subject_adapters", "rank": 2, "max_epochs": 4, "patience": 2, "batch_size": 16}
    assert main(["fit-joint", "--features", *[str(u.features) for u in two_subjects], "--responses",
                 *[str(u.responses) for u in two_subjects], "--hemisphere", "lh", "--model-name", "adapters",
                 "--spec", json.dumps(spec), "--device", "cpu", "--out", *[str(u.out) for u in two_subjects]]) == 0
    for unit, width in zip(two_subjects, (120, 90)):
        with h5py.File(unit.out) as h5, h5py.File(unit.responses) as responses:
            stored = h5["test_prediction"][:]
            assert stored.shape == (len(responses["test_stimulus_id"]), width) and h5.attrs["family"] == "subject_adapters"
            test_ids = list(responses["test_stimulus_id"].asstr()[:])
        np.testing.assert_allclose(load_fitted(unit.out, device="cpu").predict(unit.features, test_ids), stored,
                                   rtol=1e-4, atol=1e-5)


def test_kshot_fmri_scores_every_condition_for_a_subject_left_out(two_subjects, tmp_path):
    """subj02 left out: the model fitted on subj01 reads subj02's own vertices out through their fsaverage vertex
    (k = 0), then calibrated on k of its images; ridge on the same images alone; a k beyond its training images is
    left out. Challenge scores where the subject has a noise ceiling."""
    from tbdencoder.evaluate.kshot_fmri import kshot_fmri_subject

    (train, heldout) = two_subjects
    spec = {**SPEC, "family": "subject_adapters", "rank": 2, "max_epochs": 4, "patience": 2, "batch_size": 16}
    metrics = kshot_fmri_subject([train.features], [train.responses], [heldout.features], heldout.responses,
                                 tmp_path / "kshot.json", tmp_path / "kshot.png", model_name="adapters", spec=spec,
                                 ks=[5, 20, 10_000], device="cpu")
    assert metrics["ks"] == [5, 20] and json.loads((tmp_path / "kshot.json").read_text()) == metrics
    conditions = {"k0_mean", "k0_shared", "adapters_k5", "ridge_k5", "adapters_k20", "ridge_k20"}
    assert set(metrics["mean_r"]) == conditions and set(metrics["challenge_score"]) == conditions
    assert all(np.isfinite(v) for v in metrics["mean_r"].values())
    assert metrics["curve"]["adapters"] == [metrics["challenge_score"]["adapters_k5"],
                                            metrics["challenge_score"]["adapters_k20"]]
    assert (tmp_path / "kshot.png").stat().st_size > 10_000

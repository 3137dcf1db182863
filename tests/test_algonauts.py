import h5py
import numpy as np
import pytest

from tbdencoder.data.algonauts import DatasetError, load_subject
from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.data.responses import Responses, read_noise_ceiling, read_rois, read_targets

ROI_CLASSES = ["prf-visualrois", "streams"]


def _prepare(root, tmp_path, subject="subj01"):
    prepare_fmri(root, subject, ["lh", "rh"], ROI_CLASSES, 0.25, 0, tmp_path / "responses.h5", tmp_path / "stimuli.h5")
    return tmp_path / "responses.h5", tmp_path / "stimuli.h5"


def test_loader_reads_layout(tiny_fmri_dataset):
    data = load_subject(tiny_fmri_dataset, "subj02", roi_classes=tuple(ROI_CLASSES))
    assert len(data.train_images) == 40 and len(data.test_images) == 12
    lh = data.hemispheres["lh"]
    assert lh.train_fmri.shape == (40, 90) and lh.test_fmri.shape == (12, 90)
    assert lh.fsaverage_index.shape == (90,) and np.all(np.diff(lh.fsaverage_index) > 0)
    assert lh.roi_names["prf-visualrois"][7] == "hV4"
    assert data.stimulus_id(data.train_images[0]).startswith("nsd-")


def test_prepare_scores_on_test_split_when_test_fmri_present(tiny_fmri_dataset, tmp_path):
    responses_path, stimuli_path = _prepare(tiny_fmri_dataset, tmp_path)
    responses = Responses.read(responses_path)
    assert responses.eval_split == "test"
    assert len(responses.train_stimulus_id) == 40 and responses.test_stimulus_id == responses.submission_stimulus_id
    expected = np.load(tiny_fmri_dataset / "subj01/test_split/test_fmri/rh_test_fmri.npy")
    np.testing.assert_array_equal(read_targets(responses_path, "rh", "test"), expected)
    assert read_noise_ceiling(responses_path, "lh").shape == (120,)
    labels, names = read_rois(responses_path, "lh")["streams"]
    assert labels.shape == (120,) and names[1] == "early"
    with h5py.File(stimuli_path) as h5:
        assert h5["stimulus_id"].shape == (52,) and len(h5["content_hash"].asstr()[0]) == 64


def test_prepare_holds_out_training_images_when_test_fmri_withheld(fmri_dataset_copy, tmp_path):
    for path in (fmri_dataset_copy / "subj01/test_split").glob("test_fmri/*.npy"):
        path.unlink()
    for path in (fmri_dataset_copy / "subj01/test_split").glob("noise_ceiling/*.npy"):
        path.unlink()
    responses_path, _ = _prepare(fmri_dataset_copy, tmp_path)
    responses = Responses.read(responses_path)
    assert responses.eval_split == "heldout_train"
    assert len(responses.test_stimulus_id) == 10 and len(responses.train_stimulus_id) == 30
    assert not set(responses.test_stimulus_id) & set(responses.train_stimulus_id)
    assert len(responses.submission_stimulus_id) == 12
    assert read_noise_ceiling(responses_path, "lh") is None
    train = np.load(fmri_dataset_copy / "subj01/training_split/training_fmri/lh_training_fmri.npy")
    ids = [p.name.split("_")[1][:-4] for p in sorted((fmri_dataset_copy / "subj01/training_split/training_images").iterdir())]
    row = ids.index(responses.test_stimulus_id[0])
    np.testing.assert_array_equal(read_targets(responses_path, "lh", "test")[0], train[row])


def test_mask_length_differs_from_fmri_columns(fmri_dataset_copy):
    path = fmri_dataset_copy / "subj01/roi_masks/lh.streams_challenge_space.npy"
    np.save(path, np.load(path)[:-3])
    with pytest.raises(DatasetError, match=r"lh.streams_challenge_space.npy: ROI mask has length 117, expected 120"):
        load_subject(fmri_dataset_copy, "subj01", roi_classes=tuple(ROI_CLASSES))


def test_fsaverage_mask_must_select_fmri_columns(fmri_dataset_copy):
    path = fmri_dataset_copy / "subj01/roi_masks/rh.all-vertices_fsaverage_space.npy"
    mask = np.load(path)
    mask[np.flatnonzero(mask == 0)[0]] = 1
    np.save(path, mask)
    with pytest.raises(DatasetError, match=r"selects 121 vertices but .*rh_training_fmri.npy has 120 columns"):
        load_subject(fmri_dataset_copy, "subj01", roi_classes=tuple(ROI_CLASSES))


def test_missing_training_image_is_named(fmri_dataset_copy):
    images = sorted((fmri_dataset_copy / "subj01/training_split/training_images").iterdir())
    images[4].unlink()
    with pytest.raises(DatasetError, match=r"missing train-0005_nsd-\*\.png"):
        load_subject(fmri_dataset_copy, "subj01", roi_classes=tuple(ROI_CLASSES))


def test_image_count_differs_from_fmri_rows(fmri_dataset_copy):
    images = sorted((fmri_dataset_copy / "subj01/training_split/training_images").iterdir())
    images[-1].unlink()  # no gap: the last image is gone, so the count is off by one
    with pytest.raises(DatasetError, match=r"lh_training_fmri.npy: has 40 rows \(images\) but .*training_images holds 39"):
        load_subject(fmri_dataset_copy, "subj01", roi_classes=tuple(ROI_CLASSES))


def test_missing_hemisphere_is_named(fmri_dataset_copy):
    (fmri_dataset_copy / "subj01/training_split/training_fmri/rh_training_fmri.npy").unlink()
    with pytest.raises(DatasetError, match=r"rh_training_fmri.npy: missing rh training fMRI \(hemisphere 'rh' must be present\)"):
        load_subject(fmri_dataset_copy, "subj01", roi_classes=tuple(ROI_CLASSES))


def test_failed_prepare_keeps_existing_outputs(fmri_dataset_copy, tmp_path):
    responses_path, _ = _prepare(fmri_dataset_copy, tmp_path)
    before = responses_path.read_bytes()
    (fmri_dataset_copy / "subj01/roi_masks/mapping_streams.npy").unlink()
    with pytest.raises(DatasetError, match="mapping_streams.npy: missing ROI name mapping"):
        _prepare(fmri_dataset_copy, tmp_path)
    assert responses_path.read_bytes() == before

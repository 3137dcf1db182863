"""Bad Algonauts inputs are refused before anything is written, naming the file and what was expected."""

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from tbdencoder.data import algonauts
from tbdencoder.data.algonauts import DatasetError, load_subject
from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.data.stimuli import load_rgb
from tbdencoder.simulate.fmri import ROI_MAPPINGS

ROI_CLASSES = ("prf-visualrois", "streams")
SUBJECT = "subj01"


def _prepare(root, tmp_path, heldout_fraction=0.25):
    prepare_fmri(root, SUBJECT, ["lh", "rh"], list(ROI_CLASSES), heldout_fraction, 0,
                 tmp_path / "responses.h5", tmp_path / "stimuli.h5")


def _withhold_test_fmri(root):
    for path in (root / SUBJECT / "test_split").glob("*/*.npy"):
        path.unlink()


def _images(root, split):
    folder = "training_split/training_images" if split == "train" else "test_split/test_images"
    return sorted((root / SUBJECT / folder).iterdir())


def _object_npy(path, value):
    """np.save of a 0-d object array holding `value`, as the release stores its mappings."""
    array = np.empty((), dtype=object)
    array[()] = value
    np.save(path, array, allow_pickle=True)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_mapping_cannot_run_code(fmri_dataset_copy, tmp_path):
    marker = tmp_path / "payload_ran"
    path = fmri_dataset_copy / SUBJECT / "roi_masks/mapping_streams.npy"
    _object_npy(path, _Payload(marker))
    with pytest.raises(DatasetError, match=r"mapping_streams.npy: cannot read the ROI name mapping.*refusing to load"):
        load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)
    assert not marker.exists()
    np.load(path, allow_pickle=True)  # the payload is live: np.load runs it
    assert marker.exists()


@pytest.mark.parametrize("value, message", [
    ([0, 1], r"expected a pickled dict of int -> str, got list"),
    ({str(k): v for k, v in ROI_MAPPINGS["streams"].items()}, r"expected a dict of int -> str, got entry '0': 'Unknown'"),
    ({k: i for i, k in enumerate(ROI_MAPPINGS["streams"])}, r"expected a dict of int -> str, got entry 0: 0"),
])
def test_mapping_must_be_a_dict_of_int_to_str(fmri_dataset_copy, value, message):
    path = fmri_dataset_copy / SUBJECT / "roi_masks/mapping_streams.npy"
    _object_npy(path, value)
    with pytest.raises(DatasetError, match=r"mapping_streams.npy: " + message):
        load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)


def test_truncated_mapping_is_named(fmri_dataset_copy):
    path = fmri_dataset_copy / SUBJECT / "roi_masks/mapping_streams.npy"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError, match=r"mapping_streams.npy: cannot read the ROI name mapping"):
        load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)


def test_mapping_with_numpy_int_keys_is_read(fmri_dataset_copy):
    _object_npy(fmri_dataset_copy / SUBJECT / "roi_masks/mapping_streams.npy",
                {np.int64(k): v for k, v in ROI_MAPPINGS["streams"].items()})
    data = load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)
    assert data.hemispheres["lh"].roi_names["streams"] == ROI_MAPPINGS["streams"]


def test_mapping_saved_by_numpy_1_is_read(fmri_dataset_copy):
    """The release's files name numpy.core.multiarray (numpy 1.x) in a protocol-3 pickle."""
    array = np.empty((), dtype=object)
    array[()] = ROI_MAPPINGS["streams"]
    with (fmri_dataset_copy / SUBJECT / "roi_masks/mapping_streams.npy").open("wb") as fh:
        np.lib.format.write_array_header_1_0(fh, np.lib.format.header_data_from_array_1_0(array))
        fh.write(pickle.dumps(array, protocol=3).replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    data = load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)
    assert data.hemispheres["rh"].roi_names["streams"] == ROI_MAPPINGS["streams"]


@pytest.mark.parametrize("relative, bad, message", [
    ("training_split/training_fmri/lh_training_fmri.npy", [(3, 5), (8, 0)], r"first at row 3, column 5"),
    ("test_split/test_fmri/rh_test_fmri.npy", [(3, 5), (8, 0)], r"first at row 3, column 5"),
    ("test_split/noise_ceiling/lh_noise_ceiling.npy", [5, 9], r"first at index 5"),
])
def test_non_finite_fmri_is_refused(fmri_dataset_copy, tmp_path, monkeypatch, relative, bad, message):
    monkeypatch.setattr(algonauts, "_CHUNK_VALUES", 100)  # several chunks, so the count spans them
    path = fmri_dataset_copy / SUBJECT / relative
    array = np.load(path)
    array[bad[0]], array[bad[1]] = np.nan, np.inf
    np.save(path, array)
    with pytest.raises(DatasetError, match=path.name + r": 2 non-finite values \(NaN or Inf\), the " + message):
        _prepare(fmri_dataset_copy, tmp_path)
    assert not list(tmp_path.glob("*.h5"))


def test_two_images_with_the_same_number_are_named(fmri_dataset_copy):
    first = _images(fmri_dataset_copy, "train")[0]
    (first.parent / "train-0001_nsd-99999.png").write_bytes(first.read_bytes())
    with pytest.raises(DatasetError, match=rf"{first.name} and train-0001_nsd-99999.png have the same number"):
        load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)


def test_truncated_png_is_named(fmri_dataset_copy, tmp_path):
    image = _images(fmri_dataset_copy, "train")[4]
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"{image.name}: cannot decode the image"):
        _prepare(fmri_dataset_copy, tmp_path)
    assert not list(tmp_path.glob("*.h5"))


def test_no_test_images_is_refused(fmri_dataset_copy, tmp_path):
    _withhold_test_fmri(fmri_dataset_copy)
    for image in _images(fmri_dataset_copy, "test"):
        image.unlink()
    with pytest.raises(DatasetError, match=r"test_images: no test images"):
        _prepare(fmri_dataset_copy, tmp_path)


def test_test_image_sharing_a_training_nsd_id_names_both(fmri_dataset_copy):
    train = _images(fmri_dataset_copy, "train")[0]
    test = _images(fmri_dataset_copy, "test")[2]
    renamed = test.with_name(f"test-0003_{train.name.split('_')[1]}")
    test.rename(renamed)
    with pytest.raises(DatasetError, match=rf"{train.name} and .*{renamed.name} show the same NSD image"):
        load_subject(fmri_dataset_copy, SUBJECT, roi_classes=ROI_CLASSES)


@pytest.mark.parametrize("fraction, scored, fit", [(0.001, 1, 39), (0.99, 40, 0)])
def test_heldout_fraction_must_leave_enough_rows(fmri_dataset_copy, tmp_path, fraction, scored, fit):
    _withhold_test_fmri(fmri_dataset_copy)
    with pytest.raises(ValueError, match=rf"key 'fmri.heldout_fraction': {fraction} holds out {scored} of 40 training "
                                         rf"images to score and leaves {fit} to fit; expected at least 10"):
        _prepare(fmri_dataset_copy, tmp_path, fraction)
    assert not list(tmp_path.glob("*.h5"))


def test_too_few_test_images_with_test_fmri(fmri_dataset_copy, tmp_path):
    for image in _images(fmri_dataset_copy, "test")[9:]:
        image.unlink()
    for path in (fmri_dataset_copy / SUBJECT / "test_split/test_fmri").iterdir():
        np.save(path, np.load(path)[:9])
    with pytest.raises(ValueError, match=r"test_images: 9 test images with test fMRI .*expected at least 10"):
        _prepare(fmri_dataset_copy, tmp_path)


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    path = tmp_path / "deep.png"
    deep = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(deep).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8 and rgb.min() == 0 and rgb.max() == 255
    np.testing.assert_allclose(rgb[..., 0], deep / 257, atol=0.5)


def test_8_bit_png_is_unchanged(tmp_path):
    path = tmp_path / "plain.png"
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    np.testing.assert_array_equal(np.asarray(load_rgb(path)), pixels)


def test_transparent_and_tiny_images_are_warned_with_names_and_counts(fmri_dataset_copy, tmp_path, logs):
    """An RGBA image whose alpha is 0 everywhere, and a 1 x 1 image among full-size ones: accepted, but said."""
    clear, tiny = _images(fmri_dataset_copy, "train")[2:4]
    rgb = np.asarray(Image.open(clear).convert("RGB"))
    Image.fromarray(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)]), "RGBA").save(clear)
    Image.new("RGB", (1, 1)).save(tiny)
    _prepare(fmri_dataset_copy, tmp_path)
    n = len(_images(fmri_dataset_copy, "train")) + len(_images(fmri_dataset_copy, "test"))
    assert f"1 of {n} images with transparent pixels (alpha < 255; the RGB conversion drops alpha): {clear} (100 %)" \
        in logs.text
    side = Image.open(_images(fmri_dataset_copy, "train")[0]).size[0]
    assert f"1 of {n} images under half the median size {side} x {side} px: {tiny} (1 x 1)" in logs.text


def test_ordinary_images_are_not_warned(fmri_dataset_copy, tmp_path, logs):
    _prepare(fmri_dataset_copy, tmp_path)
    assert "transparent" not in logs.text and "median size" not in logs.text

"""Reader for the Algonauts 2023 challenge layout (NSD fMRI), real or simulated.

    <dataset_dir>/subjXX/training_split/training_fmri/{lh,rh}_training_fmri.npy
    <dataset_dir>/subjXX/training_split/training_images/train-NNNN_nsd-NNNNN.png
    <dataset_dir>/subjXX/test_split/test_images/test-NNNN_nsd-NNNNN.png
    <dataset_dir>/subjXX/test_split/test_fmri/{lh,rh}_test_fmri.npy          (withheld in the release)
    <dataset_dir>/subjXX/test_split/noise_ceiling/{lh,rh}_noise_ceiling.npy  (withheld in the release)
    <dataset_dir>/subjXX/roi_masks/{lh,rh}.all-vertices_fsaverage_space.npy
    <dataset_dir>/subjXX/roi_masks/{lh,rh}.<roi class>_challenge_space.npy
    <dataset_dir>/subjXX/roi_masks/mapping_<roi class>.npy                    (pickled {label id: name})
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

HEMISPHERES = ("lh", "rh")
ROI_CLASSES = ("prf-visualrois", "floc-bodies", "floc-faces", "floc-places", "floc-words", "streams")
FSAVERAGE_VERTICES = 163842
_IMAGE_NAME = re.compile(r"^(train|test)-(\d{4})_nsd-(\d{5})\.png$")
_CHUNK_VALUES = 1 << 24  # values checked at a time, so a memory-mapped array is never copied whole
# what a pickled 0-d object array holding a dict of int -> str refers to (numpy 1.x and 2.x;
# _codecs.encode rebuilds bytes in pickle protocol 2)
_MAPPING_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class DatasetError(ValueError):
    """The dataset on disk does not match the Algonauts 2023 layout."""


@dataclass
class HemisphereData:
    """One hemisphere of one subject; fMRI arrays are images x challenge-space vertices."""

    train_fmri: np.ndarray
    test_fmri: np.ndarray | None
    noise_ceiling: np.ndarray | None
    fsaverage_index: np.ndarray
    roi_labels: dict[str, np.ndarray] = field(default_factory=dict)
    roi_names: dict[str, dict[int, str]] = field(default_factory=dict)


@dataclass
class SubjectData:
    subject: str
    train_images: list[Path]
    test_images: list[Path]
    hemispheres: dict[str, HemisphereData]

    @staticmethod
    def stimulus_id(image: Path) -> str:
        """`nsd-NNNNN` from an image file name."""
        return f"nsd-{_IMAGE_NAME.match(image.name).group(3)}"


def list_images(folder: Path, split: str) -> list[Path]:
    """The split's PNGs in numbered order; a gap in the numbering names the missing image."""
    if not folder.is_dir():
        raise DatasetError(f"{folder}: missing {split} image folder")
    numbered: dict[int, Path] = {}
    unexpected = []
    for path in sorted(folder.iterdir()):
        match = _IMAGE_NAME.match(path.name)
        if match and match.group(1) == split:
            number = int(match.group(2))
            if number in numbered:
                raise DatasetError(f"{folder}: {numbered[number].name} and {path.name} have the same number; "
                                   f"expected one image per {split}-NNNN")
            numbered[number] = path
        elif path.suffix.lower() in {".png", ".jpg", ".jpeg"}:
            unexpected.append(path.name)
    if unexpected:
        raise DatasetError(f"{folder}: image names not of the form {split}-NNNN_nsd-NNNNN.png: {sorted(unexpected)[:5]}")
    if not numbered:
        raise DatasetError(f"{folder}: no {split} images; expected {split}-0001_nsd-NNNNN.png onwards")
    images = sorted(numbered.items())
    numbers = [number for number, _ in images]
    expected = range(1, len(images) + 1)
    if numbers != list(expected):
        missing = sorted(set(range(1, max(numbers, default=0) + 1)) - set(numbers))
        raise DatasetError(
            f"{folder}: {split} images must be numbered 1..N without gaps; "
            f"missing {split}-{missing[0]:04d}_nsd-*.png" + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    return [path for _, path in images]


def _load_array(path: Path, what: str, required: bool = True) -> np.ndarray | None:
    if not path.is_file():
        if required:
            raise DatasetError(f"{path}: missing {what}")
        return None
    try:
        return np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise DatasetError(f"{path}: cannot read {what} as a .npy array ({exc})") from exc


def _check_finite(array: np.ndarray, path: Path) -> None:
    """Refuse NaN or Inf, naming the first bad row and column and how many there are; reads row chunks."""
    table = array if array.ndim == 2 else array[None]
    step = max(1, _CHUNK_VALUES // max(1, table.shape[1]))
    count, first = 0, None
    for start in range(0, len(table), step):
        bad = ~np.isfinite(table[start:start + step])
        count += int(np.count_nonzero(bad))
        if first is None and count:
            row, column = np.argwhere(bad)[0]
            first = f"row {start + row}, column {column}" if array.ndim == 2 else f"index {column}"
    if count:
        raise DatasetError(f"{path}: {count} non-finite values (NaN or Inf), the first at {first}; expected all finite")


class _MappingUnpickler(pickle.Unpickler):
    """Unpickles only what a 0-d numpy object array holding a dict needs; anything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _MAPPING_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_mapping(path: Path) -> dict[int, str]:
    """A pickled {label id: ROI name} as np.save writes it, read without running arbitrary code."""
    try:
        with path.open("rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = read_header(fh)
            if shape != () or dtype != object:
                raise ValueError(f"holds a {dtype} array of shape {shape}, not a pickled dict")
            array = _MappingUnpickler(fh, encoding="ASCII").load()
    except Exception as exc:  # malformed pickles fail in many ways; each means the file is not a mapping
        raise DatasetError(
            f"{path}: cannot read the ROI name mapping, expected a pickled dict of int -> str ({exc})"
        ) from exc
    mapping = array.item() if isinstance(array, np.ndarray) and array.shape == () else array
    if not isinstance(mapping, dict):
        raise DatasetError(f"{path}: expected a pickled dict of int -> str, got {type(mapping).__name__}")
    for key, value in mapping.items():
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool) or not isinstance(value, str):
            raise DatasetError(f"{path}: expected a dict of int -> str, got entry {key!r}: {value!r}")
    return {int(key): value for key, value in mapping.items()}


def _check_rows(fmri: np.ndarray, path: Path, n_images: int, image_dir: Path) -> None:
    if fmri.ndim != 2:
        raise DatasetError(f"{path}: expected a 2-D array images x vertices, got shape {fmri.shape}")
    if fmri.shape[0] != n_images:
        raise DatasetError(
            f"{path}: has {fmri.shape[0]} rows (images) but {image_dir} holds {n_images} images; "
            "expected one row per image in file-name order"
        )


def load_hemisphere(
    subject_dir: Path, hemi: str, n_train: int, n_test: int, roi_classes: tuple[str, ...]
) -> HemisphereData:
    """Read and check one hemisphere's fMRI, noise ceiling and ROI masks."""
    train_path = subject_dir / "training_split" / "training_fmri" / f"{hemi}_training_fmri.npy"
    test_path = subject_dir / "test_split" / "test_fmri" / f"{hemi}_test_fmri.npy"
    nc_path = subject_dir / "test_split" / "noise_ceiling" / f"{hemi}_noise_ceiling.npy"
    masks = subject_dir / "roi_masks"
    train = _load_array(train_path, f"{hemi} training fMRI (hemisphere '{hemi}' must be present)")
    _check_rows(train, train_path, n_train, subject_dir / "training_split" / "training_images")
    n_vertices = train.shape[1]

    mask_path = masks / f"{hemi}.all-vertices_fsaverage_space.npy"
    all_vertices = _load_array(mask_path, "fsaverage-space vertex mask")
    if all_vertices.shape != (FSAVERAGE_VERTICES,):
        raise DatasetError(f"{mask_path}: expected length {FSAVERAGE_VERTICES} (fsaverage), got shape {all_vertices.shape}")
    fsaverage_index = np.flatnonzero(np.asarray(all_vertices))
    if fsaverage_index.size != n_vertices:
        raise DatasetError(
            f"{mask_path}: selects {fsaverage_index.size} vertices but {train_path} has {n_vertices} columns; "
            "expected the mask to select exactly the fMRI columns"
        )

    test = _load_array(test_path, "test fMRI", required=False)
    if test is not None:
        _check_rows(test, test_path, n_test, subject_dir / "test_split" / "test_images")
        if test.shape[1] != n_vertices:
            raise DatasetError(f"{test_path}: has {test.shape[1]} columns, expected {n_vertices} as in {train_path}")
    noise_ceiling = _load_array(nc_path, "noise ceiling", required=False)
    if noise_ceiling is not None and noise_ceiling.shape != (n_vertices,):
        raise DatasetError(f"{nc_path}: expected shape ({n_vertices},) (one value per vertex), got {noise_ceiling.shape}")

    data = HemisphereData(np.asarray(train, dtype=np.float32), None if test is None else np.asarray(test, dtype=np.float32),
                          None if noise_ceiling is None else np.asarray(noise_ceiling, dtype=np.float32), fsaverage_index)
    for array, path in ((data.train_fmri, train_path), (data.test_fmri, test_path), (data.noise_ceiling, nc_path)):
        if array is not None:
            _check_finite(array, path)
    for roi_class in roi_classes:
        label_path = masks / f"{hemi}.{roi_class}_challenge_space.npy"
        labels = _load_array(label_path, f"{roi_class} ROI mask")
        if labels.shape != (n_vertices,):
            raise DatasetError(
                f"{label_path}: ROI mask has length {labels.shape[0] if labels.ndim else 0}, "
                f"expected {n_vertices} (the number of fMRI columns in {train_path})"
            )
        mapping_path = masks / f"mapping_{roi_class}.npy"
        if not mapping_path.is_file():
            raise DatasetError(f"{mapping_path}: missing ROI name mapping for {roi_class}")
        data.roi_labels[roi_class] = np.asarray(labels).astype(np.int16)
        data.roi_names[roi_class] = _load_mapping(mapping_path)
        unknown = sorted(set(np.unique(data.roi_labels[roi_class]).tolist()) - set(data.roi_names[roi_class]))
        if unknown:
            raise DatasetError(f"{label_path}: labels {unknown} are not in {mapping_path}")
    return data


def load_subject(
    dataset_dir: str | Path,
    subject: str,
    hemispheres: tuple[str, ...] = HEMISPHERES,
    roi_classes: tuple[str, ...] = ROI_CLASSES,
) -> SubjectData:
    """Read one subject of an Algonauts 2023 dataset, checking the layout as it goes."""
    subject_dir = Path(dataset_dir) / subject
    if not subject_dir.is_dir():
        raise DatasetError(f"{subject_dir}: subject folder not found in dataset {dataset_dir}")
    train_images = list_images(subject_dir / "training_split" / "training_images", "train")
    test_images = list_images(subject_dir / "test_split" / "test_images", "test")
    seen: dict[str, Path] = {}
    for image in train_images + test_images:
        other = seen.setdefault(SubjectData.stimulus_id(image), image)
        if other is not image:
            raise DatasetError(f"{other} and {image} show the same NSD image; expected each NSD id once per subject")
    hemis = {
        hemi: load_hemisphere(subject_dir, hemi, len(train_images), len(test_images), tuple(roi_classes))
        for hemi in hemispheres
    }
    return SubjectData(subject, train_images, test_images, hemis)

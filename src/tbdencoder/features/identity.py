"""What a features file is, checked before it is reused: its content digest and the network that made it.

- `content_sha256`: a digest of the stimulus ids, content hashes and every feature dataset's values, written
  when the file is completed. `verify_features` recomputes it, so a cache entry or a features file edited in
  place, truncated or damaged is caught before anything reads its numbers (cost: one read of the file,
  `benchmarks/bench_cache_verify.py`).
- the identity: the attrs that decide what the numbers mean (library, model, weights, random init and its
  seed, preprocessing, grid and map sizes, format). `check_same_network` refuses features of another network
  than a fit's, naming the attr that differs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

DIGEST_ROWS = 4096  # rows hashed per read: bounded memory whatever the file's size

# attr -> when it matters for a model reading `tokens` (None: always)
IDENTITY = {
    "format_version": None,
    "library": None,
    "model_name": None,
    "weights": None,
    "random_init": None,
    "seed": "random_init",  # the seed only decides the numbers of a random-init network
    "preprocess": None,
    "grid_size": "grid",
    "map_size": "map",
}


def _datasets(h5: h5py.File) -> list[str]:
    """The datasets a digest covers, in a fixed order."""
    names: list[str] = []
    h5.visit(lambda name: names.append(name) if isinstance(h5[name], h5py.Dataset) else None)
    return sorted(name for name in names if name != "done")


def content_sha256(h5: h5py.File) -> str:
    """Hex sha256 of every dataset's name, shape and values (read DIGEST_ROWS rows at a time)."""
    digest = hashlib.sha256()
    for name in _datasets(h5):
        dataset = h5[name]
        digest.update(f"{name}\n{dataset.shape}\n{dataset.dtype}\n".encode())
        for start in range(0, len(dataset), DIGEST_ROWS):
            block = dataset[start:start + DIGEST_ROWS]
            if dataset.dtype.kind == "O":
                block = np.array([value.decode() if isinstance(value, bytes) else str(value) for value in block])
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()


def verify_features(path: str | Path) -> None:
    """Raise ValueError naming `path` unless it opens and its values match the digest written when it was made."""
    try:
        with h5py.File(path, "r") as h5:
            stored = h5.attrs.get("content_sha256")
            if stored is None:
                raise ValueError(f"{path}: not a completed tbdencoder features file (no content_sha256 attr); "
                                 "make it with `tbdencoder features`")
            if content_sha256(h5) != stored:
                raise ValueError(f"{path}: its values differ from the digest written when it was made "
                                 "(edited or damaged since)")
    except (OSError, KeyError) as error:
        raise ValueError(f"{path}: unreadable as an HDF5 features file ({error})") from error


def feature_identity(path: str | Path) -> dict:
    """The identity attrs of a features file (ValueError naming the file when it is not one)."""
    try:
        with h5py.File(path, "r") as h5:
            attrs = dict(h5.attrs)
    except OSError as error:
        raise ValueError(f"{path}: unreadable as an HDF5 features file ({error})") from error
    missing = [key for key in IDENTITY if key not in attrs]
    if missing:
        raise ValueError(f"{path}: not a tbdencoder features file of this version (no attrs {missing}); "
                         "extract it with `tbdencoder features`")
    return {key: _plain(attrs[key]) for key in IDENTITY}


def _plain(value):
    """An attr as a JSON-able Python value (numpy scalars and arrays unwrapped)."""
    return value.tolist() if isinstance(value, np.ndarray) else value.item() if isinstance(value, np.generic) else value


def check_same_network(fitted_on: list[str | Path], given: list[str | Path], tokens: list[str], what: str) -> None:
    """Refuse features (`given`, one file per backbone) that another network made than the fit's training features
    (`fitted_on`, in the same order), naming the file and each attr that differs. `tokens`: the model's tokens
    (the grid size matters only to `grid`, the map size only to `map`)."""
    if len(given) != len(fitted_on):
        raise ValueError(f"{what}: expected {len(fitted_on)} features file(s), one per backbone, got {len(given)}")
    for trained, new in zip(fitted_on, given):
        expected, found = feature_identity(trained), feature_identity(new)
        differs = [f"{key}: {json.dumps(found[key])} (fitted on {json.dumps(expected[key])})"
                   for key, needs in IDENTITY.items() if found[key] != expected[key]
                   and (needs is None or needs in tokens or (needs == "random_init" and expected["random_init"]))]
        if differs:
            raise ValueError(f"{new}: these features come from another network than the {what} was fitted on "
                             f"({trained}): " + "; ".join(differs))


def seal_features(path: str | Path, **identity) -> None:
    """Give a features file made outside `tbdencoder features` (your own network's features, in its layout) the
    identity attrs (each key of IDENTITY) and the content digest that fits and `predict` check."""
    missing = sorted(set(IDENTITY) - set(identity))
    if missing:
        raise ValueError(f"{path}: an identity needs {missing}")
    with h5py.File(path, "r+") as h5:
        h5.attrs.update(identity)
        h5.attrs["content_sha256"] = content_sha256(h5)

"""fMRI in the decoding direction: a subject's vertices (both hemispheres) -> the image's embedding (fit.decode).

The fixed split of responses.h5: decoders trained on the training images decode the scored images (fold 0;
training rows fold -1, not scored), every subject in one call, a decoder of several subjects (clip_alignment)
fitted on all of them at once. Brain data are the responses z-scored per vertex over the training images.

Output per subject (the layout of fit.decode_meg's, one window): `stimulus_id`, `fold` (n,); `window_s` [0];
`prediction` (1, n, d) float32 (training rows 0); `actual` (n, d) in the training rows' units; the model's arrays
under `windows/0/folds/0/`; attrs subject, model, family, spec (JSON), train_subjects, inputs (JSON),
random_init_features, scheme (`fixed_split`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tbdencoder.data.responses import Responses, read_targets
from tbdencoder.fit.decode import DecodeRows, decode_by_folds
from tbdencoder.fit.decode_meg import target_embedding
from tbdencoder.fit.driver import checkpoint_dir
from tbdencoder.io import atomic_path, get_logger, write_strings

log = get_logger("decode_fmri")


def fmri_decode_rows(responses_path: str | Path, features_path: str | Path,
                     target_layer: int | str | None) -> tuple[DecodeRows, np.ndarray]:
    """A subject's training and scored images: (rows, fold of each row: -1 training, 0 scored)."""
    read = Responses.read(responses_path)
    ids = read.train_stimulus_id + read.test_stimulus_id
    brain = np.concatenate([np.concatenate([read_targets(responses_path, hemi, "train"),
                                            read_targets(responses_path, hemi, "test")])
                            for hemi in read.hemispheres], axis=1).astype(np.float64)
    train = np.arange(len(ids)) < len(read.train_stimulus_id)
    sd = brain[train].std(0)
    brain = ((brain - brain[train].mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)[:, :, None]
    embedding = target_embedding(features_path, ids, target_layer).astype(np.float32)
    return (DecodeRows(read.subject, np.asarray(ids), brain, embedding, np.asarray(ids)),
            np.where(train, -1, 0).astype(np.int64))


def decode_fmri(responses_paths: list[str | Path], features_paths: list[str | Path], out_paths: list[str | Path], *,
                model_name: str, spec: dict[str, Any], device: str = "auto") -> None:
    """Decode every subject's scored images from its training images (module docstring); one file per subject."""
    start = time.perf_counter()
    if not len(responses_paths) == len(features_paths) == len(out_paths):
        raise ValueError(f"need one features file and one output per responses file, got {len(responses_paths)}, "
                         f"{len(features_paths)} and {len(out_paths)}")
    parts = [fmri_decode_rows(r, f, spec.get("target_layer")) for r, f in zip(responses_paths, features_paths)]
    rows = {part.subject: part for part, _ in parts}
    fold = {part.subject: part_fold for part, part_fold in parts}
    family_spec = {key: value for key, value in spec.items() if key != "target_layer"}
    decoded = decode_by_folds(family_spec, rows, fold, device=device, checkpoint_dir=checkpoint_dir(out_paths[0]),
                              label=f"decode {model_name}")
    inputs = {"responses": [str(r) for r in responses_paths], "features": [str(f) for f in features_paths]}
    for (part, _), out, features in zip(parts, out_paths, features_paths):
        s = part.subject
        with h5py.File(features, "r") as h5:
            random_init = bool(h5.attrs.get("random_init", False))
        with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
            write_strings(h5, "stimulus_id", part.ids)
            h5["fold"] = decoded.fold[s]
            h5["window_s"] = np.zeros(1)
            h5["prediction"] = decoded.prediction[s]
            h5["actual"] = decoded.actual[s]
            for name, values in decoded.artifacts[s][0][0].items():
                h5[f"windows/0/folds/0/{name}"] = values
            h5.attrs.update(subject=s, model=model_name, family=spec["family"], spec=json.dumps(spec, sort_keys=True),
                            train_subjects=list(rows), inputs=json.dumps(inputs), random_init_features=random_init,
                            scheme="fixed_split")
    shutil.rmtree(checkpoint_dir(out_paths[0]), ignore_errors=True)
    log.info("decode %s (%s): %d subjects' scored images; %.1f s", model_name, spec["family"], len(parts),
             time.perf_counter() - start)

"""Step `decode-meg`: MEG in sliding windows -> the image embedding of the fixated foveal crop (fit.decode).

One job per decoding model decodes every training subject: a decoder of several subjects (clip_alignment) is
fitted on all of them at once, an encoding family run the other way (ridge) per subject; both on the same
folds, the split of the scenes of all subjects (`fit.meg.cohort_scenes`: a scene is never in training and test,
whoever saw it), and the same windows. Brain data are the gradiometers' epochs z-scored per sensor x time over
the subject's fixations (as fit-meg's targets). The target is the foveal crop's output embedding, or the
`global` token of `target_layer`.

A held-out subject (`decode_meg_heldout`) is decoded by models trained on the training subjects, in folds of its
scenes (fit-meg-heldout's scheme).

Output per subject (`results/decoding/meg/<sub>/<model>.h5`): `fixation_id`, `scene_id`, `fold` (n,);
`window_s` (W,) the windows' centres; `prediction` (W, n, d) float32, each row decoded by its fold's model of
its window; `actual` (n, d) the rows' embeddings in their fold's units (the retrieval candidates); each window
and fold's model arrays under `windows/<w>/folds/<k>/` (clip_alignment: weights, standardisation, loss curves;
ridge: its penalties under `state/`); attrs subject, model, family, spec (JSON), window_width_s, window_step_s,
train_subjects, inputs (JSON), random_init_features, scheme (`scene_cv`, `heldout_subject`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tbdencoder.data.meg import read_epochs
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.fit.decode import Decoded, DecodeRows, decode_by_folds, windows
from tbdencoder.fit.driver import checkpoint_dir, scene_folds
from tbdencoder.fit.meg import cohort_scenes, stream_stimulus_ids
from tbdencoder.io import atomic_path, get_logger, write_strings

log = get_logger("decode_meg")


def target_embedding(features_path: str | Path, stimulus_ids: list[str], target_layer: int | str | None) -> np.ndarray:
    """(n, d) the stimuli's output embedding, or the `global` token of `target_layer`."""
    if target_layer is None:
        return FeatureSet.load(features_path, stimulus_ids, [], [], embedding=True).embedding()
    return FeatureSet.load(features_path, stimulus_ids, [target_layer], ["global"]).flat()


def meg_decode_rows(epochs_path: str | Path, features_path: str | Path, target_layer: int | str | None) -> DecodeRows:
    """A subject's fixations with a foveal crop embedding: z-scored epochs and the embedding, by fixation id."""
    data, fixation_ids, _, fixations = read_epochs(epochs_path)
    with h5py.File(features_path, "r") as h5:
        have = set(h5["stimulus_id"].asstr()[:])
    keep = np.array([f"{i}_foveal" in have for i in fixation_ids])
    if not keep.any():
        raise ValueError(f"{features_path}: no foveal crop features for any fixation of {epochs_path}")
    if not keep.all():
        log.warning("%s: %d of %d fixations have no foveal crop features; left out", epochs_path,
                    int((~keep).sum()), len(keep))
    with h5py.File(epochs_path, "r") as h5:
        subject = str(h5.attrs["subject"])
    ids = np.asarray(fixation_ids)[keep]
    brain = data[keep].astype(np.float64)
    sd = brain.std(0)
    brain = ((brain - brain.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)
    embedding = target_embedding(features_path, stream_stimulus_ids(ids, "foveal"), target_layer)
    return DecodeRows(subject, ids, brain, embedding.astype(np.float32),
                      fixations["sceneID"].astype(str).to_numpy()[keep])


def decode_meg(epochs_paths: list[str | Path], features_paths: list[str | Path], out_paths: list[str | Path], *,
               model_name: str, spec: dict[str, Any], window_s: float, step_s: float, device: str = "auto") -> None:
    """Decode every subject's fixations window by window (module docstring); one output file per subject."""
    start = time.perf_counter()
    epochs, features = [str(e) for e in epochs_paths], [str(f) for f in features_paths]
    if not len(epochs) == len(features) == len(out_paths):
        raise ValueError(f"need one features file and one output per epochs file, got {len(epochs)} epochs, "
                         f"{len(features)} features files and {len(out_paths)} outputs")
    parts = [meg_decode_rows(e, f, spec.get("target_layer")) for e, f in zip(epochs, features)]
    groups = np.concatenate([part.groups for part in parts])
    folds = scene_folds(groups, groups, spec["outer_folds"], spec["inner_folds"], spec["seed"], "decode",
                        cohort_scenes(epochs))
    fold = _row_folds(parts, [~f.train for f in folds])
    decoded, spans = _decode(parts, fold, None, epochs[0], model_name, spec, window_s, step_s, device, out_paths[0])
    inputs = {"epochs": epochs, "features": features}
    for part, out in zip(parts, out_paths):
        _write(out, part, decoded, spans, model_name, spec, window_s, step_s, inputs, [p.subject for p in parts],
               "scene_cv")
    shutil.rmtree(checkpoint_dir(out_paths[0]), ignore_errors=True)
    log.info("decode %s (%s): %d subjects, %d windows of %.3f s, %d folds; %.1f s", model_name, spec["family"],
             len(parts), len(spans), window_s, len(folds), time.perf_counter() - start)


def decode_meg_heldout(train_epochs: list[str | Path], train_features: list[str | Path], epochs_path: str | Path,
                       features_path: str | Path, out_path: str | Path, *, model_name: str, spec: dict[str, Any],
                       window_s: float, step_s: float, device: str = "auto") -> None:
    """A subject never trained on, decoded window by window by models trained on the training subjects: its
    scenes split into outer folds, each decoded by models trained without any fixation on the fold's scenes
    (fit-meg-heldout's scheme). clip_alignment reads it out by the mean subject layer; a per-subject family
    (ridge) is fitted on the training subjects' rows pooled."""
    start = time.perf_counter()
    target_layer = spec.get("target_layer")
    parts = [meg_decode_rows(e, f, target_layer) for e, f in zip(train_epochs, train_features)]
    target = meg_decode_rows(epochs_path, features_path, target_layer)
    if target.subject in {part.subject for part in parts}:
        raise ValueError(f"{epochs_path}: subject {target.subject} is also a training subject")
    pool = np.concatenate([part.groups for part in parts])
    folds = scene_folds(target.groups, pool, spec["outer_folds"], spec["inner_folds"], spec["seed"], target.subject)
    fold = _row_folds(parts, [~f.train for f in folds])
    fold[target.subject] = np.full(len(target.ids), -1, np.int64)
    for k, f in enumerate(folds):
        fold[target.subject][f.predict] = k
    decoded, spans = _decode([*parts, target], fold, target.subject, str(epochs_path), model_name, spec, window_s,
                             step_s, device, out_path)
    inputs = {"epochs": [str(epochs_path)], "features": [str(features_path)],
              "train_epochs": [str(e) for e in train_epochs], "train_features": [str(f) for f in train_features]}
    _write(out_path, target, decoded, spans, model_name, spec, window_s, step_s, inputs, [p.subject for p in parts],
           "heldout_subject")
    shutil.rmtree(checkpoint_dir(out_path), ignore_errors=True)
    log.info("decode %s (%s): held-out %s from %d subjects, %d windows, %d folds; %.1f s", model_name,
             spec["family"], target.subject, len(parts), len(spans), len(folds), time.perf_counter() - start)


def _row_folds(parts: list[DecodeRows], held: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per subject, the fold of each row: k where the k-th mask over the stacked rows holds it, else -1."""
    fold = np.full(sum(len(part.ids) for part in parts), -1, np.int64)
    for k, mask in enumerate(held):
        fold[mask] = k
    bounds = np.cumsum([0, *(len(part.ids) for part in parts)])
    return {part.subject: fold[bounds[i]:bounds[i + 1]] for i, part in enumerate(parts)}


def _decode(parts: list[DecodeRows], fold: dict[str, np.ndarray], heldout: str | None, epochs_path: str,
            model_name: str, spec: dict[str, Any], window_s: float, step_s: float, device: str,
            out_path: str | Path) -> tuple[Decoded, list]:
    _, _, times, _ = read_epochs(epochs_path)
    spans = windows(times, window_s, step_s)
    family_spec = {**{key: value for key, value in spec.items() if key not in ("outer_folds", "inner_folds",
                                                                              "target_layer")},
                   "cv_folds": spec["inner_folds"]}
    decoded = decode_by_folds(family_spec, {part.subject: part for part in parts}, fold,
                              [index for _, index in spans], heldout=heldout, device=device,
                              checkpoint_dir=checkpoint_dir(out_path), label=f"decode {model_name}")
    return decoded, spans


def _write(out: str | Path, part: DecodeRows, decoded: Decoded, spans: list, model_name: str, spec: dict[str, Any],
           window_s: float, step_s: float, inputs: dict[str, Any], train_subjects: list[str], scheme: str) -> None:
    s = part.subject
    random_init = False
    for path in inputs["features"]:
        with h5py.File(path, "r") as h5:
            random_init |= bool(h5.attrs.get("random_init", False))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        write_strings(h5, "fixation_id", part.ids)
        write_strings(h5, "scene_id", part.groups)
        h5["fold"] = decoded.fold[s]
        h5["window_s"] = np.array([centre for centre, _ in spans])
        h5["prediction"] = decoded.prediction[s]
        h5["actual"] = decoded.actual[s]
        for w, per_fold in enumerate(decoded.artifacts[s]):
            for k, arrays in enumerate(per_fold):
                for name, values in arrays.items():
                    h5[f"windows/{w}/folds/{k}/{name}"] = values
        h5.attrs.update(subject=s, model=model_name, family=spec["family"], spec=json.dumps(spec, sort_keys=True),
                        window_width_s=window_s, window_step_s=step_s, train_subjects=train_subjects,
                        inputs=json.dumps(inputs), random_init_features=random_init, scheme=scheme)

"""The decoding direction: brain data -> the embedding of the stimulus seen, out of fold, for any decoder.

Rows, per subject (`DecodeRows`): brain data (n, C, T) and the embedding (n, d) of each row's stimulus (MEG: the
foveal crop's, fMRI: the image's), with each row's group (scene / image). A fold's rows are decoded by models
trained on the rows of the other folds (`fold`: each row's fold; -1 for rows only trained on, fMRI's training
images). Decoders:

- a family that `decodes` (clip_alignment): one model fitted on every subject's training rows at once;
- any single-subject encoding family, run the other way (ridge: the anchor's linear baseline, brain -> embedding
  with a penalty per embedding dimension): per subject, the brain data flattened as one feature block.

The embedding's columns are z-scored over each fold's training rows (all subjects); the fold's rows, in those
units, are the candidates of retrieval (evaluate.retrieval), the same for every decoder. MEG: brain data in
windows of `window_s` every `step_s` (`windows`), each decoded on its own: a decoding time course.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tbdencoder.features.featureset import FeatureSet
from tbdencoder.io import get_logger
from tbdencoder.models.base import FAMILIES, build_encoder

log = get_logger("decode")


@dataclass
class DecodeRows:
    """One subject's rows of a decoding problem."""

    subject: str
    ids: np.ndarray  # (n,) str: fixation or stimulus ids
    brain: np.ndarray  # (n, C, T) float32
    embedding: np.ndarray  # (n, d) float32, as extracted
    groups: np.ndarray  # (n,) str: scene or image of each row


@dataclass
class Decoded:
    """Out-of-fold decoded embeddings per subject: `prediction` (W, n, d) per window, `actual` (n, d) the rows'
    embeddings in their fold's units (the candidates), `fold` (n,); per window and fold, the models' artifacts."""

    prediction: dict[str, np.ndarray]
    actual: dict[str, np.ndarray]
    fold: dict[str, np.ndarray]
    artifacts: dict[str, list[list[dict[str, np.ndarray]]]]  # subject -> [window][fold] -> arrays


def windows(times: np.ndarray, width_s: float, step_s: float) -> list[tuple[float, np.ndarray]]:
    """(centre in s, sample indices) of windows of round(width_s x rate) samples starting at the samples nearest
    to the first sample + j x step_s, inside the epoch; the centre is the mean of the window's sample times."""
    times = np.asarray(times, np.float64)
    dt = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    n = max(1, int(np.floor(width_s / dt + 0.5 + 1e-9)))
    if n > len(times):
        raise ValueError(f"a window of {width_s} s does not fit in the epoch ({times[0]:.3f} .. {times[-1]:.3f} s)")
    out, j = [], 0
    while (first := int(np.floor(j * step_s / dt + 0.5 + 1e-9))) + n <= len(times):
        index = np.arange(first, first + n)
        out.append((float(times[index].mean()), index))
        j += 1
    return out


def decodes(spec: dict[str, Any]) -> bool:
    """Whether the spec's family is a decoder of several subjects (else an encoding family run per subject)."""
    return bool(getattr(FAMILIES[spec["family"]], "decodes", False))


def decode_by_folds(spec: dict[str, Any], rows: dict[str, DecodeRows], fold: dict[str, np.ndarray],
                    window_samples: list[np.ndarray] | None = None, *, heldout: str | None = None,
                    device: str = "auto", checkpoint_dir: str | Path | None = None, label: str = "") -> Decoded:
    """Every window's (default: all samples, one window) out-of-fold embeddings of every subject's rows; with
    `heldout`, of that subject's rows only, by models trained on the other subjects' rows outside the fold (a
    decoder of several subjects reads it out by its new-subject rule; any other family is fitted on the other
    subjects' rows pooled)."""
    subjects = list(rows)
    n_times = rows[subjects[0]].brain.shape[2]
    window_samples = [np.arange(n_times)] if window_samples is None else window_samples
    folds = sorted({int(k) for s in subjects for k in np.unique(fold[s]) if k >= 0})
    d = rows[subjects[0]].embedding.shape[1]
    prediction = {s: np.zeros((len(window_samples), len(fold[s]), d), np.float32) for s in subjects}
    actual = {s: np.zeros((len(fold[s]), d), np.float32) for s in subjects}
    artifacts = {s: [[] for _ in window_samples] for s in subjects}
    for k in folds:
        train = {s: (fold[s] != k) & (s != heldout) for s in subjects}
        test = {s: fold[s] == k for s in subjects if heldout in (None, s)}
        pooled = np.concatenate([rows[s].embedding[train[s]] for s in subjects]).astype(np.float64)
        mean, sd = pooled.mean(0), pooled.std(0)
        sd = np.where(sd > 0, sd, 1.0)
        embedding = {s: ((rows[s].embedding - mean) / sd).astype(np.float32) for s in subjects}
        for s in test:
            actual[s][test[s]] = embedding[s][test[s]]
        for w, samples in enumerate(window_samples):
            checkpoint = None if checkpoint_dir is None else Path(checkpoint_dir) / f"window{w}_fold{k}"
            decoded, arrays = _fit_window(spec, rows, embedding, train, test, samples, device, checkpoint)
            for s in test:
                prediction[s][w][test[s]] = decoded[s]
                artifacts[s][w].append(arrays[s])
        log.info("%s fold %d/%d: %s, %d window(s), %s training rows", label, k + 1, len(folds), spec["family"],
                 len(window_samples), "+".join(str(int(train[s].sum())) for s in subjects))
    return Decoded(prediction, actual, {s: np.asarray(fold[s], np.int64) for s in subjects}, artifacts)


def _fit_window(spec: dict[str, Any], rows: dict[str, DecodeRows], embedding: dict[str, np.ndarray],
                train: dict[str, np.ndarray], test: dict[str, np.ndarray], samples: np.ndarray, device: str,
                checkpoint: Path | None) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """One window of one fold: the test rows of each subject in `test` decoded, and its model arrays."""
    brain = {s: rows[s].brain[:, :, samples] for s in rows}
    trained = [s for s in rows if train[s].any()]
    if decodes(spec):
        model = build_encoder(spec, device, None if checkpoint is None else checkpoint.with_suffix(".pt"))
        model.fit({s: brain[s][train[s]] for s in trained}, {s: embedding[s][train[s]] for s in trained},
                  groups={s: rows[s].groups[train[s]] for s in trained})
        decoded = model.predict({s: brain[s][test[s]] for s in test})
        arrays = {**model.artifacts(), **{f"state/{key}": value for key, value in model.state().items()}}
        return decoded, {s: arrays for s in test}
    decoded, arrays = {}, {}
    for s in test:
        sources = [s] if s in trained else trained  # a subject never trained on: the others' rows pooled
        model = build_encoder(spec, device)
        model.fit(FeatureSet.stack([brain_features(brain[t][train[t]]) for t in sources]),
                  np.concatenate([embedding[t][train[t]] for t in sources]),
                  groups=np.concatenate([rows[t].groups[train[t]] for t in sources]))
        decoded[s] = np.asarray(model.predict(brain_features(brain[s][test[s]])), np.float32)
        arrays[s] = {f"state/{key}": np.asarray(value) for key, value in model.state().items()}
    return decoded, arrays


def brain_features(brain: np.ndarray) -> FeatureSet:
    """Brain data (n, C, T) as the one feature block an encoding family reads (channel-major)."""
    return FeatureSet(["brain"], [np.ascontiguousarray(brain.reshape(len(brain), -1), dtype=np.float32)], [None])


def reload_decoder(spec: dict[str, Any], arrays: dict[str, np.ndarray], subjects: list[str]):
    """A decoder of several subjects (a family that `decodes`) rebuilt from one window and fold's stored arrays
    (`windows/<w>/folds/<k>/` of a decoding file) for `subjects`, the subjects it was fitted on, in order."""
    if not decodes(spec):
        raise ValueError(f"family {spec['family']!r} is run per subject as a decoder and keeps only its state; "
                         "rebuilding it needs its training rows")
    return FAMILIES[spec["family"]].reload({k: v for k, v in spec.items() if k != "target_layer"},
                                           {k: v for k, v in arrays.items() if not k.startswith("state/")}, subjects)

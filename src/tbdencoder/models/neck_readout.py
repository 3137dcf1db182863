"""The All-for-One recipe's model (seed 001; huzeyann/MemoryEncodingModel's modules, written anew): a frozen
retinotopic neck, a channel alignment and a readout per vertex, for any group of vertices of several subjects.

- The neck: each vertex's space and layer selection from a fitted FactorTopy model (its fits files, one per
  subject: `space_x`, `space_y`, `layer_weights`), frozen, as MemoryEncodingModel freezes its pretrained
  retina mapper and layer selector in every later model ("necessary to avoid collapsing during the soup").
  The vertex's scale (the global token's share) starts at the neck's and is trained.
- Trained: FactorTopy's per-layer channel alignment (`width` channels, shared by the subjects) and each vertex's
  readout. One model serves one group of vertices (`targets[s]["vertices"]`, indices into the hemisphere's
  vertices; default all): a small model of the recipe, its whole-brain model or its student.
- Top-k epochs (`keep_top_k`): the weights of the k best epochs by validation loss are kept for the soup
  (`soup_weights`, the uniform mean MemoryEncodingModel's small models use).
- Distillation (`teacher_epochs` > 0, the student): targets[s]["teacher"] holds a teacher's predictions of the
  training rows (targets' units); the loss is `losses.Distillation` (smooth L1 to the data and to the teacher, the
  teacher's weight falling linearly from 1 to 0 over `teacher_epochs`); validation compares with the data alone.

A fitted model keeps per vertex what FactorTopy keeps (`space_x`, `space_y`, `layer_weights`, `scale`, the
readout, the targets' moments) and the aligner, so it reloads as FactorTopy's one-subject predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from tbdencoder.config import family_defaults
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.models import trainer
from tbdencoder.models.base import register
from tbdencoder.models.factortopy import (Aligner, MapRows, SubjectRows, TopographicSubject, layer_blocks, predict_rows,
                                          read_vertices, readout, set_channel_moments)
from tbdencoder.models.trainer import TrainSettings

DEFAULTS = family_defaults("neck_readout")
NECK_KEYS = ("space_x", "space_y", "layer_weights", "scale")


def read_neck(path: str | Path, subject: str, hemisphere: str, layers: list[str]) -> dict[str, np.ndarray]:
    """A subject's per-vertex selections from a FactorTopy fits file, checked: a factortopy fit of that subject
    and hemisphere over the same layers."""
    with h5py.File(path, "r") as h5:
        attrs = dict(h5.attrs)
        found = (attrs.get("family"), attrs.get("subject"), attrs.get("hemisphere"))
        if found != ("factortopy", subject, hemisphere) or any(key not in h5 for key in NECK_KEYS):
            raise ValueError(f"{path}: expected the fits file of a factortopy model of {subject} {hemisphere} (the "
                             f"neck, with {list(NECK_KEYS)}); found family/subject/hemisphere {found}")
        neck_layers = [name.rsplit("/", 1)[0] for name in h5["feature_blocks"].asstr()[:]]
        if list(dict.fromkeys(neck_layers)) != layers:
            raise ValueError(f"{path}: the neck selects among layers {list(dict.fromkeys(neck_layers))}, the model "
                             f"reads {layers}; give both the same backbone and layers")
        return {key: h5[key][:] for key in NECK_KEYS}


class NeckReadoutNetwork(nn.Module):
    """The aligner, each subject's frozen space and layer selection (buffers), trained scales and readouts."""

    def __init__(self, map_channels: list[int], global_channels: list[int], necks: list[dict[str, np.ndarray]],
                 width: int):
        super().__init__()
        self.aligner = Aligner(map_channels, global_channels, width)
        for s, neck in enumerate(necks):
            space = np.stack([neck["space_x"], neck["space_y"]], 1) * 2 - 1
            self.register_buffer(f"space_{s}", torch.as_tensor(space, dtype=torch.float32))
            self.register_buffer(f"layer_{s}", torch.as_tensor(neck["layer_weights"], dtype=torch.float32))
        scales = [torch.as_tensor(np.clip(neck["scale"], 1e-4, 1 - 1e-4), dtype=torch.float32) for neck in necks]
        self.scale_logit = nn.ParameterList(nn.Parameter(torch.logit(scale)) for scale in scales)
        self.readout_weight = nn.ParameterList(nn.Parameter(nn.Linear(width, len(neck["scale"])).weight.detach().clone())
                                               for neck in necks)
        self.readout_bias = nn.ParameterList(nn.Parameter(torch.zeros(len(neck["scale"]))) for neck in necks)

    def selection(self, s: int) -> dict[str, torch.Tensor]:
        return {"space": getattr(self, f"space_{s}"), "layer": getattr(self, f"layer_{s}"),
                "scale": torch.sigmoid(self.scale_logit[s])}

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions and targets of the batch's subjects, flattened one after another; a target of width 2V
        (data, teacher) gives a (2, n) target stack for the distillation loss."""
        maps, globals_ = self.aligner(batch["maps"], batch["globals"])
        predictions, targets = [], []
        for key, rows in batch["rows"].items():
            s = int(key)
            chosen = self.selection(s)
            v = read_vertices([m[rows] for m in maps], [g[rows] for g in globals_], chosen["space"], chosen["layer"],
                              chosen["scale"])
            prediction = readout(v, self.readout_weight[s], self.readout_bias[s])
            y = batch["y"][key]
            predictions.append(prediction.flatten())
            targets.append(y.reshape(len(y), -1, prediction.shape[1]).transpose(0, 1).flatten(1))
        return torch.cat(predictions), torch.cat(targets, dim=1).squeeze(0)


def _forward(network: NeckReadoutNetwork, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return network(batch)


def soup_weights(members: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform soup: every weight averaged over the members (module states of one architecture)."""
    if not members:
        raise ValueError("a soup needs at least one member's weights")
    return {name: torch.stack([m[name].to(torch.float32) for m in members]).mean(0) for name in members[0]}


@register("neck_readout")
class NeckReadout:
    """The All-for-One recipe's model over a frozen FactorTopy neck; see the module docstring.

    Parameters (defaults: the params schema's `$defs.families.neck_readout`)
    ----------
    neck : the model whose fits (FactorTopy) hold the selections; `from_fits[neck]`: one fits file per subject.
    width, smooth_l1_beta, learning_rate, weight_decay, batch_size, max_epochs, patience, validation_fraction,
    in_memory_gb : as FactorTopy's.
    keep_top_k : the k best epochs' weights kept for the soup (0: none).
    teacher_epochs : with a teacher (targets[s]["teacher"]), the epochs over which its weight falls to 0.
    """

    many_subjects = True

    def __init__(self, neck: str, width: int = DEFAULTS["width"], smooth_l1_beta: float = DEFAULTS["smooth_l1_beta"],
                 learning_rate: float = DEFAULTS["learning_rate"], weight_decay: float = DEFAULTS["weight_decay"],
                 batch_size: int = DEFAULTS["batch_size"], max_epochs: int = DEFAULTS["max_epochs"],
                 patience: int = DEFAULTS["patience"], validation_fraction: float = DEFAULTS["validation_fraction"],
                 keep_top_k: int = DEFAULTS["keep_top_k"], teacher_epochs: int = DEFAULTS["teacher_epochs"],
                 in_memory_gb: float = DEFAULTS["in_memory_gb"], seed: int = 0, device: str = "auto",
                 checkpoint: str | Path | None = None, from_fits: dict[str, Any] | None = None):
        necks = (from_fits or {}).get(neck)
        if necks is None:
            raise ValueError(f"neck_readout reads its neck {neck!r} from from_fits (one FactorTopy fits file per "
                             f"subject); got fits of {sorted(from_fits or {})}")
        self.neck, self.neck_files = neck, [necks] if isinstance(necks, str) else list(necks)
        self.width, self.smooth_l1_beta, self.validation_fraction = width, smooth_l1_beta, validation_fraction
        self.teacher_epochs, self.in_memory_gb = teacher_epochs, in_memory_gb
        self.seed, self.device, self.checkpoint = seed, device, checkpoint
        self.settings = TrainSettings(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, seed=seed, keep_top_k=keep_top_k,
                                      validation_batch_size=batch_size)

    def _necks(self, layers: list[str], targets: dict[str, dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        """Each subject's neck, restricted to its vertices (`targets[s]["vertices"]`)."""
        by_subject = {}
        for path in self.neck_files:
            with h5py.File(path, "r") as h5:
                by_subject[str(h5.attrs.get("subject"))] = path
        necks = []
        for s in self.subjects_:
            if s not in by_subject:
                raise ValueError(f"neck {self.neck!r}: no fits file of subject {s} among {self.neck_files}")
            neck = read_neck(by_subject[s], s, str(targets[s]["hemisphere"]), layers)
            vertices = targets[s].get("vertices")
            necks.append(neck if vertices is None else {key: value[vertices] for key, value in neck.items()})
        return necks

    def setup(self, X: FeatureSet, subjects: list[str], targets: dict[str, dict[str, Any]]) -> MapRows:
        """The untrained network for `subjects` (their necks, restricted to `targets[s]["vertices"]`) over X's
        layers; X's rows (in memory when small enough) are returned. `fit` starts here; a soup loads weights
        into it (`load_weights`)."""
        self.subjects_ = list(subjects)
        self.layers_, features = layer_blocks(X)
        if features.nbytes <= self.in_memory_gb * 2**30:
            features = features.in_memory()
        necks = self._necks(self.layers_, targets)
        self.n_vertices_ = [len(neck["scale"]) for neck in necks]
        torch.manual_seed(self.seed)
        self.network_ = NeckReadoutNetwork([shape[2] for shape in features.map_shapes],
                                           [block.shape[1] for block in features.globals], necks, self.width)
        return features

    def fit(self, X: FeatureSet, Y: dict[str, np.ndarray], *, groups: np.ndarray | None = None, subjects: np.ndarray,
            targets: dict[str, dict[str, Any]]) -> "NeckReadout":
        """Fit every subject's vertices (or its group of them) at once; X stacks the subjects' rows."""
        features = self.setup(X, list(Y), targets)
        for s, n_vertices in zip(self.subjects_, self.n_vertices_):
            if n_vertices != Y[s].shape[1]:
                raise ValueError(f"subject {s}: {Y[s].shape[1]} targets but the neck selects {n_vertices} vertices")
        rows = SubjectRows.of(subjects, Y, self.subjects_)
        self.y_moments_ = rows.moments
        distilled = self.teacher_epochs > 0
        if distilled:  # each subject's targets become (data, teacher) side by side, both standardised alike
            rows.ys = [np.concatenate([y, self._teacher(s, targets, Y[s])], 1)
                       for s, y in zip(self.subjects_, rows.ys)]
        set_channel_moments(self.network_.aligner, features)
        data = rows.split(features, groups, self.validation_fraction, self.seed)
        loss = (("distillation", 1.0, {"teacher_epochs": self.teacher_epochs, "beta": self.smooth_l1_beta})
                if distilled else ("smooth_l1", 1.0, {"beta": self.smooth_l1_beta}))
        result = trainer.train_on(self.network_, *data, self.settings, forward=_forward, loss=[loss],
                                  device=self.device, checkpoint=self.checkpoint,
                                  label=f"neck_readout {len(self.subjects_)} subject(s)")
        self.curves_ = {"train_loss": result.train_loss, "validation_loss": result.validation_loss,
                        "best_epoch": np.asarray(result.best_epoch)}
        self.top_k_ = [(epoch, float(result.validation_loss[epoch]), weights)
                       for epoch, weights in zip(result.top_k_epochs, result.top_k_weights)]
        return self

    def _teacher(self, s: str, targets: dict[str, dict[str, Any]], y: np.ndarray) -> np.ndarray:
        if "teacher" not in targets[s]:
            raise ValueError(f"teacher_epochs = {self.teacher_epochs} but subject {s} has no teacher predictions "
                             "(targets[s]['teacher'])")
        teacher = np.asarray(targets[s]["teacher"], np.float32)
        if teacher.shape != y.shape:
            raise ValueError(f"subject {s}: the teacher predicts {teacher.shape}, the training targets are {y.shape}")
        mean, sd = self.y_moments_[s]
        return (teacher - mean) / sd

    def load_weights(self, weights: dict[str, torch.Tensor], y_moments: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Weights of this architecture (a kept epoch's, a soup) and each subject's target moments into the
        network `setup` built."""
        self.network_.load_state_dict(weights)
        self.y_moments_ = dict(y_moments)

    def _selection(self, i: int) -> dict[str, np.ndarray]:
        chosen = {key: value.detach().numpy() for key, value in self.network_.selection(i).items()}
        mean, sd = self.y_moments_[self.subjects_[i]]
        return {"space_x": (chosen["space"][:, 0] + 1) / 2, "space_y": (chosen["space"][:, 1] + 1) / 2,
                "layer_weights": chosen["layer"], "scale": chosen["scale"],
                "readout_weight": self.network_.readout_weight[i].detach().numpy(),
                "readout_bias": self.network_.readout_bias[i].detach().numpy(), "y_mean": mean, "y_scale": sd}

    def predict(self, X: FeatureSet, *, subjects: np.ndarray,
                targets: dict[str, dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """Per fitted subject of `subjects`: its rows' predictions (targets' units)."""
        subjects = np.asarray(subjects)
        _, features = layer_blocks(X)
        unknown = sorted(set(subjects) - set(self.subjects_))
        if unknown:
            raise ValueError(f"neck_readout predicts the subjects it was fitted on {self.subjects_}, not {unknown}")
        with torch.no_grad():
            return {s: predict_rows(self.network_.aligner, features, np.flatnonzero(subjects == s),
                                    self._selection(self.subjects_.index(s)))
                    for s in dict.fromkeys(subjects)}

    def subject_state(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Per vertex: the neck's space and layer selection, the trained scale and readout, the targets' moments."""
        with torch.no_grad():
            return self._selection(self.subjects_.index(subject))

    def subject_artifacts(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The aligner (weights and moments) and the loss curves."""
        weights = {f"weights/{name}": value.numpy() for name, value in self.network_.state_dict().items()
                   if name.startswith("aligner.")}
        return {**weights, **self.curves_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet, Y: np.ndarray, device: str = "auto",
               from_fits: dict[str, Any] | None = None) -> TopographicSubject:
        """One subject's model from its fits file: FactorTopy's predictor over the stored per-vertex state."""
        return TopographicSubject(state, X)


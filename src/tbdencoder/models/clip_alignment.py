"""Seed 000's idea 6, after Benchetrit, Banville & King (ICLR 2024): brain data -> the frozen image embedding.

The decoding direction: the input is a subject's brain data x (C_s channels x T samples: MEG sensors over a
time window; fMRI vertices, T = 1), the output the stimulus's embedding (d,), as in brainmagick's brain module:

- a subject layer (brainmagick `SubjectLayers`): x -> W_s^T x, one (C_s x D) matrix per subject, picked by the
  subject of the row; subjects may have different channels (fMRI vertex sets); every subject's starts from the
  same matrix, so that trained layers stay comparable and their mean reads out a new subject;
- a temporal convolution over the D shared channels (kernel `kernel_size`, GELU; MEG only, T > 1);
- a learned affine aggregation over time (T -> 1, the anchor's "temporal aggregation");
- a projection head to d: linear, or an MLP (`hidden_units`, GELU, `dropout`).

Trained on the shared trainer with `clip_weight` x CLIP (symmetric InfoNCE, learned temperature) + (1 -
`clip_weight`) x MSE, the anchor's mix (0.75), early stopping on a validation split grouped by scene / image.
Inputs are standardised per subject and channel x time over its training rows; the targets come standardised per
dimension (the decoding driver's job, fit.decode), and predictions are in those units. A subject not trained on
is read out by the mean of the subject layers (the seed's rule), on the channels every training subject has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tbdencoder.config import family_defaults
from tbdencoder.models.base import register
from tbdencoder.models.losses import build_loss
from tbdencoder.models.mlp import validation_split
from tbdencoder.models.subject_adapters import StandardisedRows, column_moments
from tbdencoder.models import trainer
from tbdencoder.models.train_data import SubjectsData
from tbdencoder.models.trainer import TrainSettings

DEFAULTS = family_defaults("clip_alignment")


class AlignmentNetwork(nn.Module):
    """Subject layers -> temporal convolution -> aggregation over time -> projection head (module docstring)."""

    def __init__(self, widths: list[int], times: int, channels: int, kernel_size: int, head: str, hidden_units: int,
                 dropout: float, n_out: int):
        super().__init__()
        start = torch.randn(max(widths), channels)  # one start for every subject: their layers stay comparable
        self.subject_layers = nn.ParameterList([nn.Parameter(start[:width].clone() / width**0.5) for width in widths])
        self.temporal = (nn.Sequential(nn.Conv1d(channels, channels, kernel_size, padding="same"), nn.GELU())
                         if times > 1 else nn.Identity())
        self.aggregate = nn.Linear(times, 1)
        self.head = (nn.Linear(channels, n_out) if head == "linear" else
                     nn.Sequential(nn.Linear(channels, hidden_units), nn.GELU(), nn.Dropout(dropout),
                                   nn.Linear(hidden_units, n_out)))

    def forward(self, batch: dict) -> torch.Tensor:
        """(b, d) for a batch of SubjectsData with the embedding as `x` and the brain data per subject as `y`:
        every row through its subject's layer, then the shared part."""
        h = None
        for key, x in batch["y"].items():
            part = self.subject_layer(x, self.subject_layers[int(key)])
            if h is None:
                h = part.new_zeros((len(batch["x"]), *part.shape[1:]))
            h = h.index_copy(0, batch["rows"][key], part)
        return self.shared(h)

    def shared(self, h: torch.Tensor) -> torch.Tensor:
        """(b, d) from the subject layers' output h (b, D, T)."""
        return self.head(self.aggregate(self.temporal(h)).squeeze(-1))

    def subject_layer(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(b, D, T) from x (b, C_s, T) and a subject's (C_s, D) matrix."""
        return torch.einsum("bct,cd->bdt", x, weight)


def _forward(network: AlignmentNetwork, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The trainer's forward: the batch's decoded embeddings against its embeddings."""
    return network(batch), batch["x"]


def alignment_loss(clip_weight: float, temperature: float) -> list:
    """The anchor's objective as a trainer loss spec: CLIP (learned temperature) and MSE, weighted."""
    return [("clip", clip_weight, {"temperature": temperature}), ("mse", 1.0 - clip_weight)]


@register("clip_alignment")
class ClipAlignment:
    """Brain data -> image embedding with a CLIP + MSE objective; see the module docstring.

    Parameters (defaults: the params schema's `$defs.families.clip_alignment`)
    ----------
    channels : D, the shared channels the subject layers map to.
    kernel_size : the temporal convolution's width in samples (MEG).
    head : 'linear' or 'mlp' (hidden_units, dropout).
    clip_weight, temperature : the loss mix and the CLIP temperature's start.
    learning_rate, weight_decay, batch_size, max_epochs, patience, validation_fraction : the trainer's.
    seed, device, checkpoint : as the MLP head's.
    """

    many_subjects = True
    decodes = True

    def __init__(self, channels: int = DEFAULTS["channels"], kernel_size: int = DEFAULTS["kernel_size"],
                 head: str = DEFAULTS["head"], hidden_units: int = DEFAULTS["hidden_units"],
                 dropout: float = DEFAULTS["dropout"], clip_weight: float = DEFAULTS["clip_weight"],
                 temperature: float = DEFAULTS["temperature"], learning_rate: float = DEFAULTS["learning_rate"],
                 weight_decay: float = DEFAULTS["weight_decay"], batch_size: int = DEFAULTS["batch_size"],
                 max_epochs: int = DEFAULTS["max_epochs"], patience: int = DEFAULTS["patience"],
                 validation_fraction: float = DEFAULTS["validation_fraction"], seed: int = 0, device: str = "auto",
                 checkpoint: str | Path | None = None):
        self.channels, self.kernel_size, self.head = channels, kernel_size, head
        self.hidden_units, self.dropout = hidden_units, dropout
        self.clip_weight, self.temperature = clip_weight, temperature
        self.validation_fraction, self.seed, self.device, self.checkpoint = validation_fraction, seed, device, checkpoint
        # validation in batches of the training's size: the CLIP loss over a batch of B rows is on the scale of
        # log(B), and one batch of a large validation split would hold its whole brain data and a square matrix
        self.settings = TrainSettings(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, seed=seed,
                                      validation_batch_size=batch_size)

    def _network(self, widths: list[int], times: int, n_out: int) -> AlignmentNetwork:
        torch.manual_seed(self.seed)
        return AlignmentNetwork(widths, times, self.channels, self.kernel_size, self.head, self.hidden_units,
                                self.dropout, n_out)

    def fit(self, brain: dict[str, np.ndarray], embedding: dict[str, np.ndarray], *,
            groups: dict[str, np.ndarray] | None = None) -> "ClipAlignment":
        """Fit on every subject's rows: `brain[s]` (n_s, C_s, T), a numpy array or an h5py dataset read a batch at a
        time, `embedding[s]` (n_s, d) standardised, `groups[s]` the rows' scenes / images (the validation split
        never divides one, across subjects)."""
        self.subjects_ = list(brain)
        times = {brain[s].shape[2] for s in self.subjects_}
        if len(times) != 1:
            raise ValueError(f"every subject's brain data needs the same time samples, got {sorted(times)}")
        self.moments_ = {}
        xs = []
        for s in self.subjects_:
            data = brain[s]
            if isinstance(data, np.ndarray):
                mean, sd = data.mean(0, dtype=np.float64), data.std(0, dtype=np.float64)
            else:  # on disk (an h5py dataset): moments by blocks of rows, batches standardised as they are read
                mean, sd = (values.reshape(data.shape[1:]) for values in column_moments(data))
            self.moments_[s] = (mean.astype(np.float32), np.where(sd > 0, sd, 1.0).astype(np.float32))
            xs.append(self._standardise(s, data) if isinstance(data, np.ndarray) else
                      StandardisedRows(data, *self.moments_[s]))
        y = np.concatenate([np.asarray(embedding[s], np.float32) for s in self.subjects_])
        code = np.concatenate([np.full(len(x), i) for i, x in enumerate(xs)])
        row = np.concatenate([np.arange(len(x)) for x in xs])
        grouping = None if groups is None else np.concatenate([np.asarray(groups[s]).astype(str)
                                                                for s in self.subjects_])
        fit_rows, validation_rows = validation_split(len(y), self.validation_fraction, self.seed, grouping)
        self.network_ = self._network([x.shape[1] for x in xs], times.pop(), y.shape[1])
        loss = build_loss(alignment_loss(self.clip_weight, self.temperature))
        result = trainer.train_on(self.network_, SubjectsData(y[fit_rows], code[fit_rows], row[fit_rows], xs),
                                  SubjectsData(y[validation_rows], code[validation_rows], row[validation_rows], xs),
                                  self.settings, forward=_forward, loss=loss, device=self.device,
                                  checkpoint=self.checkpoint, label=f"clip_alignment {len(xs)} subjects")
        self.loss_ = loss
        self.curves_ = {"train_loss": result.train_loss, "validation_loss": result.validation_loss,
                        "best_epoch": np.asarray(result.best_epoch)}
        return self

    def _standardise(self, subject: str, x: np.ndarray) -> np.ndarray:
        mean, sd = self.moments_[subject]
        return ((np.asarray(x, np.float32) - mean) / sd).astype(np.float32)

    @torch.no_grad()
    def predict(self, brain: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """(n_s, d) standardised embedding per subject; a subject not trained on by the mean subject layer."""
        self.network_.eval()
        out = {}
        for s, x in brain.items():
            if s in self.subjects_:
                weight, z = self.network_.subject_layers[self.subjects_.index(s)], self._standardise(s, x)
            else:
                weight = torch.stack(list(self.network_.subject_layers)).mean(0)
                z = self._new_subject_standardise(np.asarray(x, np.float32))
            out[s] = self.network_.shared(self.network_.subject_layer(torch.as_tensor(z), weight)).numpy()
        return out

    def _new_subject_standardise(self, x: np.ndarray) -> np.ndarray:
        """A new subject's rows standardised over themselves (its training moments are unknown)."""
        sd = x.std(0)
        return ((x - x.mean(0)) / np.where(sd > 0, sd, 1.0)).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        return {"temperature": np.asarray(float(self.loss_.losses[0].log_temperature.detach().exp()))}

    def artifacts(self) -> dict[str, np.ndarray]:
        """The network's weights, each subject's standardisation and the loss curves."""
        arrays = {f"weights/{name}": value.numpy() for name, value in self.network_.state_dict().items()}
        for s in self.subjects_:
            arrays[f"moments/{s}/mean"], arrays[f"moments/{s}/sd"] = self.moments_[s]
        return {**arrays, **self.curves_}

    @classmethod
    def reload(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray], subjects: list[str]) -> "ClipAlignment":
        """The fitted model from its artifacts (weights checked to fit the architecture of `spec`)."""
        model = cls(**{k: v for k, v in spec.items() if k in DEFAULTS or k == "seed"})
        model.subjects_ = list(subjects)
        model.moments_ = {s: (arrays[f"moments/{s}/mean"], arrays[f"moments/{s}/sd"]) for s in subjects}
        weights = {name.removeprefix("weights/"): torch.as_tensor(value) for name, value in arrays.items()
                   if name.startswith("weights/")}
        widths = [len(weights[f"subject_layers.{i}"]) for i in range(len(subjects))]
        n_out = weights["head.weight" if model.head == "linear" else "head.3.weight"].shape[0]
        model.network_ = model._network(widths, weights["aggregate.weight"].shape[1], n_out)
        model.network_.load_state_dict(weights)
        return model

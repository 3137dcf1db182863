"""Seed 003, FactorTopy (Yang et al., CVPR 2024, "Brain Decodes Deep Nets"): one model of every vertex that reads,
for each vertex, one place of the image (space), a mix of layers (layer), of local and global tokens (scale) and
of channels (readout), each selector a smooth function of the vertex's position on the cortical sphere.

After the public code (huzeyann/BrainDecodesDeepNets, brainnet/model.py, plmodel.py), written anew:

- positions: the fsaverage sphere, both hemispheres in one frame (`data.cortex`), encoded by sinusoids at
  `n_frequencies` frequencies per axis (periods 1 .. 1000 steps; 100 steps over the frame's longest side,
  a fixed frame, so that every subject's vertices are encoded alike);
- selectors, each an MLP (encoding -> hidden -> hidden -> out, GELU, last layer zero at the start) shared by all
  vertices: space (tanh: an image position, x to the right, y down, starting at the centre), layer (softmax
  over layers, starting uniform), scale (sigmoid: the global token's share, starting at 0.5);
- per layer, a channel alignment to a shared `width` (a 1 x 1 convolution of the patch map, a linear map of
  the global token), after each channel is standardised over the training rows;
- per vertex: the bilinear sample of every aligned map at its space selector (`grid_sample`, zero outside the
  image), layers mixed by its layer selector, local and global mixed by its scale selector, and a readout
  (`width` weights averaged, a bias);
- loss: smooth L1 (beta 0.1) on the targets standardised per vertex; regulariser: sum_l p_l log p_l / log L
  (the negative normalised entropy of the layer selector, so minimising it RAISES the entropy: an early
  "do not collapse onto one layer" term, not a sparsity term) plus (scale - 0.5)^2, weighted by
  `regulariser_weight` decaying linearly to 0 over the first `regulariser_steps` optimiser steps, as the public
  code does; AdamW, early stopping on an image-grouped validation split, the shared trainer.

Several subjects: the targets of each subject are its vertices; the channel alignment is shared and the readouts
are per subject. With `selectors: per_subject` (the default, as MemoryEncodingModel keeps them) each subject has
its own selectors; with `shared`, one set serves every subject through its vertices' fsaverage positions. On the
topographic simulator, whose subjects' maps sit a few degrees apart on the sphere as real subjects' do,
per-subject selectors recover the centres and layers better (scripts/compare_factortopy_selectors.py,
docs/models.md). The patch maps come from the features file's `<layer>/map` blocks (tokens [global,
map]); training reads them into memory when they take at most `in_memory_gb`, else a batch of rows at a time from
the file (NSD with a ViT-B: 31 GB).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tbdencoder.config import family_defaults
from tbdencoder.data.cortex import HEMISPHERE_OFFSET
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.models import trainer
from tbdencoder.models.base import register
from tbdencoder.models.mlp import validation_split
from tbdencoder.models.subject_adapters import column_moments, read_rows
from tbdencoder.models.train_data import SubjectsData
from tbdencoder.models.trainer import TrainSettings

DEFAULTS = family_defaults("factortopy")
FRAME_LOW = (-1.0 - HEMISPHERE_OFFSET, -1.0, -1.0)  # the two-hemisphere frame of data.cortex
FRAME_HIGH = (1.0 + HEMISPHERE_OFFSET, 1.0, 1.0)
MAX_STEPS, PERIODS = 100.0, 1000.0
PREDICT_ROWS = 64  # rows per prediction batch


def sphere_encoding(positions: torch.Tensor, n_frequencies: int) -> torch.Tensor:
    """(V, 3 * 2 * n_frequencies) sines and cosines of positions (V, 3) in the fixed frame, at frequencies
    PERIODS^(-k / n) for k < n per step, with MAX_STEPS steps over the frame's longest side."""
    low = torch.tensor(FRAME_LOW, dtype=positions.dtype)
    extent = max(h - l for h, l in zip(FRAME_HIGH, FRAME_LOW))
    steps = (positions - low) * (MAX_STEPS / extent)
    omega = PERIODS ** (-torch.arange(n_frequencies, dtype=positions.dtype) / n_frequencies)
    angles = steps[..., None] * omega
    return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)


def _selector(n_in: int, hidden_units: int, n_out: int, squash: nn.Module) -> nn.Sequential:
    last = nn.Linear(hidden_units, n_out, bias=False)
    nn.init.zeros_(last.weight)  # every selector starts where its squashing function is centred
    return nn.Sequential(nn.Linear(n_in, hidden_units), nn.GELU(), nn.Linear(hidden_units, hidden_units), nn.GELU(),
                         last, squash)


class Selectors(nn.Module):
    """Space (V, 2) in [-1, 1] (x right, y down), layer weights (V, L) and scale (V,) of vertices' encodings."""

    def __init__(self, n_in: int, hidden_units: int, n_layers: int):
        super().__init__()
        self.space = _selector(n_in, hidden_units, 2, nn.Tanh())
        self.layer = _selector(n_in, hidden_units, n_layers, nn.Softmax(dim=-1))
        self.scale = _selector(n_in, hidden_units, 1, nn.Sigmoid())

    def forward(self, encoding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.space(encoding), self.layer(encoding), self.scale(encoding)[:, 0]


def selector_regulariser(layer: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The public code's term: mean_v sum_l p log p / log L (negative normalised entropy) + mean (scale - 0.5)^2."""
    entropy_term = (layer * torch.log(layer + 1e-8)).sum(-1).mean() / math.log(max(layer.shape[1], 2))
    return entropy_term + (scale - 0.5).pow(2).mean()


class Aligner(nn.Module):
    """Per layer: channels standardised (training-row moments, buffers) and aligned to `width` channels."""

    def __init__(self, map_channels: list[int], global_channels: list[int], width: int):
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(c, width, bias=False) for c in map_channels)
        self.globals = nn.ModuleList(nn.Linear(c, width, bias=False) for c in global_channels)
        for name, channels in (("map", map_channels), ("global", global_channels)):
            for k, c in enumerate(channels):
                self.register_buffer(f"{name}_mean_{k}", torch.zeros(c))
                self.register_buffer(f"{name}_scale_{k}", torch.ones(c))

    def forward(self, maps: list[torch.Tensor], globals_: list[torch.Tensor]) -> tuple[list, list]:
        """maps (b, h, w, C_l) -> (b, width, h, w); global tokens (b, C_l) -> (b, width)."""
        out_maps = [self.maps[k]((m - getattr(self, f"map_mean_{k}")) / getattr(self, f"map_scale_{k}")).permute(0, 3, 1, 2)
                    for k, m in enumerate(maps)]
        out_globals = [self.globals[k]((g - getattr(self, f"global_mean_{k}")) / getattr(self, f"global_scale_{k}"))
                       for k, g in enumerate(globals_)]
        return out_maps, out_globals


def read_vertices(maps: list[torch.Tensor], globals_: list[torch.Tensor], space: torch.Tensor, layer: torch.Tensor,
                  scale: torch.Tensor) -> torch.Tensor:
    """(b, V, width): each vertex's aligned features, sampled at its space (bilinear, zero outside the image),
    mixed over layers by its layer weights and between local and global by its scale."""
    b, V = len(maps[0]), len(space)
    grid = space[None, :, None, :].expand(b, V, 1, 2)
    local = 0.0
    for k, m in enumerate(maps):
        sampled = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[..., 0]
        local = local + sampled.transpose(1, 2) * layer[None, :, k, None]
    global_ = torch.einsum("bdl,vl->bvd", torch.stack(globals_, dim=-1), layer)
    share = scale[None, :, None]
    return (1 - share) * local + share * global_


def readout(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(b, V) from features (b, V, width): the mean over channels of v * weight, plus the bias."""
    return torch.einsum("bvd,vd->bv", v, weight) / v.shape[-1] + bias


class FactorTopyNetwork(nn.Module):
    """The aligner, one set of selectors (or one per subject) and one readout per subject."""

    def __init__(self, map_channels: list[int], global_channels: list[int], n_vertices: list[int], width: int,
                 hidden_units: int, n_frequencies: int, per_subject_selectors: bool):
        super().__init__()
        self.aligner = Aligner(map_channels, global_channels, width)
        n_sets = len(n_vertices) if per_subject_selectors else 1
        self.selectors = nn.ModuleList(Selectors(6 * n_frequencies, hidden_units, len(map_channels))
                                       for _ in range(n_sets))
        self.readout_weight = nn.ParameterList(nn.Parameter(nn.Linear(width, v).weight.detach().clone())
                                               for v in n_vertices)
        self.readout_bias = nn.ParameterList(nn.Parameter(torch.zeros(v)) for v in n_vertices)
        self.n_frequencies = n_frequencies
        self.regulariser = torch.zeros(())

    def set_positions(self, positions: list[np.ndarray]) -> None:
        """Each subject's vertex positions (V_s, 3), encoded once (non-persistent buffers: recomputed, not stored)."""
        for s, p in enumerate(positions):
            self.register_buffer(f"encoding_{s}", sphere_encoding(torch.as_tensor(p, dtype=torch.float32),
                                                                  self.n_frequencies), persistent=False)

    def selections(self, s: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.selectors[s if len(self.selectors) > 1 else 0](getattr(self, f"encoding_{s}"))

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's predictions and targets, every subject's flattened one after another; the selector
        regulariser of the batch's subjects is left in `self.regulariser` for the trainer's penalty."""
        maps, globals_ = self.aligner(batch["maps"], batch["globals"])
        predictions, targets, terms = [], [], []
        for key, rows in batch["rows"].items():
            s = int(key)
            space, layer, scale = self.selections(s)
            v = read_vertices([m[rows] for m in maps], [g[rows] for g in globals_], space, layer, scale)
            predictions.append(readout(v, self.readout_weight[s], self.readout_bias[s]).flatten())
            targets.append(batch["y"][key].flatten())
            terms.append(selector_regulariser(layer, scale))
        self.regulariser = torch.stack(terms).mean()
        return torch.cat(predictions), torch.cat(targets)


def _forward(network: FactorTopyNetwork, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return network(batch)


class MapRows:
    """A model's rows of the layers' blocks (maps flattened (n, h*w*C), global tokens (n, C); arrays in memory
    or datasets on disk), read a batch of rows at a time as float32 tensors (maps (b, h, w, C))."""

    def __init__(self, maps: list[Any], map_shapes: list[tuple[int, int, int]], globals_: list[Any]):
        self.maps, self.map_shapes, self.globals = maps, map_shapes, globals_

    @property
    def nbytes(self) -> int:
        return 4 * sum(int(np.prod(block.shape)) for block in self.maps + self.globals)

    def in_memory(self) -> MapRows:
        """The same rows with every block read into memory (one pass over the file)."""
        return MapRows([np.asarray(b, np.float32) for b in self.maps], self.map_shapes,
                       [np.asarray(b, np.float32) for b in self.globals])

    def read(self, rows: np.ndarray) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        maps = [torch.as_tensor(np.asarray(read_rows(block, rows), np.float32).reshape(len(rows), *shape))
                for block, shape in zip(self.maps, self.map_shapes)]
        return maps, [torch.as_tensor(np.asarray(read_rows(block, rows), np.float32)) for block in self.globals]

    def channel_moments(self) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[tuple[np.ndarray, np.ndarray]]]:
        """(mean, sd) per channel of every map (over rows and positions) and global token (over rows)."""
        map_moments = []
        for block, (h, w, c) in zip(self.maps, self.map_shapes):
            mean, sd = (values.reshape(h * w, c) for values in column_moments(block))
            channel_mean = mean.mean(0)
            variance = (sd**2 + mean**2).mean(0) - channel_mean**2
            map_moments.append((channel_mean, np.sqrt(np.maximum(variance, 0.0))))
        return map_moments, [column_moments(block) for block in self.globals]


class TopographicData:
    """The trainer's rows: SubjectsData for the targets (x holds each row's index into the feature blocks), the
    feature blocks read for a batch's rows as `maps` and `globals`."""

    def __init__(self, features: MapRows, feature_row: np.ndarray, code: np.ndarray, row: np.ndarray, ys: list):
        self.features = features
        self.targets = SubjectsData(np.asarray(feature_row, np.int64)[:, None], code, row, ys)

    def __len__(self) -> int:
        return len(self.targets)

    def batch(self, indices: np.ndarray) -> dict:
        batch = self.targets.batch(indices)
        maps, globals_ = self.features.read(batch.pop("x")[:, 0].numpy())
        return {**batch, "maps": maps, "globals": globals_}

    def fingerprint(self) -> str:
        first_last = np.unique([0, len(self) - 1]) if len(self) else np.array([], np.int64)
        maps, globals_ = self.features.read(self.targets.x[first_last, 0].numpy())
        return self.targets.fingerprint() + str([m.sum().item() for m in maps + globals_])


def set_channel_moments(aligner: Aligner, features: MapRows) -> None:
    """The aligner's standardisation buffers from the training rows' channel moments."""
    map_moments, global_moments = features.channel_moments()
    for name, moments in (("map", map_moments), ("global", global_moments)):
        for k, (mean, sd) in enumerate(moments):
            getattr(aligner, f"{name}_mean_{k}").copy_(torch.as_tensor(mean, dtype=torch.float32))
            getattr(aligner, f"{name}_scale_{k}").copy_(torch.as_tensor(np.where(sd > 0, sd, 1.0), dtype=torch.float32))


class SubjectRows:
    """The stacked rows of several subjects' targets, standardised per target: each feature row's subject `code`
    (-1: a subject not fitted) and its `row` in that subject's `ys`, and each subject's (mean, sd) `moments`."""

    def __init__(self, code: np.ndarray, row: np.ndarray, ys: list[np.ndarray],
                 moments: dict[str, tuple[np.ndarray, np.ndarray]]):
        self.code, self.row, self.ys, self.moments = code, row, ys, moments

    @classmethod
    def of(cls, subjects: np.ndarray, Y: dict[str, np.ndarray], names: list[str]) -> SubjectRows:
        subjects = np.asarray(subjects)
        code, row = np.full(len(subjects), -1), np.zeros(len(subjects), np.int64)
        ys, moments = [], {}
        for i, s in enumerate(names):
            mine = np.flatnonzero(subjects == s)
            if len(mine) != len(Y[s]):
                raise ValueError(f"subject {s}: {len(mine)} rows of features but {len(Y[s])} rows of targets")
            code[mine], row[mine] = i, np.arange(len(mine))
            mean, sd = Y[s].mean(0), Y[s].std(0)
            moments[s] = (mean.astype(np.float32), np.where(sd > 0, sd, 1.0).astype(np.float32))
            ys.append(((Y[s] - mean) / moments[s][1]).astype(np.float32))
        return cls(code, row, ys, moments)

    def split(self, features: MapRows, groups: np.ndarray | None, fraction: float,
              seed: int) -> list[TopographicData]:
        """The trainer's (training, validation) data: the fitted rows split by `groups` (images)."""
        used = np.flatnonzero(self.code >= 0)
        grouping = None if groups is None else np.asarray(groups)[used].astype(str)
        fit_rows, validation_rows = validation_split(len(used), fraction, seed, grouping)
        return [TopographicData(features, used[part], self.code[used[part]], self.row[used[part]], self.ys)
                for part in (fit_rows, validation_rows)]


def layer_blocks(X: FeatureSet) -> tuple[list[str], MapRows]:
    """The layers of X (blocks `<layer>/map` and `<layer>/global`, in X's order) and their rows."""
    layers = list(dict.fromkeys(name.rsplit("/", 1)[0] for name in X.names))
    blocks = dict(zip(X.names, zip(X.data, X.shapes)))
    wanted = [f"{layer}/{token}" for layer in layers for token in ("map", "global")]
    if sorted(wanted) != sorted(X.names) or any(blocks[f"{layer}/map"][1] is None or len(blocks[f"{layer}/map"][1]) != 3
                                                for layer in layers if f"{layer}/map" in blocks):
        raise ValueError(f"factortopy reads each layer's patch map and global token (tokens: [global, map], maps with "
                         f"their (h, w, C) shape); got blocks {X.names}")
    return layers, MapRows([blocks[f"{layer}/map"][0] for layer in layers],
                           [tuple(blocks[f"{layer}/map"][1]) for layer in layers],
                           [blocks[f"{layer}/global"][0] for layer in layers])


def predict_rows(aligner: Aligner, features: MapRows, rows: np.ndarray, selection: dict[str, np.ndarray]) -> np.ndarray:
    """(len(rows), V) predictions in target units from a vertex selection (per-vertex state arrays)."""
    space = torch.as_tensor(np.stack([selection["space_x"], selection["space_y"]], 1) * 2 - 1, dtype=torch.float32)
    layer = torch.as_tensor(selection["layer_weights"], dtype=torch.float32)
    scale = torch.as_tensor(selection["scale"], dtype=torch.float32)
    weight = torch.as_tensor(selection["readout_weight"], dtype=torch.float32)
    bias = torch.as_tensor(selection["readout_bias"], dtype=torch.float32)
    out = np.empty((len(rows), len(space)), np.float32)
    with torch.no_grad():
        for start in range(0, len(rows), PREDICT_ROWS):
            maps, globals_ = aligner(*features.read(rows[start:start + PREDICT_ROWS]))
            out[start:start + PREDICT_ROWS] = readout(read_vertices(maps, globals_, space, layer, scale), weight,
                                                      bias).numpy()
    return out * selection["y_scale"] + selection["y_mean"]


@register("factortopy")
class FactorTopy:
    """FactorTopy for the vertices of one or several subjects; see the module docstring.

    Parameters (defaults: the params schema's `$defs.families.factortopy`)
    ----------
    width : channels every layer is aligned to (the public code's bottleneck, 128).
    hidden_units, n_frequencies : the selector MLPs' width and the position encoding's frequencies per axis.
    selectors : 'per_subject', or 'shared' by the subjects through their fsaverage positions.
    regulariser_weight, regulariser_steps : the selector regulariser's start weight and its decay to 0.
    smooth_l1_beta : the loss's beta.
    learning_rate, weight_decay, batch_size, max_epochs, patience, validation_fraction : the trainer's.
    in_memory_gb : training features up to this size are read into memory once; larger ones a batch at a time.
    """

    many_subjects = True

    def __init__(self, width: int = DEFAULTS["width"], hidden_units: int = DEFAULTS["hidden_units"],
                 n_frequencies: int = DEFAULTS["n_frequencies"], selectors: str = DEFAULTS["selectors"],
                 regulariser_weight: float = DEFAULTS["regulariser_weight"],
                 regulariser_steps: int = DEFAULTS["regulariser_steps"], smooth_l1_beta: float = DEFAULTS["smooth_l1_beta"],
                 learning_rate: float = DEFAULTS["learning_rate"], weight_decay: float = DEFAULTS["weight_decay"],
                 batch_size: int = DEFAULTS["batch_size"], max_epochs: int = DEFAULTS["max_epochs"],
                 patience: int = DEFAULTS["patience"], validation_fraction: float = DEFAULTS["validation_fraction"],
                 in_memory_gb: float = DEFAULTS["in_memory_gb"], seed: int = 0, device: str = "auto",
                 checkpoint: str | Path | None = None):
        self.in_memory_gb = in_memory_gb
        self.width, self.hidden_units, self.n_frequencies, self.selectors = width, hidden_units, n_frequencies, selectors
        self.regulariser_weight, self.regulariser_steps = regulariser_weight, regulariser_steps
        self.smooth_l1_beta, self.validation_fraction = smooth_l1_beta, validation_fraction
        self.seed, self.device, self.checkpoint = seed, device, checkpoint
        self.settings = TrainSettings(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, seed=seed,
                                      validation_batch_size=batch_size)

    def _penalty(self, network: FactorTopyNetwork, step: int) -> torch.Tensor:
        return self.regulariser_weight * max(0.0, 1.0 - step / self.regulariser_steps) * network.regulariser

    def fit(self, X: FeatureSet, Y: dict[str, np.ndarray], *, groups: np.ndarray | None = None, subjects: np.ndarray,
            targets: dict[str, dict[str, Any]]) -> "FactorTopy":
        """Fit every subject's vertices at once: X stacks the subjects' rows (`subjects` says whose), Y[s] (n_s, V_s),
        targets[s]["positions"] (V_s, 3) on the fsaverage sphere."""
        self.subjects_ = list(Y)
        self.layers_, features = layer_blocks(X)
        if features.nbytes <= self.in_memory_gb * 2**30:  # random batches of a row-chunked file read whole chunks
            features = features.in_memory()
        rows = SubjectRows.of(subjects, Y, self.subjects_)
        self.y_moments_ = rows.moments
        positions = [np.asarray(targets[s]["positions"], np.float32) for s in self.subjects_]
        self.network_ = self._network(features, [y.shape[1] for y in rows.ys])
        set_channel_moments(self.network_.aligner, features)
        self.network_.set_positions(positions)
        data = rows.split(features, groups, self.validation_fraction, self.seed)
        result = trainer.train_on(self.network_, *data, self.settings, forward=_forward,
                                  loss=[("smooth_l1", 1.0, {"beta": self.smooth_l1_beta})], device=self.device,
                                  checkpoint=self.checkpoint, penalty=self._penalty,
                                  label=f"factortopy {len(self.subjects_)} subject(s)")
        self.curves_ = {"train_loss": result.train_loss, "validation_loss": result.validation_loss,
                        "best_epoch": np.asarray(result.best_epoch)}
        self.network_.set_positions(positions)  # the trainer moved the module back to the CPU
        with torch.no_grad():
            self.selection_ = {s: self._selection(i) for i, s in enumerate(self.subjects_)}
        return self

    def _network(self, features: MapRows, n_vertices: list[int]) -> FactorTopyNetwork:
        torch.manual_seed(self.seed)
        return FactorTopyNetwork([shape[2] for shape in features.map_shapes],
                                 [block.shape[1] for block in features.globals], n_vertices, self.width,
                                 self.hidden_units, self.n_frequencies, self.selectors == "per_subject")

    def _selection(self, i: int) -> dict[str, np.ndarray]:
        """Subject i's per-vertex state: space in image fractions, layer weights, scale, readout, target moments."""
        space, layer, scale = (t.numpy() for t in self.network_.selections(i))
        mean, sd = self.y_moments_[self.subjects_[i]]
        return {"space_x": (space[:, 0] + 1) / 2, "space_y": (space[:, 1] + 1) / 2, "layer_weights": layer,
                "scale": scale, "readout_weight": self.network_.readout_weight[i].detach().numpy(),
                "readout_bias": self.network_.readout_bias[i].detach().numpy(), "y_mean": mean, "y_scale": sd}

    def predict(self, X: FeatureSet, *, subjects: np.ndarray,
                targets: dict[str, dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """Per training subject of `subjects`: its rows' predictions (targets' units)."""
        subjects = np.asarray(subjects)
        _, features = layer_blocks(X)
        unknown = sorted(set(subjects) - set(self.subjects_))
        if unknown:
            raise ValueError(f"factortopy predicts the subjects it was fitted on {self.subjects_}, not {unknown}")
        return {s: predict_rows(self.network_.aligner, features, np.flatnonzero(subjects == s), self.selection_[s])
                for s in dict.fromkeys(subjects)}

    def subject_state(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Per vertex of `subject`: space_x, space_y (image fractions), layer_weights (V, L), scale, the readout
        and the targets' moments."""
        return self.selection_[subject]

    def subject_artifacts(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """The aligner (weights and moments), the selectors' weights and the loss curves."""
        weights = {f"weights/{name}": value.numpy() for name, value in self.network_.state_dict().items()
                   if name.startswith(("aligner.", "selectors."))}
        return {**weights, **self.curves_}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet, Y: np.ndarray, device: str = "auto") -> "TopographicSubject":
        """One subject's model from its fits file (`subject_state`, `subject_artifacts`); X and Y are only checked."""
        return TopographicSubject(state, X)


class TopographicSubject:
    """One subject of a fitted FactorTopy, from its fits file: the aligner and its vertices' selection."""

    def __init__(self, state: dict[str, np.ndarray], X: FeatureSet):
        self.state_ = state
        weights = {name.removeprefix("weights/aligner."): torch.as_tensor(value) for name, value in state.items()
                   if name.startswith("weights/aligner.")}
        _, features = layer_blocks(X)
        self.aligner = Aligner([s[2] for s in features.map_shapes], [b.shape[1] for b in features.globals],
                               int(state["readout_weight"].shape[1]))
        self.aligner.load_state_dict(weights)
        self.aligner.eval()

    def predict(self, X: FeatureSet, *, subjects: np.ndarray | None = None,
                targets: dict[str, Any] | None = None) -> np.ndarray:
        _, features = layer_blocks(X)
        return predict_rows(self.aligner, features, np.arange(X.n_rows), self.state_)

    def state(self) -> dict[str, np.ndarray]:
        keys = ("space_x", "space_y", "layer_weights", "scale", "readout_weight", "readout_bias", "y_mean", "y_scale")
        return {key: self.state_[key] for key in keys}

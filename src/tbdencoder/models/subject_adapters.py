"""Seed 000's idea 5: one model for many subjects, a trunk shared by all of them and an adapter per subject.

Trunk: standardised features -> a latent of `rank` components x T time samples (T: the length of the targets'
`times`, MEG; 1 for fMRI): a low-rank linear map (`trunk: linear`) or the MLP head's body (`trunk: mlp`: Linear
-> GELU -> Dropout -> Linear). Adapter of subject s: a matrix A_s (C_s x rank) and a bias b_s (C_s x T) reading
the latent out into its C_s channels (MEG sensors, fMRI vertices) at every time sample,

    Y_s[n, c, t] = sum_k A_s[c, k] Z[n, k, t] + b_s[c, t],

as brainmagick's `SubjectLayers` (one matrix per subject, picked by the subject index) and TRIBE's subject head.
Targets are standardised per subject; everything is trained jointly by the shared trainer (MSE over every
subject's targets, early stopping on a validation split grouped by image / scene across subjects).

Subjects with different targets (fMRI vertex sets): every target has a location key (fMRI: hemisphere and
fsaverage vertex; MEG: channel name). Adapters are per subject; what holds for any subject lives on the union of
the training subjects' keys. A subject not trained on is read out by:

- `new_subject: mean` (the default, the seed's rule): at each key, the mean of the adapters of the training
  subjects that have it. It needs no extra training and no hyper-parameter;
- `new_subject: shared`: a shared adapter trained by subject dropout (TRIBE v2): with probability
  `subject_dropout` a training row is read out by it instead of its subject's adapter;
- keys no training subject has take the row of the nearest key (targets' `positions`, `sensor_positions`);
- `calibrate(X, Y, subject, targets)`: k samples of the new subject fit its own adapter with the trunk frozen,
  by ridge on the latent shrunk toward the rule's adapter (one penalty per channel, K-fold CV over `alphas`).

A new subject's predictions before calibration are in its standardised units (its mean and scale are unknown):
correlation-based scores are unaffected.

Targets on disk (NSD: 8 subjects x ~9,000 images x ~40,000 vertices, 11.5 GB of float32): `fit` takes, for each
subject, a numpy array (standardised in memory, as small data always was) or an h5py dataset / any array-like with
`.shape` and indexing by sorted rows. Then the per-target mean and sd come from a pass over row blocks, batches
read and standardise only their rows (`StandardisedRows`), the validation loss and R^2 go through row blocks, and
the reduced-rank start holds one subject's training rows at a time (its ridge needs them: 7,200 x 40,000 float32,
1.2 GB at NSD scale); no copy of all targets is ever made.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import nn

from tbdencoder.config import family_defaults
from tbdencoder.features.featureset import FeatureSet, as_matrix
from tbdencoder.models.base import register
from tbdencoder.models.mlp import validation_split
from tbdencoder.models.train_data import SubjectsData
from tbdencoder.models import trainer
from tbdencoder.models.trainer import TrainSettings

DEFAULTS = family_defaults("subject_adapters")
NEW_SUBJECT_RULES = ("mean", "shared")
READ_VALUES = 2**23  # target values per block of rows read from disk (moments, validation R^2): 32 MB of float32
VALIDATION_VALUES = 2**26  # target values per validation batch of the trainer (256 MB of float32)


def read_rows(data: Any, rows: np.ndarray) -> np.ndarray:
    """Rows `rows` (any order, repeats allowed) of a rows-first array: a numpy array, an h5py dataset (read as
    contiguous slices where the rows are dense, as a sorted point selection where they are sparse: h5py's point
    selections are slow for thousands of rows), or any array-like indexable by sorted row indices."""
    rows = np.asarray(rows, np.int64)
    if isinstance(data, np.ndarray):
        return data[rows]
    unique, order = np.unique(rows, return_inverse=True)
    if len(unique) == 0:
        return np.empty((0, *data.shape[1:]), dtype=getattr(data, "dtype", np.float32))
    if isinstance(data, h5py.Dataset) and unique[-1] - unique[0] + 1 <= 2 * len(unique):
        block = max(1, READ_VALUES // max(1, int(np.prod(data.shape[1:]))))
        parts = []
        for start in range(int(unique[0]), int(unique[-1]) + 1, block):
            wanted = unique[(unique >= start) & (unique < start + block)]
            if len(wanted):
                parts.append(data[start:int(wanted[-1]) + 1][wanted - start])
        values = np.concatenate(parts)
    else:
        values = np.asarray(data[unique])
    return values[order]


def row_blocks(n_rows: int, width: int, values: int | None = None) -> list[slice]:
    """Consecutive slices of `n_rows` rows holding at most `values` (default READ_VALUES) values of `width` each."""
    block = max(1, (READ_VALUES if values is None else values) // max(1, width))
    return [slice(start, min(start + block, n_rows)) for start in range(0, n_rows, block)]


def column_moments(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, sd) of each column of a rows-first (n, C) array-like, float64, by blocks of rows (Chan's pairwise
    combination of block means and sums of squared deviations: no full copy, no cancellation)."""
    n_rows, width = data.shape[0], int(np.prod(data.shape[1:]))
    count, mean, m2 = 0, np.zeros(width), np.zeros(width)
    for block in row_blocks(n_rows, width):
        values = np.asarray(read_rows(data, np.arange(block.start, block.stop)), np.float64).reshape(-1, width)
        k = len(values)
        block_mean = values.mean(0)
        block_m2 = ((values - block_mean) ** 2).sum(0)
        delta = block_mean - mean
        mean = mean + delta * (k / (count + k))
        m2 = m2 + block_m2 + delta**2 * (count * k / (count + k))
        count += k
    return mean, np.sqrt(m2 / count)


class StandardisedRows:
    """A subject's targets kept where they are (an h5py dataset on disk, or any array-like of rows), read a few
    rows at a time and standardised as they are read: `(rows - mean) / scale` as float32, the values the
    in-memory path stores for the whole array."""

    dtype = np.dtype(np.float32)

    def __init__(self, data: Any, mean: np.ndarray, scale: np.ndarray):
        self.data, self.mean, self.scale = data, mean, scale
        self.shape = tuple(data.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if np.isscalar(rows):
            return self[np.array([rows])][0]
        return ((read_rows(self.data, rows) - self.mean) / self.scale).astype(np.float32)


def n_times(targets: dict[str, Any] | None) -> int:
    """Time samples per channel of a target set: the length of its `times` (MEG), else 1 (fMRI)."""
    return len(targets["times"]) if targets is not None and "times" in targets else 1


def target_keys(targets: dict[str, Any] | None, n_channels: int) -> np.ndarray:
    """(channels,) location keys: `<hemisphere>:<fsaverage index>` (fMRI), the channel names (MEG), or the
    channel numbers when the targets say nothing."""
    if targets is not None and "fsaverage_index" in targets:
        index = np.asarray(targets["fsaverage_index"])
        hemisphere = np.broadcast_to(np.asarray(targets["hemisphere"]), index.shape)
        return np.array([f"{h}:{i}" for h, i in zip(hemisphere, index)])
    if targets is not None and "ch_names" in targets:
        return np.asarray(targets["ch_names"], dtype=str)
    return np.arange(n_channels).astype(str)


def target_positions(targets: dict[str, Any] | None) -> np.ndarray | None:
    """(channels, 3) positions of a target set's channels, where the targets give them."""
    for name in ("positions", "sensor_positions"):
        if targets is not None and name in targets:
            return np.asarray(targets[name], dtype=np.float64)
    return None


class AdapterNetwork(nn.Module):
    """Trunk -> (rank, T) latent; per subject a readout (C_s x rank, C_s x T); optionally a shared readout on the
    union of the subjects' keys (`union`: per subject, the union row of each of its channels)."""

    def __init__(self, n_features: int, rank: int, times: int, trunk: str, hidden_units: int, dropout: float,
                 widths: list[int], union: list[np.ndarray] | None, union_size: int):
        super().__init__()
        self.rank, self.times = rank, times
        out = rank * times
        self.trunk = (nn.Sequential(nn.Linear(n_features, out)) if trunk == "linear" else
                      nn.Sequential(nn.Linear(n_features, hidden_units), nn.GELU(), nn.Dropout(dropout),
                                    nn.Linear(hidden_units, out)))
        self.weight = nn.ParameterList([nn.Parameter(torch.randn(width, rank) / rank**0.5) for width in widths])
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(width, times)) for width in widths])
        self.shared_weight = self.shared_bias = None
        if union is not None:
            self.shared_weight = nn.Parameter(torch.randn(union_size, rank) / rank**0.5)
            self.shared_bias = nn.Parameter(torch.zeros(union_size, times))
            for s, rows in enumerate(union):
                self.register_buffer(f"union_{s}", torch.as_tensor(rows, dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The latent (b, rank, T) of standardised features x (b, p)."""
        return self.trunk(x).view(len(x), self.rank, self.times)

    @staticmethod
    def readout(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """(b, C, T) from the latent z (b, rank, T) with a readout (C, rank), (C, T)."""
        return torch.einsum("brt,cr->bct", z, weight) + bias

    def shared_readout(self, s: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = getattr(self, f"union_{s}")
        return self.shared_weight[rows], self.shared_bias[rows]


def _forward(subject_dropout: float):
    """The trainer's forward: every subject of the batch read out by its adapter (by the shared one for the rows
    subject dropout picks, in training), flattened and concatenated against the targets."""

    def forward(network: AdapterNetwork, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        z = network(batch["x"])
        predictions, targets = [], []
        for key, y in batch["y"].items():
            s, rows = int(key), batch["rows"][key]
            prediction = network.readout(z[rows], network.weight[s], network.bias[s])
            if network.training and subject_dropout > 0:
                dropped = torch.rand(len(rows), device=z.device) < subject_dropout
                shared = network.readout(z[rows], *network.shared_readout(s))
                prediction = torch.where(dropped[:, None, None], shared, prediction)
            predictions.append(prediction.reshape(-1))
            targets.append(y.reshape(-1))
        return torch.cat(predictions), torch.cat(targets)

    return forward


@register("subject_adapters")
class SubjectAdapters:
    """A shared trunk with subject adapters; see the module docstring.

    Parameters (defaults: the params schema's `$defs.families.subject_adapters`)
    ----------
    trunk : 'linear' (low rank) or 'mlp' (hidden_units, dropout).
    rank : latent components per time sample.
    subject_dropout : probability a training row is read out by the shared adapter (0: no shared adapter).
    new_subject : 'mean' or 'shared' (needs subject_dropout > 0): how a subject not trained on is read out.
    learning_rate, weight_decay, batch_size, max_epochs, patience, validation_fraction : the trainer's.
    alphas : ridge penalties searched when calibrating a new subject (the modality's fit setting).
    seed, device, checkpoint : as the MLP head's.
    """

    many_subjects = True

    def __init__(self, trunk: str = DEFAULTS["trunk"], rank: int = DEFAULTS["rank"],
                 hidden_units: int = DEFAULTS["hidden_units"], dropout: float = DEFAULTS["dropout"],
                 subject_dropout: float = DEFAULTS["subject_dropout"], new_subject: str = DEFAULTS["new_subject"],
                 calibration_folds: int = DEFAULTS["calibration_folds"],
                 learning_rate: float = DEFAULTS["learning_rate"], weight_decay: float = DEFAULTS["weight_decay"],
                 batch_size: int = DEFAULTS["batch_size"], max_epochs: int = DEFAULTS["max_epochs"],
                 patience: int = DEFAULTS["patience"], validation_fraction: float = DEFAULTS["validation_fraction"],
                 alphas: list[float] = (0.1, 1.0, 10.0, 100.0, 1000.0), seed: int = 0, device: str = "auto",
                 checkpoint: str | Path | None = None):
        if new_subject not in NEW_SUBJECT_RULES:
            raise ValueError(f"new_subject must be one of {NEW_SUBJECT_RULES}, got {new_subject!r}")
        if new_subject == "shared" and subject_dropout <= 0:
            raise ValueError("new_subject: shared needs subject_dropout > 0 (the shared adapter is trained by it)")
        self.trunk, self.rank, self.hidden_units, self.dropout = trunk, rank, hidden_units, dropout
        self.subject_dropout, self.new_subject, self.calibration_folds = subject_dropout, new_subject, calibration_folds
        self.settings = TrainSettings(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, seed=seed)
        self.validation_fraction, self.alphas, self.seed = validation_fraction, list(alphas), seed
        self.device, self.checkpoint = device, checkpoint

    # ---- joint fit over the training subjects ----

    def fit(self, X: FeatureSet | np.ndarray, Y: dict[str, np.ndarray], *, groups: np.ndarray | None = None,
            subjects: np.ndarray, targets: dict[str, dict[str, Any]] | None = None) -> "SubjectAdapters":
        X = as_matrix(X)
        subjects = np.asarray(subjects)
        self.subjects_ = list(Y)
        targets = targets or {s: None for s in self.subjects_}
        self.times_ = n_times(targets[self.subjects_[0]])
        if any(n_times(targets[s]) != self.times_ for s in self.subjects_):
            raise ValueError(f"subjects' targets differ in time samples: "
                             f"{ {s: n_times(targets[s]) for s in self.subjects_} }")
        index = {s: i for i, s in enumerate(self.subjects_)}
        row = np.zeros(len(X), np.int64)
        for s in self.subjects_:
            mine = subjects == s
            if mine.sum() != Y[s].shape[0]:
                raise ValueError(f"subject {s}: {mine.sum()} feature rows but {Y[s].shape[0]} target rows")
            row[mine] = np.arange(mine.sum())
        self.x_mean_, self.x_scale_ = X.mean(0), X.std(0)
        self.x_scale_[self.x_scale_ == 0] = 1.0
        self.intercept_, self.y_scale_, ys = {}, {}, []
        for s in self.subjects_:  # numpy arrays: standardised in memory; anything else (on disk): as it is read
            in_memory = isinstance(Y[s], np.ndarray)
            mean, sd = (Y[s].mean(0), Y[s].std(0)) if in_memory else column_moments(Y[s])
            self.intercept_[s] = mean.astype(np.float32)
            self.y_scale_[s] = np.where(sd > 0, sd, 1.0).astype(np.float32)
            ys.append(((Y[s] - self.intercept_[s]) / self.y_scale_[s]).astype(np.float32) if in_memory
                      else StandardisedRows(Y[s], self.intercept_[s], self.y_scale_[s]))
        self.keys_ = {s: target_keys(targets[s], Y[s].shape[1] // self.times_) for s in self.subjects_}
        self.union_keys_ = np.unique(np.concatenate(list(self.keys_.values())))
        self.union_rows_ = [np.searchsorted(self.union_keys_, self.keys_[s]) for s in self.subjects_]
        self._positions = {s: targets[s] for s in self.subjects_}  # read only if a new subject has unknown keys
        torch.manual_seed(self.seed)
        self.network_ = AdapterNetwork(X.shape[1], self.rank, self.times_, self.trunk, self.hidden_units, self.dropout,
                                       [len(self.keys_[s]) for s in self.subjects_],
                                       self.union_rows_ if self.subject_dropout > 0 else None, len(self.union_keys_))
        fit_rows, validation_rows = validation_split(len(X), self.validation_fraction, self.seed, groups)
        Xs = self._standardise(X)
        code = np.array([index[s] for s in subjects])
        if self.trunk == "linear":
            self._reduced_rank_start(Xs[fit_rows], code[fit_rows], row[fit_rows], ys)
        data = [SubjectsData(Xs[rows], code[rows], row[rows], ys) for rows in (fit_rows, validation_rows)]
        # the validation loss in batches of at most VALIDATION_VALUES targets (NSD: 1,677 rows of 40,000 vertices,
        # not all 14,400 validation rows of 8 subjects at once); one batch, as before, below that
        widest = max(y.shape[1] for y in ys)
        settings = replace(self.settings, validation_batch_size=max(self.settings.batch_size,
                                                                    VALIDATION_VALUES // max(1, widest)))
        result = trainer.train_on(self.network_, *data, settings, forward=_forward(self.subject_dropout),
                          device=self.device, checkpoint=self.checkpoint,
                          label=f"subject_adapters {len(self.subjects_)} subjects {X.shape}")
        self.train_loss_, self.validation_loss_, self.best_epoch_ = (result.train_loss, result.validation_loss,
                                                                     result.best_epoch)
        self.mean_weight_ = self._union_mean([w.detach().numpy() for w in self.network_.weight])
        self.mean_bias_ = self._union_mean([b.detach().numpy() for b in self.network_.bias])
        self.validation_r2_ = self._validation_r2(Xs[validation_rows], code[validation_rows], row[validation_rows], ys)
        self.calibrated_: dict[str, dict[str, np.ndarray]] = {}
        return self

    def _reduced_rank_start(self, Xs: np.ndarray, code: np.ndarray, row: np.ndarray, ys: list[np.ndarray]) -> None:
        """Start the linear trunk and the adapters at the joint reduced-rank solution: each subject's ridge map
        (p -> C_s x T, penalties by CV over `alphas`) as a (C_s, p T) matrix, stacked over subjects, truncated to
        `rank` by SVD; its left factor gives the adapters, its right one the trunk (balanced). Gradient training
        from a random start on weak, noisy targets stops far from this optimum."""
        from tbdencoder.models.ridge import RidgeEncoder

        p = Xs.shape[1]
        widths = [y.shape[1] // self.times_ for y in ys]
        maps = np.empty((sum(widths), p * self.times_), np.float32)  # (sum C_s, p T): 1 GB at NSD scale
        start = 0
        for s, y in enumerate(ys):
            mine = code == s
            targets = y[row[mine]]  # a subject on disk: its training rows, standardised, one subject at a time
            model = RidgeEncoder(alphas=self.alphas, cv_folds=min(5, int(mine.sum())), device=self.device).fit(
                Xs[mine], targets)
            del targets
            coef = model.coef_ / model.x_scale_[:, None]  # (p, C_s T) on Xs
            maps[start:start + widths[s]] = coef.reshape(p, -1, self.times_).transpose(1, 0, 2).reshape(-1, p * self.times_)
            start += widths[s]
            del model, coef
        left, right = _balanced_factors(maps, self.rank)  # (sum C_s, rank), (rank, p T)
        del maps
        trunk = right.reshape(self.rank, Xs.shape[1], self.times_).transpose(0, 2, 1).reshape(-1, Xs.shape[1])
        with torch.no_grad():
            self.network_.trunk[0].weight.copy_(torch.as_tensor(trunk))
            self.network_.trunk[0].bias.zero_()
            start = 0
            for s, y in enumerate(ys):
                width = len(self.network_.weight[s])
                self.network_.weight[s].copy_(torch.as_tensor(left[start:start + width]))
                start += width
            if self.network_.shared_weight is not None:
                widths = np.cumsum([len(w) for w in self.network_.weight])[:-1]
                self.network_.shared_weight.copy_(torch.as_tensor(self._union_mean(np.split(left, widths))))

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.x_mean_) / self.x_scale_).astype(np.float32)

    def _union_mean(self, per_subject: list[np.ndarray]) -> np.ndarray:
        """(union keys, ...) at each key the mean over the subjects that have it of their rows of `per_subject`."""
        total = np.zeros((len(self.union_keys_), *per_subject[0].shape[1:]))
        count = np.zeros(len(self.union_keys_))
        for rows, values in zip(self.union_rows_, per_subject):
            np.add.at(total, rows, values)
            np.add.at(count, rows, 1)
        return total / count.reshape(-1, *[1] * (total.ndim - 1))

    def _latent(self, Xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.network_(torch.as_tensor(Xs)).numpy()

    def _validation_r2(self, Xs: np.ndarray, code: np.ndarray, row: np.ndarray, ys: list[np.ndarray]) -> dict:
        """Per subject, each target's R^2 on the validation rows (standardised units), NaN without 2 rows; through
        blocks of rows (READ_VALUES targets each), the sums of squares about the mean combined pairwise."""
        z = self._latent(Xs)
        out = {}
        for s, name in enumerate(self.subjects_):
            mine = np.flatnonzero(code == s)
            if len(mine) < 2:
                out[name] = np.full(ys[s].shape[1], np.nan, np.float32)
                continue
            weight, bias = self._own(s)
            count, mean, total, residual = 0, 0.0, 0.0, 0.0
            for block in row_blocks(len(mine), ys[s].shape[1]):
                positions = mine[block]
                truth = ys[s][row[positions]]
                residual = residual + ((truth - self._readout(z[positions], weight, bias)) ** 2).sum(0, np.float64)
                k, block_mean = len(truth), truth.mean(0)
                delta = block_mean - mean
                total = total + ((truth - block_mean) ** 2).sum(0, np.float64) + delta**2 * (count * k / (count + k))
                mean, count = mean + delta * (k / (count + k)), count + k
            out[name] = (1 - residual / np.maximum(total, 1e-12)).astype(np.float32)
        return out

    def _own(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        return self.network_.weight[s].detach().numpy(), self.network_.bias[s].detach().numpy()

    @staticmethod
    def _readout(z: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
        """(n, C*T) channel-major, from the latent (n, rank, T) and a readout (C, rank), (C, T)."""
        return (np.einsum("nrt,cr->nct", z, weight) + bias).reshape(len(z), -1)

    # ---- a subject not trained on ----

    def rule_adapter(self, targets: dict[str, Any] | None, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
        """The new-subject rule's readout for a target set: the mean or shared adapter at its keys (a key no
        training subject has: the nearest known key's row, by the targets' positions)."""
        keys = target_keys(targets, n_channels)
        rows = np.searchsorted(self.union_keys_, keys).clip(0, len(self.union_keys_) - 1)
        unknown = self.union_keys_[rows] != keys
        if unknown.any():
            rows[unknown] = self._nearest_known(targets, keys, unknown)
        if self.new_subject == "shared":
            weight, bias = (value.detach().numpy() for value in (self.network_.shared_weight,
                                                                 self.network_.shared_bias))
        else:
            weight, bias = self.mean_weight_, self.mean_bias_
        return weight[rows], bias[rows]

    def _nearest_known(self, targets: dict[str, Any] | None, keys: np.ndarray, unknown: np.ndarray) -> np.ndarray:
        """Union rows of the nearest training keys to the `unknown` channels of a new target set."""
        positions = target_positions(targets)
        if positions is None:
            raise ValueError(f"a new subject has {unknown.sum()} targets no training subject has (e.g. "
                             f"{keys[unknown][:3].tolist()}) and its targets give no positions to find the nearest")
        known_keys, known_positions = [], []
        for s in self.subjects_:
            known_keys.append(self.keys_[s])
            known_positions.append(target_positions(self._positions[s]))
        known_keys, known_positions = np.concatenate(known_keys), np.concatenate(known_positions)
        distance = ((positions[unknown][:, None, :] - known_positions[None]) ** 2).sum(-1)
        return np.searchsorted(self.union_keys_, known_keys[distance.argmin(1)])

    def calibrate(self, X: FeatureSet | np.ndarray, Y: np.ndarray, subject: str, *, groups: np.ndarray | None = None,
                  targets: dict[str, Any] | None = None) -> "SubjectAdapters":
        """Fit `subject`'s adapter on its k rows (X, Y) with the trunk frozen: ridge on the centred latent (its
        components scaled to unit sd), shrunk toward the new-subject rule's adapter, one penalty for all channels
        by K-fold CV over `alphas` (per-channel penalties chosen on k rows overfit the noisy channels)
        (`calibration_folds`, at most one per group of `groups`: whole scenes; rows when fewer than 2 groups)."""
        from sklearn.model_selection import GroupKFold, KFold

        Y = np.asarray(Y, np.float64)
        if len(Y) < 3:
            raise ValueError(f"calibrating {subject} needs at least 3 rows, got {len(Y)}")
        z = self._latent(self._standardise(as_matrix(X))).astype(np.float64)
        channels = Y.shape[1] // self.times_
        prior, _ = self.rule_adapter(targets, channels)
        z_scale = np.where(z.std((0, 2)) > 0, z.std((0, 2)), 1.0)  # components on one scale: one penalty fits all
        z, prior = z / z_scale[:, None], prior * z_scale
        mean, scale = Y.mean(0), np.where(Y.std(0) > 0, Y.std(0), 1.0)
        y = ((Y - mean) / scale).reshape(len(Y), channels, self.times_)
        grouped = groups is not None and len(np.unique(groups)) >= 2
        splits = min(self.calibration_folds, len(np.unique(groups)) if grouped else len(Y))
        splitter = GroupKFold(splits) if grouped else KFold(splits)
        error = np.zeros((len(self.alphas), channels))
        for train, test in splitter.split(z, groups=groups):
            for a, delta in enumerate(_shrunk_ridge(z[train], y[train], prior, self.alphas)):
                z_test = z[test] - z[train].mean(0)
                y_test = y[test] - y[train].mean(0)
                error[a] += ((y_test - np.einsum("nrt,cr->nct", z_test, prior + delta)) ** 2).sum((0, 2))
        best = int(error.sum(1).argmin())
        weight = (prior + _shrunk_ridge(z, y, prior, [self.alphas[best]])[0]) / z_scale
        self.calibrated_[subject] = {"weight": weight, "z_mean": z.mean(0) * z_scale[:, None], "mean": mean,
                                     "scale": scale, "alpha": self.alphas[best]}
        return self

    # ---- prediction and what a fits file keeps ----

    def readout(self, subject: str, targets: dict[str, Any] | None, n_channels: int) -> dict[str, np.ndarray]:
        """How `subject` is read out of the latent, as prediction = (adapter . z + bias) * y_scale + intercept:
        its own adapter (a training subject), its calibrated one, or the new-subject rule's (standardised units)."""
        if subject in self.subjects_:
            s = self.subjects_.index(subject)
            weight, bias = self._own(s)
            return {"adapter/weight": weight, "adapter/bias": bias, "intercept": self.intercept_[subject],
                    "y_scale": self.y_scale_[subject]}
        if subject in self.calibrated_:
            c = self.calibrated_[subject]
            return {"adapter/weight": c["weight"], "adapter/bias": -np.einsum("cr,rt->ct", c["weight"], c["z_mean"]),
                    "intercept": c["mean"], "y_scale": c["scale"]}
        weight, bias = self.rule_adapter(targets, n_channels)
        return {"adapter/weight": weight, "adapter/bias": bias, "intercept": np.zeros(n_channels * self.times_),
                "y_scale": np.ones(n_channels * self.times_)}

    def _channels(self, targets: dict[str, Any] | None) -> int:
        """Channels of a target set (a new subject without targets: the training subjects' common width)."""
        if targets is not None and ("fsaverage_index" in targets or "ch_names" in targets):
            return len(target_keys(targets, 0))
        widths = {len(self.keys_[s]) for s in self.subjects_}
        if len(widths) != 1:
            raise ValueError("a new subject of training subjects with different target sets needs its targets")
        return widths.pop()

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray,
                targets: dict[str, dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
        """Per subject of `subjects`: its rows' predictions (`readout`: a training subject by its adapter, in its
        units; a calibrated one by its calibrated adapter; any other by the new-subject rule, standardised)."""
        subjects = np.asarray(subjects)
        z = self._latent(self._standardise(as_matrix(X)))
        out = {}
        for name in dict.fromkeys(subjects):
            subject_targets = None if targets is None else targets.get(name)
            r = self.readout(name, subject_targets, self._channels(subject_targets))
            out[name] = self._readout(z[subjects == name], r["adapter/weight"], r["adapter/bias"]) * r["y_scale"] \
                + r["intercept"]
        return out

    def subject_state(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Per target of `subject`: its validation R^2 (NaN for a subject not trained on)."""
        if subject in self.subjects_:
            return {"validation_r2": self.validation_r2_[subject]}
        return {"validation_r2": np.full(self._channels(targets) * self.times_, np.nan, np.float32)}

    def subject_artifacts(self, subject: str, targets: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
        """What `subject`'s fits file keeps: the trunk, its readout, the standardisation and the loss curves
        (`reload` needs no training)."""
        trunk = {f"trunk/{name}": value.numpy() for name, value in self.network_.trunk.state_dict().items()}
        return {**trunk, **self.readout(subject, targets, self._channels(targets)), "x_mean": self.x_mean_,
                "x_scale": self.x_scale_, "train_loss": self.train_loss_, "validation_loss": self.validation_loss_,
                "best_epoch": np.int64(self.best_epoch_), "times": np.int64(self.times_)}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet | np.ndarray, Y: np.ndarray,
               device: str = "auto") -> "AdaptedSubject":
        """One subject's model from its fits file (`subject_artifacts`, `subject_state`); X and Y only for the
        sha256 check."""
        return AdaptedSubject(state)


class AdaptedSubject:
    """One subject of a fitted SubjectAdapters, reloaded from its fits file: the trunk and its adapter."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state_ = state
        weights = {name.removeprefix("trunk/"): torch.as_tensor(value) for name, value in state.items()
                   if name.startswith("trunk/")}
        layers = sorted({int(name.split(".")[0]) for name in weights})
        out, n_features = weights[f"{layers[-1]}.weight"].shape[0], weights["0.weight"].shape[1]
        if len(layers) == 1:
            self.trunk = nn.Sequential(nn.Linear(n_features, out))
        else:
            hidden = weights["0.weight"].shape[0]
            self.trunk = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, out))
        self.trunk.load_state_dict(weights)
        self.trunk.eval()

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict[str, Any] | None = None) -> np.ndarray:
        s = self.state_
        Xs = ((as_matrix(X) - s["x_mean"]) / s["x_scale"]).astype(np.float32)
        times = int(s["times"])
        with torch.no_grad():
            z = self.trunk(torch.as_tensor(Xs)).numpy().reshape(len(Xs), -1, times)
        prediction = SubjectAdapters._readout(z, s["adapter/weight"], s["adapter/bias"])
        return prediction * s["y_scale"] + s["intercept"]

    def state(self) -> dict[str, np.ndarray]:
        return {"validation_r2": self.state_["validation_r2"]}


def _balanced_factors(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The best rank-`rank` approximation of `matrix` (m, n) as left (m, rank) @ right (rank, n), both factors
    scaled by the square roots of the singular values; through the eigenvectors of the smaller Gram matrix
    (MEG: few channels, many features x times; fMRI: many vertices, few features)."""
    matrix = np.asarray(matrix)
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:  # float64 by blocks of rows: no float64 copy of a tall float32 matrix (NSD: 320,000 x 768)
        blocks = row_blocks(len(matrix), matrix.shape[1])
        gram = sum(np.asarray(matrix[b], np.float64).T @ np.asarray(matrix[b], np.float64) for b in blocks)
    else:
        matrix = np.asarray(matrix, np.float64)
        gram = matrix @ matrix.T
    values, vectors = np.linalg.eigh(gram)
    top = np.argsort(values)[::-1][:rank]
    singular = np.sqrt(np.clip(values[top], 1e-12, None))
    if tall:  # vectors are the right singular vectors
        left = np.concatenate([np.asarray(matrix[b], np.float64) @ vectors[:, top] for b in blocks])
        return left / np.sqrt(singular), (vectors[:, top] * np.sqrt(singular)).T
    return vectors[:, top] * np.sqrt(singular), (vectors[:, top] / np.sqrt(singular)).T @ matrix


def _shrunk_ridge(z: np.ndarray, y: np.ndarray, prior: np.ndarray, alphas: list[float]) -> list[np.ndarray]:
    """Per alpha, the (C, rank) change of the readout that minimises sum ||y - (prior + delta) z||^2 +
    alpha ||delta||^2 over rows and times, z (n, rank, T) and y (n, C, T) centred over the rows."""
    z = z - z.mean(0)
    y = y - y.mean(0)
    residual = y - np.einsum("nrt,cr->nct", z, prior)
    gram = np.einsum("nrt,nst->rs", z, z)
    cross = np.einsum("nct,nrt->cr", residual, z)
    eye = np.eye(len(gram))
    return [np.linalg.solve(gram + alpha * eye, cross.T).T for alpha in alphas]

"""The MLP head (seed 000, idea 4): standardised features -> Linear -> GELU -> Dropout -> Linear -> every target.

One network predicts all targets of a unit at once (a hemisphere's vertices; a subject's sensors x
times), trained by the shared trainer (`models.trainer`): AdamW on the mean squared error of the
standardised targets, early stopping on a validation split grouped like the CV (by the `groups` the
driver gives: scenes for MEG; rows are images for fMRI). The validation rows are held out of training:
the kept weights are those of the best validation epoch (no refit on all rows).

Fits files keep the network (`weights/*`) and the standardisation, so a fit reloads without training,
and the loss curves (`train_loss`, `validation_loss`, `best_epoch`); per target, `validation_r2` (the
validation split's R^2 at the best epoch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit

from tbdencoder.config import family_defaults
from tbdencoder.features.featureset import FeatureSet, as_matrix
from tbdencoder.models.base import register
from tbdencoder.models.ridge import set_offsets
from tbdencoder.models.trainer import TrainSettings, train

MIN_VALIDATION_ROWS = 2


def validation_split(n_rows: int, fraction: float, seed: int,
                     groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) row indices; with `groups`, no group on both sides."""
    splitter = (ShuffleSplit if groups is None else GroupShuffleSplit)(n_splits=1, test_size=fraction, random_state=seed)
    try:
        fit_rows, validation_rows = next(splitter.split(np.zeros(n_rows), groups=groups))
    except ValueError as exc:  # scikit-learn's words are about "samples": here rows, or groups (scenes) when grouped
        units = f"{len(np.unique(groups))} groups (scenes) of {n_rows} rows" if groups is not None else f"{n_rows} rows"
        raise ValueError(f"validation_fraction = {fraction} of {units} leaves no training or no validation part "
                         f"({exc})") from exc
    if len(validation_rows) < MIN_VALIDATION_ROWS or len(fit_rows) < MIN_VALIDATION_ROWS:
        raise ValueError(f"validation_fraction = {fraction} of {n_rows} rows leaves {len(fit_rows)} training and "
                         f"{len(validation_rows)} validation rows; each needs at least {MIN_VALIDATION_ROWS}")
    return np.sort(fit_rows), np.sort(validation_rows)


def mlp_network(n_features: int, n_targets: int, hidden_units: int, dropout: float) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden_units), torch.nn.GELU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(hidden_units, n_targets))


DEFAULTS = family_defaults("mlp")  # the params schema holds every hyper-parameter's default


@register("mlp")
class MLPEncoder:
    """Two-layer MLP on standardised features, standardised targets; see the module docstring.

    Parameters
    ----------
    Defaults: the params schema's (`$defs.families.mlp`; seed 000: 512 hidden units, dropout 0.2).
    hidden_units, dropout : the hidden layer's width and dropout probability.
    learning_rate, weight_decay, batch_size, max_epochs, patience : AdamW and early stopping (trainer).
    validation_fraction : share of the rows (of the groups, when grouped) held out for early stopping.
    seed : initial weights, batch order, dropout and the validation split.
    device : where training runs ('auto', 'cpu', 'cuda').
    checkpoint : file the trainer checkpoints to (the driver sets one per fold), or None.

    Fitted attributes: network_ (torch, CPU), x_mean_, x_scale_ (p,), intercept_ and y_scale_ (t,),
    train_loss_, validation_loss_, best_epoch_, validation_r2_ (t,).
    """

    def __init__(self, hidden_units: int = DEFAULTS["hidden_units"], dropout: float = DEFAULTS["dropout"],
                 learning_rate: float = DEFAULTS["learning_rate"], weight_decay: float = DEFAULTS["weight_decay"],
                 batch_size: int = DEFAULTS["batch_size"], max_epochs: int = DEFAULTS["max_epochs"],
                 patience: int = DEFAULTS["patience"], validation_fraction: float = DEFAULTS["validation_fraction"],
                 seed: int = 0, device: str = "auto", checkpoint: str | Path | None = None):
        self.hidden_units = hidden_units
        self.dropout = dropout
        self.settings = TrainSettings(learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
                                      max_epochs=max_epochs, patience=patience, seed=seed)
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.device = device
        self.checkpoint = checkpoint

    def fit(self, X: FeatureSet | np.ndarray, Y: np.ndarray, *, groups: np.ndarray | None = None,
            subjects: np.ndarray | None = None, targets: dict | None = None) -> "MLPEncoder":
        X, Y = set_offsets(self, as_matrix(X), Y)
        self.y_scale_ = Y.std(0).astype(np.float32)
        self.y_scale_[self.y_scale_ == 0] = 1.0
        Xs, Ys = self._standardise(X), (Y - self.intercept_) / self.y_scale_
        fit_rows, validation_rows = validation_split(len(X), self.validation_fraction, self.seed, groups)
        torch.manual_seed(self.seed)
        self.network_ = mlp_network(X.shape[1], Y.shape[1], self.hidden_units, self.dropout)
        result = train(self.network_, Xs[fit_rows], Ys[fit_rows], Xs[validation_rows], Ys[validation_rows],
                       self.settings, device=self.device, checkpoint=self.checkpoint, label=f"mlp {X.shape}->{Y.shape}")
        self.train_loss_, self.validation_loss_ = result.train_loss, result.validation_loss
        self.best_epoch_ = result.best_epoch
        residual = Ys[validation_rows] - self._network_output(Xs[validation_rows])
        total = Ys[validation_rows] - Ys[validation_rows].mean(0)
        self.validation_r2_ = (1 - (residual**2).sum(0) / np.maximum((total**2).sum(0), 1e-12)).astype(np.float32)
        return self

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.x_mean_) / self.x_scale_).astype(np.float32)

    def _network_output(self, Xs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.network_(torch.as_tensor(Xs)).numpy()

    def predict(self, X: FeatureSet | np.ndarray, *, subjects: np.ndarray | None = None,
                targets: dict | None = None) -> np.ndarray:
        return self._network_output(self._standardise(as_matrix(X))) * self.y_scale_ + self.intercept_

    def state(self) -> dict[str, np.ndarray]:
        return {"validation_r2": self.validation_r2_}

    def artifacts(self) -> dict[str, np.ndarray]:
        """The network and standardisation (to reload without training) and the loss curves."""
        weights = {f"weights/{name}": value.numpy() for name, value in self.network_.state_dict().items()}
        return {**weights, "x_mean": self.x_mean_, "x_scale": self.x_scale_, "intercept": self.intercept_,
                "y_scale": self.y_scale_, "train_loss": self.train_loss_, "validation_loss": self.validation_loss_,
                "best_epoch": np.int64(self.best_epoch_)}

    @classmethod
    def reload(cls, state: dict[str, np.ndarray], X: FeatureSet | np.ndarray, Y: np.ndarray,
               device: str = "auto") -> "MLPEncoder":
        """The stored network (state holds `artifacts()` too); X and Y are not needed beyond the sha256 check."""
        model = cls(device=device)
        weights = {name.removeprefix("weights/"): torch.as_tensor(value) for name, value in state.items()
                   if name.startswith("weights/")}
        hidden_units, n_features = weights["0.weight"].shape
        model.network_ = mlp_network(n_features, weights["3.weight"].shape[0], hidden_units, 0.0)
        model.network_.load_state_dict(weights)
        model.network_.eval()
        for name in ("x_mean", "x_scale", "intercept", "y_scale", "train_loss", "validation_loss", "validation_r2"):
            setattr(model, f"{name}_", np.asarray(state[name]))
        model.best_epoch_ = int(state["best_epoch"])
        return model

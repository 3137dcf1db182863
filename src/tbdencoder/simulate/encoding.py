"""Encoding problems in feature space with a known ground truth: which model class can predict each target.

The fMRI and MEG simulators make responses from images, so how well a model can do there depends on the
backbone. Here the responses are made from the features themselves, so the best achievable prediction of
each target is known, and a family's claim can be checked directly:

- `linear`: y = X w, with w drawn from a subspace of rank `rank` shared by all targets (as responses of
  neighbouring vertices share tuning). Ridge is the right model; an MLP can at best match it.
- `energy`: y = (X u)^2 + (X v)^2, with u, v orthonormal directions in that subspace: the energy model of
  complex cells (Adelson & Bergen 1985), a response to the magnitude of a feature pair whatever its sign.
  With Gaussian features its linear correlation with every feature is zero, so ridge predicts nothing;
  an MLP can learn it.
- `none`: noise only.

Features are Gaussian with a decaying spectrum (a few dominant principal axes, as DNN features have).
Every target's signal is z-scored and scaled by `snr` (signal sd over noise sd); `signal` is kept so
tests can compare predictions with the noiseless truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESPONSE_FAMILIES = ("linear", "energy", "none")


@dataclass
class EncodingProblem:
    X: np.ndarray  # (n, p) float32 features
    Y: np.ndarray  # (n, t) float32 responses = signal + noise
    signal: np.ndarray  # (n, t) noiseless responses (0 for `none`)
    family: np.ndarray  # (t,) the response family of each target


def simulate_encoding(n_rows: int, n_features: int, targets_per_family: dict[str, int], *, rank: int = 8,
                      snr: float = 1.0, seed: int = 0) -> EncodingProblem:
    """Rows of features and responses; `targets_per_family` maps RESPONSE_FAMILIES names to target counts."""
    unknown = set(targets_per_family) - set(RESPONSE_FAMILIES)
    if unknown:
        raise ValueError(f"unknown response families {sorted(unknown)}; expected some of {RESPONSE_FAMILIES}")
    if not 2 <= rank <= n_features:
        raise ValueError(f"rank = {rank}: expected 2..n_features ({n_features})")
    rng = np.random.default_rng(seed)
    axes, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(n_features) / 4.0)
    X = (rng.standard_normal((n_rows, n_features)) * spectrum) @ axes.T
    X /= X.std(0)
    subspace, _ = np.linalg.qr(rng.standard_normal((n_features, rank)))  # (p, rank) orthonormal
    signals, families = [], []
    for family, count in targets_per_family.items():
        if family == "linear":
            signal = X @ (subspace @ rng.standard_normal((rank, count)))
        elif family == "energy":
            signal = np.empty((n_rows, count))
            for target in range(count):
                pair, _ = np.linalg.qr(subspace @ rng.standard_normal((rank, 2)))  # u, v orthonormal
                signal[:, target] = ((X @ pair) ** 2).sum(1)
        else:
            signal = np.zeros((n_rows, count))
        std = signal.std(0)
        signals.append((signal - signal.mean(0)) / np.where(std > 0, std, 1.0))
        families += [family] * count
    signal = np.concatenate(signals, axis=1) * snr
    Y = signal + rng.standard_normal(signal.shape)
    return EncodingProblem(X.astype(np.float32), Y.astype(np.float32), signal.astype(np.float32), np.array(families))

"""Training losses chosen by name, for the shared trainer (`models.trainer`).

Every loss is a torch module called as `loss(prediction, target)` -> scalar (mean over the batch); its
parameters (the CLIP temperature) join the optimiser; a loss with a schedule over epochs (distillation) has
`start_epoch(epoch)`, which the trainer calls before each epoch. `build_loss` takes a name (`"mse"`), weights by
name (`{"mse": 1.0, "clip": 0.5}`), a list of `(name, weight)` or `(name, weight, kwargs)` entries
(`[("smooth_l1", 1.0, {"beta": 0.5}), ("clip", 0.1)]`), or a loss module, returned as is.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MSE(nn.Module):
    """Mean squared error over all entries."""

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(prediction, target)


class SmoothL1(nn.Module):
    """Huber-like: 0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta; mean over all entries."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = beta

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(prediction, target, beta=self.beta)

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class ClipLoss(nn.Module):
    """Symmetric InfoNCE (CLIP): row i of the prediction must pick row i of the target among the batch's
    rows, and row i of the target row i of the prediction; scores are cosine similarities over a learned
    temperature (a log-temperature parameter, kept >= `min_temperature`)."""

    def __init__(self, temperature: float = 0.07, min_temperature: float = 0.01):
        super().__init__()
        self.temperature, self.min_temperature = temperature, min_temperature
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def scores(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(len(a), len(b)) cosine similarities of the rows (flattened) over the temperature: ranks the
        candidates `b` of each row of `a` in training and in retrieval alike."""
        a, b = F.normalize(a.flatten(1), dim=1), F.normalize(b.flatten(1), dim=1)
        return a @ b.T / self.log_temperature.clamp(min=math.log(self.min_temperature)).exp()

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scores = self.scores(prediction, target)
        labels = torch.arange(len(scores), device=scores.device)
        return (F.cross_entropy(scores, labels) + F.cross_entropy(scores.T, labels)) / 2

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, min_temperature={self.min_temperature}"


class WeightedSum(nn.Module):
    """sum_i weight_i * loss_i(prediction, target)."""

    def __init__(self, weights: list[float], losses: list[nn.Module]):
        super().__init__()
        self.weights, self.losses = list(weights), nn.ModuleList(losses)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(weight * loss(prediction, target) for weight, loss in zip(self.weights, self.losses))

    def extra_repr(self) -> str:
        return f"weights={self.weights}"


class Distillation(nn.Module):
    """Knowledge distillation (All-for-One's student): the target stacks (data, teacher) on its first axis;
    training gives (1 - w) L(prediction, data) + w L(prediction, teacher), smooth L1 both, with the teacher's weight
    w falling linearly from 1 at the first epoch to 0 at `teacher_epochs` (the trainer calls `start_epoch`);
    evaluation (validation, early stopping) compares with the data alone."""

    def __init__(self, teacher_epochs: int, beta: float = 1.0):
        super().__init__()
        self.teacher_epochs, self.beta = teacher_epochs, beta
        self.teacher_weight = 1.0 if teacher_epochs > 0 else 0.0

    def start_epoch(self, epoch: int) -> None:
        self.teacher_weight = max(0.0, 1.0 - epoch / self.teacher_epochs) if self.teacher_epochs > 0 else 0.0

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        data = F.smooth_l1_loss(prediction, target[0], beta=self.beta)
        if not self.training or self.teacher_weight == 0.0:
            return data
        teacher = F.smooth_l1_loss(prediction, target[1], beta=self.beta)
        return (1.0 - self.teacher_weight) * data + self.teacher_weight * teacher

    def extra_repr(self) -> str:
        return f"teacher_epochs={self.teacher_epochs}, beta={self.beta}"


LOSSES = {"mse": MSE, "smooth_l1": SmoothL1, "clip": ClipLoss, "distillation": Distillation}


def _named(name: str, kwargs: dict | None = None) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name](**(kwargs or {}))


def build_loss(spec: str | dict | list | tuple | nn.Module) -> nn.Module:
    """The loss module a spec names (see the module docstring); unknown names are refused."""
    if isinstance(spec, nn.Module):
        return spec
    if isinstance(spec, str):
        return _named(spec)
    entries = list(spec.items()) if isinstance(spec, dict) else spec
    return WeightedSum([entry[1] for entry in entries], [_named(entry[0], *entry[2:]) for entry in entries])

"""Where torch work runs."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when a GPU is visible, else CPU; 'cpu', 'cuda' and 'cuda:N' as given."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was requested but torch sees no CUDA GPU")
    return torch.device(device)

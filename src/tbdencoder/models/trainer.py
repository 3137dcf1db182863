"""The one trainer of every gradient-trained family: seeded mini-batch AdamW with early stopping.

- Seeded: the initial weights, the batch order and dropout come from `seed`; same inputs, same outputs.
- Early stopping on a validation split the family makes (grouped like the CV: by image for fMRI, by
  scene for MEG): training stops after `patience` epochs without a lower validation loss, and the weights
  of the best epoch are kept.
- Checkpoints: with a `checkpoint` path, the whole training state (weights, optimiser, random generators,
  curves, best weights) is written atomically at most every `checkpoint_interval_s` seconds and when
  training ends. A rerun with the same module, data and settings resumes where the file left off and
  ends with the weights an uninterrupted run gives; a checkpoint of other data or settings is ignored.
- Progress: a tqdm bar per fit (epoch, losses), on stderr, so logs show how far a long fit is.
- Loss curves (mean squared error per epoch, training and validation) are returned with the best epoch.
"""

from __future__ import annotations

import copy
import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tbdencoder.device import resolve_device
from tbdencoder.io import atomic_path, get_logger

log = get_logger("trainer")


@dataclass(frozen=True)
class TrainSettings:
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 10
    seed: int = 0
    checkpoint_interval_s: float = 60.0


@dataclass
class TrainResult:
    train_loss: np.ndarray  # (epochs,) mean squared error on the training rows (dropout on)
    validation_loss: np.ndarray  # (epochs,) mean squared error on the validation rows
    best_epoch: int  # 0-based epoch whose weights the module holds


def _fingerprint(module: torch.nn.Module, arrays: tuple[np.ndarray, ...], settings: TrainSettings) -> str:
    """What a checkpoint must match to be resumed: the architecture, the data and the settings."""
    digest = hashlib.sha256(repr(module).encode())
    for array in arrays:
        array = np.ascontiguousarray(array, dtype=np.float32)
        digest.update(str(array.shape).encode())
        digest.update(array.data)
    fields = {key: value for key, value in asdict(settings).items() if key != "checkpoint_interval_s"}
    digest.update(repr(sorted(fields.items())).encode())
    return digest.hexdigest()


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    if path is None or not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log.warning("%s: checkpoint of other data or settings, ignored (training starts afresh)", path)
        return None
    return state


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train(module: torch.nn.Module, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray,
          settings: TrainSettings, *, device: str = "auto", checkpoint: str | Path | None = None,
          label: str = "") -> TrainResult:
    """Train `module` (X -> Y, mean squared error) in place; it ends holding the best epoch's weights (on CPU)."""
    checkpoint = None if checkpoint is None else Path(checkpoint)
    fingerprint = _fingerprint(module, (X_train, Y_train, X_val, Y_val), settings)
    torch.manual_seed(settings.seed)
    order = torch.Generator().manual_seed(settings.seed)
    torch_device = resolve_device(device)
    module.to(torch_device)
    optimiser = torch.optim.AdamW(module.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    x_train, y_train, x_val, y_val = (torch.as_tensor(np.asarray(a, dtype=np.float32), device=torch_device)
                                      for a in (X_train, Y_train, X_val, Y_val))
    state = _load_checkpoint(checkpoint, fingerprint)
    if state is None:
        state = {"fingerprint": fingerprint, "epoch": 0, "train_loss": [], "validation_loss": [],
                 "best_epoch": -1, "best_loss": np.inf, "best_weights": None, "done": False}
    else:
        module.load_state_dict(state["module"])
        optimiser.load_state_dict(state["optimiser"])
        order.set_state(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
        if torch_device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], torch_device)
        log.info("%s: resuming from %s at epoch %d", label, checkpoint, state["epoch"])

    def snapshot() -> dict:
        return {**state, "module": copy.deepcopy(module.state_dict()), "optimiser": copy.deepcopy(optimiser.state_dict()),
                "order_rng": order.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(torch_device) if torch_device.type == "cuda" else None}

    last_save = time.monotonic()
    n_rows = len(x_train)
    bar = tqdm(total=settings.max_epochs, initial=state["epoch"], desc=label or "train", unit="epoch",
               disable=state["done"], leave=False, mininterval=10.0)
    while not state["done"]:
        module.train()
        permutation = torch.randperm(n_rows, generator=order).to(torch_device)
        total = 0.0
        for start in range(0, n_rows, settings.batch_size):
            batch = permutation[start:start + settings.batch_size]
            loss = torch.nn.functional.mse_loss(module(x_train[batch]), y_train[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        module.eval()
        with torch.no_grad():
            validation = float(torch.nn.functional.mse_loss(module(x_val), y_val))
        state["train_loss"].append(total / n_rows)
        state["validation_loss"].append(validation)
        if validation < state["best_loss"]:
            state.update(best_loss=validation, best_epoch=state["epoch"],
                         best_weights={k: v.detach().cpu().clone() for k, v in module.state_dict().items()})
        state["epoch"] += 1
        state["done"] = (state["epoch"] >= settings.max_epochs
                         or state["epoch"] - 1 - state["best_epoch"] >= settings.patience)
        bar.update(1)
        bar.set_postfix(train=f"{state['train_loss'][-1]:.4f}", validation=f"{validation:.4f}", refresh=False)
        if checkpoint is not None and (state["done"] or time.monotonic() - last_save >= settings.checkpoint_interval_s):
            _save_checkpoint(checkpoint, snapshot())
            last_save = time.monotonic()
    bar.close()
    module.load_state_dict(state["best_weights"])
    module.to("cpu").eval()
    log.info("%s: %d epochs, best %d (validation loss %.4f)", label, state["epoch"], state["best_epoch"] + 1,
             state["best_loss"])
    return TrainResult(np.asarray(state["train_loss"], dtype=np.float32),
                       np.asarray(state["validation_loss"], dtype=np.float32), int(state["best_epoch"]))

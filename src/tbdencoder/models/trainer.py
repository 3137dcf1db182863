"""The one trainer of every gradient-trained family: seeded mini-batch AdamW with early stopping.

- Data: any `TrainData` (`models.train_data`: arrays in memory, or datasets read batch by batch from an
  HDF5 file); `forward(module, batch)` gives the (prediction, target) pair the loss compares, so a batch
  holds whatever a family needs (features, subject indices, padded per-subject targets and their mask:
  the forward then returns `prediction[mask], target[mask]`). `train` is the shorthand for arrays X -> Y.
- Loss by name (`models.losses`: mse, smooth_l1, clip, distillation, weighted sums); its parameters (the CLIP
  temperature) join the optimiser, without weight decay, and end with their last epoch's values; it is in
  training mode for the training rows and in evaluation mode for the validation rows, and one with a schedule
  over epochs (`start_epoch`) is told each epoch before it starts.
- Seeded: the initial weights, the batch order and dropout come from `seed`; same inputs, same outputs.
- Early stopping on a validation split the family makes (grouped like the CV: by image for fMRI, by
  scene for MEG): training stops after `patience` epochs without a lower validation loss, and the module
  ends with the weights of the best epoch; with `keep_top_k`, the weights of the k best epochs are
  returned too (model soups).
- Checkpoints: with a `checkpoint` path, only what resuming needs (module, loss and optimiser states,
  random generator states, curves, the kept epochs' weights and a fingerprint of the architecture, loss,
  data and settings) is written atomically at most every `checkpoint_interval_s` seconds and when
  training ends, and read back with `torch.load(weights_only=True)`, which builds no arbitrary objects.
  A rerun with the same module, data and settings resumes where the file left off and ends with the
  weights an uninterrupted run gives; a checkpoint of other data or settings is ignored, and one that
  cannot be loaded or whose contents do not fit is discarded with a warning: training starts afresh.
- Progress: a tqdm bar per fit (epoch, losses), on stderr, so logs show how far a long fit is.
- Loss curves (per epoch, training and validation) are returned with the best epoch.
- A `penalty(module, step)` (a regulariser on the module's own outputs, weighted by the optimiser step, e.g.
  FactorTopy's decaying selector term) joins the training loss only; the validation loss is the loss alone.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tbdencoder.device import resolve_device
from tbdencoder.io import atomic_path, get_logger
from tbdencoder.models.losses import build_loss
from tbdencoder.models.train_data import ArrayData, TrainData

log = get_logger("trainer")

FORMAT = "trainer-v2"  # in the fingerprint: a checkpoint of another layout is not resumed


@dataclass(frozen=True)
class TrainSettings:
    """The trainer's settings. The defaults serve direct (notebook, test) use; a family passes its own, whose
    defaults live in the params schema with the family's other hyper-parameters."""

    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    max_epochs: int = 200
    patience: int = 10
    seed: int = 0
    keep_top_k: int = 0  # also return the weights of the k best epochs (model soups)
    validation_batch_size: int | None = None  # None: the whole validation split in one batch
    checkpoint_interval_s: float = 60.0


@dataclass
class TrainResult:
    train_loss: np.ndarray  # (epochs,) loss on the training rows (dropout on)
    validation_loss: np.ndarray  # (epochs,) loss on the validation rows
    best_epoch: int  # 0-based epoch whose weights the module holds
    top_k_epochs: list[int] = field(default_factory=list)  # with keep_top_k: the k best epochs, best first
    top_k_weights: list[dict[str, torch.Tensor]] = field(default_factory=list)  # their module states (CPU)


Forward = Callable[[torch.nn.Module, Any], tuple[torch.Tensor, torch.Tensor]]
Penalty = Callable[[torch.nn.Module, int], torch.Tensor]


def x_to_y(module: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The default forward: the module's output for batch["x"] against batch["y"]."""
    return module(batch["x"]), batch["y"]


def _to(batch: Any, device: torch.device) -> Any:
    """The batch with its tensors on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return {key: _to(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(value, device) for value in batch)
    return batch


def _mean_loss(data: TrainData, rows: np.ndarray, batch_size: int, loss_of: Callable[[Any], torch.Tensor]) -> float:
    """The loss over `rows` in batches, weighted by batch rows (one batch: its loss exactly)."""
    total = 0.0
    for start in range(0, len(rows), batch_size):
        indices = rows[start:start + batch_size]
        total += loss_of(data.batch(indices)).item() * (len(indices) / len(rows))
    return total


def _fingerprint(module: torch.nn.Module, loss: torch.nn.Module, datasets: tuple[TrainData, ...],
                 settings: TrainSettings) -> str:
    """What a checkpoint must match to be resumed: the layout, architecture, loss, data and settings."""
    digest = hashlib.sha256(f"{FORMAT} {module!r} {loss!r}".encode())
    for data in datasets:
        digest.update(data.fingerprint().encode())
    fields = {key: value for key, value in asdict(settings).items() if key != "checkpoint_interval_s"}
    digest.update(repr(sorted(fields.items())).encode())
    return digest.hexdigest()


def _load_checkpoint(path: Path | None, fingerprint: str) -> dict | None:
    if path is None or not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, corrupt, or holding objects that weights_only refuses to build
        log.warning("%s: unloadable checkpoint discarded, training starts afresh (%s)", path, error)
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        log.warning("%s: checkpoint of other data or settings, ignored (training starts afresh)", path)
        return None
    return state


def _progress(state: dict, module: torch.nn.Module, k: int) -> dict:
    """A checkpoint's progress, checked: curves as long as its epochs, min(k, epochs) kept weights that fit
    the module (each is loaded into it: the caller then restores the module)."""
    kept = [{"epoch": int(entry["epoch"]), "loss": float(entry["loss"]), "weights": entry["weights"]}
            for entry in state["kept"]]
    progress = {"epoch": int(state["epoch"]), "train_loss": [float(v) for v in state["train_loss"]],
                "validation_loss": [float(v) for v in state["validation_loss"]], "kept": kept,
                "done": bool(state["done"])}
    epochs = progress["epoch"]
    if not len(progress["train_loss"]) == len(progress["validation_loss"]) == epochs or len(kept) != min(k, epochs):
        raise ValueError(f"{epochs} epochs with {len(progress['train_loss'])} and {len(progress['validation_loss'])}"
                         f" losses and {len(kept)} kept weights")
    for entry in kept:
        module.load_state_dict(entry["weights"])
    return progress


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_on(module: torch.nn.Module, train_data: TrainData, validation_data: TrainData, settings: TrainSettings,
             *, forward: Forward = x_to_y, loss: str | dict | list | torch.nn.Module = "mse", device: str = "auto",
             checkpoint: str | Path | None = None, label: str = "", penalty: Penalty | None = None) -> TrainResult:
    """Train `module` in place on `loss(*forward(module, batch))`; it ends holding the best epoch's weights (on CPU).

    `loss` is a spec for `losses.build_loss` or a loss module (its parameters are trained too); `penalty(module,
    step)` (0-based optimiser step) is added to the training loss."""
    checkpoint = None if checkpoint is None else Path(checkpoint)
    criterion = build_loss(loss)
    datasets = (train_data, validation_data)
    fingerprint = None if checkpoint is None else _fingerprint(module, criterion, datasets, settings)
    torch.manual_seed(settings.seed)
    order = torch.Generator().manual_seed(settings.seed)
    torch_device = resolve_device(device)
    module.to(torch_device)
    criterion.to(torch_device)
    groups = [{"params": list(module.parameters())}]
    if loss_parameters := list(criterion.parameters()):
        groups.append({"params": loss_parameters, "weight_decay": 0.0})
    optimiser = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    k = max(1, settings.keep_top_k)

    def training_state() -> dict:
        """What resuming needs beside the progress."""
        return {"module": {name: value.detach().cpu() for name, value in module.state_dict().items()},
                "loss": criterion.state_dict(), "optimiser": optimiser.state_dict(),
                "order_rng": order.get_state(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(torch_device) if torch_device.type == "cuda" else None}

    def set_training_state(state: dict) -> None:
        module.load_state_dict(state["module"])
        criterion.load_state_dict(state["loss"])
        optimiser.load_state_dict(state["optimiser"])
        order.set_state(state["order_rng"])
        torch.set_rng_state(state["torch_rng"])
        if torch_device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], torch_device)

    def checkpoint_state() -> dict:
        """The kept weights of the last epoch are the module's: stored once."""
        state = training_state()
        kept = [{**entry, "weights": state["module"] if entry["epoch"] == progress["epoch"] - 1 else entry["weights"]}
                for entry in progress["kept"]]
        return {"fingerprint": fingerprint, **progress, "kept": kept, **state}

    progress = {"epoch": 0, "train_loss": [], "validation_loss": [], "kept": [], "done": False}
    saved = _load_checkpoint(checkpoint, fingerprint)
    if saved is not None:
        fresh = copy.deepcopy(training_state())
        try:
            resumed = _progress(saved, module, k)
            set_training_state(saved)
            progress = resumed
            log.info("%s: resuming from %s at epoch %d", label, checkpoint, progress["epoch"])
        except Exception as error:  # whatever a checkpoint holds, a bad one only costs a fresh start
            set_training_state(fresh)
            log.warning("%s: checkpoint contents do not fit, discarded, training starts afresh (%r)", checkpoint, error)

    def loss_of(batch: Any) -> torch.Tensor:
        return criterion(*forward(module, _to(batch, torch_device)))

    steps_per_epoch = -(-len(train_data) // settings.batch_size)
    step = {"in_epoch": 0}

    def training_step(batch: Any) -> torch.Tensor:
        value = loss_of(batch)
        total = value
        if penalty is not None:
            total = value + penalty(module, progress["epoch"] * steps_per_epoch + step["in_epoch"])
            step["in_epoch"] += 1
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        return value

    last_save = time.monotonic()
    validation_rows = np.arange(len(validation_data))
    bar = tqdm(total=settings.max_epochs, initial=progress["epoch"], desc=label or "train", unit="epoch",
               disable=progress["done"], leave=False, mininterval=10.0)
    while not progress["done"]:
        module.train()
        criterion.train()
        if hasattr(criterion, "start_epoch"):  # a loss with a schedule over epochs (distillation)
            criterion.start_epoch(progress["epoch"])
        step["in_epoch"] = 0
        permutation = torch.randperm(len(train_data), generator=order).numpy()
        progress["train_loss"].append(_mean_loss(train_data, permutation, settings.batch_size, training_step))
        module.eval()
        criterion.eval()
        with torch.no_grad():
            validation = _mean_loss(validation_data, validation_rows,
                                    settings.validation_batch_size or len(validation_data), loss_of)
        progress["validation_loss"].append(validation)
        kept = progress["kept"]
        if len(kept) < k or validation < kept[-1]["loss"]:
            weights = {name: value.detach().cpu().clone() for name, value in module.state_dict().items()}
            kept.append({"epoch": progress["epoch"], "loss": validation, "weights": weights})
            kept.sort(key=lambda entry: entry["loss"])  # stable: of equal losses, the earlier epoch first
            del kept[k:]
        progress["epoch"] += 1
        progress["done"] = (progress["epoch"] >= settings.max_epochs
                            or progress["epoch"] - 1 - kept[0]["epoch"] >= settings.patience)
        bar.update(1)
        bar.set_postfix(train=f"{progress['train_loss'][-1]:.4f}", validation=f"{validation:.4f}", refresh=False)
        if checkpoint is not None and (progress["done"]
                                       or time.monotonic() - last_save >= settings.checkpoint_interval_s):
            _save_checkpoint(checkpoint, checkpoint_state())
            last_save = time.monotonic()
    bar.close()
    best = progress["kept"][0]
    module.load_state_dict(best["weights"])
    module.to("cpu").eval()
    criterion.to("cpu")
    log.info("%s: %d epochs, best %d (validation loss %.4f)", label, progress["epoch"], best["epoch"] + 1, best["loss"])
    top = progress["kept"] if settings.keep_top_k else []
    return TrainResult(np.asarray(progress["train_loss"], dtype=np.float32),
                       np.asarray(progress["validation_loss"], dtype=np.float32), best["epoch"],
                       [entry["epoch"] for entry in top], [entry["weights"] for entry in top])


def train(module: torch.nn.Module, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray, Y_val: np.ndarray,
          settings: TrainSettings, *, device: str = "auto", checkpoint: str | Path | None = None,
          label: str = "") -> TrainResult:
    """`train_on` for arrays X -> Y with the mean squared error (the MLP head)."""
    on = resolve_device(device)
    return train_on(module, ArrayData({"x": X_train, "y": Y_train}, on), ArrayData({"x": X_val, "y": Y_val}, on),
                    settings, device=device, checkpoint=checkpoint, label=label)

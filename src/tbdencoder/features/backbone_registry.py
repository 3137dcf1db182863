"""Backbone libraries behind one interface: `library` in params picks the module that builds the network.

A library module registers itself with `@register_library("<name>")` on a class with three static methods:

- `resolve(model_name, pretrained, random_init, layers) -> BackboneSpec`: checks the choice without the
  network or any download (model name, weights choice, layer names against the architecture) and
  derives the preprocessing;
- `layer_table_entry(model_name) -> dict`: what params validation checks a choice against without torch
  (features.layer_names), read off the architecture;
- `load(spec, seed) -> LoadedBackbone`: builds the network with its weights (from a local cache or
  file; a download only when the hub is reachable, else `WeightsUnavailableError` within seconds
  saying how to provide them), random-init only when `spec.random_init`.

What a layer yields (`LoadedBackbone.features`), named `<layer>/<token>`:

- `global`: one vector per image: the class token of a ViT block (register tokens are left out), or
  the global average pool of a CNN map; a fully connected layer's output as it is;
- `grid`: the patch tokens / CNN map average-pooled to grid_size x grid_size, flattened (row, col,
  channel); spatial layers only;
- `map`: the unpooled patch tokens / CNN map, average-pooled only where larger than map_size x map_size,
  flattened (row, col, channel); spatial layers only, when asked;
- `embedding` (one per backbone, not per layer): the model's output embedding (for open_clip the
  image embedding in the joint image-text space), when asked.

Layer names are the library's own: `block06` for the 6th transformer block of a ViT (params give the
1-based index 6), a module path such as `features.10` or `classifier.5` for torchvision CNNs.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import torch
import torch.nn.functional as F

TOKENS = ("global", "grid", "map")
HF_HOST = ("huggingface.co", 443)
NETWORK_TIMEOUT_S = 3.0
LIBRARIES: dict[str, type] = {}


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights are neither on this machine nor downloadable."""


@contextlib.contextmanager
def reading_weights(path: str | None, library: str, model_name: str) -> Iterator[None]:
    """Turn any failure to read a weights file into one ValueError naming the file and what it must be.

    torch, safetensors and the libraries otherwise stop with their own errors (a bare EOFError for an empty
    file, a header error for a cut-short .safetensors, missing and unexpected keys for another architecture).
    """
    if path is None:
        yield
        return
    try:
        yield
    except WeightsUnavailableError:
        raise
    except Exception as error:  # noqa: BLE001 (whatever the readers raise, the cause is this file)
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"{path}: not usable as {library} {model_name} weights ({type(error).__name__}: {reason}); "
                         f"expected the complete state_dict of a {model_name} (.safetensors, or a .pth / .pt written "
                         "by torch.save)") from error


@dataclass(frozen=True)
class BackboneSpec:
    """A validated backbone choice, known without building the network."""

    library: str
    model_name: str
    pretrained: str | None  # tag / weight name / local file, or None (random init)
    random_init: bool
    identity: str  # what the weights are, for cache keys: tag, weight name, file sha256, or 'random-init'
    layers: tuple[str, ...]  # the library's layer names, in forward order
    spatial: tuple[bool, ...]  # per layer: whether it has a spatial map (grid and map tokens)
    preprocess: dict[str, Any]  # JSON-able description of the image preprocessing (attrs and cache key)
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # library-specific (e.g. open_clip tag cfg)


class LoadedBackbone(Protocol):
    spec: BackboneSpec

    def transform(self, image) -> torch.Tensor:
        """PIL RGB image -> the network's (3, H, W) float input."""
        ...

    def to(self, device: torch.device) -> LoadedBackbone: ...

    def features(self, images: torch.Tensor, grid_size: int, map_size: int | None,
                 embedding: bool) -> dict[str, torch.Tensor]:
        """One forward pass -> {`<layer>/<token>` or `embedding`: float32 on the CPU, batch first}.

        `global` and `embedding` are (batch, C); `grid` (batch, g, g, C) and `map` (batch, h, w, C); the
        extractor stores each flattened per row, with the row shape in the dataset's `shape` attr.
        Stops after the deepest requested layer unless the embedding is asked for.
        """
        ...


def register_library(name: str):
    def add(cls: type) -> type:
        LIBRARIES[name] = cls
        return cls

    return add


def _library(library: str) -> type:
    import tbdencoder.features.libraries  # noqa: F401  (registers the libraries)

    if library not in LIBRARIES:
        raise ValueError(f"unknown backbone library {library!r}; expected one of {sorted(LIBRARIES)}")
    return LIBRARIES[library]


def resolve_backbone(library: str, model_name: str, pretrained: str | None, random_init: bool,
                     layers: list) -> BackboneSpec:
    return _library(library).resolve(model_name, pretrained, random_init, layers)


def load_backbone(spec: BackboneSpec, seed: int) -> LoadedBackbone:
    return _library(spec.library).load(spec, seed)


def layer_table_entry(library: str, model_name: str) -> dict:
    return _library(library).layer_table_entry(model_name)


def vit_layer_name(block: int) -> str:
    """The name of a ViT's 1-based transformer block (params give the index)."""
    return f"block{int(block):02d}"


def layer_name(layer: int | str) -> str:
    """A params layer (a 1-based ViT block index, or a module path) as named in features files."""
    return vit_layer_name(layer) if isinstance(layer, int) else str(layer)


def pooled_tokens(name: str, spatial_map: torch.Tensor, grid_size: int, map_size: int | None,
                  global_vector: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """`global` (batch, C), `grid` (batch, g, g, C) and (with map_size) `map` (batch, h, w, C) of a
    (batch, C, H, W) map.

    `global_vector` (a ViT's class token) replaces the map's average when given.
    """
    spatial_map = spatial_map.float()
    out = {f"{name}/global": (spatial_map.mean((2, 3)) if global_vector is None else global_vector.float()),
           f"{name}/grid": F.adaptive_avg_pool2d(spatial_map, grid_size).permute(0, 2, 3, 1)}
    if map_size is not None:
        height, width = spatial_map.shape[2:]
        size = (min(height, map_size), min(width, map_size))
        unpooled = spatial_map if size == (height, width) else F.adaptive_avg_pool2d(spatial_map, size)
        out[f"{name}/map"] = unpooled.permute(0, 2, 3, 1)
    return {key: value.contiguous().cpu() for key, value in out.items()}


def reachable(host: str, port: int, timeout: float = NETWORK_TIMEOUT_S) -> bool:
    """Whether a TCP connection opens within `timeout` seconds (name lookup included)."""
    opened = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)

"""FeatureSet: the features of some stimuli as named blocks, with the views the model families need.

A block is one token of one layer of one backbone (`block06/global`, `block06/grid`), prefixed by the
stream for MEG crops (`foveal:block06/global`). The extractor's structure survives loading, so a family
can ask for the view it needs: `flat()` (ridge, the MLP), `blocks()` and `block_sizes` (banded ridge:
one penalty per block). Further views (unpooled patch maps, the backbone's projected embedding) join as
the features file gains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.features.backbone_registry import layer_name


@dataclass
class FeatureSet:
    """Rows = stimuli; `data[i]` (n, p_i) float32 is the block named `names[i]`, each row a flattened
    `shapes[i]` ((C,), (g, g, C) or (h, w, C); None when unknown)."""

    names: list[str]
    data: list[np.ndarray]
    shapes: list[tuple[int, ...] | None] | None = None

    def __post_init__(self):
        if len(self.names) != len(self.data) or not self.data:
            raise ValueError(f"expected one array per block name, got {len(self.names)} names, {len(self.data)} arrays")
        if len({block.shape[0] for block in self.data}) != 1:
            raise ValueError(f"blocks {self.names} have different numbers of rows {[b.shape[0] for b in self.data]}")
        if self.shapes is None:
            self.shapes = [None] * len(self.data)

    @property
    def n_rows(self) -> int:
        return self.data[0].shape[0]

    @property
    def block_sizes(self) -> list[int]:
        return [block.shape[1] for block in self.data]

    def flat(self) -> np.ndarray:
        """(n, p) float32: the blocks side by side, in order."""
        return np.concatenate(self.data, axis=1)

    def blocks(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.data))

    def maps(self) -> dict[str, np.ndarray]:
        """The unpooled maps (`.../map` blocks) as (n, h, w, C) arrays."""
        return {name: block.reshape(len(block), *shape) for name, block, shape in zip(self.names, self.data, self.shapes)
                if name.endswith("/map")}

    def embedding(self) -> np.ndarray:
        """(n, d): the backbone's output embedding block."""
        found = [block for name, block in zip(self.names, self.data) if name.split(":")[-1] == "embedding"]
        if len(found) != 1:
            raise KeyError(f"expected one embedding block among {self.names}")
        return found[0]

    def take(self, rows) -> FeatureSet:
        """The rows `rows` (indices or a boolean mask) of every block."""
        return FeatureSet(list(self.names), [block[rows] for block in self.data], list(self.shapes))

    @classmethod
    def load(cls, features_path: str | Path, stimulus_ids: list[str], layers: list, tokens: list[str],
             prefix: str = "", embedding: bool = False) -> FeatureSet:
        """Rows for `stimulus_ids` of the chosen tokens of the chosen layers (1-based ViT blocks or module
        paths) of a features file, and its `embedding` when asked."""
        with h5py.File(features_path, "r") as h5:
            row_of = {sid: row for row, sid in enumerate(h5["stimulus_id"].asstr()[:])}
            missing = [sid for sid in stimulus_ids if sid not in row_of]
            if missing:
                raise KeyError(f"{features_path}: no features for stimuli {missing[:5]} ({len(missing)} missing)")
            rows = np.array([row_of[sid] for sid in stimulus_ids], dtype=np.int64)
            wanted = [(f"{layer_name(layer)}/{token}", f"layers/{layer_name(layer)}/{token}")
                      for layer in layers for token in tokens] + ([("embedding", "embedding")] if embedding else [])
            names, data, shapes = [], [], []
            for name, dataset in wanted:
                if dataset not in h5:
                    raise KeyError(f"{features_path}: no dataset {dataset} (layers there: {sorted(h5.get('layers', {}))}); "
                                   "extract it first (grid and map exist for spatial layers only, map with map_size, "
                                   "embedding with embedding: true)")
                names.append(prefix + name)
                data.append(np.asarray(h5[dataset][:][rows], dtype=np.float32))
                shape = h5[dataset].attrs.get("shape")
                shapes.append(None if shape is None else tuple(int(v) for v in shape))
        return cls(names, data, shapes)

    @classmethod
    def stack(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The rows of several sets with the same blocks (e.g. several subjects' fixations), one after another."""
        if any(s.names != sets[0].names for s in sets):
            raise ValueError(f"cannot stack feature sets with different blocks: {[s.names for s in sets]}")
        return cls(list(sets[0].names), [np.concatenate(blocks) for blocks in zip(*(s.data for s in sets))],
                   list(sets[0].shapes))

    @classmethod
    def side_by_side(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The blocks of several sets of the same rows (streams, backbones) in one set."""
        return cls([name for s in sets for name in s.names], [block for s in sets for block in s.data],
                   [shape for s in sets for shape in s.shapes])


def model_backbones(spec: dict) -> list[str]:
    """The backbone names of a model spec: `backbone` is one name or a list (backbones combined)."""
    return [spec["backbone"]] if isinstance(spec["backbone"], str) else list(spec["backbone"])


def load_model_features(features_paths: list[str | Path], stimulus_ids: list[str], spec: dict,
                        prefix: str = "") -> FeatureSet:
    """A model's FeatureSet: its layers x tokens of each of its backbones (one features file each, in order).

    With several backbones, `layers` maps each backbone to its layers and each block is prefixed by its
    backbone (`clip_vitb32:block06/global`, `alexnet:features.12/global`).
    """
    backbones = model_backbones(spec)
    if len(features_paths) != len(backbones):
        raise ValueError(f"model with backbones {backbones} needs one features file each, got {len(features_paths)}")
    if len(backbones) == 1:
        return FeatureSet.load(features_paths[0], stimulus_ids, spec["layers"], spec["tokens"], prefix)
    return FeatureSet.side_by_side([
        FeatureSet.load(path, stimulus_ids, spec["layers"][backbone], spec["tokens"], f"{prefix}{backbone}:")
        for backbone, path in zip(backbones, features_paths)])


def as_matrix(X: FeatureSet | np.ndarray) -> np.ndarray:
    """The flat view of a FeatureSet; an (n, p) array as it is (the API takes either)."""
    return X.flat() if isinstance(X, FeatureSet) else np.asarray(X, dtype=np.float32)

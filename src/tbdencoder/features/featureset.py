"""FeatureSet: the features of some stimuli as named blocks, with the views the model families need.

A block is one token of one layer of one backbone (`block06/global`, `block06/grid`), prefixed by the
stream for MEG crops (`foveal:block06/global`). The extractor's structure survives loading, so a family
can ask for the view it needs: `flat()` (ridge, the MLP), `blocks()` and `block_sizes` (banded ridge:
one penalty per block), `maps()` (unpooled patch maps) and `embedding()`.

Unpooled maps (`.../map`, NSD with a ViT-B: 9,841 images x 4 layers x 16 x 16 x 768 = 31 GB) stay in the
features file: their blocks are `DiskRows`, read a batch of rows at a time by the families that take them
(FactorTopy) and read whole only where a view needs every value (`flat()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from tbdencoder.features.backbone_registry import layer_name


class DiskRows:
    """Rows of 2-D datasets of HDF5 files with the same columns (`sources`: (path, dataset) pairs; row k is row
    `rows[k]` of source `source[k]`), read when indexed: `block[rows]` -> float32 array (any order, repeats
    allowed), `take(rows)` -> the lazy subset, `np.asarray(block)` -> every row."""

    def __init__(self, sources: list[tuple[str | Path, str]], source: np.ndarray, rows: np.ndarray):
        self.sources = [(Path(path), dataset) for path, dataset in sources]
        self.source, self.rows = np.asarray(source, dtype=np.int64), np.asarray(rows, dtype=np.int64)
        widths = set()
        for path, dataset in self.sources:
            with h5py.File(path, "r") as h5:
                widths.add(int(h5[dataset].shape[1]))
        if len(widths) != 1:
            raise ValueError(f"rows of datasets with different widths {sorted(widths)} cannot form one block: {sources}")
        self.shape = (len(self.rows), widths.pop())
        self.dtype = np.dtype(np.float32)

    @classmethod
    def of(cls, path: str | Path, dataset: str, rows: np.ndarray) -> DiskRows:
        """Rows `rows` of one dataset."""
        return cls([(path, dataset)], np.zeros(len(rows), np.int64), rows)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, rows) -> DiskRows:
        return DiskRows(self.sources, self.source[rows], self.rows[rows])

    def __getitem__(self, rows) -> np.ndarray:
        index = np.atleast_1d(np.arange(len(self))[rows])
        values = np.empty((len(index), self.shape[1]), np.float32)
        for s, (path, dataset) in enumerate(self.sources):
            mine = np.flatnonzero(self.source[index] == s)
            if len(mine):
                unique, order = np.unique(self.rows[index[mine]], return_inverse=True)  # h5py reads increasing rows
                with h5py.File(path, "r") as h5:
                    values[mine] = np.asarray(h5[dataset][unique], dtype=np.float32)[order]
        return values if np.ndim(np.arange(len(self))[rows]) else values[0]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        values = self[np.arange(len(self))]
        return values if dtype is None else values.astype(dtype)


@dataclass
class FeatureSet:
    """Rows = stimuli; `data[i]` (n, p_i) float32 (an array, or DiskRows for maps) is the block named `names[i]`,
    each row a flattened `shapes[i]` ((C,), (g, g, C) or (h, w, C); None when unknown)."""

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
        """(n, p) float32: the blocks side by side, in order (blocks on disk read whole)."""
        return np.concatenate([np.asarray(block) for block in self.data], axis=1)

    def row_chunks(self, n_values: int = 2**24):
        """The flat view a chunk of rows at a time (at most about `n_values` values each): blocks on disk are
        never read whole."""
        step = max(1, n_values // max(1, sum(self.block_sizes)))
        for start in range(0, self.n_rows, step):
            rows = np.arange(start, min(start + step, self.n_rows))
            yield np.concatenate([np.asarray(block[rows], dtype=np.float32) for block in self.data], axis=1)

    def blocks(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.data))

    def maps(self) -> dict[str, np.ndarray]:
        """The unpooled maps (`.../map` blocks) as (n, h, w, C) arrays (read whole)."""
        return {name: np.asarray(block).reshape(len(block), *shape)
                for name, block, shape in zip(self.names, self.data, self.shapes) if name.endswith("/map")}

    def embedding(self) -> np.ndarray:
        """(n, d): the backbone's output embedding block."""
        found = [block for name, block in zip(self.names, self.data) if name.split(":")[-1] == "embedding"]
        if len(found) != 1:
            raise KeyError(f"expected one embedding block among {self.names}")
        return found[0]

    def take(self, rows) -> FeatureSet:
        """The rows `rows` (indices or a boolean mask) of every block."""
        return FeatureSet(list(self.names), [block.take(rows) if isinstance(block, DiskRows) else block[rows]
                                             for block in self.data], list(self.shapes))

    @classmethod
    def load(cls, features_path: str | Path, stimulus_ids: list[str], layers: list, tokens: list[str],
             prefix: str = "", embedding: bool = False) -> FeatureSet:
        """Rows for `stimulus_ids` of the chosen tokens of the chosen layers (1-based ViT blocks or module
        paths) of a features file, and its `embedding` when asked; `map` tokens stay on disk (DiskRows)."""
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
                data.append(DiskRows.of(features_path, dataset, rows) if name.endswith("/map") else
                            np.asarray(h5[dataset][:][rows], dtype=np.float32))
                shape = h5[dataset].attrs.get("shape")
                shapes.append(None if shape is None else tuple(int(v) for v in shape))
        return cls(names, data, shapes)

    @classmethod
    def stack(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The rows of several sets with the same blocks (e.g. several subjects' fixations), one after another."""
        if any(s.names != sets[0].names for s in sets):
            raise ValueError(f"cannot stack feature sets with different blocks: {[s.names for s in sets]}")
        return cls(list(sets[0].names), [_stack_rows(blocks) for blocks in zip(*(s.data for s in sets))],
                   list(sets[0].shapes))

    @classmethod
    def side_by_side(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The blocks of several sets of the same rows (streams, backbones) in one set."""
        return cls([name for s in sets for name in s.names], [block for s in sets for block in s.data],
                   [shape for s in sets for shape in s.shapes])


def _stack_rows(blocks) -> np.ndarray | DiskRows:
    """Blocks of the same columns one after another: blocks on disk stay there, arrays are concatenated."""
    if not all(isinstance(b, DiskRows) for b in blocks):
        return np.concatenate([np.asarray(block) for block in blocks])
    sources = list(dict.fromkeys(source for b in blocks for source in b.sources))
    return DiskRows(sources, np.concatenate([[sources.index(b.sources[s]) for s in b.source] for b in blocks]),
                    np.concatenate([b.rows for b in blocks]))


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

"""FeatureSet: the features of some stimuli as named blocks, with the views the model families need.

A block is one token of one layer of one backbone (`block06/cls`, `block06/grid`), prefixed by the
stream for MEG crops (`foveal:block06/cls`). The extractor's structure survives loading, so a family
can ask for the view it needs: `flat()` (ridge, the MLP), `blocks()` and `block_sizes` (banded ridge:
one penalty per block). Further views (unpooled patch maps, the backbone's projected embedding) join as
the features file gains them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


@dataclass
class FeatureSet:
    """Rows = stimuli; `data[i]` (n, p_i) float32 is the block named `names[i]`."""

    names: list[str]
    data: list[np.ndarray]

    def __post_init__(self):
        if len(self.names) != len(self.data) or not self.data:
            raise ValueError(f"expected one array per block name, got {len(self.names)} names, {len(self.data)} arrays")
        if len({block.shape[0] for block in self.data}) != 1:
            raise ValueError(f"blocks {self.names} have different numbers of rows {[b.shape[0] for b in self.data]}")

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

    def take(self, rows) -> FeatureSet:
        """The rows `rows` (indices or a boolean mask) of every block."""
        return FeatureSet(list(self.names), [block[rows] for block in self.data])

    @classmethod
    def load(cls, features_path: str | Path, stimulus_ids: list[str], layers: list[int], tokens: list[str],
             prefix: str = "") -> FeatureSet:
        """Rows for `stimulus_ids` of the chosen tokens of the chosen layers of a features file."""
        with h5py.File(features_path, "r") as h5:
            row_of = {sid: row for row, sid in enumerate(h5["stimulus_id"].asstr()[:])}
            missing = [sid for sid in stimulus_ids if sid not in row_of]
            if missing:
                raise KeyError(f"{features_path}: no features for stimuli {missing[:5]} ({len(missing)} missing)")
            rows = np.array([row_of[sid] for sid in stimulus_ids], dtype=np.int64)
            names, data = [], []
            for layer in layers:
                for token in tokens:
                    name = f"block{layer:02d}/{token}"
                    if f"layers/{name}" not in h5:
                        raise KeyError(f"{features_path}: no dataset layers/{name}; extract layer {layer} first")
                    names.append(prefix + name)
                    data.append(np.asarray(h5[f"layers/{name}"][:][rows], dtype=np.float32))
        return cls(names, data)

    @classmethod
    def stack(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The rows of several sets with the same blocks (e.g. several subjects' fixations), one after another."""
        if any(s.names != sets[0].names for s in sets):
            raise ValueError(f"cannot stack feature sets with different blocks: {[s.names for s in sets]}")
        return cls(list(sets[0].names), [np.concatenate(blocks) for blocks in zip(*(s.data for s in sets))])

    @classmethod
    def side_by_side(cls, sets: list[FeatureSet]) -> FeatureSet:
        """The blocks of several sets of the same rows (streams, backbones) in one set."""
        return cls([name for s in sets for name in s.names], [block for s in sets for block in s.data])


def as_matrix(X: FeatureSet | np.ndarray) -> np.ndarray:
    """The flat view of a FeatureSet; an (n, p) array as it is (the API takes either)."""
    return X.flat() if isinstance(X, FeatureSet) else np.asarray(X, dtype=np.float32)

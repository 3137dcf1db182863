"""Reading design matrices out of a features file (see features.extract for its layout)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def load_design_matrix(
    features_path: str | Path, stimulus_ids: list[str], layers: list[int], tokens: list[str]
) -> tuple[np.ndarray, list[str]]:
    """Rows for `stimulus_ids`, columns = the chosen tokens of the chosen layers side by side.

    Returns the matrix (n, p) float32 and one label per column block (`block06/grid`, ...).
    """
    with h5py.File(features_path, "r") as h5:
        row_of = {sid: row for row, sid in enumerate(h5["stimulus_id"].asstr()[:])}
        missing = [sid for sid in stimulus_ids if sid not in row_of]
        if missing:
            raise KeyError(f"{features_path}: no features for stimuli {missing[:5]} ({len(missing)} missing)")
        rows = np.array([row_of[sid] for sid in stimulus_ids])
        blocks, names = [], []
        for layer in layers:
            for token in tokens:
                name = f"block{layer:02d}/{token}"
                if f"layers/{name}" not in h5:
                    raise KeyError(f"{features_path}: no dataset layers/{name}; extract layer {layer} first")
                blocks.append(h5[f"layers/{name}"][:][rows])
                names.append(name)
    return np.concatenate(blocks, axis=1), names

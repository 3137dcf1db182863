"""Where fMRI targets lie on the cortex: vertex positions on the fsaverage sphere, both hemispheres in one frame.

Algonauts 2023 vertices are fsaverage vertices (`<hemi>/fsaverage_index` of responses.h5). fsaverage is an
icosahedral mesh whose first 10,242 vertices are fsaverage5's, which nilearn ships; an index beyond them
needs the full fsaverage sphere (nilearn's `fetch_surf_fsaverage("fsaverage")`, from its data cache).

Positions are unit-sphere coordinates of each hemisphere's `sphere` surface, the left hemisphere's sphere
centred at x = -HEMISPHERE_OFFSET and the right's at +HEMISPHERE_OFFSET, so one distance serves both
hemispheres and vertices of different hemispheres are never close (topographic families, FactorTopy).
"""

from __future__ import annotations

import functools

import numpy as np

FSAVERAGE5_VERTICES = 10_242
HEMISPHERE_OFFSET = 1.5  # sphere centres at -1.5 and +1.5: hemispheres 1.0 apart at their closest


@functools.cache
def _sphere(mesh: str, hemi: str) -> np.ndarray:
    from nilearn import datasets, surface

    side = {"lh": "left", "rh": "right"}[hemi]
    try:
        path = datasets.fetch_surf_fsaverage(mesh)[f"sphere_{side}"]
    except Exception as exc:  # offline and not cached: nilearn raises network errors of several kinds
        raise FileNotFoundError(f"the {mesh} sphere ({side} hemisphere) is needed for vertex positions beyond "
                                f"fsaverage5's {FSAVERAGE5_VERTICES}; nilearn could not fetch it ({exc}). Fetch it "
                                f"once where the network is reachable: nilearn.datasets.fetch_surf_fsaverage"
                                f"('{mesh}')") from exc
    coordinates = np.asarray(surface.load_surf_mesh(path).coordinates, dtype=np.float64)
    return coordinates / np.linalg.norm(coordinates, axis=1, keepdims=True)


class LazyTargets(dict):
    """Target metadata whose costly entries (`lazy`: key -> function) are computed on first `targets[key]`:
    a family that never asks for vertex positions never needs the fsaverage sphere."""

    def __init__(self, values: dict, lazy: dict):
        super().__init__(values)
        self._lazy = dict(lazy)

    def __missing__(self, key):
        if key not in self._lazy:
            raise KeyError(key)
        self[key] = self._lazy.pop(key)()
        return self[key]

    def __contains__(self, key) -> bool:
        return super().__contains__(key) or key in self._lazy


def vertex_positions(fsaverage_index: np.ndarray, hemi: str) -> np.ndarray:
    """(V, 3) float32 positions of a hemisphere's vertices (fsaverage indices) in the two-hemisphere frame."""
    index = np.asarray(fsaverage_index, dtype=np.int64)
    if index.size and (index.min() < 0):
        raise ValueError(f"fsaverage indices must be >= 0, got {index.min()}")
    mesh = "fsaverage5" if index.size == 0 or index.max() < FSAVERAGE5_VERTICES else "fsaverage"
    sphere = _sphere(mesh, hemi)
    if index.size and index.max() >= len(sphere):
        raise ValueError(f"fsaverage index {index.max()} is beyond the {len(sphere)} vertices of {mesh}")
    centre = np.array([-HEMISPHERE_OFFSET if hemi == "lh" else HEMISPHERE_OFFSET, 0.0, 0.0])
    return (sphere[index] + centre).astype(np.float32)

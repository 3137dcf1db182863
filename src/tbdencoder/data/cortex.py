"""Where fMRI targets lie on the cortex: vertex positions on the fsaverage sphere, both hemispheres in one frame.

Algonauts 2023 vertices are fsaverage vertices (`<hemi>/fsaverage_index` of responses.h5). fsaverage is an
icosahedral mesh whose first 10,242 vertices are fsaverage5's, which nilearn ships; an index beyond them
needs the full fsaverage sphere: a FreeSurfer `fsaverage` folder named in params (`fmri.fsaverage_dir`), or
nilearn's `fetch_surf_fsaverage("fsaverage")` from its data cache.

Positions are unit-sphere coordinates of each hemisphere's `sphere` surface, the left hemisphere's sphere
centred at x = -HEMISPHERE_OFFSET and the right's at +HEMISPHERE_OFFSET, so one distance serves both
hemispheres and vertices of different hemispheres are never close (topographic families, FactorTopy).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

FSAVERAGE5_VERTICES = 10_242
HEMISPHERE_OFFSET = 1.5  # sphere centres at -1.5 and +1.5: hemispheres 1.0 apart at their closest


FREESURFER_NAMES = {"sphere": "sphere", "inflated": "inflated"}  # <fsaverage_dir>/surf/<hemi>.<name>
NILEARN_NAMES = {"sphere": "sphere", "inflated": "infl"}  # fetch_surf_fsaverage keys <name>_<left|right>


def mesh_for(fsaverage_index: np.ndarray) -> str:
    """The smallest nilearn mesh holding these fsaverage indices: fsaverage5 (shipped) or fsaverage."""
    index = np.asarray(fsaverage_index)
    return "fsaverage5" if index.size == 0 or index.max() < FSAVERAGE5_VERTICES else "fsaverage"


@functools.cache
def fsaverage_surface(mesh: str, hemi: str, kind: str, fsaverage_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(coordinates (N, 3) float64, faces (F, 3)) of a hemisphere's `kind` surface ('sphere', 'inflated').

    From a FreeSurfer `fsaverage` subject folder (`<fsaverage_dir>/surf/<hemi>.<kind>`, fmri.fsaverage_dir) when
    one is named, else from nilearn: fsaverage5 ships with it, the full fsaverage comes from its fetcher (its
    data cache, or the network)."""
    from nilearn import datasets, surface

    side = {"lh": "left", "rh": "right"}[hemi]
    if fsaverage_dir is not None:
        path = Path(fsaverage_dir) / "surf" / f"{hemi}.{FREESURFER_NAMES[kind]}"
        if not path.exists():
            raise FileNotFoundError(f"fmri.fsaverage_dir: {path} is missing; expected a FreeSurfer fsaverage subject "
                                    f"folder (its surf/lh.sphere, rh.sphere, lh.inflated, rh.inflated)")
    else:
        try:
            path = datasets.fetch_surf_fsaverage(mesh)[f"{NILEARN_NAMES[kind]}_{side}"]
        except Exception as exc:  # offline and not cached: nilearn raises network errors of several kinds
            raise FileNotFoundError(
                f"the {mesh} {kind} surface ({side} hemisphere) is needed for fsaverage indices beyond fsaverage5's "
                f"{FSAVERAGE5_VERTICES}; nilearn could not fetch it ({exc}). Either name a FreeSurfer fsaverage "
                f"folder (with surf/{hemi}.{FREESURFER_NAMES[kind]}) as fmri.fsaverage_dir in params.yaml, or fetch "
                f"it once where the network is reachable: nilearn.datasets.fetch_surf_fsaverage('{mesh}')") from exc
    loaded = surface.load_surf_mesh(str(path))
    return np.asarray(loaded.coordinates, dtype=np.float64), np.asarray(loaded.faces, dtype=np.int64)


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


def vertex_positions(fsaverage_index: np.ndarray, hemi: str, fsaverage_dir: str | None = None) -> np.ndarray:
    """(V, 3) float32 positions of a hemisphere's vertices (fsaverage indices) in the two-hemisphere frame."""
    index = np.asarray(fsaverage_index, dtype=np.int64)
    if index.size and (index.min() < 0):
        raise ValueError(f"fsaverage indices must be >= 0, got {index.min()}")
    mesh = mesh_for(index)
    sphere, _ = fsaverage_surface(mesh, hemi, "sphere", None if fsaverage_dir is None else str(fsaverage_dir))
    if index.size and index.max() >= len(sphere):
        raise ValueError(f"fsaverage index {index.max()} is beyond the {len(sphere)} vertices of "
                         f"{fsaverage_dir or mesh}")
    sphere = sphere / np.linalg.norm(sphere, axis=1, keepdims=True)
    centre = np.array([-HEMISPHERE_OFFSET if hemi == "lh" else HEMISPHERE_OFFSET, 0.0, 0.0])
    return (sphere[index] + centre).astype(np.float32)

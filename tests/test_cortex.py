"""Vertex positions on the fsaverage sphere, both hemispheres in one frame (data/cortex.py)."""

import numpy as np
import pytest

from tbdencoder.data import cortex
from tbdencoder.data.cortex import HEMISPHERE_OFFSET, LazyTargets, vertex_positions


def test_positions_are_the_fsaverage5_sphere_per_hemisphere_apart():
    index = np.arange(0, cortex.FSAVERAGE5_VERTICES, 7)
    lh, rh = vertex_positions(index, "lh"), vertex_positions(index, "rh")
    # fsaverage vertex 0 is the sphere's pole (0, 0, 100 mm): on the unit sphere around each centre
    np.testing.assert_allclose(lh[0], [-HEMISPHERE_OFFSET, 0, 1], atol=1e-6)
    np.testing.assert_allclose(rh[0], [HEMISPHERE_OFFSET, 0, 1], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(lh - [-HEMISPHERE_OFFSET, 0, 0], axis=1), 1, atol=1e-5)
    # neighbouring vertices are close, the other hemisphere never is
    assert np.sort(np.linalg.norm(lh[1:] - lh[0], axis=1))[0] < 0.1
    gap = np.min(np.linalg.norm(lh[:, None] - rh[None], axis=2))
    assert gap == pytest.approx(2 * HEMISPHERE_OFFSET - 2, abs=0.02)


def test_an_index_beyond_the_mesh_is_refused_naming_it(monkeypatch):
    monkeypatch.setattr(cortex, "_sphere", lambda mesh, hemi: np.eye(3))
    with pytest.raises(ValueError, match="fsaverage index 10300 is beyond the 3 vertices of fsaverage"):
        vertex_positions(np.array([1, 10_300]), "lh")


def test_lazy_targets_compute_positions_only_when_read():
    calls = []
    targets = LazyTargets({"roi": {}}, {"positions": lambda: calls.append(1) or np.zeros((2, 3))})
    assert "positions" in targets and not calls
    assert targets["positions"].shape == (2, 3) and targets["positions"] is targets["positions"] and calls == [1]
    with pytest.raises(KeyError):
        targets["times"]

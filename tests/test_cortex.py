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
    monkeypatch.setattr(cortex, "fsaverage_surface", lambda mesh, hemi, kind, folder: (np.eye(3), np.zeros((1, 3))))
    with pytest.raises(ValueError, match="fsaverage index 10300 is beyond the 3 vertices of fsaverage"):
        vertex_positions(np.array([1, 10_300]), "lh")


def _freesurfer_folder(root, hemi="lh"):
    """A FreeSurfer subject folder whose sphere is fsaverage5's, scaled to 100 mm as FreeSurfer's is."""
    import nibabel.freesurfer

    coordinates, faces = cortex.fsaverage_surface("fsaverage5", hemi, "sphere")
    (root / "surf").mkdir(parents=True)
    nibabel.freesurfer.write_geometry(str(root / "surf" / f"{hemi}.sphere"), 100 * coordinates, faces)
    return root


def test_a_freesurfer_fsaverage_folder_named_in_params_gives_the_same_positions(tmp_path):
    index = np.array([0, 5, 10_000])
    folder = _freesurfer_folder(tmp_path / "fsaverage")
    np.testing.assert_allclose(vertex_positions(index, "lh", str(folder)), vertex_positions(index, "lh"), atol=1e-5)
    with pytest.raises(FileNotFoundError, match=r"fmri.fsaverage_dir: .*rh.sphere is missing"):
        vertex_positions(index, "rh", str(folder))


def test_the_full_mesh_offline_fails_fast_saying_how_to_provide_it(monkeypatch):
    from nilearn import datasets

    def offline(mesh):
        raise OSError("network unreachable")

    monkeypatch.setattr(datasets, "fetch_surf_fsaverage", offline)
    cortex.fsaverage_surface.cache_clear()
    with pytest.raises(FileNotFoundError, match=r"fmri.fsaverage_dir in params.yaml.*fetch_surf_fsaverage\('fsaverage'\)"):
        vertex_positions(np.array([1, 10_300]), "lh")
    cortex.fsaverage_surface.cache_clear()


def test_lazy_targets_compute_positions_only_when_read():
    calls = []
    targets = LazyTargets({"roi": {}}, {"positions": lambda: calls.append(1) or np.zeros((2, 3))})
    assert "positions" in targets and not calls
    assert targets["positions"].shape == (2, 3) and targets["positions"] is targets["positions"] and calls == [1]
    with pytest.raises(KeyError):
        targets["times"]

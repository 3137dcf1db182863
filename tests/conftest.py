import shutil

import pytest

from tbdencoder.simulate.fmri import simulate_fmri

TINY = dict(subjects=["subj01", "subj02"], n_vertices=[120, 90], n_train_images=40, n_test_images=12,
            n_shared_images=6, image_size_px=64, n_repeats=3, seed=7)


@pytest.fixture(scope="session")
def tiny_fmri_dataset(tmp_path_factory):
    """A small simulated Algonauts 2023 dataset (read-only: copy it before changing anything)."""
    root = tmp_path_factory.mktemp("algonauts") / "algonauts_2023"
    simulate_fmri(root, **TINY)
    return root


@pytest.fixture(scope="session")
def workflow_run(tmp_path_factory):
    """One run of the real Snakemake workflow on the tiny config (fMRI + MEG), shared by the e2e tests."""
    from test_workflow import run_tiny_workflow

    return run_tiny_workflow(tmp_path_factory.mktemp("workflow"))


@pytest.fixture
def fmri_dataset_copy(tiny_fmri_dataset, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    return shutil.copytree(tiny_fmri_dataset, tmp_path / "algonauts_2023")

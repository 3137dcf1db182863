import logging
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import h5py
import pytest

from tbdencoder.features.identity import seal_features
from tbdencoder.simulate.fmri import simulate_fmri

# the identity of the hand-made features files tests write (`seal`)
TEST_NETWORK = dict(format_version="test", library="test", model_name="oracle", weights="none", random_init=False,
                    seed=0, preprocess="{}", grid_size=2, map_size=-1)

def pytest_addoption(parser):
    parser.addoption("--nightly", action="store_true", help="run the nightly tier (the whole demo, the README's numbers)")


def pytest_collection_modifyitems(config, items):
    """The nightly tier runs only when asked (`make test-nightly`), whatever -m says."""
    if not config.getoption("--nightly"):
        skip = pytest.mark.skip(reason="nightly tier: run with --nightly (make test-nightly)")
        for item in items:
            if "nightly" in item.keywords:
                item.add_marker(skip)


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


@pytest.fixture(scope="session")
def workflow_report(workflow_run, tmp_path_factory) -> dict:
    """The Snakemake report of `workflow_run`, written outside it: {figure path: caption, labels, data_uri, ...}."""
    from test_workflow import snakemake

    html = tmp_path_factory.mktemp("report") / "report.html"
    result = snakemake(workflow_run, "--report", str(html))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(re.search(r'<script id="results">\s*var results = (.*?);\s*</script>', html.read_text(), re.S)[1])


@pytest.fixture
def fmri_dataset_copy(tiny_fmri_dataset, tmp_path):
    """A private copy of the tiny dataset that a test may break."""
    return shutil.copytree(tiny_fmri_dataset, tmp_path / "algonauts_2023")


@pytest.fixture
def captured(monkeypatch):
    """The figures that evaluate/plots.py saves, as {path: (title, [(panel title, axes), ...])}; still written."""
    from tbdencoder.evaluate import plots

    figures = {}
    original = plots.save_figure

    def save(fig, out_path, title):
        figures[out_path] = (title, [(ax.get_title(), ax) for ax in fig.axes])
        original(fig, out_path, title)

    monkeypatch.setattr(plots, "save_figure", save)
    return figures


@pytest.fixture
def logs(caplog, monkeypatch):
    """caplog that also sees the tbdencoder loggers (which do not propagate by default)."""
    monkeypatch.setattr(logging.getLogger("tbdencoder"), "propagate", True)
    caplog.set_level(logging.INFO, logger="tbdencoder")
    return caplog


@pytest.fixture
def h5_opens(monkeypatch) -> Counter:
    """How often h5py.File opens each file from here on, as {resolved path: count}."""
    opens = Counter()

    class CountingFile(h5py.File):
        def __init__(self, name, *args, **kwargs):
            opens[Path(name).resolve()] += 1
            super().__init__(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", CountingFile)
    return opens


def seal(path, **changes) -> Path:
    """Stamp a hand-made features file with TEST_NETWORK's identity (with `changes`) and its content digest."""
    seal_features(path, **{**TEST_NETWORK, **changes})
    return Path(path)

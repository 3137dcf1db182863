"""Nightly tier (`make test-nightly`, not in CI): the whole demo, every family, and the README's numbers.

The demo runs as `make run` runs it (params.yaml, the default profile) in a copy of the workflow; every
row of the README's results table must match what the run writes to results/metrics.json, to the digits
the README prints. The MEG rows are the realistic-SNR claims (`simulate.meg.snr` of params.yaml).
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from test_workflow import REPO, new_workdir

pytestmark = pytest.mark.nightly
# | half | `model` | family | what | score | held-out score |
ROW = re.compile(r"^\| (fMRI|MEG) \| `(\w+)` \| (\w+) \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", re.M)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    workdir = new_workdir(tmp_path_factory.mktemp("demo"), REPO / "params.yaml")
    shutil.copytree(REPO / "workflow/profiles", workdir / "workflow/profiles", dirs_exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/default",
                             "--cores", "2"], cwd=workdir, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    return json.loads((workdir / "results/metrics.json").read_text())


def readme_rows() -> list[tuple[str, ...]]:
    return ROW.findall((REPO / "README.md").read_text())


def _matches(printed: str, value: float) -> bool:
    """`value` rounds to `printed` (as many decimals as printed)."""
    printed = printed.strip()
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10 ** -decimals + 1e-9


def test_the_readme_table_names_every_demo_model():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rows = readme_rows()
    assert {name for half, name, *_ in rows if half == "fMRI"} == set(params["fmri"]["models"])
    assert {name for half, name, *_ in rows if half == "MEG"} == set(params["meg"]["models"])
    for half, name, family, *_ in rows:
        models = params["fmri" if half == "fMRI" else "meg"]["models"]
        assert models[name]["family"] == family, name


def test_the_demo_gives_the_readme_numbers(demo):
    wrong = []
    for half, name, _, first, second in readme_rows():
        if half == "fMRI":  # challenge score, mean over subjects
            measured = (demo["summary"][name]["challenge_score"],)
        else:  # mean r at the peak: mean over training subjects, then held-out sub-60
            measured = (demo["meg"]["mean_over_training_subjects"][name]["mean_r_at_peak"],
                        demo["meg"]["heldout"]["sub-60"][name])
        for printed, value in zip((first, second), measured):
            if not _matches(printed, value):
                wrong.append(f"{half} {name}: README {printed.strip()}, demo {value:.4f}")
    assert not wrong, "\n".join(wrong)


def test_meg_peaks_at_the_simulated_latency_at_realistic_snr(demo):
    """The README's claim for the foveal model: its peak latency (that of its best sensors' cross-fitted r(t))
    lies within 10 ms of the simulated latency (100-120 ms for 110 ms) in every training subject."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    latency_s = params["simulate"]["meg"]["latency_s"]
    for subject, metrics in demo["meg"]["subjects"].items():
        foveal = metrics["models"]["foveal"]
        if foveal["scheme"] == "scene_cv":
            assert abs(foveal["peak_latency_s"] - latency_s) <= 0.01 + 1e-9, (subject, foveal["peak_latency_s"])

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

import numpy as np
import pytest
import yaml

from tbdencoder.recipes import OUTPUTS, recipes
from test_workflow import REPO, new_workdir

pytestmark = pytest.mark.nightly
# | half | `model` | family | what | score | held-out score |
ROW = re.compile(r"^\| (fMRI|MEG) \| `(\w+)` \| (\w+) \| [^|]+ \| ([^|]+) \| ([^|]+) \|$", re.M)
# | fMRI k-shot | subject | `model` | mean / shared | pooled ridge | k = 25 ... (model / ridge alone) |
KSHOT = re.compile(r"^\| (fMRI|MEG) k-shot \| ([\w-]+) \| `(\w+)` \| (.+) \|$", re.M)
KS = (25, 50, 100, 200)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    workdir = new_workdir(tmp_path_factory.mktemp("demo"), REPO / "params.yaml")
    shutil.copytree(REPO / "workflow/profiles", workdir / "workflow/profiles", dirs_exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "snakemake", "--workflow-profile", "workflow/profiles/default",
                             "--cores", "2"], cwd=workdir, capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


@pytest.fixture(scope="module")
def demo(demo_dir) -> dict:
    return json.loads((demo_dir / "results/metrics.json").read_text())


def readme_rows() -> list[tuple[str, ...]]:
    return ROW.findall((REPO / "README.md").read_text())


def _matches(printed: str, value: float) -> bool:
    """`value` rounds to `printed` (as many decimals as printed)."""
    printed = printed.strip()
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10 ** -decimals + 1e-9


def test_the_readme_table_names_every_demo_model():
    """fMRI rows: fmri.models and each All-for-One recipe's models (whole and student: neck_readout; the teacher:
    all_for_one, an ensemble of neck_readout soups)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    rows = readme_rows()
    recipe_families = {f"{recipe}_{output}": "all_for_one" if output == "teacher" else "neck_readout"
                       for recipe in recipes(params) for output in OUTPUTS}
    assert {name for half, name, *_ in rows if half == "fMRI"} == set(params["fmri"]["models"]) | set(recipe_families)
    assert {name for half, name, *_ in rows if half == "MEG"} == set(params["meg"]["models"])
    for half, name, family, *_ in rows:
        models = params["fmri" if half == "fMRI" else "meg"]["models"]
        assert (models[name]["family"] if name in models else recipe_families[name]) == family, name


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


def test_the_readme_kshot_rows_are_the_demos(demo):
    """Each k-shot row: k = 0 (mean / shared adapter), pooled ridge (MEG), then per k the calibrated model / ridge
    on the same k samples alone, to the printed digits."""
    rows = KSHOT.findall((REPO / "README.md").read_text())
    assert {(half, model) for half, _, model, _ in rows} == {("fMRI", "adapters_cls"), ("MEG", "dual_adapters")}
    wrong = []
    for half, subject, model, cells in rows:
        entry = (demo["kshot"] if half == "fMRI" else demo["meg"]["kshot"])[subject][model]
        values = entry["challenge_score"] if half == "fMRI" else entry["r_at_peak"]
        assert entry["ks"] == list(KS), entry["ks"]
        k0, pooled, *per_k = (cell.strip() for cell in cells.split("|"))
        expected = [(k0, ["k0_mean", "k0_shared"]), *((cell, [f"adapters_k{k}", f"ridge_k{k}"])
                                                        for cell, k in zip(per_k, KS))]
        if half == "MEG":
            expected.append((pooled, ["pooled_ridge"]))
        for cell, names in expected:
            for printed, name in zip(cell.split("/"), names):
                if not _matches(printed, values[name]):
                    wrong.append(f"{half} {subject} {model} {name}: README {printed.strip()}, demo {values[name]:.4f}")
    assert not wrong, "\n".join(wrong)


def test_meg_peaks_at_the_simulated_latency_at_realistic_snr(demo):
    """The README's claim for the foveal model: the 95 % bootstrap interval of its peak latency (that of its best
    sensors' cross-fitted r(t)) covers the simulated latency in every training subject."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    latency_s = params["simulate"]["meg"]["latency_s"]
    for subject, metrics in demo["meg"]["subjects"].items():
        foveal = metrics["models"]["foveal"]
        if foveal["scheme"] == "scene_cv":
            low, high = foveal["peak_latency_s_ci"]
            assert low - 1e-9 <= latency_s <= high + 1e-9, (subject, foveal["peak_latency_s_ci"])


def test_factortopy_finds_the_simulated_receptive_fields_and_families_on_the_demo(demo_dir):
    """The README's claim for topy_vitb32 (random-init ViT maps): its space selector puts the retinotopic vertices
    (luminance, contrast, colour families) near their simulated centres, several times closer than the centres
    of other vertices (shuffled), each hemisphere on the opposite half of the image; its scale selector reads the
    local patch for them and the global token for the 'global' family."""
    import h5py
    import numpy as np
    import pandas as pd

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    truth_dir = demo_dir / params["fmri"]["dataset_dir"] / "ground_truth"
    for subject in params["fmri"]["subjects"]:
        for hemi in params["fmri"]["hemispheres"]:
            with h5py.File(demo_dir / f"results/fits/{subject}/{hemi}/topy_vitb32.h5") as h5:
                x, y, scale = h5["space_x"][:], h5["space_y"][:], h5["scale"][:]
            truth = pd.read_csv(truth_dir / subject / f"{hemi}_vertices.csv")
            retinotopic = truth["family"].isin(["luminance", "contrast", "colour"]).to_numpy()
            error = np.hypot(x - truth["rf_x"], y - truth["rf_y"]).to_numpy()[retinotopic]
            shuffled = np.random.default_rng(0).permutation(len(x))
            chance = np.hypot(x[shuffled] - truth["rf_x"], y[shuffled] - truth["rf_y"]).to_numpy()[retinotopic]
            assert np.median(error) < np.median(chance) / 2, (subject, hemi, np.median(error), np.median(chance))
            right = (x[retinotopic] > 0.5).mean()
            assert (right if hemi == "lh" else 1 - right) > 0.8, (subject, hemi, right)
            assert np.median(scale[retinotopic]) < 0.25 < 0.75 < np.median(scale[truth["family"] == "global"])


def test_the_all_for_one_recipe_on_the_demo_reports_every_stage_and_its_cost(demo, demo_dir):
    """The recipe's three models are scored beside the others, and their fits files say what they cost: the
    teacher's time and parameters are its members' sums, more than the whole-brain model's alone."""
    import h5py

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for recipe in recipes(params):
        for output in OUTPUTS:
            assert np.isfinite(demo["summary"][f"{recipe}_{output}"]["challenge_score"])
        for subject in params["fmri"]["subjects"]:
            for hemi in params["fmri"]["hemispheres"]:
                fits = {output: h5py.File(demo_dir / f"results/fits/{subject}/{hemi}/{recipe}_{output}.h5")
                        for output in OUTPUTS}
                try:
                    assert fits["teacher"].attrs["n_parameters"] > fits["whole"].attrs["n_parameters"] > 0
                    assert fits["teacher"].attrs["fit_seconds"] > fits["whole"].attrs["fit_seconds"] > 0
                finally:
                    for h5 in fits.values():
                        h5.close()

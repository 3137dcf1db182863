"""End to end: the real Snakemake workflow on a tiny simulated config, in a temporary directory."""

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tbdencoder.evaluate.plots import NO_BLOCK_WEIGHTS, NO_TRAINING_CURVES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "tests/configs/science.yaml"  # standalone params: the models this run fits, and no others


def config_models(config: Path = CONFIG) -> tuple[set[str], set[str]]:
    """The fMRI and MEG models a test config selects."""
    params = yaml.safe_load(config.read_text())
    return set(params.get("fmri", {}).get("models", {})), set(params.get("meg", {}).get("models", {}))


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=1200,
    )


def new_workdir(workdir: Path, config: Path = CONFIG) -> Path:
    """The workflow's files in `workdir`, with `config` as its params.yaml."""
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copy(config, workdir / "params.yaml")
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    return workdir


def run_tiny_workflow(workdir: Path) -> Path:
    """The real workflow on the science config in `workdir` (fixture `workflow_run` in conftest.py)."""
    result = snakemake(new_workdir(workdir))
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def assert_drawn(png: Path) -> None:
    """A figure with data drawn in colour (bars, curves, maps), not a notice that there is nothing to draw."""
    image = Image.open(png)
    assert not any(notice in image.text["Title"] for notice in (NO_BLOCK_WEIGHTS, NO_TRAINING_CURVES)), png
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    coloured = np.ptp(pixels, axis=1) > 40  # not white, grey or black: a data colour
    assert coloured.mean() > 0.01, (png, coloured.mean())


def _ground_truth(workdir, subject, hemi):
    root = workdir / "data/simulated/algonauts_2023"
    return pd.read_csv(root / f"ground_truth/{subject}/{hemi}_vertices.csv")


def test_outputs_exist_with_documented_shapes(workflow_run):
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())
    assert set(metrics["subjects"]) == {"subj01", "subj02"}
    assert set(metrics["summary"]) == config_models()[0]
    # banded ridge, added by params alone: each vertex's preferred block (layer x token) in the metrics
    preferred = metrics["subjects"]["subj01"]["banded_grid"]["lh"]["block_weights"]["preferred"]
    assert set(preferred) == {"block03/global", "block03/grid", "block06/global", "block06/grid"}
    assert sum(preferred.values()) == pytest.approx(1.0)
    assert metrics["subjects"]["subj02"]["ridge_grid"]["lh"]["n_vertices"] == 300
    subj02 = json.loads((workflow_run / "results/metrics/subj02.json").read_text())
    assert subj02["random_init_features"] is True and subj02["eval_split"] == "test"
    assert subj02["models"]["ridge_grid"]["lh"]["n_vertices"] == 300
    assert set(subj02["models"]["ridge_grid"]["rh"]["roi"]) == {"prf-visualrois", "floc-bodies", "floc-faces",
                                                                "floc-places", "floc-words", "streams"}
    table = pd.read_csv(workflow_run / "results/tables/subj01.tsv", sep="\t")
    assert {"subject", "model", "hemisphere", "roi_class", "roi", "median_r", "median_score"} <= set(table.columns)
    for subject, n_vertices in (("subj01", 400), ("subj02", 300)):
        prediction = np.load(workflow_run / f"results/submission/{subject}/lh_pred_test.npy")
        assert prediction.dtype == np.float32 and prediction.shape == (50, n_vertices)
        # banded_grid has block weights and mlp_cls training curves: no figure is a notice
        for figure in ("roi_scores", "preferred_block", "training"):
            assert_drawn(workflow_run / f"results/figures/{subject}_{figure}.png")


def test_score_clears_threshold_derived_from_simulator(workflow_run):
    """Mean challenge score far above what unrelated predictions get, and a real share of the oracle's.

    Null: a prediction unrelated to the data has r ~ N(0, 1/(n_test - 1)), so E[max(r, 0)^2] = 1/(2 (n_test - 1))
    and its expected score per vertex is 100 / (2 (n_test - 1) NC). The oracle (the simulator's noiseless
    signal) scores about 100 by construction. We require the best model to exceed ten times the null.
    """
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())
    n_test = 50
    for subject in ("subj01", "subj02"):
        for hemi in ("lh", "rh"):
            noise_ceiling = _ground_truth(workflow_run, subject, hemi)["noise_ceiling"].to_numpy()
            null = np.mean(np.minimum(100 / (2 * (n_test - 1) * noise_ceiling[noise_ceiling > 0]), 100))
            score = metrics["subjects"][subject]["ridge_grid"][hemi]["challenge_score"]
            assert score > 10 * null, (subject, hemi, score, null)


def test_patch_grid_beats_class_token_where_simulator_is_retinotopic(workflow_run):
    """Retinotopic vertices (RF-weighted luminance / contrast / colour) gain from the pooled patch grid;
    the gain is larger than for 'global' vertices, which ignore their RF, and absent where there is no signal."""
    for subject in ("subj01", "subj02"):
        gain = {}
        for hemi in ("lh", "rh"):
            truth = _ground_truth(workflow_run, subject, hemi)
            with h5py.File(workflow_run / f"results/scores/{subject}.h5") as h5:
                difference = h5[f"ridge_grid/{hemi}/r"][:] - h5[f"ridge_cls/{hemi}/r"][:]
            for family, values in pd.Series(difference).groupby(truth["family"].replace(
                    {"luminance": "retinotopic", "contrast": "retinotopic", "colour": "retinotopic"})):
                gain.setdefault(family, []).extend(values)
        retinotopic = np.array(gain["retinotopic"])
        t_stat = retinotopic.mean() / retinotopic.std(ddof=1) * np.sqrt(retinotopic.size)
        assert t_stat > 3, (subject, retinotopic.mean(), t_stat)
        assert retinotopic.mean() > np.mean(gain["global"]) + 0.01, (subject, retinotopic.mean(), np.mean(gain["global"]))
        assert abs(np.mean(gain["none"])) < 0.03


def test_rerun_does_nothing_and_features_come_from_cache(workflow_run, tmp_path):
    workdir = shutil.copytree(workflow_run, tmp_path / "workflow")  # a copy: this test deletes an output
    dry = snakemake(workdir, "--dry-run")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr
    features = workdir / "results/features/clip_vitb32/fmri_subj01.h5"
    before = features.read_bytes()
    features.unlink()
    result = snakemake(workdir, "results/features/clip_vitb32/fmri_subj01.h5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert features.read_bytes() == before
    log = (workdir / "logs/features/clip_vitb32_fmri_subj01.log").read_text()
    assert re.search(r"cache hit: .*results/features/cache/\w+\.h5", log), log[-2000:]
    assert "RANDOM-INIT network" not in log  # the network was never built


def assert_report_figure(report: dict, workdir: Path, figure: str, caption: str, subject: str) -> None:
    """The report embeds `figure` byte for byte, captioned by workflow/report/`caption` filled in for `subject`,
    and the figure's title (kept in the PNG's Title text) carries the RANDOM-INIT note of the tiny config."""
    entry = report[figure]
    png = base64.b64decode(entry["data_uri"].split(",", 1)[1])
    assert png == (workdir / figure).read_bytes(), figure
    title = Image.open(io.BytesIO(png)).text["Title"]
    assert subject in title and "RANDOM-INIT" in title, (figure, title)
    template = (workdir / "workflow/report" / caption).read_text()
    expected = template.replace("{{ snakemake.wildcards.subject }}", subject)
    assert html.unescape(re.sub("<[^>]+>", "", entry["caption"])).split() == expected.split(), figure


def test_report_holds_the_figures(workflow_run, workflow_report):
    for subject in ("subj01", "subj02"):
        for figure, caption in (("roi_scores", "roi_scores.rst"), ("preferred_block", "roi_preferred_block.rst"),
                                ("training", "training.rst")):
            assert_report_figure(workflow_report, workflow_run, f"results/figures/{subject}_{figure}.png", caption,
                                 subject)
        assert json.loads((workflow_run / f"results/metrics/{subject}.json").read_text())["random_init_features"] is True

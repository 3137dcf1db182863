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
TINY_CONFIG = {
    "simulate": {"fmri": {"enabled": True, "seed": 3, "n_vertices": [400, 300], "n_train_images": 300,
                          "n_test_images": 50, "n_shared_images": 20, "image_size_px": 224, "n_repeats": 3}},
    "features": {"backbones": {"clip_vitb32": {"library": "open_clip", "model": "ViT-B-32", "pretrained": None,
                                               "random_init": True, "seed": 0, "layers": [3, 6], "grid_size": 2,
                                               "batch_size": 50}}},
    "models": {
        "ridge_cls": {"family": "ridge", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global"]},
        "ridge_grid": {"family": "ridge", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global", "grid"]},
        "roi_ridge": {"family": "roi_ridge", "backbone": "clip_vitb32", "layers": [3, 6],
                      "tokens": ["global", "grid"], "roi_class": "streams"},
        "banded_grid": {"family": "banded_ridge", "backbone": "clip_vitb32", "layers": [3, 6],
                        "tokens": ["global", "grid"], "n_gammas": 4},
        "mlp_cls": {"family": "mlp", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global"],
                    "max_epochs": 40, "patience": 5},
        "devkit_alexnet": {"n_components": 50},
        "clip_alexnet_banded": {"layers": {"clip_vitb32": [3, 6]}, "n_gammas": 4},
    },
    "fit": {"alphas": [1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0], "cv_folds": 4, "seed": 0},
    "meg": {"subjects": [1, 2, 3], "heldout_subjects": [60],
            "models": {"foveal": {"family": "ridge", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global"],
                                  "streams": ["foveal"]},
                       "dual": {"family": "ridge", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global"],
                                "streams": ["foveal", "parafoveal"]},
                       "dual_banded": {"family": "banded_ridge", "backbone": "clip_vitb32", "layers": [3, 6],
                                       "tokens": ["global"], "streams": ["foveal", "parafoveal"], "n_gammas": 4},
                       "dual_mlp": {"family": "mlp", "backbone": "clip_vitb32", "layers": [3, 6], "tokens": ["global"],
                                    "streams": ["foveal", "parafoveal"], "hidden_units": 64, "max_epochs": 40,
                                    "patience": 5}},
            "fit": {"alphas": [10.0, 100.0, 1000.0, 10000.0, 100000.0], "outer_folds": 4, "inner_folds": 3,
                    "seed": 0}},
}
# High SNR: ~250 fixations per subject and random-init features leave little power at a realistic one.
TINY_CONFIG["simulate"]["meg"] = {"enabled": True, "seed": 5, "n_sessions": 2, "n_trials_per_session": 16,
                                  "n_scenes": 30, "snr": 2.0}


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *args, "--configfile", "tiny.yaml"],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=1200,
    )


def run_tiny_workflow(workdir: Path) -> Path:
    """The real workflow on TINY_CONFIG in `workdir` (fixture `workflow_run` in conftest.py)."""
    shutil.copy(REPO / "Snakefile", workdir)
    shutil.copy(REPO / "params.yaml", workdir)
    shutil.copytree(REPO / "workflow", workdir / "workflow")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir


def _ground_truth(workdir, subject, hemi):
    root = workdir / "data/simulated/algonauts_2023"
    return pd.read_csv(root / f"ground_truth/{subject}/{hemi}_vertices.csv")


def test_outputs_exist_with_documented_shapes(workflow_run):
    metrics = json.loads((workflow_run / "results/metrics.json").read_text())
    assert set(metrics["subjects"]) == {"subj01", "subj02"}
    assert set(metrics["summary"]) == {"ridge_cls", "ridge_grid", "roi_ridge", "banded_grid", "mlp_cls", "devkit_alexnet",
                                         "clip_alexnet_banded"}
    # banded ridge, added by params alone: each vertex's preferred block (layer x token) in the metrics
    preferred = metrics["subjects"]["subj01"]["banded_grid"]["lh"]["block_weights"]["preferred"]
    assert set(preferred) == {"block03/global", "block03/grid", "block06/global", "block06/grid"}
    assert sum(preferred.values()) == pytest.approx(1.0)
    assert metrics["subjects"]["subj02"]["ridge_grid"]["lh"]["n_vertices"] == 300
    subj02 = json.loads((workflow_run / "results/metrics/subj02.json").read_text())
    assert subj02["random_init_features"] is True and subj02["eval_split"] == "test"
    assert subj02["models"]["ridge_grid"]["lh"]["n_vertices"] == 300
    assert set(subj02["models"]["roi_ridge"]["rh"]["roi"]) == {"prf-visualrois", "floc-bodies", "floc-faces",
                                                               "floc-places", "floc-words", "streams"}
    table = pd.read_csv(workflow_run / "results/tables/subj01.tsv", sep="\t")
    assert {"subject", "model", "hemisphere", "roi_class", "roi", "median_r", "median_score"} <= set(table.columns)
    for subject, n_vertices in (("subj01", 400), ("subj02", 300)):
        prediction = np.load(workflow_run / f"results/submission/{subject}/lh_pred_test.npy")
        assert prediction.dtype == np.float32 and prediction.shape == (50, n_vertices)
        for figure in ("roi_scores", "preferred_block", "training"):
            assert (workflow_run / f"results/figures/{subject}_{figure}.png").stat().st_size > 10_000
        # banded_grid has block weights and mlp_cls training curves: neither figure is a notice
        for figure, notice in (("preferred_block", NO_BLOCK_WEIGHTS), ("training", NO_TRAINING_CURVES)):
            assert notice not in Image.open(workflow_run / f"results/figures/{subject}_{figure}.png").text["Title"]


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
    assert "cache" in (workdir / "logs/features/clip_vitb32_fmri_subj01.log").read_text().lower()


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

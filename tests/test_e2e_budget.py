"""The end-to-end configs stay small: each selects its own models, and its job count is held to a budget.

CI time grows with the jobs of its end-to-end runs (each job starts a process that imports torch), not
with the families in the zoo: a new family adds its tiny settings to tests/test_family_contract.py, not
a model here. Raising a budget is a decision to make CI slower: say so in the closing note.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tbdencoder.config import joint_models

from test_workflow import REPO, new_workdir

# config -> (jobs at most, fMRI models, MEG models)
BUDGETS = {
    "science.yaml": (64, {"ridge_cls", "ridge_grid", "banded_grid", "mlp_cls"}, {"foveal", "dual", "dual_banded", "dual_adapters"}),
    "small.yaml": (22, {"ridge_grid"}, {"foveal"}),
    "all_for_one.yaml": (20, {"topy"}, set()),
}


def planned_jobs(workdir: Path) -> dict[str, int]:
    """{rule: jobs} that `snakemake --dry-run` schedules from nothing."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1"], cwd=workdir,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = (result.stdout + result.stderr).split("Job stats:")[1]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_every_e2e_config_is_budgeted():
    assert {path.name for path in (REPO / "tests/configs").glob("*.yaml")} == set(BUDGETS)


@pytest.mark.parametrize("config", sorted(BUDGETS))
def test_e2e_config_selects_its_models_within_its_job_budget(config, tmp_path):
    budget, fmri_models, meg_models = BUDGETS[config]
    params = yaml.safe_load((REPO / "tests/configs" / config).read_text())
    params.setdefault("meg", {"models": {}, "subjects": [], "heldout_subjects": []})  # an fMRI-only config
    assert set(params["fmri"]["models"]) == fmri_models and set(params["meg"]["models"]) == meg_models
    jobs = planned_jobs(new_workdir(tmp_path, REPO / "tests/configs" / config))
    total = jobs.pop("total")
    assert total <= budget, (config, total, jobs)
    n_fmri_units = len(params["fmri"]["subjects"]) * len(params["fmri"]["hemispheres"])
    single = [name for name in fmri_models if name not in joint_models(params["fmri"]["models"])]
    assert jobs.get("fit", 0) == n_fmri_units * len(single)
    joint = joint_models(params["meg"]["models"])  # one job per model, all training subjects at once
    n_training, n_heldout = len(params["meg"]["subjects"]), len(params["meg"]["heldout_subjects"])
    assert jobs.get("fit_meg", 0) == n_training * (len(meg_models) - len(joint))
    assert jobs.get("fit_meg_joint", 0) == len(joint) and jobs.get("fit_meg_heldout", 0) == n_heldout * len(meg_models)
    assert jobs.get("kshot_meg", 0) == n_heldout * len(joint_models(params["meg"]["models"], "calibrates"))


def test_a_model_of_several_subjects_is_one_job_per_hemisphere_and_model(tmp_path):
    """fMRI: a subject_adapters model is fitted by rule fit_joint once per hemisphere (all subjects at once), not by
    rule fit per subject, and a held-out subject gets one k-shot job (a dry run of the science config with one
    such model and subj03 held out)."""
    params = yaml.safe_load((REPO / "tests/configs/science.yaml").read_text())
    params["fmri"]["models"]["adapters"] = {"family": "subject_adapters", "backbone": "clip_vitb32", "layers": [3],
                                            "tokens": ["global"], "rank": 2}
    params["fmri"]["heldout_subjects"] = ["subj03"]  # simulated with the others, then the k-shot comparison
    params["simulate"]["fmri"]["n_vertices"].append(200)
    config = tmp_path / "joint.yaml"
    config.write_text(yaml.safe_dump(params))
    (tmp_path / "run").mkdir()
    jobs = planned_jobs(new_workdir(tmp_path / "run", config))
    n_units = len(params["fmri"]["subjects"]) * len(params["fmri"]["hemispheres"])
    assert jobs["fit_joint"] == len(params["fmri"]["hemispheres"])
    assert jobs["fit"] == n_units * (len(params["fmri"]["models"]) - 1)
    assert jobs["kshot_fmri"] == 1 and jobs["prepare_fmri"] == 3  # subj03 prepared, never fitted per subject


def test_a_decoding_model_is_one_job_for_the_training_subjects_one_per_heldout_subject(tmp_path):
    """The decoding direction in the DAG (a dry run of the science config with a ridge and a clip_alignment
    decoder in each half): per decoding model one MEG job for all training subjects and one per held-out
    subject, one fMRI job for all subjects; one scoring job per subject."""
    params = yaml.safe_load((REPO / "tests/configs/science.yaml").read_text())
    decoders = {"ridge_decoder": {"family": "ridge", "backbone": "clip_vitb32"},
                "clip_decoder": {"family": "clip_alignment", "backbone": "clip_vitb32", "channels": 8}}
    params["meg"]["decoding"] = {"window_s": 0.25, "step_s": 0.1, "models": decoders}
    params["fmri"]["decoding"] = {"models": decoders}
    params["features"]["backbones"]["clip_vitb32"]["embedding"] = True
    config = tmp_path / "decoding.yaml"
    config.write_text(yaml.safe_dump(params))
    (tmp_path / "run").mkdir()
    jobs = planned_jobs(new_workdir(tmp_path / "run", config))
    n_training, n_heldout = len(params["meg"]["subjects"]), len(params["meg"]["heldout_subjects"])
    assert jobs["decode_meg"] == 2 and jobs["decode_meg_heldout"] == 2 * n_heldout and jobs["decode_fmri"] == 2
    assert jobs["evaluate_decoding_meg"] == n_training + n_heldout
    assert jobs["evaluate_decoding_fmri"] == len(params["fmri"]["subjects"])

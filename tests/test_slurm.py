"""The workflow through workflow/profiles/slurm on a real one-node SLURM cluster (scripts/slurm_cluster.sh).

The `cluster` tests start slurmctld, slurmd, slurmdbd, munged and mariadb on this machine (installing
Debian's packages when missing; needs root), run the small workflow of tests/configs/small.yaml (every rule,
one model per half) with the slurm executor and locally, and compare.
Run alone: `.venv/bin/python -m pytest -q -m cluster tests/test_slurm.py`.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from test_workflow import REPO
from test_workflow import new_workdir as copy_workflow

SCRIPT = REPO / "scripts/slurm_cluster.sh"
PROFILE = REPO / "workflow/profiles/slurm/config.yaml"
VENV_BIN = Path(sys.executable).parent
ACCOUNT, PARTITION = "tbdtest", "debug"  # made by scripts/slurm_cluster.sh
CONFIG = REPO / "tests/configs/small.yaml"  # one model per half: every rule, few jobs


def snakemake(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Snakemake on the tiny config, with the venv first on PATH (SLURM jobs inherit it)."""
    env = dict(env or os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("HDF5_USE_FILE_LOCKING", None)  # the slurm profile must set it
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=1200,
    )


def new_workdir(tmp_path_factory, name: str) -> Path:
    return copy_workflow(tmp_path_factory.mktemp(name), CONFIG)


def test_profile_requests_resources_per_rule(tmp_path_factory):
    """What the slurm profile asks for, as Snakemake resolves it (no cluster needed)."""
    workdir = new_workdir(tmp_path_factory, "profile")
    result = snakemake(workdir, "--dry-run", "--workflow-profile", "workflow/profiles/slurm")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", result.stdout + result.stderr, re.M)
    resources = dict(jobs)
    assert {"simulate_fmri", "prepare_fmri", "features", "fit", "evaluate", "merge_metrics", "simulate_meg",
            "meg_fixations", "preprocess_meg", "meg_crops", "fit_meg", "fit_meg_heldout", "evaluate_meg"} <= set(resources)
    assert all("runtime=" in value for value in resources.values())
    assert "gpu=1" in resources["features"] and "gpu=" not in resources["fit"]
    assert "mem_mb=32000" in resources["fit"]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A running test cluster; the daemons started here are stopped afterwards, also on failure."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (package installs, daemons)")
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm")
    env = dict(os.environ, SLURM_CLUSTER_DIR=str(state))
    try:
        start = subprocess.run(["bash", SCRIPT, "start"], env=env, capture_output=True, text=True, timeout=600)
        assert start.returncode == 0, f"{SCRIPT} start failed:\n{start.stdout}{start.stderr}"
        yield env
    finally:
        subprocess.run(["bash", SCRIPT, "stop"], env=env, timeout=300)


def node_memory_mb(env: dict) -> int:
    out = subprocess.run(["sinfo", "--noheader", "--format=%m"], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout)


def cluster_profile(profile_dir: Path, env: dict) -> Path:
    """The slurm profile with what differs on the test cluster: its account and partition, no GPU,
    no more memory than the node has, and quicker status checks (the plugin's default waits 40 s)."""
    profile = yaml.safe_load(PROFILE.read_text())
    node_mem_mb = node_memory_mb(env)
    profile["default-resources"].update(slurm_account=ACCOUNT, slurm_partition=PARTITION)
    for resources in profile["set-resources"].values():  # every rule that asks for a GPU (features, recipes)
        if "gpu" in resources:
            resources["gpu"] = 0
    for resources in (profile["default-resources"], *profile["set-resources"].values()):
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], node_mem_mb)
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return profile_dir


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "slurm_run")
    profile = cluster_profile(workdir / "test-profile", slurm_cluster)
    result = snakemake(workdir, "--workflow-profile", str(profile), env=slurm_cluster)
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result.stderr


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    workdir = new_workdir(tmp_path_factory, "local_run")
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result.stderr


def jobs_per_rule(log: str) -> Counter:
    """Jobs Snakemake ran, per rule, from its log (without the target rule `all`, which runs no command)."""
    return Counter(rule for rule in re.findall(r"^(?:local)?rule (\w+):$", log, re.M) if rule != "all")


def sacct(env: dict, *args: str) -> str:
    return subprocess.run(["sacct", *args], env=env, check=True, capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.cluster
def test_every_job_went_through_sbatch(slurm_cluster, slurm_run, local_run):
    _, log = slurm_run
    expected = jobs_per_rule(local_run[1])
    assert jobs_per_rule(log) == expected
    assert set(re.findall(r"^localrule (\w+):$", log, re.M)) <= {"all"}
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == sum(expected.values())
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]
    rows = sacct(slurm_cluster, "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State,Comment",
                 "--name", run_id).split()
    jobs = {job_id: (state, comment) for job_id, state, comment in (row.split("|") for row in rows)}
    assert sorted(jobs) == sorted(submitted)
    assert {state for state, _ in jobs.values()} == {"COMPLETED"}
    assert Counter(re.match(r"rule_(\w+?)(_wildcards_|$)", comment)[1] for _, comment in jobs.values()) == expected


@pytest.mark.slow
@pytest.mark.cluster
def test_jobs_get_the_venv_and_hdf5_setting(slurm_cluster, slurm_run):
    """Each job's environment, as slurmdbd recorded it (AccountingStoreFlags=job_env)."""
    _, log = slurm_run
    for job_id in re.findall(r"submitted with SLURM jobid (\d+)", log):
        environment = dict(re.findall(r"^(\w+)=(.*)$", sacct(slurm_cluster, "--env-vars", "-j", job_id), re.M))
        assert environment["HDF5_USE_FILE_LOCKING"] == "FALSE", job_id
        assert environment["PATH"].split(os.pathsep)[0] == str(VENV_BIN), job_id


MEASURED = ("fit_seconds",)  # how long a fit took: measured on the machine, not a result of the data


def assert_same_numbers(local, slurm, where="metrics.json"):
    """Equal results, timings apart (both runs must still report them)."""
    if isinstance(local, dict):
        assert local.keys() == slurm.keys(), where
        for key in local:
            if key in MEASURED:
                assert (local[key] is None) == (slurm[key] is None), f"{where}/{key}"
                continue
            assert_same_numbers(local[key], slurm[key], f"{where}/{key}")
    elif isinstance(local, list):
        assert len(local) == len(slurm), where
        for index, (a, b) in enumerate(zip(local, slurm)):
            assert_same_numbers(a, b, f"{where}/{index}")
    elif isinstance(local, float):
        assert slurm == pytest.approx(local, abs=1e-6, nan_ok=True), where
    else:
        assert local == slurm, where


@pytest.mark.slow
@pytest.mark.cluster
def test_results_equal_a_local_run(slurm_run, local_run):
    slurm, local = slurm_run[0] / "results", local_run[0] / "results"
    assert_same_numbers(json.loads((local / "metrics.json").read_text()),
                        json.loads((slurm / "metrics.json").read_text()))
    submissions = sorted(path.relative_to(local) for path in local.glob("submission/*/*.npy"))
    fits = sorted(path.relative_to(local) for path in local.glob("fits/subj*/*/*.h5"))
    meg_fits = sorted(path.relative_to(local) for path in local.glob("fits/meg/*/*.h5"))
    assert submissions and fits and meg_fits
    for path in submissions:
        np.testing.assert_array_equal(np.load(slurm / path), np.load(local / path), err_msg=str(path))
    for path in fits:
        with h5py.File(local / path) as a, h5py.File(slurm / path) as b:
            for name in ("test_prediction", "submission_prediction"):
                np.testing.assert_array_equal(b[name][:], a[name][:], err_msg=f"{path}:{name}")
    for path in meg_fits:
        with h5py.File(local / path) as a, h5py.File(slurm / path) as b:
            np.testing.assert_array_equal(b["prediction"][:], a["prediction"][:], err_msg=str(path))


@pytest.mark.nightly
@pytest.mark.cluster
def test_an_all_for_one_recipe_runs_every_small_model_as_its_own_sbatch_job(slurm_cluster, tmp_path_factory):
    """tests/configs/all_for_one.yaml through the cluster: each small model, soup, the teacher and the student are
    SLURM jobs with the profile's resources for their rule, and all complete."""
    workdir = copy_workflow(tmp_path_factory.mktemp("recipe_slurm"), REPO / "tests/configs/all_for_one.yaml")
    profile = cluster_profile(workdir / "test-profile", slurm_cluster)
    result = snakemake(workdir, "--workflow-profile", str(profile), env=slurm_cluster)
    assert result.returncode == 0, result.stderr[-5000:]
    jobs = jobs_per_rule(result.stderr)
    assert jobs["afo_member"] == 3 and jobs["afo_soup"] == 2 and jobs["afo_teacher"] == 1 and jobs["afo_student"] == 1
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", result.stderr)
    assert len(submitted) == sum(jobs.values())
    run_id = re.search(r"SLURM run ID: (\S+)", result.stderr)[1]
    rows = sacct(slurm_cluster, "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State,Comment",
                 "--name", run_id).split()
    states = {comment: state for _, state, comment in (row.split("|") for row in rows)}
    assert set(states.values()) == {"COMPLETED"}
    assert len([comment for comment in states if comment.startswith("rule_afo_member")]) == 3
    metrics = json.loads((workdir / "results/metrics.json").read_text())
    assert np.isfinite(metrics["summary"]["afo_student"]["challenge_score"])

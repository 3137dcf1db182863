"""dvc.yaml agrees with params.yaml and the Snakemake rules; from a fresh clone, `make run` then `make repro`
reruns only what a param or code change touches; either half (fMRI, MEG) runs alone, on real or simulated data."""

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tbdencoder.dvc_stages import _rule_files, forced_rules, render, run_stage, write_dvc_yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
# Names in workflow/rules/common.smk that stand for params.yaml keys.
ALIASES = {"FMRI": "fmri", "SUBJECTS": "fmri.subjects", "HEMISPHERES": "fmri.hemispheres", "MODELS": "fmri.models",
           "BACKBONES": "features.backbones", "SIMULATE_FMRI": "simulate.fmri", "MEG_SUBJECTS": "meg.subjects",
           "MEG_HELDOUT": "meg.heldout_subjects", "MEG_MODELS": "meg.models", "SIMULATE_MEG": "simulate.meg"}


def _stages():
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def _names(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def _stage_rules(stage):
    """The Snakemake rules a stage runs (`tbdencoder dvc-stage --stage NAME --rules RULE... -- snakemake ...`)."""
    return re.search(r"dvc-stage --stage \w+ --rules ((?:\w+ )+)-- snakemake ", stage["cmd"]).group(1).split()


def _rule_sources():
    """{rule name: (its .smk file, the text of its definition)}."""
    return {rule: (REPO / smk, text) for rule, (smk, text) in _rule_files(REPO).items()}


def _config_keys(text):
    keys = set(re.findall(r'config\["(\w+)"\]', text))
    keys |= {f"{a}.{b}" for a, b in re.findall(r'config\["(\w+)"\]\["(\w+)"\]', text)}
    keys |= {f"fmri.{k}" for k in re.findall(r'FMRI\["(\w+)"\]', text)}
    keys |= {f"meg.{k}" for k in re.findall(r'\bMEG(?:\["|\.get\(")(\w+)"', text)}
    keys |= {key for alias, key in ALIASES.items() if re.search(rf'\b{alias}\b(?!\[")', text)}  # FMRI["x"]: above
    for call in re.findall(r"\bsettings\(([^)]*)\)", text):  # settings("meg.preprocessing", f"features.backbones.{...}")
        keys |= {path.rstrip(".") for path in re.findall(r'"([\w.]+)', call)}
    return keys


def _covered(key, declared):
    return any(key == d or key.startswith(d + ".") for d in declared)


def test_every_dvc_output_is_made_by_a_rule_of_its_phase():
    summary = subprocess.run([sys.executable, "-m", "snakemake", "--summary"], cwd=REPO, env=ENV, capture_output=True,
                             text=True, check=True).stdout.splitlines()[1:]
    made_by = dict(line.split("\t")[::2][:2] for line in summary)  # output file -> rule
    claimed = set()
    for name, stage in _stages().items():
        rules = _stage_rules(stage)
        for out in _names(stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])):
            if out == "results/report.html":  # written by `snakemake --report` in the same stage
                continue
            files = [f for f in made_by if f == out or f.startswith(out.rstrip("/") + "/")]
            assert files, f"stage {name}: no rule makes {out}"
            wrong = {f: made_by[f] for f in files if made_by[f] not in rules}
            assert not wrong, f"stage {name} declares {out} but other phases' rules make {wrong}"
            claimed |= set(files)
    assert not set(made_by) - claimed, f"rule outputs no DVC stage versions: {sorted(set(made_by) - claimed)}"


def test_every_params_key_a_rule_reads_is_declared_on_its_stage():
    sources = _rule_sources()
    common = (REPO / "workflow/rules/common.smk").read_text()
    for name, stage in _stages().items():
        declared = stage["params"]
        deps = set(stage["deps"])
        for rule in _stage_rules(stage):
            smk, text = sources[rule]
            assert str(smk.relative_to(REPO)) in deps, f"stage {name}: {smk.name} (rule {rule}) is not a dependency"
            undeclared = {k for k in _config_keys(text) if not _covered(k, declared)}
            assert not undeclared, f"stage {name}: rule {rule} reads {sorted(undeclared)} not listed under params"
        # input functions in common.smk used by these rules
        for function in re.findall(r"^def (\w+)\(", common, re.M):
            if any(function in sources[r][1] for r in _stage_rules(stage)):
                body = common.split(f"def {function}(")[1].split("\ndef ")[0]
                assert all(_covered(k, declared) for k in _config_keys(body)), (name, function)


def test_committed_dvc_yaml_is_the_one_params_yaml_renders():
    write_dvc_yaml(REPO / "params.yaml", REPO / "dvc.yaml", check=True)


def test_check_refuses_a_dvc_yaml_that_params_no_longer_match(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    del params["meg"], params["simulate"]["meg"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for path in ("dvc.yaml", "Snakefile"):
        shutil.copy(REPO / path, tmp_path / path)
    shutil.copytree(REPO / "workflow", tmp_path / "workflow")
    with pytest.raises(ValueError, match=r"dvc.yaml does not match .*params.yaml.*run `tbdencoder dvc-yaml`"):
        write_dvc_yaml(tmp_path / "params.yaml", tmp_path / "dvc.yaml", check=True)
    assert write_dvc_yaml(tmp_path / "params.yaml", tmp_path / "dvc.yaml")
    stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
    assert not any(key.startswith("meg") for stage in stages.values() for key in stage["params"])


def test_each_stage_depends_on_the_code_it_runs():
    stages = _stages()
    for name, stage in stages.items():
        for shared in ("Snakefile", "workflow/rules/common.smk", "src/tbdencoder/io.py", "src/tbdencoder/config.py"):
            assert shared in stage["deps"], (name, shared)
    assert "src/tbdencoder/evaluate/metrics.py" in stages["evaluate"]["deps"]
    assert "src/tbdencoder/features/extract.py" in stages["features"]["deps"]
    assert "src/tbdencoder/models/ridge_solver.py" in stages["fit"]["deps"]
    assert "src/tbdencoder/fit/driver.py" in stages["fit"]["deps"]
    assert "src/tbdencoder/fit/driver.py" not in stages["prepare"]["deps"]
    # every package module the stage's CLI steps load at run time is a dependency
    for name, stage in stages.items():
        modules = {dep.removeprefix("src/").removesuffix(".py").replace("/", ".") for dep in stage["deps"]
                   if dep.startswith("src/") and not dep.endswith("__init__.py")}
        loaded = subprocess.run(
            [sys.executable, "-c", f"import sys, {', '.join(sorted(modules))}; "
             "print(' '.join(m for m in sys.modules if m.startswith('tbdencoder')))"],
            capture_output=True, text=True, check=True).stdout.split()
        files = {f"src/{m.replace('.', '/')}.py" for m in loaded}
        files = {f if (REPO / f).exists() else f.replace(".py", "/__init__.py") for f in files}
        assert files <= set(stage["deps"]), (name, sorted(files - set(stage["deps"])))


def _lock_project(root):
    """A project at `root` (the package and the workflow) whose dvc.lock records its package files for stage fit,
    with Snakemake metadata: nothing to force."""
    shutil.copytree(REPO / "src/tbdencoder", root / "src/tbdencoder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "workflow", root / "workflow")
    deps = [{"path": str(path.relative_to(root)), "hash": "md5", "md5": hashlib.md5(path.read_bytes()).hexdigest(),
             "size": path.stat().st_size} for path in sorted((root / "src").rglob("*.py"))]
    (root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"fit": {"cmd": "x", "deps": deps}}}))
    (root / ".snakemake/metadata").mkdir(parents=True)
    (root / ".snakemake/metadata/record").write_text("{}")
    return deps


def test_a_stage_forces_only_the_rules_whose_code_changed_since_dvc_lock(tmp_path):
    """Params, inputs and rules are Snakemake's to compare; package code is not: a rule is forced when a module its
    step runs differs from dvc.lock's record, and every rule when there is no record to compare with."""
    deps = _lock_project(tmp_path)
    fit = ["fit", "fit_meg", "fit_meg_heldout"]
    assert forced_rules("fit", fit, tmp_path) == ([], "")
    with open(tmp_path / "workflow/rules/fit.smk", "a") as smk:  # Snakemake sees what a workflow file changes
        smk.write("\n# edited\n")
    assert forced_rules("fit", fit, tmp_path) == ([], "")
    for path, rules in (("src/tbdencoder/fit/meg.py", ["fit_meg", "fit_meg_heldout"]),
                        ("src/tbdencoder/fit/fmri.py", ["fit"]), ("src/tbdencoder/models/mlp.py", fit)):
        original = (tmp_path / path).read_text()
        (tmp_path / path).write_text(original + "\n# edited\n")
        forced, why = forced_rules("fit", fit, tmp_path)
        assert forced == rules and path in why, (path, forced, why)
        (tmp_path / path).write_text(original)
    assert forced_rules("fit", fit, tmp_path) == ([], "")
    # DVC 2's lock entries (md5 of the text with LF line ends, no `hash` key) compare too
    legacy = [{k: v for k, v in dep.items() if k != "hash"} for dep in deps]
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"fit": {"deps": legacy}}}))
    assert forced_rules("fit", fit, tmp_path) == ([], "")
    # a module the step newly imports is not in the record: forced
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"fit": {"deps": deps[1:]}}}))
    assert forced_rules("fit", fit, tmp_path)[0] == fit
    assert forced_rules("evaluate", ["merge_metrics"], tmp_path) == (["merge_metrics"],
                                                                      "dvc.lock has no record of stage evaluate")
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"stages": {"fit": {"deps": deps}}}))
    (tmp_path / ".snakemake/metadata/record").unlink()  # e.g. a fresh clone after `dvc pull`
    forced, why = forced_rules("fit", fit, tmp_path)
    assert forced == fit and ".snakemake/metadata" in why
    argv = run_stage("fit", fit, [sys.executable, "-c", "import sys; open('argv', 'w').write(' '.join(sys.argv[1:]))"],
                     tmp_path)
    assert argv == 0 and (tmp_path / "argv").read_text() == "--forcerun fit fit_meg fit_meg_heldout"
    assert run_stage("fit", fit, [sys.executable, "-c", "raise SystemExit(3)"], tmp_path) == 3


PHASE_RULES = {"fmri": ["simulate_fmri", "prepare_fmri", "fit", "evaluate"],
               "meg": ["simulate_meg", "meg_fixations", "preprocess_meg", "meg_crops", "fit_meg", "fit_meg_heldout",
                       "evaluate_meg"]}


def _without(params, *keys):
    params = json.loads(json.dumps(params))
    for key in keys:
        params.pop(key, None)
        params.get("simulate", {}).pop(key, None)
    return params


def test_each_half_renders_alone_and_real_data_is_a_dependency():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    fmri_only = yaml.safe_load(render(_without(params, "meg"), REPO))["stages"]
    meg_only = yaml.safe_load(render(_without(params, "fmri"), REPO))["stages"]
    for stages, other in ((fmri_only, "meg"), (meg_only, "fmri")):
        for stage in stages.values():
            assert not any(key.startswith(f"{other}.") or key == other for key in stage["params"])
            assert f"results/{other}" not in stage["deps"] + _names(stage["outs"])
            assert not set(_stage_rules(stage)) & set(PHASE_RULES[other]), stage["cmd"]
    assert "evaluate_meg" in meg_only["evaluate"]["cmd"] and "prepare_fmri" in fmri_only["prepare"]["cmd"]
    real = _without(params, "meg")
    real["simulate"]["fmri"]["enabled"] = False
    real["fmri"]["dataset_dir"] = "/data/algonauts_2023"
    prepare = yaml.safe_load(render(real, REPO))["stages"]["prepare"]
    assert "/data/algonauts_2023" in prepare["deps"] and "simulate_fmri" not in prepare["cmd"]
    assert "/data/algonauts_2023" not in _names(prepare["outs"]) and "simulate.fmri" not in prepare["params"]


SMALL = REPO / "tests/configs/small.yaml"  # one model per half on tiny data: the params of every run here
# A second fMRI model (a tiny MLP) for the fixture's run: changing one model's hyper-parameter refits that
# model only, not the other model of the same rule.
MLP = {"family": "mlp", "backbone": "clip_vitb32", "layers": [2], "tokens": ["global"], "hidden_units": 8,
       "max_epochs": 2, "patience": 5, "batch_size": 16}


def _run(cwd, *args):
    result = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _make(cwd, target):
    """`make <target>` in a clone, with this test run's virtual environment (already installed)."""
    venv = Path(sys.executable).parent.parent
    return _run(cwd, "make", target, f"VENV={venv}", "-o", f"{venv}/.installed")


def _ran(output):
    return set(re.findall(r"Running stage '(\w+)'", output))


def _set_params(repo, **changes):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _clone(tmp_path, params):
    """A plain `git clone` of the project (its tracked files as they are in the working tree) with `params`."""
    clone = tmp_path / "project"
    _run(tmp_path, "git", "clone", "-q", str(REPO), str(clone))
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        if (REPO / path).is_file():
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / path, clone / path)
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(clone, "git", "config", "user.email", "ci@example.org")
    _run(clone, "git", "config", "user.name", "ci")
    _run(clone, "git", "add", "-A")
    _run(clone, "git", "commit", "-qm", "tiny params", "--allow-empty")
    return clone


def _stale(repo):
    return set(json.loads(_run(repo, "dvc", "status", "--json")))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A fresh clone after `make run` on the small config with a second fMRI model (mlp_cls)."""
    params = yaml.safe_load(SMALL.read_text())
    params["fmri"]["models"]["mlp_cls"] = MLP
    clone = _clone(tmp_path_factory.mktemp("dvc"), params)
    assert not (clone / "dvc.lock").exists()
    _make(clone, "run")
    return clone


def _copy(repo, tmp_path):
    """A private copy of a module fixture's project (modification times kept), for a test that changes it."""
    return shutil.copytree(repo, tmp_path / "project", symlinks=True)


@pytest.mark.slow
def test_fresh_clone_run_then_repro_reruns_only_what_changes_touch(made, tmp_path):
    made = _copy(made, tmp_path)
    assert "up to date" in _run(made, "dvc", "status")
    assert _ran(_make(made, "repro")) == set()
    _run(made, "git", "add", "-A")
    _run(made, "git", "commit", "-qm", "first run")
    features = made / "results/features/clip_vitb32/fmri_subj01.h5"

    # code: a change to a module or a workflow file marks exactly the stages that run it
    stages = _stages_of(made)
    for path in ("src/tbdencoder/evaluate/metrics.py", "src/tbdencoder/io.py", "workflow/rules/common.smk"):
        original = (made / path).read_text()
        (made / path).write_text(original + "\n# edited\n")
        users = {name for name, stage in stages.items() if path in stage["deps"]}
        assert users and _stale(made) == users, path
        (made / path).write_text(original)
    assert {"prepare", "features", "fit", "evaluate"} == {n for n, s in stages.items()
                                                         if "src/tbdencoder/io.py" in s["deps"]}
    assert _stale(made) == set()

    # one model's hyper-parameter: DVC reruns fit and evaluate; Snakemake refits that model only
    before, lock = _mtimes(made), (made / "dvc.lock").read_text()
    _set_params(made, **{"fmri.models.mlp_cls.max_epochs": 3})
    assert _ran(_make(made, "repro")) == {"fit", "evaluate"}
    newer = _newer(made, before)
    assert {f for f in newer if f.startswith(("results/fits/", "results/features/", "results/fmri/", "results/meg/"))} \
        == {"results/fits/subj01/lh/mlp_cls.h5", "results/fits/subj01/rh/mlp_cls.h5"}
    assert "results/metrics/subj01.json" in newer and "results/metrics.json" in newer
    assert (made / "dvc.lock").read_text() != lock and _stale(made) == set()  # DVC recorded the run
    diff = json.loads(_run(made, "dvc", "metrics", "diff", "--json")).get("results/metrics.json", {})
    assert not [key for key in diff if "ridge_grid" in key or "foveal" in key], diff

    # deps changed, yet Snakemake has nothing to do (a comment in fit.smk): the stage succeeds, DVC records
    # it; a module a rule runs changed (merge.py): that rule is forced, the others of the stage are not
    before = _mtimes(made)
    for path in ("workflow/rules/fit.smk", "src/tbdencoder/evaluate/merge.py"):
        with open(made / path, "a") as edited:
            edited.write("\n# edited\n")
    out = _make(made, "repro")
    assert _ran(out) == {"fit", "evaluate"} and "forcing merge_metrics (changed since dvc.lock" in out
    assert set(_newer(made, before)) == {"results/metrics.json", "results/report.html"}
    assert _stale(made) == set()

    _set_params(made, **{"features.backbones.clip_vitb32.grid_size": 3})
    before = _mtimes(made)
    assert _ran(_make(made, "repro")) == {"features", "fit", "evaluate"}
    # newer features (another stage's output) refit every model reading them: Snakemake's mtime trigger
    fits = {f for f in before if f.startswith("results/fits/")}
    assert len(fits) == 6 and fits <= set(_newer(made, before))
    diff = json.loads(_run(made, "dvc", "metrics", "diff", "--json"))
    assert "summary.ridge_grid.mean_r" in diff["results/metrics.json"]
    with __import__("h5py").File(features) as h5:
        assert h5["layers/block02/grid"].shape[1] == 9 * h5["layers/block02/global"].shape[1]
    _run(made, "git", "add", "-A")
    _run(made, "git", "commit", "-qm", "grid 3")

    before = _mtimes(made)
    assert _ran(_run(made, "dvc", "exp", "run", "-S", "fmri.fit.cv_folds=4")) == {"fit", "evaluate"}
    assert {f for f in _newer(made, before) if f.startswith("results/fits/")} == {
        f"results/fits/subj01/{hemi}/{model}.h5" for hemi in ("lh", "rh") for model in ("ridge_grid", "mlp_cls")}
    table = pd.read_csv(io.StringIO(_run(made, "dvc", "exp", "show", "--csv")))
    experiment = table[table["Experiment"].notna() & (table["fmri.fit.cv_folds"] == 4)]
    assert len(experiment) == 1
    # the experiment's metric is the one its run wrote (dvc exp run leaves the results in the workspace)
    written = json.loads((made / "results/metrics.json").read_text())["summary"]["ridge_grid"]["challenge_score"]
    assert float(experiment["summary.ridge_grid.challenge_score"].iloc[0]) == pytest.approx(written, rel=2e-4)
    assert _run(made, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))


def _stages_of(repo):
    return yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]


def _mtimes(repo):
    """{file under results/: its modification time in ns}."""
    return {str(path.relative_to(repo)): path.stat().st_mtime_ns for path in (repo / "results").rglob("*")
            if path.is_file()}


def _newer(repo, before):
    """The files under results/ written since `before` (an earlier `_mtimes`), or new."""
    return sorted(f for f, mtime in _mtimes(repo).items() if before.get(f) != mtime)


@pytest.mark.slow
def test_fresh_clone_pull_then_snakemake_recomputes_nothing(made, tmp_path):
    made = _copy(made, tmp_path)
    remote = tmp_path / "remote"
    _run(made, "dvc", "remote", "add", "-f", "-d", "local", str(remote))
    _run(made, "git", "add", "-A")
    _run(made, "git", "commit", "-qm", "remote", "--allow-empty")
    _run(made, "dvc", "push")
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(made), str(clone))
    # what `make pull` runs (make itself would build a second virtual environment in the clone)
    recipe = _run(REPO, "make", "--dry-run", "--always-make", "pull", "VENV=.venv")
    assert "dvc pull" in recipe and "snakemake --touch --forceall" in recipe
    _run(clone, "dvc", "pull")
    _run(clone, "snakemake", "--touch", "--forceall", "--cores", "1", "--quiet")
    dry = _run(clone, "snakemake", "--dry-run", "--workflow-profile", "workflow/profiles/default")
    assert "Nothing to be done" in dry, dry[-3000:]
    assert "Data and pipelines are up to date" in _run(clone, "dvc", "status")
    # the touch recorded every job's params: one model's change schedules that model's fits only
    _set_params(clone, **{"fmri.models.mlp_cls.max_epochs": 3})
    dry = _run(clone, "snakemake", "--dry-run", "--workflow-profile", "workflow/profiles/default")
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", dry.split("Job stats:")[1], re.M))
    assert jobs.get("fit") == "2" and not {"fit_meg", "fit_meg_heldout", "features"} & set(jobs), jobs


@pytest.mark.slow
@pytest.mark.parametrize("half", ["fmri", "meg"])
def test_one_half_alone_runs_end_to_end(half, tmp_path, tiny_fmri_dataset):
    """A lab with only fMRI (its real dataset folder, not simulated) or only MEG: snakemake via `make repro`
    (dvc.yaml rewritten for the half), dvc repro, the report."""
    params = yaml.safe_load(SMALL.read_text())
    if half == "fmri":
        params = _without(params, "meg")
        params["simulate"]["fmri"]["enabled"] = False
        params["fmri"]["dataset_dir"] = str(tiny_fmri_dataset)
    else:
        params = _without(params, "fmri")
    clone = _clone(tmp_path, params)
    out = _make(clone, "repro")
    assert _ran(out) == {"prepare", "features", "fit", "evaluate"}
    stages = _stages_of(clone)
    other = "meg" if half == "fmri" else "fmri"
    assert not any(f"results/{other}" in stage["deps"] for stage in stages.values())
    if half == "fmri":
        assert str(tiny_fmri_dataset) in stages["prepare"]["deps"]
    metrics = json.loads((clone / "results/metrics.json").read_text())
    assert ("meg" in metrics) == (half == "meg") and bool(metrics["summary"]) == (half == "fmri")
    html = (clone / "results/report.html").read_text()
    assert ("roi_scores.png" in html) == (half == "fmri") and ("r_time.png" in html) == (half == "meg")
    assert "Data and pipelines are up to date" in _run(clone, "dvc", "status")

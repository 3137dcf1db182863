"""dvc.yaml agrees with the Snakemake rules, and `dvc repro` reruns only what a param change touches."""

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

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
# Names in workflow/rules/common.smk that stand for params.yaml keys.
ALIASES = {"FMRI": "fmri", "SUBJECTS": "fmri.subjects", "HEMISPHERES": "fmri.hemispheres", "MODELS": "models",
           "BACKBONES": "features.backbones", "SIMULATE_FMRI": "simulate.fmri", "MEG_SUBJECTS": "meg.subjects",
           "MEG_HELDOUT": "meg.heldout_subjects", "MEG_MODELS": "meg.models", "SIMULATE_MEG": "simulate.meg"}


def _stages():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    text = re.sub(r"\$\{(fmri|meg)\.dataset_dir\}", lambda m: params[m.group(1)]["dataset_dir"],
                  (REPO / "dvc.yaml").read_text())
    return yaml.safe_load(text)["stages"]


def _names(entries):
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries]


def _stage_rules(stage):
    return re.search(r"--forcerun ((?:\w+ ?)+)", stage["cmd"]).group(1).split()


def _rule_sources():
    """{rule name: the text of its definition}."""
    sources = {}
    for smk in (REPO / "workflow/rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text()):
            match = re.match(r"rule (\w+):", block.lstrip())
            if match:
                sources[match.group(1)] = (smk, block)
    return sources


def _config_keys(text):
    keys = set(re.findall(r'config\["(\w+)"\]', text))
    keys |= {f"{a}.{b}" for a, b in re.findall(r'config\["(\w+)"\]\["(\w+)"\]', text)}
    keys |= {f"fmri.{k}" for k in re.findall(r'FMRI\["(\w+)"\]', text)}
    keys |= {f"meg.{k}" for k in re.findall(r'\bMEG(?:\["|\.get\(")(\w+)"', text)}
    keys |= {key for alias, key in ALIASES.items() if re.search(rf"\b{alias}\b", text)}
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


TINY = {
    "simulate": {"fmri": {"n_vertices": [80, 60], "n_train_images": 48, "n_test_images": 16, "n_shared_images": 4,
                          "image_size_px": 64}},
    "features": {"backbones": {"clip_vitb32": {"model": "ViT-S-32", "layers": [1, 2], "batch_size": 64}}},
    "models": {name: {"layers": [1, 2]} for name in ("ridge_cls", "ridge_grid", "roi_ridge")},
    "fit": {"alphas": [1.0, 100.0, 10000.0], "cv_folds": 3},
    "meg": {"subjects": [1, 2], "heldout_subjects": [60],
            "models": {name: {"layers": [1, 2]} for name in ("foveal", "dual")},
            "fit": {"outer_folds": 3, "inner_folds": 3}},
}
TINY["simulate"]["meg"] = {"n_sessions": 2, "n_trials_per_session": 6, "n_scenes": 12}


def _merge(base, override):
    for key, value in override.items():
        base[key] = _merge(base[key], value) if isinstance(value, dict) else value
    return base


def _run(cwd, *args):
    result = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{args}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


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


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("dvc") / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        if path.startswith(("tests/", "benchmarks/", "results/", "data/")) or path == "dvc.lock":
            continue
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, repo / path)
    params = _merge(yaml.safe_load((REPO / "params.yaml").read_text()), TINY)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(repo, "git", "init", "-q")
    _run(repo, "git", "config", "user.email", "ci@example.org")
    _run(repo, "git", "config", "user.name", "ci")
    _run(repo, "dvc", "init", "-q")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "project")
    return repo


@pytest.mark.slow
def test_param_changes_rerun_only_what_they_touch(dvc_repo, tmp_path):
    assert _ran(_run(dvc_repo, "dvc", "repro")) == {"prepare", "features", "fit", "evaluate"}
    _run(dvc_repo, "git", "add", "-A")
    _run(dvc_repo, "git", "commit", "-qm", "first run")
    features = dvc_repo / "results/features/clip_vitb32/fmri_subj01.h5"
    features_mtime = features.stat().st_mtime_ns

    _set_params(dvc_repo, **{"fit.alphas": [1.0, 100.0, 1000.0, 10000.0]})
    assert _ran(_run(dvc_repo, "dvc", "repro")) == {"fit", "evaluate"}
    assert features.stat().st_mtime_ns == features_mtime
    diff = json.loads(_run(dvc_repo, "dvc", "metrics", "diff", "--json"))
    assert "summary.ridge_grid.mean_r" in diff["results/metrics.json"]

    _set_params(dvc_repo, **{"features.backbones.clip_vitb32.grid_size": 3})
    assert _ran(_run(dvc_repo, "dvc", "repro")) == {"features", "fit", "evaluate"}
    with __import__("h5py").File(features) as h5:
        assert h5["layers/block02/grid"].shape[1] == 9 * h5["layers/block02/cls"].shape[1]
    _run(dvc_repo, "git", "add", "-A")
    _run(dvc_repo, "git", "commit", "-qm", "grid 3")

    assert _ran(_run(dvc_repo, "dvc", "exp", "run", "-S", "fit.cv_folds=4")) == {"fit", "evaluate"}
    table = pd.read_csv(io.StringIO(_run(dvc_repo, "dvc", "exp", "show", "--csv")))
    experiment = table[table["Experiment"].notna() & (table["fit.cv_folds"] == 4)]
    assert len(experiment) == 1
    assert 0 < float(experiment["summary.ridge_grid.challenge_score"].iloc[0]) <= 100
    assert (dvc_repo / "dvc.yaml").exists() and _run(dvc_repo, "dvc", "plots", "show", "-o", str(tmp_path / "plots"))


@pytest.mark.slow
def test_fresh_clone_pull_then_snakemake_recomputes_nothing(dvc_repo, tmp_path):
    if not (dvc_repo / "dvc.lock").exists():
        _run(dvc_repo, "dvc", "repro")
    remote = tmp_path / "remote"
    _run(dvc_repo, "git", "checkout", "-q", "--", ".")
    _run(dvc_repo, "dvc", "remote", "add", "-f", "-d", "local", str(remote))
    _run(dvc_repo, "dvc", "repro")  # workspace back in step with HEAD's params
    _run(dvc_repo, "git", "add", "-A")
    _run(dvc_repo, "git", "commit", "-qm", "remote", "--allow-empty")
    _run(dvc_repo, "dvc", "push")
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(dvc_repo), str(clone))
    # what `make pull` runs (make itself would build a second virtual environment in the clone)
    recipe = _run(REPO, "make", "--dry-run", "--always-make", "pull", "VENV=.venv")
    assert "dvc pull" in recipe and "snakemake --touch" in recipe
    _run(clone, "dvc", "pull")
    _run(clone, "snakemake", "--touch", "--cores", "1", "--quiet")
    dry = _run(clone, "snakemake", "--dry-run", "--workflow-profile", "workflow/profiles/default")
    assert "Nothing to be done" in dry, dry[-3000:]
    assert "Data and pipelines are up to date" in _run(clone, "dvc", "status")

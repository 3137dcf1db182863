"""dvc.yaml, written from params.yaml: one stage per phase, covering the halves (fMRI, MEG) the params define.

DVC cannot make a stage's params, deps or outs conditional, and it refuses a stage that declares a
params key the file lacks, so the stages are rendered from params.yaml (`tbdencoder dvc-yaml`,
run by `make repro`) instead of being kept by hand:

- a half without its section (`fmri`, `meg`) has no rules, params, deps or outs in any stage;
- a simulated dataset (`simulate.<half>.enabled`) is an output of `prepare`; a real one (the
  user's `dataset_dir`) is a dependency;
- each stage depends on the code it runs: the Snakefile, `common.smk` and the .smk files that
  define its rules, the CLI, and every module of the package that the steps in those rules' shell
  commands run (`steps.STEPS`) or the workflow files import while Snakemake parses them, with
  everything those import (directly or indirectly; found by reading the import statements).

Every stage's command starts with `tbdencoder dvc-yaml --check`, so a dvc.yaml that no longer
matches params.yaml (a half added or removed, simulation switched off) stops `dvc repro` with a
message saying how to regenerate it, instead of running stale stages.

Who decides what reruns. DVC decides which stages run (a dep, param or out changed); inside a stage,
Snakemake decides which jobs run, with its own rerun triggers: a job reruns when an input is newer
than its outputs (an upstream stage rewrote it), when its set of inputs, its rule's shell command or
its params changed (every params.yaml value a rule uses reaches it through `params:`, so changing one
model's hyper-parameter reruns only that model's jobs). A stage whose deps changed but where
Snakemake finds nothing to do succeeds, and DVC records the new dvc.lock. Outputs persist (DVC does
not delete them before the command), so Snakemake sees the files of earlier runs. Snakemake cannot
see two things, and for those the stage forces rules (`tbdencoder dvc-stage`, `run_stage`):

- a change in a package module: Snakemake's code trigger compares a rule's shell text only. A rule is
  forced when a module its step runs (the import closure of the CLI and the step's modules) differs
  from the copy dvc.lock records for the stage (or is not recorded): editing `fit/meg.py` forces
  `fit_meg` and `fit_meg_heldout`, not `fit`. Workflow files (Snakefile, .smk) need no forcing: what
  they change reaches the jobs as params, inputs or shell text, which Snakemake compares.
- no record to compare with: a stage without an entry in dvc.lock (nothing says which code made the
  outputs there), or a workspace without Snakemake's metadata (`.snakemake/metadata`: a fresh clone
  after a bare `dvc pull`, a `dvc exp run --temp` or queued experiment), where Snakemake would judge
  by modification times alone. All the stage's rules are forced then. (`make pull` runs
  `snakemake --touch --forceall`, which records the metadata of every job.)

dvc.lock is read while the stage runs, before DVC rewrites it: it still holds the deps of the
stage's last successful run.
"""

from __future__ import annotations

import ast
import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tbdencoder.config import load_params, simulation
from tbdencoder.io import atomic_write_text
from tbdencoder.steps import STEPS, step_modules

PACKAGE = "tbdencoder"
SNAKEMAKE = "snakemake --workflow-profile workflow/profiles/default"
CHECK = "tbdencoder dvc-yaml --check"
RUN = "tbdencoder dvc-stage"  # runs the stage's Snakemake command, forcing only rules whose code changed


@dataclass
class Half:
    """What one half (fMRI or MEG) adds to a phase."""

    rules: list[str] = field(default_factory=list)
    until: list[str] = field(default_factory=list)  # the phase's last rules (Snakemake --until)
    params: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)


AFO_RULES = ["afo_groups", "afo_member", "afo_soup", "afo_teacher", "afo_student"]  # All-for-One recipes

# Per phase: rules of both halves ("common"), of fMRI ("fmri") and of MEG ("meg"); the simulate rules and
# the dataset folders are added by `_prepare_inputs` from the params.
PHASES: dict[str, dict[str, Half]] = {
    "prepare": {
        "fmri": Half(["prepare_fmri"], ["prepare_fmri"], ["fmri.dataset_dir", "fmri.subjects", "fmri.heldout_subjects",
                                                          "fmri.hemispheres", "fmri.heldout_fraction", "fmri.split_seed",
                                                          "fmri.roi_classes", "fmri.fsaverage_dir"],
                     outs=["results/fmri"]),
        "meg": Half(["meg_fixations", "preprocess_meg", "meg_crops"], ["preprocess_meg", "meg_crops"],
                    ["meg.dataset_dir", "meg.subjects", "meg.heldout_subjects", "meg.screen", "meg.bad_fixations",
                     "meg.preprocessing", "meg.crops"], outs=["results/meg"]),
    },
    "features": {
        "common": Half(["features"], ["features"], ["features"], outs=["results/features"]),
        "fmri": Half(params=["fmri.subjects", "fmri.heldout_subjects"], deps=["results/fmri"]),
        "meg": Half(params=["meg.subjects", "meg.heldout_subjects"], deps=["results/meg"]),
    },
    "fit": {
        "common": Half(deps=["results/features"], outs=["results/fits"]),
        "fmri": Half(["fit", "fit_joint", *AFO_RULES, "decode_fmri"], ["fit", "fit_joint", *AFO_RULES, "decode_fmri"],
                     ["fmri.subjects", "fmri.hemispheres", "fmri.models", "fmri.fit", "fmri.all_for_one",
                      "fmri.decoding"], ["results/fmri"], ["results/all_for_one", "results/decoding"]),
        "meg": Half(["fit_meg", "fit_meg_joint", "fit_meg_heldout", "decode_meg", "decode_meg_heldout"],
                    ["fit_meg", "fit_meg_joint", "fit_meg_heldout", "decode_meg", "decode_meg_heldout"],
                    ["meg.subjects", "meg.heldout_subjects", "meg.models", "meg.fit", "meg.decoding"], ["results/meg"],
                    ["results/decoding"]),
    },
    "evaluate": {
        # the k-shot rules fit a model of several subjects for a held-out subject: scores, not fits
        "common": Half(["merge_metrics"], [], deps=["results/fits", "results/features", "workflow/report"],
                       outs=["results/metrics", "results/scores", "results/figures"]),
        "fmri": Half(["evaluate", "kshot_fmri", "evaluate_decoding_fmri"], [],
                     ["fmri.subjects", "fmri.heldout_subjects", "fmri.hemispheres", "fmri.models", "fmri.fit",
                      "fmri.evaluation", "fmri.decoding"], ["results/fmri", "results/decoding"], ["results/submission"]),
        "meg": Half(["evaluate_meg", "kshot_meg", "evaluate_decoding_meg"], [],
                    ["meg.subjects", "meg.heldout_subjects", "meg.models", "meg.fit", "meg.screen", "meg.noise_ceiling",
                     "meg.evaluation", "meg.decoding"], ["results/meg", "results/decoding"]),
    },
}


def halves(params: dict[str, Any]) -> list[str]:
    """The halves params.yaml defines, in a fixed order."""
    return [half for half in ("fmri", "meg") if half in params]


def _phase(name: str, params: dict[str, Any]) -> Half:
    """The phase's rules, params, deps and outs for the halves in `params`."""
    merged = Half()
    for part in ["common", *halves(params)]:
        half = PHASES[name].get(part, Half())
        for attr in ("rules", "until", "params", "deps", "outs"):
            getattr(merged, attr).extend(v for v in getattr(half, attr) if v not in getattr(merged, attr))
    merged.params = [path for path in merged.params if _given(params, path)]  # DVC refuses a key the file lacks
    if not any(_given(params, f"{half}.decoding") for half in halves(params)):  # nothing decoded: no folder
        merged.deps, merged.outs = ([path for path in paths if path != "results/decoding"]
                                    for paths in (merged.deps, merged.outs))
    if not _given(params, "fmri.all_for_one"):  # no recipe: no folder
        merged.outs = [path for path in merged.outs if path != "results/all_for_one"]
    if name == "prepare":
        simulated = [half for half in halves(params) if simulation(params, half)]
        merged.rules[:0] = [f"simulate_{half}" for half in simulated]
        merged.params += [f"simulate.{half}" for half in simulated]
        merged.outs[:0] = [params[half]["dataset_dir"] for half in simulated]
        merged.deps[:0] = [params[half]["dataset_dir"] for half in halves(params) if half not in simulated]
    return merged


def _given(params: dict[str, Any], path: str) -> bool:
    """Whether params.yaml sets the dotted `path` (an optional key may be left to its schema default)."""
    value: Any = params
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def render(params: dict[str, Any], root: Path) -> str:
    """dvc.yaml's text for `params` (a validated params.yaml) in the project at `root`."""
    rule_files = _rule_files(root)
    src = _src(root)
    stages = {}
    for name in PHASES:
        phase = _phase(name, params)
        smk = sorted({rule_files[rule][0] for rule in phase.rules})
        modules = {f"{PACKAGE}.cli", *_workflow_imports(root, ["Snakefile", "workflow/rules/common.smk", *smk])}
        for rule in phase.rules:
            modules |= set(_step_modules(rule_files[rule][1]))
        code = ["Snakefile", "workflow/rules/common.smk", *smk, *sorted(_module_files(modules, src, root))]
        command = [CHECK, f"{RUN} --stage {name} --rules {' '.join(phase.rules)} -- {SNAKEMAKE}"
                   + (f" --until {' '.join(phase.until)}" if phase.until else "")]
        stage: dict[str, Any] = {"cmd": " && ".join(command), "deps": phase.deps + code, "params": phase.params}
        stage["outs"] = [{out: {"persist": True}} for out in phase.outs]
        if name == "evaluate":
            stage["cmd"] += f" && {SNAKEMAKE} --report results/report.html"
            stage["outs"].append({"results/report.html": {"persist": True}})
            stage["metrics"] = [{"results/metrics.json": {"persist": True}}]
            if "fmri" in params:
                stage["plots"] = [{"results/tables": {"persist": True, "x": "roi", "y": "median_r",
                                                      "template": "bar_horizontal"}}]
        stages[name] = stage
    header = ("# Written by `tbdencoder dvc-yaml` from params.yaml (`make repro` does it): do not edit by hand.\n"
              "# One stage per phase; each runs its phase's Snakemake rules, and Snakemake reruns only the jobs\n"
              "# whose params, inputs or rule changed (`tbdencoder dvc-stage` forces the rules whose package\n"
              "# code changed since dvc.lock). Outputs persist: Snakemake needs the files of earlier runs to\n"
              "# decide what to skip. How the stages are made: src/tbdencoder/dvc_stages.py.\n")
    return header + yaml.safe_dump({"stages": stages, "plots": ["results/figures"]}, sort_keys=False, width=120)


def write_dvc_yaml(params_path: str | Path, out_path: str | Path, check: bool = False) -> bool:
    """Write dvc.yaml for params.yaml; with `check`, only compare and raise if it is out of date."""
    out_path = Path(out_path)
    text = render(load_params(params_path), out_path.resolve().parent)
    current = out_path.read_text() if out_path.exists() else None
    if check:
        if current != text:
            raise ValueError(f"{out_path} does not match {params_path} (a half added or removed, or simulation "
                             f"switched on or off); run `tbdencoder dvc-yaml` or `make repro` to rewrite it")
        return False
    if current != text:
        atomic_write_text(out_path, text)
        return True
    return False


def forced_rules(stage: str, rules: list[str], root: Path) -> tuple[list[str], str]:
    """The rules among `rules` (stage `stage`'s) that Snakemake must force, and why ("" when none).

    Forced: every rule when dvc.lock has no record of the stage or Snakemake has no metadata in `root`;
    otherwise each rule a package module of whose step differs from the stage's dvc.lock record.
    """
    lock_path = root / "dvc.lock"
    lock = (yaml.safe_load(lock_path.read_text()) if lock_path.is_file() else None) or {}
    record = (lock.get("stages") or {}).get(stage)
    if record is None:
        return list(rules), f"dvc.lock has no record of stage {stage}"
    metadata = root / ".snakemake" / "metadata"
    if not metadata.is_dir() or next(metadata.iterdir(), None) is None:
        return list(rules), "Snakemake has no metadata here (.snakemake/metadata) to compare params with"
    recorded = {dep["path"]: dep for dep in record.get("deps", [])}
    rule_files, src = _rule_files(root), _src(root)
    forced, changed = [], set()
    for rule in rules:
        files = _rule_code(rule_files[rule][1], src, root)
        differ = {path for path in files if not _same_md5(root / path, recorded.get(path))}
        if differ:
            forced.append(rule)
            changed |= differ
    return forced, (f"changed since dvc.lock: {', '.join(sorted(changed))}" if forced else "")


def run_stage(stage: str, rules: list[str], command: list[str], root: Path | None = None) -> int:
    """Run a stage's Snakemake `command` in `root`, with `--forcerun` for the rules `forced_rules` picks."""
    root = Path.cwd() if root is None else root
    forced, why = forced_rules(stage, rules, root)
    if forced:
        command = [*command, "--forcerun", *forced]
        print(f"{RUN} --stage {stage}: forcing {' '.join(forced)} ({why})", file=sys.stderr, flush=True)
    return subprocess.run(command, cwd=root).returncode


def _rule_code(rule_text: str, src: Path, root: Path) -> set[str]:
    """The package files a rule's shell command runs (the CLI, its step's modules and all they import)."""
    return _module_files({f"{PACKAGE}.cli", *_step_modules(rule_text)}, src, root)


def _same_md5(path: Path, dep: dict[str, Any] | None) -> bool:
    """Whether `path` has the content dvc.lock's `dep` entry records (DVC 3's md5, or DVC 2's md5 of the
    text with CRLF line ends made LF)."""
    if not dep or not path.is_file():
        return False
    data = path.read_bytes()
    if dep.get("hash") != "md5":
        data = data.replace(b"\r\n", b"\n")
    return hashlib.md5(data).hexdigest() == dep.get("md5")


def _src(root: Path) -> Path:
    """The folder holding the package: the project's src/, else that of the installed copy running now."""
    return root / "src" if (root / "src" / PACKAGE).is_dir() else Path(__file__).resolve().parents[1]


def _rule_files(root: Path) -> dict[str, tuple[str, str]]:
    """{rule name: (its .smk file relative to root, the text of its definition)}."""
    rules = {}
    for smk in sorted((root / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            match = re.match(r"\s*rule (\w+):", block)
            if match:
                rules[match.group(1)] = (str(smk.relative_to(root)), block)
    return rules


def _workflow_imports(root: Path, files: list[str]) -> list[str]:
    """Package modules that the Snakefile and .smk files import while Snakemake parses them."""
    pattern = rf"^\s*(?:from ({PACKAGE}[\w.]*) import|import ({PACKAGE}[\w.]*))"
    return [a or b for name in files for a, b in re.findall(pattern, (root / name).read_text(), re.M)]


def _step_modules(rule_text: str) -> list[str]:
    """Modules of the steps a rule's shell command runs (`tbdencoder [--threads N] <step> ...`)."""
    modules = []
    for words in re.findall(rf"\b{PACKAGE}((?: [\w{{}}-]+)+)", rule_text):
        names = [w for w in words.split() if not w.startswith(("-", "{"))]
        for length in (2, 1):  # "simulate meg", "fit"
            if " ".join(names[:length]) in STEPS:
                modules += step_modules(" ".join(names[:length]))
                break
    return modules


def _imports(tree: ast.AST, module: str, src: Path) -> list[str]:
    """Package modules named by the import statements anywhere in `tree` (a module's or a function's)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            found.append(base)
            found += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return [name for name in found if name.split(".")[0] == PACKAGE and _module_path(name, src)]


def _module_path(module: str, src: Path) -> Path | None:
    """The source file of a package module under `src` (a package's __init__.py), or None if not a module."""
    base = src.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_files(modules: set[str], src: Path, root: Path) -> set[str]:
    """Source files of `modules`, of everything they import, and of the packages around them, relative to root."""
    seen, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages' __init__.py run first
        todo += _imports(ast.parse(_module_path(module, src).read_text()), module, src)
    files = set()
    for module in seen:
        path = _module_path(module, src)
        try:
            files.add(str(path.relative_to(root)))
        except ValueError:  # an installed copy of the package outside the project
            files.add(str(path))
    return files

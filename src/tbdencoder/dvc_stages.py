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
"""

from __future__ import annotations

import ast
import re
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


@dataclass
class Half:
    """What one half (fMRI or MEG) adds to a phase."""

    rules: list[str] = field(default_factory=list)
    until: list[str] = field(default_factory=list)  # the phase's last rules (Snakemake --until)
    params: list[str] = field(default_factory=list)
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)


# Per phase: rules of both halves ("common"), of fMRI ("fmri") and of MEG ("meg"); the simulate rules and
# the dataset folders are added by `_prepare_inputs` from the params.
PHASES: dict[str, dict[str, Half]] = {
    "prepare": {
        "fmri": Half(["prepare_fmri"], ["prepare_fmri"], ["fmri.dataset_dir", "fmri.subjects", "fmri.hemispheres",
                                                          "fmri.heldout_fraction", "fmri.split_seed", "fmri.roi_classes"],
                     outs=["results/fmri"]),
        "meg": Half(["meg_fixations", "preprocess_meg", "meg_crops"], ["preprocess_meg", "meg_crops"],
                    ["meg.dataset_dir", "meg.subjects", "meg.heldout_subjects", "meg.screen", "meg.bad_fixations",
                     "meg.preprocessing", "meg.crops"], outs=["results/meg"]),
    },
    "features": {
        "common": Half(["features"], ["features"], ["features"], outs=["results/features"]),
        "fmri": Half(params=["fmri.subjects"], deps=["results/fmri"]),
        "meg": Half(params=["meg.subjects", "meg.heldout_subjects"], deps=["results/meg"]),
    },
    "fit": {
        "common": Half(deps=["results/features"], outs=["results/fits"]),
        "fmri": Half(["fit"], ["fit"], ["fmri.subjects", "fmri.hemispheres", "fmri.models", "fmri.fit"], ["results/fmri"]),
        "meg": Half(["fit_meg", "fit_meg_heldout"], ["fit_meg", "fit_meg_heldout"],
                    ["meg.subjects", "meg.heldout_subjects", "meg.models", "meg.fit"], ["results/meg"]),
    },
    "evaluate": {
        "common": Half(["merge_metrics"], [], deps=["results/fits", "workflow/report"],
                       outs=["results/metrics", "results/scores", "results/figures"]),
        "fmri": Half(["evaluate"], [], ["fmri.subjects", "fmri.hemispheres", "fmri.models", "fmri.evaluation"],
                     ["results/fmri"], ["results/submission"]),
        "meg": Half(["evaluate_meg"], [], ["meg.subjects", "meg.heldout_subjects", "meg.models", "meg.screen",
                                           "meg.noise_ceiling", "meg.evaluation"], ["results/meg"]),
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
    if name == "prepare":
        simulated = [half for half in halves(params) if simulation(params, half)]
        merged.rules[:0] = [f"simulate_{half}" for half in simulated]
        merged.params += [f"simulate.{half}" for half in simulated]
        merged.outs[:0] = [params[half]["dataset_dir"] for half in simulated]
        merged.deps[:0] = [params[half]["dataset_dir"] for half in halves(params) if half not in simulated]
    return merged


def render(params: dict[str, Any], root: Path) -> str:
    """dvc.yaml's text for `params` (a validated params.yaml) in the project at `root`."""
    rule_files = _rule_files(root)
    src = root / "src" if (root / "src" / PACKAGE).is_dir() else Path(__file__).resolve().parents[1]
    stages = {}
    for name in PHASES:
        phase = _phase(name, params)
        smk = sorted({rule_files[rule][0] for rule in phase.rules})
        modules = {f"{PACKAGE}.cli", *_workflow_imports(root, ["Snakefile", "workflow/rules/common.smk", *smk])}
        for rule in phase.rules:
            modules |= set(_step_modules(rule_files[rule][1]))
        code = ["Snakefile", "workflow/rules/common.smk", *smk, *sorted(_module_files(modules, src, root))]
        command = [CHECK, f"{SNAKEMAKE} --forcerun {' '.join(phase.rules)}"
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
              "# One stage per phase; each runs its phase's Snakemake rules (forced: DVC has decided they are\n"
              "# stale) and lets Snakemake skip the phases upstream. Outputs persist: Snakemake needs the files\n"
              "# of earlier runs to decide what to skip. How the stages are made: src/tbdencoder/dvc_stages.py.\n")
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

"""The All-for-One recipes of params.yaml (`fmri.all_for_one.<name>`): their settings with defaults, their
vertex-group schemes and groups (what the workflow's jobs are), and the neck_readout specs of their models.

Schemes, each a partition of every subject's vertices of a hemisphere (the recipe's small models are one per
group of each scheme):
- `whole-s<seed>`: one group, `all` (the whole-brain model, once per seed);
- `rois`: the named groups of ROI labels, and `outside` (every vertex in none of them);
- `clusters`: `c0` .. `c<n-1>`, from the first whole-brain model's readout weights;
- `random-s<seed>`: `p0` .. `p<n-1>`, a uniform random partition per seed.
Evaluated models: `<name>_whole` (the first whole-brain model), `<name>_teacher` (the stitched ensemble) and
`<name>_student` (the distilled model).
"""

from __future__ import annotations

from typing import Any

from tbdencoder.config import ParamsError, load_schema

OUTPUTS = ("whole", "teacher", "student")


def recipes(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every recipe of `fmri.all_for_one`, with the schema's defaults filled in."""
    return {name: with_defaults(recipe) for name, recipe in params.get("fmri", {}).get("all_for_one", {}).items()}


def with_defaults(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recipe with the schema's defaults filled in, nested sections included."""
    schema = load_schema()["$defs"]["all_for_one"]["properties"]

    def filled(section: str) -> dict[str, Any]:
        defaults = {key: spec["default"] for key, spec in schema[section].get("properties", {}).items()
                    if "default" in spec}
        return {**defaults, **recipe.get(section, {})}

    full = {**{key: spec["default"] for key, spec in schema.items() if "default" in spec}, **recipe}
    full.update(soup=filled("soup"), student=filled("student"))
    if "clusters" in recipe:
        full["clusters"] = filled("clusters")
    return full


def schemes(recipe: dict[str, Any]) -> dict[str, list[str]]:
    """{scheme: its groups} of a recipe (module docstring), in training order: whole-brain models first."""
    out = {f"whole-s{seed}": ["all"] for seed in recipe["whole_brain_seeds"]}
    if "rois" in recipe:
        out["rois"] = [*recipe["rois"]["groups"], "outside"]
    if "clusters" in recipe:
        out["clusters"] = [f"c{k}" for k in range(recipe["clusters"]["n_clusters"])]
    for seed in recipe.get("random", {}).get("seeds", []):
        out[f"random-s{seed}"] = [f"p{k}" for k in range(recipe["random"]["n_parts"])]
    return out


def job_settings(recipe: dict[str, Any], scheme: str | None = None) -> dict[str, Any]:
    """The part of a recipe one job reads, itself a recipe (so that a job reruns only when its part changes):
    a scheme's groups, members and soup read the neck, the first whole-brain seed (clusters read its soup) and
    their own section (a random scheme: its own seed); the teacher (scheme None) every scheme-making key."""
    out = {"neck": recipe["neck"], "whole_brain_seeds": recipe["whole_brain_seeds"][:1]}
    if scheme is None:
        return {**out, **{key: recipe[key] for key in ("whole_brain_seeds", "rois", "clusters", "random")
                          if key in recipe}}
    if scheme.startswith("whole-s"):
        return {**out, "whole_brain_seeds": [int(scheme.removeprefix("whole-s"))]}
    if scheme.startswith("random-s"):
        return {**out, "random": {"n_parts": recipe["random"]["n_parts"], "seeds": [int(scheme.removeprefix("random-s"))]}}
    return {**out, scheme: recipe[scheme]}


def scheme_seed(recipe: dict[str, Any], scheme: str) -> int:
    """The training seed of a scheme's small models: a whole-brain or random scheme's own, else the recipe's."""
    return int(scheme.rsplit("-s", 1)[1]) if scheme.startswith(("whole-s", "random-s")) else int(recipe["seed"])


def evaluated_models(params: dict[str, Any]) -> list[str]:
    """The names under which the recipes' models are evaluated beside fmri.models."""
    return [f"{name}_{output}" for name in recipes(params) for output in OUTPUTS]


def model_spec(params: dict[str, Any], name: str, role: str, scheme: str | None = None) -> dict[str, Any]:
    """The neck_readout spec of a recipe's `role` ('member': a small or whole-brain model of `scheme`, with top-k
    epochs kept; 'whole': the first whole-brain model's; 'student': distilled), with the fMRI fit settings; the
    neck's backbone, layers and tokens."""
    recipe = recipes(params)[name]
    if role == "whole":
        role, scheme = "member", next(iter(schemes(recipe)))
    neck = params["fmri"]["models"][recipe["neck"]]
    spec = {"family": "neck_readout", "neck": recipe["neck"], "from_models": [recipe["neck"]],
            **{key: neck[key] for key in ("backbone", "layers", "tokens")}, **recipe["model"],
            **params["fmri"]["fit"]}
    if role == "member":
        spec.update(keep_top_k=recipe["soup"]["top_k"], seed=scheme_seed(recipe, scheme))
    else:
        spec.update(recipe["student"], seed=int(recipe["seed"]))
    return spec


def check_recipes(params: dict[str, Any], source: str) -> None:
    """Refusals naming the key: a neck that is not a factortopy model, a name taken by a model, model settings
    neck_readout does not take."""
    models = params.get("fmri", {}).get("models", {})
    own = set(load_schema()["$defs"]["families"]["neck_readout"]["properties"]) - {"neck", "teacher_epochs",
                                                                                   "keep_top_k"}
    for name, recipe in params.get("fmri", {}).get("all_for_one", {}).items():
        key = f"fmri.all_for_one.{name}"
        if models.get(recipe["neck"], {}).get("family") != "factortopy":
            raise ParamsError(f"{source}: key '{key}.neck': {recipe['neck']!r} is not a factortopy model of "
                              f"fmri.models ({sorted(n for n, m in models.items() if m['family'] == 'factortopy')})")
        taken = sorted({f"{name}_{output}" for output in OUTPUTS} & set(models))
        if taken:
            raise ParamsError(f"{source}: key '{key}': the recipe's models {taken} are also fmri.models names")
        for section in ("model", "student"):
            unknown = sorted(set(recipe.get(section, {})) - own - ({"teacher_epochs"} if section == "student" else set()))
            if unknown:
                raise ParamsError(f"{source}: key '{key}.{section}': neck_readout does not take {unknown}; it takes "
                                  f"{sorted(own)}")

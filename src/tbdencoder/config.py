"""Loading and validating params.yaml (the same schema the Snakefile validates with)."""

from __future__ import annotations

import math
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tbdencoder.features.layer_names import check_backbone

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"


class ParamsError(ValueError):
    """params.yaml does not match the schema or refers to something undefined."""


def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Check `params` against the schema and cross-references; return it unchanged.

    Errors name the source file, the offending key path and what was expected.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{source}: key '{'.'.join(map(str, e.absolute_path)) or '<top>'}': {e.message}" for e in errors]
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines))
    _check_references(params, source)
    return params


def _check_references(params: dict[str, Any], source: str) -> None:
    if "fmri" not in params and "meg" not in params:
        raise ParamsError(f"{source}: key '<top>': expected an 'fmri' section, a 'meg' section or both")
    backbones = params["features"]["backbones"]
    for name, spec in backbones.items():
        if spec["random_init"] == (spec["pretrained"] is not None):
            raise ParamsError(
                f"{source}: key 'features.backbones.{name}': set exactly one of 'pretrained' "
                f"(a tag or weights name of its library, or a checkpoint path) and 'random_init: true'"
            )
        _check_backbone(f"features.backbones.{name}", spec, source)
    for half in ("fmri", "meg"):
        if half not in params and params.get("simulate", {}).get(half, {}).get("enabled"):
            raise ParamsError(f"{source}: key 'simulate.{half}.enabled': simulating {half} needs a '{half}' section "
                              f"(its dataset_dir)")
    if "meg" in params:
        _check_meg(params["meg"], backbones, source)
    if "fmri" in params:
        _check_fmri(params, backbones, source)


def _check_fmri(params: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    _check_alphas("fit.alphas", params["fit"]["alphas"], source)
    for name, spec in params["models"].items():
        _check_model_features(f"models.{name}", spec, backbones, source)
    if params["evaluation"]["submission_model"] not in params["models"]:
        raise ParamsError(
            f"{source}: key 'evaluation.submission_model': '{params['evaluation']['submission_model']}' "
            f"is not one of models {sorted(params['models'])}"
        )
    sim = params.get("simulate", {}).get("fmri")
    if sim and sim["enabled"] and len(sim["n_vertices"]) != len(params["fmri"]["subjects"]):
        raise ParamsError(
            f"{source}: key 'simulate.fmri.n_vertices': expected one entry per subject "
            f"({len(params['fmri']['subjects'])}), got {len(sim['n_vertices'])}"
        )


def _check_backbone(key: str, spec: dict[str, Any], source: str) -> None:
    """The model, its weights choice and layers fit the layer table (features.layer_names: no torch, no download)."""
    try:
        check_backbone(spec["library"], spec["model"], spec["pretrained"], spec["random_init"], spec["layers"])
    except (ValueError, FileNotFoundError) as exc:
        raise ParamsError(f"{source}: key '{key}': {exc}") from exc


def _check_alphas(key: str, alphas: list[float], source: str) -> None:
    """Ridge penalties must be finite and > 0 (the schema lets NaN and Inf through)."""
    for index, alpha in enumerate(alphas):
        if not (math.isfinite(alpha) and alpha > 0):
            raise ParamsError(f"{source}: key '{key}.{index}': {alpha} is not a finite number > 0")


def _check_model_features(key: str, spec: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    """A model's backbones must be defined and extract every layer the model uses; with several backbones,
    `layers` maps each of them (and only them) to its layers."""
    names = [spec["backbone"]] if isinstance(spec["backbone"], str) else spec["backbone"]
    if isinstance(spec["layers"], dict) != (len(names) > 1) or (
            isinstance(spec["layers"], dict) and sorted(spec["layers"]) != sorted(names)):
        raise ParamsError(
            f"{source}: key '{key}.layers': expected a list of layers for one backbone, or a mapping of each of "
            f"the backbones {names} to its layers for several, got {spec['layers']}"
        )
    for name in names:
        backbone = backbones.get(name)
        if backbone is None:
            raise ParamsError(
                f"{source}: key '{key}.backbone': '{name}' is not one of features.backbones {sorted(backbones)}"
            )
        layers = spec["layers"][name] if isinstance(spec["layers"], dict) else spec["layers"]
        missing = [layer for layer in layers if layer not in backbone["layers"]]
        if missing:
            raise ParamsError(
                f"{source}: key '{key}.layers': layers {missing} are not extracted by "
                f"backbone '{name}' (features.backbones.{name}.layers)"
            )


def _check_meg(meg: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    _check_alphas("meg.fit.alphas", meg["fit"]["alphas"], source)
    for name, spec in meg["models"].items():
        _check_model_features(f"meg.models.{name}", spec, backbones, source)
    both = sorted(set(meg["subjects"]) & set(meg["heldout_subjects"]))
    if both:
        raise ParamsError(f"{source}: key 'meg.heldout_subjects': subjects {both} are also training subjects")
    if meg["heldout_subjects"] and not meg["subjects"]:
        raise ParamsError(f"{source}: key 'meg.subjects': a held-out subject needs at least one training subject")
    undefined = sorted(set(meg["evaluation"]["compare"]) - set(meg["models"]))
    if undefined:
        raise ParamsError(f"{source}: key 'meg.evaluation.compare': {undefined} are not meg.models {sorted(meg['models'])}")
    pre = meg["preprocessing"]
    if not pre["tmin_s"] < pre["tmax_s"]:
        raise ParamsError(f"{source}: key 'meg.preprocessing': tmin_s ({pre['tmin_s']}) must be below tmax_s ({pre['tmax_s']})")
    if not pre["l_freq_hz"] < pre["h_freq_hz"] < pre["sfreq_hz"] / 2:
        raise ParamsError(
            f"{source}: key 'meg.preprocessing': need l_freq_hz < h_freq_hz < sfreq_hz / 2, got "
            f"{pre['l_freq_hz']}, {pre['h_freq_hz']}, {pre['sfreq_hz']}"
        )
    baseline = pre["baseline_s"]
    if baseline is not None and any(b is not None and not pre["tmin_s"] <= b <= pre["tmax_s"] for b in baseline):
        raise ParamsError(f"{source}: key 'meg.preprocessing.baseline_s': {baseline} must lie within tmin_s..tmax_s")


def parse_model_spec(text: str, modality: str) -> dict[str, Any]:
    """A model spec (JSON: a model entry with its modality's fit settings) checked against the params schema.

    fMRI: a `models.<name>` entry with the keys of `fit`; MEG: a `meg.models.<name>` entry with `meg.fit`'s.
    """
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"model spec: not valid JSON ({exc}): {text[:200]}") from exc
    if not isinstance(spec, dict):
        raise ParamsError(f"model spec: expected a JSON object, got {text[:200]}")
    schema = load_schema()["properties"]
    sections = {"fmri": (schema["models"], schema["fit"]),
                "meg": (schema["meg"]["properties"]["models"], schema["meg"]["properties"]["fit"])}[modality]
    model_schema, fit_schema = sections
    fit_keys = set(fit_schema["properties"])
    model_part = {key: value for key, value in spec.items() if key not in fit_keys}
    fit_part = {key: value for key, value in spec.items() if key in fit_keys}
    for part, part_schema in ((model_part, model_schema["additionalProperties"]), (fit_part, fit_schema)):
        part_schema = {**part_schema, "$defs": load_schema()["$defs"]}
        errors = sorted(jsonschema.Draft202012Validator(part_schema).iter_errors(part), key=lambda e: e.path)
        if errors:
            raise ParamsError("model spec: " + "; ".join(
                f"key '{'.'.join(map(str, e.absolute_path)) or '<top>'}': {e.message}" for e in errors))
    _check_alphas("alphas", spec["alphas"], "model spec")
    return spec


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params.yaml."""
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of parameters at the top level")
    return validate_params(params, source=str(path))

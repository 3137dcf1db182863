"""Loading and validating params.yaml (the same schema the Snakefile validates with)."""

from __future__ import annotations

import fnmatch
import functools
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tbdencoder.features.layer_names import check_backbone, spatial_layers

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"


class ParamsError(ValueError):
    """params.yaml does not match the schema or refers to something undefined."""


# Keys of earlier params layouts -> where they live now.
MOVED_KEYS = {"models": "fmri.models", "fit": "fmri.fit", "evaluation": "fmri.evaluation"}
# An integer is an int: 64.0 is refused (it would fail later inside a job, e.g. as a layer width).
_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)),
)


@functools.cache
def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _errors(instance: Any, schema: dict[str, Any], source: str, prefix: str = "") -> list[str]:
    """Schema violations of `instance` as '<source>: key '<prefix.path>': <message>' lines."""
    validator = _Validator({**schema, "$defs": load_schema()["$defs"]})
    lines = []
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        key = ".".join([prefix] * bool(prefix) + list(map(str, error.absolute_path))) or "<top>"
        lines.append(f"{source}: key '{key}': {_message(error)}")
    return lines


FORM_NAMES = {"object": "mapping", "array": "list", "string": "string", "integer": "whole number", "number": "number"}


def _message(error: jsonschema.ValidationError) -> str:
    """The error's message; for a value matching none of several forms (oneOf / anyOf), what each form expects
    and why the value is not it, and the key's description."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return error.message
    reasons: dict[int, str] = {}
    for sub in sorted(error.context, key=lambda e: len(e.path)):  # the shallowest reason of each form
        form = error.validator_value[sub.schema_path[0]]
        name = form.get("$ref", "").rsplit("/", 1)[-1].replace("_", " ") or FORM_NAMES.get(form.get("type"), "value")
        path = "".join(f"[{part!r}]" for part in sub.path)
        reasons.setdefault(sub.schema_path[0], f"as a {name}: {f'at {path}: ' * bool(path)}{_message(sub)}")
    expected = error.schema.get("description")
    return (f"{error.instance!r} is none of the accepted forms" + (f" ({expected})" if expected else "") + ": "
            + "; ".join(reasons[index] for index in sorted(reasons)))


def _raise(lines: list[str]) -> None:
    if lines:
        raise ParamsError("invalid parameters:\n  " + "\n  ".join(lines))


def validate_params(params: dict[str, Any], source: str = "params.yaml") -> dict[str, Any]:
    """Check `params` against the schema and cross-references; return it unchanged.

    Errors name the source file, the offending key path and what was expected.
    """
    moved = [key for key in MOVED_KEYS if key in params]
    _raise([f"{source}: key '{key}': moved to '{MOVED_KEYS[key]}' (fMRI's models, fit and evaluation now sit "
            f"under 'fmri:', as MEG's sit under 'meg:')" for key in moved])
    _raise(_errors(params, load_schema(), source))
    for modality in ("fmri", "meg"):
        for name, spec in params.get(modality, {}).get("models", {}).items():
            _raise(check_model(spec, modality, source, f"{modality}.models.{name}"))
    for modality in ("fmri", "meg"):
        for name, spec in params.get(modality, {}).get("decoding", {}).get("models", {}).items():
            _raise(check_decoding_model(spec, source, f"{modality}.decoding.models.{name}"))
    _check_references(params, source)
    return params


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema defaults of an object's properties (those without a default left out)."""
    return {key: value["default"] for key, value in schema.get("properties", {}).items() if "default" in value}


def family_defaults(family: str) -> dict[str, Any]:
    """A family's hyper-parameters with their schema defaults (required ones without a default left out)."""
    return _defaults(load_schema()["$defs"]["families"][family])


def joint_models(models: dict[str, dict[str, Any]], flag: str = "many_subjects") -> list[str]:
    """The models whose family's schema entry sets `flag`: `many_subjects` (fitted on every training subject at
    once), `calibrates` (also calibrated on k samples of a subject not trained on: the k-shot comparison)."""
    families = load_schema()["$defs"]["families"]
    return [name for name, model in models.items() if families.get(model["family"], {}).get(flag)]


def section_schema(path: str) -> dict[str, Any]:
    """The schema of the params.yaml section at dotted `path` ('meg.preprocessing', 'features.backbones.<name>')."""
    schema: Any = load_schema()
    for key in path.split("."):
        schema = schema.get("properties", {}).get(key) or schema.get("additionalProperties")
        if not isinstance(schema, dict):
            raise ParamsError(f"key '{path}': not a section of params.yaml")
    return schema


def setting(params: dict[str, Any], path: str) -> Any:
    """The params value at dotted `path`, or its schema default when the file leaves it out."""
    value: Any = params
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return section_schema(path)["default"]
        value = value[key]
    return value


def section_defaults(path: str) -> dict[str, Any]:
    """The schema defaults of the settings of a params.yaml section ('simulate.meg')."""
    return _defaults(section_schema(path))


def simulation(params: dict[str, Any], half: str) -> dict[str, Any] | None:
    """`simulate.<half>` with its schema defaults if that half is simulated, else None."""
    section = params.get("simulate", {}).get(half)
    if section is None:
        return None
    section = {**section_defaults(f"simulate.{half}"), **section}
    return section if section["enabled"] else None


def with_defaults(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with its family's defaults for the hyper-parameters it leaves out."""
    return {**family_defaults(spec["family"]), **spec}


def check_model(spec: dict[str, Any], modality: str, source: str, key: str) -> list[str]:
    """What is wrong with one model entry (without the fit settings): the schema of its family, the family
    runs for `modality`, and the keys only one modality has."""
    lines = _errors(spec, load_schema()["$defs"]["model"], source, key)
    families = load_schema()["$defs"]["families"]
    if lines or spec["family"] not in families:
        return lines
    family = families[spec["family"]]
    if modality not in family["modalities"]:
        return [f"{source}: key '{key}.family': {spec['family']} runs for {' and '.join(family['modalities'])} "
                f"only, not {modality}"]
    common = load_schema()["$defs"]["model"]["properties"]
    for extra in sorted(set(spec) - set(common) - set(family["properties"])):
        owners = sorted(name for name, entry in families.items()
                        if extra in entry["properties"] and not entry.get("decodes"))  # encoding families
        takes = ", ".join(family["properties"]) or "no hyper-parameters"
        lines.append(f"{source}: key '{key}.{extra}': not a setting of family {spec['family']} (it takes {takes})"
                     + (f"; '{extra}' is a setting of {', '.join(owners)}" if owners else ""))
    own = {name: value for name, value in spec.items() if name in family["properties"]}
    lines += _errors(own, {"type": "object", "properties": family["properties"], "required": family.get("required", []),
                           "allOf": family.get("allOf", [])}, source, key)
    if "from_models" in spec and not family.get("reads_fits"):
        lines.append(f"{source}: key '{key}.from_models': family {spec['family']} reads no other model's fits "
                     f"(families that do: {sorted(n for n, e in families.items() if e.get('reads_fits')) or 'none yet'})")
    if modality == "meg" and "streams" not in spec:
        lines.append(f"{source}: key '{key}': a MEG model needs 'streams' (foveal, parafoveal or both)")
    if modality == "meg" and not isinstance(spec["backbone"], str):
        lines.append(f"{source}: key '{key}.backbone': a MEG model reads one backbone, got {spec['backbone']}")
    if modality == "fmri" and "streams" in spec:
        lines.append(f"{source}: key '{key}.streams': fMRI models have no crop streams (a MEG setting)")
    return lines


def check_decoding_model(spec: dict[str, Any], source: str, key: str) -> list[str]:
    """What is wrong with one decoding model entry (without the fit settings): its schema and its family's."""
    lines = _errors(spec, load_schema()["$defs"]["decoding_model"], source, key)
    if lines:
        return lines
    family = load_schema()["$defs"]["families"][spec["family"]]
    common = load_schema()["$defs"]["decoding_model"]["properties"]
    for extra in sorted(set(spec) - set(common) - set(family["properties"])):
        lines.append(f"{source}: key '{key}.{extra}': not a setting of a decoding model of family {spec['family']} "
                     f"(it takes {', '.join(family['properties']) or 'no hyper-parameters'})")
    own = {name: value for name, value in spec.items() if name in family["properties"]}
    return lines + _errors(own, {"type": "object", "properties": family["properties"]}, source, key)


def _check_decoding_targets(modality: str, decoding: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    """Each decoding model's backbone is defined and stores its target (the embedding, or the target layer)."""
    for name, spec in decoding["models"].items():
        key = f"{modality}.decoding.models.{name}"
        backbone = backbones.get(spec["backbone"])
        if backbone is None:
            raise ParamsError(f"{source}: key '{key}.backbone': '{spec['backbone']}' is not one of "
                              f"features.backbones {sorted(backbones)}")
        if "target_layer" not in spec and not backbone.get("embedding"):
            raise ParamsError(f"{source}: key '{key}': its target, the output embedding of '{spec['backbone']}', is "
                              f"not stored: set features.backbones.{spec['backbone']}.embedding: true, or target_layer")
        if "target_layer" in spec and spec["target_layer"] not in backbone["layers"]:
            raise ParamsError(f"{source}: key '{key}.target_layer': {spec['target_layer']!r} is not extracted by "
                              f"backbone '{spec['backbone']}' (features.backbones.{spec['backbone']}.layers)")


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
        if half not in params and simulation(params, half):
            raise ParamsError(f"{source}: key 'simulate.{half}.enabled': simulating {half} needs a '{half}' section "
                              f"(its dataset_dir)")
    if "meg" in params:
        _check_meg(params["meg"], backbones, source)
    if "fmri" in params:
        _check_fmri(params, backbones, source)


def _check_from_models(modality: str, models: dict[str, Any], source: str) -> None:
    """`from_models` names models of the same modality, never the model itself or a cycle of models."""
    for name, spec in models.items():
        unknown = sorted(set(spec.get("from_models", [])) - set(models))
        if unknown:
            raise ParamsError(f"{source}: key '{modality}.models.{name}.from_models': {unknown} are not "
                              f"{modality}.models {sorted(models)}")

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycle = " -> ".join(path[path.index(name):] + [name])
            raise ParamsError(f"{source}: key '{modality}.models.{path[0]}.from_models': models read each other's "
                              f"fits in a cycle ({cycle})")
        for other in models[name].get("from_models", []):
            visit(other, path + [name])

    for name in models:
        visit(name, [])


def _check_fmri(params: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    fmri = params["fmri"]
    _check_alphas("fmri.fit.alphas", fmri["fit"]["alphas"], source)
    _check_from_models("fmri", fmri["models"], source)
    for name, spec in fmri["models"].items():
        _check_model_features(f"fmri.models.{name}", spec, backbones, source)
    if "decoding" in fmri:
        _check_decoding_targets("fmri", fmri["decoding"], backbones, source)
    from tbdencoder.recipes import check_recipes  # recipes reads this module's schema helpers

    check_recipes(params, source)
    if fmri["evaluation"]["submission_model"] not in fmri["models"]:
        raise ParamsError(
            f"{source}: key 'fmri.evaluation.submission_model': '{fmri['evaluation']['submission_model']}' "
            f"is not one of fmri.models {sorted(fmri['models'])}"
        )
    heldout = fmri.get("heldout_subjects", [])
    if sorted(set(heldout) & set(fmri["subjects"])):
        raise ParamsError(f"{source}: key 'fmri.heldout_subjects': subjects "
                          f"{sorted(set(heldout) & set(fmri['subjects']))} are also training subjects")
    sim = simulation(params, "fmri")
    if sim and len(sim["n_vertices"]) != len(fmri["subjects"]) + len(heldout):
        raise ParamsError(
            f"{source}: key 'simulate.fmri.n_vertices': expected one entry per subject, training and held out "
            f"({len(fmri['subjects']) + len(heldout)}), got {len(sim['n_vertices'])}"
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
        if "map" in spec["tokens"] and not backbone.get("map_size"):
            raise ParamsError(f"{source}: key '{key}.tokens': 'map' needs unpooled maps, which backbone '{name}' "
                              f"does not store: set features.backbones.{name}.map_size")
        flat = [layer for layer, spatial in spatial_layers(backbone["library"], backbone["model"], layers).items()
                if not spatial]
        spatial_tokens = sorted(set(spec["tokens"]) & {"grid", "map"})
        if spatial_tokens and flat:
            raise ParamsError(f"{source}: key '{key}.tokens': {spatial_tokens} need spatial layers, but {flat} of "
                              f"backbone '{name}' output a vector (use 'global', or a layer with a map)")


def _check_meg(meg: dict[str, Any], backbones: dict[str, Any], source: str) -> None:
    _check_alphas("meg.fit.alphas", meg["fit"]["alphas"], source)
    _check_from_models("meg", meg["models"], source)
    for name, spec in meg["models"].items():
        _check_model_features(f"meg.models.{name}", spec, backbones, source)
    both = sorted(set(meg["subjects"]) & set(meg["heldout_subjects"]))
    if both:
        raise ParamsError(f"{source}: key 'meg.heldout_subjects': subjects {both} are also training subjects")
    if meg["heldout_subjects"] and not meg["subjects"]:
        raise ParamsError(f"{source}: key 'meg.subjects': a held-out subject needs at least one training subject")
    if "decoding" in meg:
        _check_decoding_targets("meg", meg["decoding"], backbones, source)
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


def _json_object(text: str, source: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{source}: not valid JSON ({exc}): {text[:200]}") from exc
    if not isinstance(value, dict):
        raise ParamsError(f"{source}: expected a JSON object, got {text[:200]}")
    return value


def parse_model_spec(text: str, modality: str) -> dict[str, Any]:
    """A model spec (JSON: an `<modality>.models.<name>` entry with `<modality>.fit`'s keys), checked against
    the params schema, with its family's defaults filled in."""
    spec = _json_object(text, "model spec")
    fit_schema = load_schema()["properties"][modality]["properties"]["fit"]
    model_part = {key: value for key, value in spec.items() if key not in fit_schema["properties"]}
    fit_part = {key: value for key, value in spec.items() if key in fit_schema["properties"]}
    _raise(check_model(model_part, modality, "model spec", "<spec>") + _errors(fit_part, fit_schema, "model spec"))
    _check_alphas("alphas", spec["alphas"], "model spec")
    return with_defaults(spec)


def parse_decoding_spec(text: str, modality: str) -> dict[str, Any]:
    """A decoding model spec (JSON: a `<modality>.decoding.models.<name>` entry with `<modality>.fit`'s keys),
    checked against the params schema, with its family's defaults filled in."""
    spec = _json_object(text, "decoding spec")
    fit_schema = load_schema()["properties"][modality]["properties"]["fit"]
    model_part = {key: value for key, value in spec.items() if key not in fit_schema["properties"]}
    fit_part = {key: value for key, value in spec.items() if key in fit_schema["properties"]}
    _raise(check_decoding_model(model_part, "decoding spec", "<spec>") + _errors(fit_part, fit_schema, "decoding spec"))
    _check_alphas("alphas", spec["alphas"], "decoding spec")
    return with_defaults(spec)


def parse_settings(text: str, *paths: str) -> list[Any]:
    """A step's settings: JSON mapping each params.yaml section it reads, by dotted path, to the section's value
    (`{"meg.preprocessing": {...}, "meg.bad_fixations": "drop"}`). Each is checked against its section of the
    schema (errors name the key) and gets the section's schema defaults; returned in the order of `paths`. A
    path may end in '*': one entry of a mapping, by its name ('features.backbones.*')."""
    settings = _json_object(text, "--settings")
    lines = [f"--settings: key '{key}': not read by this step (it reads {', '.join(paths)})"
             for key in settings if not any(fnmatch.fnmatchcase(key, path) for path in paths)]
    values = []
    for path in paths:
        keys = [key for key in settings if fnmatch.fnmatchcase(key, path)]
        if len(keys) != 1:
            lines.append(f"--settings: key '{path}': " + (f"given {len(keys)} times ({', '.join(keys)})" if keys
                                                            else "missing"))
            continue
        schema, value = section_schema(keys[0]), settings[keys[0]]
        lines += _errors(value, schema, "--settings", keys[0])
        values.append({**_defaults(schema), **value} if isinstance(value, dict) else value)
    _raise(lines)
    return values


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    f"the first would be silently dropped", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_params_file(path: str | Path) -> dict[str, Any]:
    """A params file's mapping (not yet validated); errors name the file, and the line of a repeated key."""
    path = Path(path)
    try:
        params = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise ParamsError(f"{path}: expected a mapping of parameters at the top level")
    return params


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params.yaml."""
    return validate_params(read_params_file(path), source=str(path))

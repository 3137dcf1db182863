import copy
import functools
import json
import operator
from pathlib import Path

import pytest
import yaml

from tbdencoder.config import (ParamsError, load_params, parse_settings, section_defaults, simulation,
                               validate_params)

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def params():
    return yaml.safe_load(PARAMS.read_text())


def test_shipped_params_are_valid():
    assert load_params(PARAMS)["fmri"]["fit"]["cv_folds"] >= 2


@pytest.mark.parametrize("modality", ["fmri", "meg"])
def test_every_shipped_model_builds_from_its_spec(modality):
    """Each model of params.yaml, as the fit step gets it (entry + fit settings, defaults filled in), builds."""
    from tbdencoder.config import parse_model_spec
    from tbdencoder.models import FAMILIES, build_encoder

    params = load_params(PARAMS)[modality]
    for name, entry in params["models"].items():
        spec = parse_model_spec(json.dumps({**entry, **params["fit"]}), modality)
        assert isinstance(build_encoder(spec, device="cpu"), FAMILIES[entry["family"]]), name


def test_wrong_type_names_key_and_expectation(params):
    params["fmri"]["fit"]["cv_folds"] = "five"
    with pytest.raises(ParamsError, match=r"key 'fmri.fit.cv_folds': 'five' is not of type 'integer'"):
        validate_params(params)


def test_unknown_key_is_an_error(params):
    params["fmri"]["fit"]["alpha_grid"] = [1, 2]
    with pytest.raises(ParamsError, match=r"key 'fmri.fit'.*'alpha_grid' was unexpected"):
        validate_params(params)
    bad = copy.deepcopy(params)
    bad["modles"] = {}
    with pytest.raises(ParamsError, match="'modles' was unexpected"):
        validate_params(bad)


def test_cross_references_checked(params):
    params["fmri"]["models"]["ridge_cls"]["backbone"] = "nope"
    with pytest.raises(ParamsError, match=r"fmri.models.ridge_cls.backbone.*'nope'"):
        validate_params(params)


def test_model_layers_must_be_extracted(params):
    params["fmri"]["models"]["ridge_cls"]["layers"] = [5]
    with pytest.raises(ParamsError, match=r"layers \[5\] are not extracted"):
        validate_params(params)


def test_weights_choice_is_explicit(params):
    params["features"]["backbones"]["clip_vitb32"]["random_init"] = False
    with pytest.raises(ParamsError, match="exactly one of 'pretrained'"):
        validate_params(params)


def test_roi_ridge_needs_roi_class(params):
    del params["fmri"]["models"]["roi_ridge"]["roi_class"]
    with pytest.raises(ParamsError, match=r"key 'fmri.models.roi_ridge': 'roi_class' is a required property"):
        validate_params(params)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("fit: [unclosed")
    with pytest.raises(ParamsError, match=str(path)):
        load_params(path)


@pytest.mark.parametrize("change, message", [
    (lambda m: m["models"]["dual"].update(layers=[5]), r"meg.models.dual.layers': layers \[5\] are not extracted"),
    (lambda m: m.update(heldout_subjects=[1]), r"meg.heldout_subjects': subjects \[1\] are also training"),
    (lambda m: m["evaluation"].update(compare=["foveal", "triple"]), r"meg.evaluation.compare': \['triple'\]"),
    (lambda m: m["preprocessing"].update(h_freq_hz=60.0), r"h_freq_hz < sfreq_hz / 2"),
    (lambda m: m["preprocessing"].update(baseline_s=[-0.5, 0.0]), r"baseline_s'.*within tmin_s..tmax_s"),
    (lambda m: m["crops"].update(padding="mirror"), r"meg.crops.padding': 'mirror' is not one of"),
    (lambda m: m["models"]["dual"].update(streams=["peripheral"]), r"meg.models.dual.streams.0'"),
])
def test_meg_params_checked(params, change, message):
    change(params["meg"])
    with pytest.raises(ParamsError, match=message):
        validate_params(params)


def test_meg_section_is_optional(params):
    del params["meg"]
    del params["simulate"]["meg"]
    assert "meg" not in validate_params(params)


def test_simulating_meg_needs_the_meg_section(params):
    del params["meg"]
    with pytest.raises(ParamsError, match="simulate.meg.enabled"):
        validate_params(params)


@pytest.mark.parametrize("section, bad", [("fit", float("nan")), ("fit", float("inf")), ("meg", float("nan"))])
def test_alphas_must_be_finite(params, section, bad):
    fit = params["meg"]["fit"] if section == "meg" else params["fmri"]["fit"]
    fit["alphas"] = [1.0, bad]
    key = "meg.fit.alphas" if section == "meg" else "fmri.fit.alphas"
    with pytest.raises(ParamsError, match=rf"key '{key}.1': {bad} is not a finite number > 0"):
        validate_params(params)


def test_yaml_nan_alpha_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS.read_text().replace("alphas: [1.0e-1,", "alphas: [.nan,", 1))
    with pytest.raises(ParamsError, match=rf"{path}: key 'fmri.fit.alphas.0': nan"):
        load_params(path)


def test_backbone_layer_beyond_depth(params):
    params["features"]["backbones"]["clip_vitb32"]["layers"] = [3, 6, 9, 12, 13]
    with pytest.raises(ParamsError, match=r"features.backbones.clip_vitb32': ViT-B-32: layers must be transformer block "
                                          r"indices in 1..12 \(integers\), got \[13\] in \[3, 6, 9, 12, 13\]"):
        validate_params(params)


def test_unknown_backbone_model_is_named(params):
    params["features"]["backbones"]["clip_vitb32"]["model"] = "ViT-B-99"
    with pytest.raises(ParamsError, match=r"features.backbones.clip_vitb32': unknown open_clip model 'ViT-B-99'"):
        validate_params(params)


ALEXNET = {"library": "torchvision", "model": "alexnet", "pretrained": None, "random_init": True, "seed": 0,
           "layers": ["features.2", "features.12", "classifier.5"], "grid_size": 2, "map_size": 27, "batch_size": 8}


def test_each_library_checks_its_layer_names(params):
    params["features"]["backbones"]["alexnet"] = {**ALEXNET, "layers": ["features.2", "features.99"]}
    with pytest.raises(ParamsError, match=r"features.backbones.alexnet': .*features.99"):
        validate_params(params)
    params["features"]["backbones"]["alexnet"] = ALEXNET
    params["features"]["backbones"]["dinov2"] = {**ALEXNET, "library": "timm", "model": "vit_small_patch14_dinov2",
                                                 "layers": [6, 13]}
    with pytest.raises(ParamsError, match=r"features.backbones.dinov2': .*13"):
        validate_params(params)
    params["features"]["backbones"]["dinov2"]["layers"] = [6, 12]
    validate_params(params)


def test_a_model_combining_backbones_maps_each_to_its_layers(params):
    params["features"]["backbones"]["alexnet"] = ALEXNET
    model = {"family": "banded_ridge", "backbone": ["clip_vitb32", "alexnet"], "tokens": ["global"],
             "layers": {"clip_vitb32": [6, 12], "alexnet": ["features.12", "classifier.5"]}}
    params["fmri"]["models"]["combined"] = model
    validate_params(params)
    params["fmri"]["models"]["combined"] = {**model, "layers": [6, 12]}
    with pytest.raises(ParamsError, match=r"fmri.models.combined.layers': expected .* a mapping of each of the backbones"):
        validate_params(params)
    params["fmri"]["models"]["combined"] = {**model, "layers": {"clip_vitb32": [6], "alexnet": ["features.5"]}}
    with pytest.raises(ParamsError, match=r"fmri.models.combined.layers': layers \['features.5'\] are not extracted by "
                                          r"backbone 'alexnet'"):
        validate_params(params)


@pytest.mark.parametrize("drop", [("meg",), ("fmri",)])
def test_either_half_alone_is_valid(params, drop):
    for key in drop:
        params.pop(key)
        params["simulate"].pop(key, None)
    assert validate_params(params) is params


def test_a_params_file_needs_a_half(params):
    for key in ("fmri", "meg"):
        params.pop(key)
    params.pop("simulate")
    with pytest.raises(ParamsError, match="expected an 'fmri' section, a 'meg' section or both"):
        validate_params(params)


@pytest.mark.parametrize("key", ["models", "fit", "evaluation"])
def test_keys_of_the_old_layout_say_where_they_moved(params, key):
    params[key] = params["fmri"].pop(key)
    with pytest.raises(ParamsError, match=rf"params.yaml: key '{key}': moved to 'fmri.{key}'"):
        validate_params(params)


@pytest.mark.parametrize("modality, model, key, value, message", [
    ("fmri", "ridge_cls", "hidden_units", 64,
     r"key 'fmri.models.ridge_cls.hidden_units': not a setting of family ridge \(it takes no hyper-parameters\); "
     r"'hidden_units' is a setting of factortopy, mlp, subject_adapters"),
    ("meg", "dual", "n_gammas", 4, r"key 'meg.models.dual.n_gammas': not a setting of family ridge.*of banded_ridge"),
    ("fmri", "banded_grid", "n_components", 5, r"banded_ridge \(it takes n_gammas\); 'n_components' is a setting of "
                                                r"pca_linear"),
    ("fmri", "mlp_cls", "hidden_unit", 5, r"key 'fmri.models.mlp_cls.hidden_unit': not a setting of family mlp "
                                          r"\(it takes hidden_units, dropout"),
    ("fmri", "mlp_cls", "hidden_units", 64.0, r"key 'fmri.models.mlp_cls.hidden_units': 64.0 is not of type 'integer'"),
    ("fmri", "banded_grid", "n_gammas", 4.0, r"banded_grid.n_gammas': 4.0 is not of type 'integer'"),
    ("fmri", "ridge_cls", "streams", ["foveal"], r"fmri.models.ridge_cls.streams': fMRI models have no crop streams"),
    ("meg", "dual", "family", "roi_ridge", r"meg.models.dual.family': roi_ridge runs for fmri only, not meg"),
    ("meg", "dual", "backbone", ["clip_vitb32", "alexnet"], r"meg.models.dual.backbone': a MEG model reads one"),
])
def test_a_model_takes_the_keys_of_its_family_only(params, modality, model, key, value, message):
    params[modality]["models"][model][key] = value
    with pytest.raises(ParamsError, match=message):
        validate_params(params)


def test_integers_written_as_floats_are_refused(params):
    params["fmri"]["fit"]["cv_folds"] = 3.0
    with pytest.raises(ParamsError, match=r"fmri.fit.cv_folds': 3.0 is not of type 'integer'"):
        validate_params(params)


def test_family_defaults_live_in_the_schema():
    from tbdencoder.config import family_defaults, load_schema
    from tbdencoder.models import FAMILIES, build_encoder

    families = load_schema()["$defs"]["families"]
    assert set(families) == set(FAMILIES)
    assert family_defaults("mlp")["hidden_units"] == 512 and family_defaults("banded_ridge") == {"n_gammas": 20}
    for family, entry in families.items():
        assert entry["description"] and all(p["description"] for p in entry["properties"].values()), family
    model = build_encoder({"family": "mlp", "max_epochs": 7, "seed": 1, "alphas": [1.0], "cv_folds": 3})
    assert model.hidden_units == 512 and model.settings.max_epochs == 7


def _settings(params, *paths, **changes):
    """The --settings JSON the workflow passes for `paths` of `params`, with `changes` ({path: new value})."""
    sections = {path: functools.reduce(operator.getitem, path.split("."), params) for path in paths}
    return json.dumps({**sections, **changes})


def test_step_settings_are_checked_against_their_schema_section(params):
    paths = ("meg.preprocessing", "meg.bad_fixations")
    preprocessing, on_bad = parse_settings(_settings(params, *paths), *paths)
    assert preprocessing == params["meg"]["preprocessing"] and on_bad == "drop"
    bad = {**params["meg"]["preprocessing"], "tmin_s": "a"}
    with pytest.raises(ParamsError, match=r"--settings: key 'meg.preprocessing.tmin_s': 'a' is not of type 'number'"):
        parse_settings(_settings(params, *paths, **{"meg.preprocessing": bad}), *paths)
    with pytest.raises(ParamsError, match=r"key 'meg.crops': not read by this step(.|\n)*key 'meg.bad_fixations': missing"):
        parse_settings(_settings(params, "meg.preprocessing", "meg.crops"), *paths)
    with pytest.raises(ParamsError, match="--settings: not valid JSON"):
        parse_settings("{'meg.bad_fixations': 'drop'}", "meg.bad_fixations")


def test_a_backbone_entry_is_checked_under_its_own_name(params):
    backbone = {**params["features"]["backbones"]["alexnet"], "grid_size": 0}
    (parsed,) = parse_settings(_settings(params, "features.backbones.clip_vitb32"), "features.backbones.*")
    assert parsed == params["features"]["backbones"]["clip_vitb32"]
    with pytest.raises(ParamsError, match=r"key 'features.backbones.alexnet.grid_size': 0 is less than the minimum"):
        parse_settings(json.dumps({"features.backbones.alexnet": backbone}), "features.backbones.*")
    with pytest.raises(ParamsError, match=r"key 'features.backbones.\*': given 2 times"):
        parse_settings(_settings(params, "features.backbones.clip_vitb32", "features.backbones.alexnet"),
                       "features.backbones.*")


def test_simulation_settings_default_to_the_schema(params):
    params["fmri"]["heldout_subjects"] = []
    params["simulate"] = {"fmri": {"n_vertices": [100, 100]}, "meg": {}}
    assert validate_params(params) is params
    assert simulation(params, "meg") == section_defaults("simulate.meg") and simulation(params, "meg")["snr"] == 0.5
    assert simulation(params, "fmri")["n_vertices"] == [100, 100] and simulation(params, "fmri")["n_repeats"] == 3
    params["simulate"]["meg"]["enabled"] = False
    assert simulation(params, "meg") is None
    (parsed,) = parse_settings(json.dumps({"simulate.meg": {"snr": 2.0}}), "simulate.meg")
    assert parsed == {**section_defaults("simulate.meg"), "snr": 2.0}
    del params["simulate"]["fmri"]["n_vertices"]  # the default has two entries: one per subject
    params["fmri"]["subjects"] = ["subj01"]
    with pytest.raises(ParamsError, match=r"key 'simulate.fmri.n_vertices': expected one entry per subject, "
                                          r"training and held out \(1\)"):
        validate_params(params)
    params["fmri"]["heldout_subjects"] = ["subj01"]
    with pytest.raises(ParamsError, match=r"key 'fmri.heldout_subjects': subjects \['subj01'\] are also training"):
        validate_params(params)

import copy
from pathlib import Path

import pytest
import yaml

from tbdencoder.config import ParamsError, load_params, validate_params

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.fixture
def params():
    return yaml.safe_load(PARAMS.read_text())


def test_shipped_params_are_valid():
    assert load_params(PARAMS)["fit"]["cv_folds"] >= 2


def test_wrong_type_names_key_and_expectation(params):
    params["fit"]["cv_folds"] = "five"
    with pytest.raises(ParamsError, match=r"key 'fit.cv_folds': 'five' is not of type 'integer'"):
        validate_params(params)


def test_unknown_key_is_an_error(params):
    params["fit"]["alpha_grid"] = [1, 2]
    with pytest.raises(ParamsError, match=r"key 'fit'.*'alpha_grid' was unexpected"):
        validate_params(params)
    bad = copy.deepcopy(params)
    bad["modles"] = {}
    with pytest.raises(ParamsError, match="'modles' was unexpected"):
        validate_params(bad)


def test_cross_references_checked(params):
    params["models"]["ridge_cls"]["backbone"] = "nope"
    with pytest.raises(ParamsError, match=r"models.ridge_cls.backbone.*'nope'"):
        validate_params(params)


def test_model_layers_must_be_extracted(params):
    params["models"]["ridge_cls"]["layers"] = [5]
    with pytest.raises(ParamsError, match=r"layers \[5\] are not extracted"):
        validate_params(params)


def test_weights_choice_is_explicit(params):
    params["features"]["backbones"]["clip_vitb32"]["random_init"] = False
    with pytest.raises(ParamsError, match="exactly one of 'pretrained'"):
        validate_params(params)


def test_roi_ridge_needs_roi_class(params):
    del params["models"]["roi_ridge"]["roi_class"]
    with pytest.raises(ParamsError, match="roi_class"):
        validate_params(params)


def test_file_errors_name_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("fit: [unclosed")
    with pytest.raises(ParamsError, match=str(path)):
        load_params(path)

"""Bad params and CLI input refused before anything is written or replaced (issue 18's cases on params/predict)."""

import shutil

import h5py
import pytest

from tbdencoder.cli import main
from tbdencoder.config import ParamsError, load_params
from test_config import PARAMS


def test_a_key_given_twice_is_refused_naming_file_line_and_key(tmp_path):
    text = PARAMS.read_text()
    first = text.index("    ridge_cls:")
    twice = text[:first] + "    ridge_cls:\n      family: mlp\n      backbone: clip_vitb32\n      layers: [3]\n" \
        "      tokens: [global]\n" + text[first:]
    path = tmp_path / "params.yaml"
    path.write_text(twice)
    line = twice[:first].count("\n") + 1
    with pytest.raises(ParamsError, match=rf"{path}: not valid YAML: .*key 'ridge_cls' is given twice "
                                          rf"\(lines {line} and {line + 5}\)"):
        load_params(path)


def test_the_workflow_refuses_a_key_given_twice(tmp_path):
    import subprocess
    import sys

    from test_workflow import new_workdir

    path = tmp_path / "twice.yaml"
    path.write_text(PARAMS.read_text() + "\nfeatures: {}\n")
    (tmp_path / "run").mkdir()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1"],
                            cwd=new_workdir(tmp_path / "run", path), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "key 'features' is given twice" in result.stdout + result.stderr


def test_predict_refuses_an_output_that_is_one_of_its_inputs(tmp_path, capsys):
    fit = tmp_path / "fit.h5"
    with h5py.File(fit, "w") as h5:
        h5["test_prediction"] = [[1.0]]
    before = fit.read_bytes()
    link = tmp_path / "link.h5"
    link.symlink_to(fit)
    for out in (fit, link, tmp_path / "." / "fit.h5"):
        assert main(["predict", "--fit", str(fit), "--features", str(tmp_path / "f.h5"), "--out", str(out)]) == 1
        assert f"--out {out} is also an input ({fit})" in capsys.readouterr().err
    assert fit.read_bytes() == before
    shutil.copy(fit, tmp_path / "features.h5")
    assert main(["predict", "--fit", str(fit), "--features", str(tmp_path / "features.h5"),
                 "--out", str(tmp_path / "features.h5")]) == 1
    assert "is also an input" in capsys.readouterr().err


@pytest.fixture
def params():
    import yaml

    return yaml.safe_load(PARAMS.read_text())


ALEXNET = {"library": "torchvision", "model": "alexnet", "pretrained": None, "random_init": True, "seed": 0,
           "layers": ["features.2", "classifier.5"], "grid_size": 2, "batch_size": 8}


@pytest.mark.parametrize("model, message", [
    ({"backbone": "clip_vitb32_crops", "layers": [3], "tokens": ["map"]},
     r"fmri.models.m.tokens': 'map' needs unpooled maps, which backbone 'clip_vitb32_crops' does not store: set "
     r"features.backbones.clip_vitb32_crops.map_size"),
    ({"backbone": "plain_alexnet", "layers": ["features.2", "classifier.5"], "tokens": ["global", "grid"]},
     r"fmri.models.m.tokens': \['grid'\] need spatial layers, but \['classifier.5'\] of backbone 'plain_alexnet' "
     r"output a vector"),
])
def test_tokens_the_features_cannot_give_are_refused_at_validation(params, model, message):
    from tbdencoder.config import validate_params

    params["features"]["backbones"]["plain_alexnet"] = ALEXNET
    params["fmri"]["models"]["m"] = {"family": "ridge", **model}
    with pytest.raises(ParamsError, match=message):
        validate_params(params)
    params["fmri"]["models"]["m"]["tokens"] = ["global"]
    assert validate_params(params)


def test_too_few_simulated_test_images_are_refused_at_validation(params):
    from tbdencoder.config import validate_params

    params["simulate"]["fmri"]["n_test_images"] = 8
    with pytest.raises(ParamsError, match=r"simulate.fmri.n_test_images': 8 is less than the minimum of 10"):
        validate_params(params)


def test_a_validation_fraction_that_leaves_no_scene_names_its_key():
    import numpy as np

    from tbdencoder.models.mlp import validation_split

    groups = np.repeat(np.arange(6), 10)
    with pytest.raises(ValueError, match=r"validation_fraction = 0.99 of 6 groups \(scenes\) of 60 rows leaves no "
                                         r"training or no validation part"):
        validation_split(60, 0.99, 0, groups)


@pytest.mark.parametrize("layers, message", [
    ([], r"layers': \[\] is none of the accepted forms \(the backbone's layers; with several backbones, a mapping "
         r"backbone -> its layers\): as a layer list: \[\] should be non-empty; as a mapping: \[\] is not of type"),
    ([0], r"as a layer list: at \[0\]: 0 is none of the accepted forms: as a whole number: 0 is less than the "
          r"minimum of 1; as a string"),
])
def test_a_value_of_none_of_the_accepted_forms_says_what_each_form_expects(params, layers, message):
    """Not jsonschema's bare "is not valid under any of the given schemas"."""
    from tbdencoder.config import validate_params

    params["fmri"]["models"]["ridge_cls"]["layers"] = layers
    with pytest.raises(ParamsError, match=message):
        validate_params(params)


def test_the_shared_new_subject_rule_without_subject_dropout_is_refused_at_validation(params):
    from tbdencoder.config import validate_params

    params["meg"]["models"]["dual_adapters"].update(new_subject="shared", subject_dropout=0.0)
    with pytest.raises(ParamsError, match=r"meg.models.dual_adapters.subject_dropout': 0.0 is less than or equal to "
                                          r"the minimum of 0"):
        validate_params(params)
    params["meg"]["models"]["dual_adapters"]["subject_dropout"] = 0.1
    assert validate_params(params)

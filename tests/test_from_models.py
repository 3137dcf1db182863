"""Models of models: a spec's `from_models` names other models whose fits it reads (a teacher, a frozen neck,
a soup's members). Checked in params, handed to the family as `from_fits`, kept with the fit for reloads."""

import copy
import json

import h5py
import numpy as np
import pytest
import yaml

from tbdencoder import config
from tbdencoder.config import ParamsError, validate_params
from tbdencoder.fit.fmri import fit_fmri, load_fitted
from tbdencoder.models.base import FAMILIES, build_encoder, register
from test_config import PARAMS
from test_many_subjects import SPEC, two_subjects  # noqa: F401  (a fixture)


class Student:
    """A toy family that reads a teacher's fit: predicts the teacher's mean test prediction per target."""

    def __init__(self, from_fits: dict[str, str], seed: int = 0):
        self.from_fits = from_fits

    def fit(self, X, Y, *, groups=None, subjects=None, targets=None):
        with h5py.File(self.from_fits["teacher"]) as h5:
            self.mean_ = h5["test_prediction"][:].mean(0)
        return self

    def predict(self, X, *, subjects=None, targets=None):
        return np.tile(self.mean_, (X.n_rows, 1))

    def state(self):
        return {"teacher_mean": self.mean_}

    @classmethod
    def reload(cls, state, X, Y, device="auto", from_fits=None):
        model = cls(from_fits)
        model.mean_ = state["teacher_mean"]
        return model


@pytest.fixture
def student():
    register("student")(Student)
    yield "student"
    del FAMILIES["student"]


def test_a_family_reads_the_fits_its_spec_names_and_reloads_with_them(student, two_subjects, tmp_path):  # noqa: F811
    unit = two_subjects[0]
    teacher = tmp_path / "teacher.h5"
    fit_fmri(unit.features, unit.responses, "lh", "teacher", {**SPEC, "family": "ridge"}, teacher, device="cpu")
    out = tmp_path / "student.h5"
    spec = {**SPEC, "family": student, "from_models": ["teacher"]}
    fit_fmri(unit.features, unit.responses, "lh", "student", spec, out, device="cpu", from_fits={"teacher": str(teacher)})
    with h5py.File(teacher) as t, h5py.File(out) as s:
        np.testing.assert_allclose(s["test_prediction"][0], t["test_prediction"][:].mean(0), rtol=1e-6)
        assert json.loads(s.attrs["from_fits"]) == {"teacher": str(teacher)}
        ids = list(h5py.File(unit.responses)["test_stimulus_id"].asstr()[:])
        np.testing.assert_array_equal(load_fitted(out, device="cpu").predict(unit.features, ids), s["test_prediction"][:])


def test_the_fits_given_must_be_those_the_spec_names(student):
    with pytest.raises(ValueError, match=r"names from_models \['teacher'\] but got fits of \[\]"):
        build_encoder({"family": student, "from_models": ["teacher"]})
    with pytest.raises(ValueError, match="family 'ridge' reads no other model's fits"):
        build_encoder({"family": "ridge", "from_models": ["a"]}, from_fits={"a": "a.h5"})


@pytest.fixture
def params():
    return yaml.safe_load(PARAMS.read_text())


def test_a_family_that_reads_no_fits_is_refused_from_models(params):
    params["fmri"]["models"]["ridge_cls"]["from_models"] = ["ridge_grid"]
    with pytest.raises(ParamsError, match=r"fmri.models.ridge_cls.from_models': family ridge reads no other model's"):
        validate_params(params)


@pytest.fixture
def ridge_reads_fits(monkeypatch):
    schema = copy.deepcopy(config.load_schema())
    schema["$defs"]["families"]["ridge"]["reads_fits"] = True
    monkeypatch.setattr(config, "load_schema", lambda: schema)


@pytest.mark.parametrize("modality, models, message", [
    ("fmri", {"ridge_cls": ["nope"]}, r"fmri.models.ridge_cls.from_models': \['nope'\] are not fmri.models"),
    ("meg", {"foveal": ["ridge_cls"]}, r"meg.models.foveal.from_models': \['ridge_cls'\] are not meg.models"),
    ("fmri", {"ridge_cls": ["ridge_cls"]}, r"in a cycle \(ridge_cls -> ridge_cls\)"),
    ("meg", {"foveal": ["dual"], "dual": ["foveal"]}, r"in a cycle \(foveal -> dual -> foveal\)"),
])
def test_from_models_names_models_of_its_modality_without_cycles(ridge_reads_fits, params, modality, models, message):
    for name, names in models.items():
        params[modality]["models"][name]["from_models"] = names
    with pytest.raises(ParamsError, match=message):
        validate_params(params)


def test_a_chain_of_models_is_valid(ridge_reads_fits, params):
    params["fmri"]["models"]["ridge_cls"]["from_models"] = ["ridge_grid"]
    params["fmri"]["models"]["ridge_grid"]["from_models"] = ["banded_grid"]
    assert validate_params(params) is params


DRY_RUN = """
import copy, sys
from tbdencoder import config
schema = copy.deepcopy(config.load_schema())
schema["$defs"]["families"]["ridge"]["reads_fits"] = True  # a stand-in for a family that reads fits
config.load_schema = lambda: schema
from snakemake.cli import main
sys.argv = ["snakemake", "--dry-run", "--printshellcmds", "--cores", "1"]
main()
"""


def test_the_workflow_makes_the_named_fits_inputs_of_the_fit(tmp_path):
    """One input function (common.smk `model_fits`) for both modalities: the fits of `from_models` are the
    fit's inputs and reach its command as --from-fits MODEL=PATH."""
    import subprocess
    import sys

    from test_workflow import REPO, new_workdir

    params = yaml.safe_load((REPO / "tests/configs/small.yaml").read_text())
    params["fmri"]["models"]["student"] = {**params["fmri"]["models"]["ridge_grid"], "from_models": ["ridge_grid"]}
    params["meg"]["models"]["student"] = {**params["meg"]["models"]["foveal"], "from_models": ["foveal"]}
    config_path = tmp_path / "params.yaml"
    config_path.write_text(yaml.safe_dump(params))
    (tmp_path / "run").mkdir()
    workdir = new_workdir(tmp_path / "run", config_path)
    result = subprocess.run([sys.executable, "-c", DRY_RUN], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [line for line in result.stdout.splitlines() if "--model-name student" in line]
    assert len(commands) == 2 + 2  # subj01 lh and rh; sub-01 and held-out sub-60
    for hemi in ("lh", "rh"):
        assert any(f"--from-fits ridge_grid=results/fits/subj01/{hemi}/ridge_grid.h5" in c and f"/{hemi}/student" in c
                   for c in commands)
    for subject in ("sub-01", "sub-60"):
        assert any(f"--from-fits foveal=results/fits/meg/{subject}/foveal.h5" in c and f"{subject}/student" in c
                   for c in commands)
    others = [line for line in result.stdout.splitlines() if "--model-name" in line and "student" not in line]
    assert others and not any("--from-fits" in line for line in others)

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

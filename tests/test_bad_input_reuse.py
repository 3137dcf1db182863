"""What the pipeline reuses is checked first (issue 18): the feature cache, the features and fits handed to
`predict`, and the training files a fit names."""

import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import seal
from test_features import images, offline, read, run, tiny_model, write_pixels  # noqa: F401 (fixtures)
from test_fit_evaluate import _oracle_features, _spec
from test_fit_meg import _write_subject
from tbdencoder.cli import main
from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.features import extract
from tbdencoder.features.identity import check_same_network
from tbdencoder.fit import meg as fit_meg
from tbdencoder.fit.fmri import fit_fmri


def _cache_entry(out) -> "os.PathLike":
    return out.parent / "cache" / f"{read(out)[1]['cache_key']}.h5"


def _loads(monkeypatch) -> list:
    """Record each time extraction builds a network."""
    calls = []
    build = extract.load_backbone
    monkeypatch.setattr(extract, "load_backbone", lambda spec, seed: calls.append(seed) or build(spec, seed))
    return calls


def test_editing_the_features_output_leaves_the_cache_entry_as_it_was(tmp_path):
    """The output is a copy of the cache entry, not a link to it: editing it changes nothing cached."""
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    out = run(stimuli, tmp_path / "features.h5", tmp_path / "cache")
    reference = read(out)[0]["layers/block01/global"]
    entry = _cache_entry(out)
    assert os.stat(out).st_ino != os.stat(entry).st_ino
    with h5py.File(out, "r+") as h5:
        h5["layers/block01/global"][0] += 1.0
    np.testing.assert_array_equal(read(entry)[0]["layers/block01/global"], reference)


@pytest.mark.parametrize("damage", ["values", "truncated", "digest removed"])
def test_a_damaged_cache_entry_is_discarded_and_recomputed(tmp_path, monkeypatch, caplog, damage):
    """A cache entry whose values changed, that was cut short, or that has no digest is not a cache hit: a warning
    names it and it is recomputed, giving the features a fresh extraction gives."""
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    out = run(stimuli, tmp_path / "features.h5", tmp_path / "cache")
    reference = read(out)[0]
    entry = _cache_entry(out)
    if damage == "values":
        with h5py.File(entry, "r+") as h5:
            h5["layers/block03/grid"][1, 2] += 0.5
    elif damage == "truncated":
        with open(entry, "r+b") as handle:
            handle.truncate(os.path.getsize(entry) // 2)
    else:
        with h5py.File(entry, "r+") as h5:
            del h5.attrs["content_sha256"]
    loads = _loads(monkeypatch)
    again = read(run(stimuli, tmp_path / "again.h5", tmp_path / "cache"))[0]
    assert loads == [0]  # the network ran again
    assert f"discarding cache entry {entry}" in caplog.text
    for name, values in reference.items():
        np.testing.assert_array_equal(again[name], values, err_msg=name)


def test_an_intact_cache_entry_is_reused_without_building_the_network(tmp_path, monkeypatch, caplog):
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    run(stimuli, tmp_path / "features.h5", tmp_path / "cache")
    loads = _loads(monkeypatch)
    run(stimuli, tmp_path / "again.h5", tmp_path / "cache")
    assert loads == [] and "discarding" not in caplog.text


def test_extracted_features_of_another_seed_are_told_apart(tmp_path):
    """Two random-init networks differ by their seed; the same one twice does not."""
    stimuli = write_pixels(tmp_path / "stimuli.h5", images(3))
    seed0 = run(stimuli, tmp_path / "seed0.h5", tmp_path / "cache")
    seed5 = run(stimuli, tmp_path / "seed5.h5", tmp_path / "cache", seed=5)
    check_same_network([seed0], [shutil.copy(seed0, tmp_path / "copy.h5")], ["global", "grid"], "fit")
    with pytest.raises(ValueError, match=r"seed5.h5: these features come from another network.*seed: 5 \(fitted on 0\)"):
        check_same_network([seed0], [seed5], ["global"], "fit")


@pytest.fixture
def fmri_fit(tiny_fmri_dataset, tmp_path, monkeypatch):
    """A ridge fit on `global` and one on `grid`, made from tmp_path with relative paths."""
    monkeypatch.chdir(tmp_path)
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh"], ["streams"], 0.2, 0, "responses.h5", "stimuli.h5")
    _oracle_features(tiny_fmri_dataset, "subj01", "responses.h5", "features.h5")
    for tokens in ("global", "grid"):
        fit_fmri("features.h5", "responses.h5", "lh", tokens, _spec("ridge", [tokens], [1e-3, 1.0, 1e3], 3),
                 f"{tokens}.h5", device="cpu")
    return tmp_path


def _predict(*args) -> list[str]:
    return ["predict", *args, "--device", "cpu", "--out", "predicted.h5"]


@pytest.mark.parametrize("tokens, change, named", [
    ("global", {"model_name": "ViT-S-16", "seed": 5}, "model_name: \"ViT-S-16\" (fitted on \"oracle\")"),
    ("global", {"weights": "laion2b"}, "weights: \"laion2b\" (fitted on \"none\")"),
    ("global", {"preprocess": '{"size": 256}'}, "preprocess"),
    ("grid", {"grid_size": 4}, "grid_size: 4 (fitted on 2)"),
])
def test_predict_refuses_features_of_another_network(fmri_fit, capsys, tokens, change, named):
    shutil.copy("features.h5", "other.h5")
    seal("other.h5", **change)
    assert main(_predict("--fit", f"{tokens}.h5", "--features", "other.h5")) == 1
    error = capsys.readouterr().err
    assert "other.h5: these features come from another network" in error and named in error
    assert not os.path.exists("predicted.h5")


def test_another_grid_size_does_not_matter_to_a_model_of_class_tokens(fmri_fit):
    shutil.copy("features.h5", "other.h5")
    seal("other.h5", grid_size=4)
    assert main(_predict("--fit", "global.h5", "--features", "other.h5")) == 0


def test_predict_refuses_features_edited_since_they_were_made(fmri_fit, capsys):
    with h5py.File("features.h5", "r+") as h5:
        h5["layers/block01/global"][0, 0] += 1.0
    assert main(_predict("--fit", "global.h5", "--features", "features.h5")) == 1
    assert "features.h5: its values differ from the digest written when it was made" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["--fit", "--features"])
@pytest.mark.parametrize("wrong", ["responses.h5", "image.png", "truncated.h5"])
def test_predict_names_a_file_that_is_not_what_its_option_expects(fmri_fit, capsys, role, wrong):
    """A responses file, a PNG or a cut-short file given as the fit or the features: an error naming it."""
    Image.new("RGB", (4, 4)).save("image.png")
    data = open(f"{'global' if role == '--fit' else 'features'}.h5", "rb").read()
    open("truncated.h5", "wb").write(data[:len(data) // 2])
    args = {"--fit": "global.h5", "--features": "features.h5", role: wrong}
    assert main(_predict("--fit", args["--fit"], "--features", args["--features"])) == 1
    error = capsys.readouterr().err
    expected = "not a readable fits file|not a fits file" if role == "--fit" else \
        "unreadable as an HDF5 features file|not a completed tbdencoder features file"
    assert f"error: {wrong}: " in error and any(part in error for part in expected.split("|"))


def test_predict_from_another_directory_says_how_to_find_the_training_files(fmri_fit, tmp_path, capsys, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(_predict("--fit", "../global.h5", "--features", "../features.h5")) == 1
    error = capsys.readouterr().err
    assert "the training data ['features.h5', 'responses.h5'] are not there" in error
    assert "run predict from that directory, or pass --train-features / --responses" in error
    assert main(_predict("--fit", "../global.h5", "--features", "../features.h5", "--train-features",
                         "../features.h5", "--responses", "../responses.h5")) == 0


def test_meg_predict_refuses_crops_of_another_network(tmp_path, capsys):
    rng = np.random.default_rng(0)
    epochs, features, _ = _write_subject(tmp_path, "sub-01", rng, (rng.standard_normal((16, 6)) / 4,
                                                                      rng.standard_normal((16, 2)) / 4))
    spec = {"family": "ridge", "alphas": [1.0, 100.0], "outer_folds": 3, "inner_folds": 2, "seed": 0,
            "backbone": "test", "layers": [1], "tokens": ["global"], "streams": ["foveal"]}
    fit_meg.fit_meg_subject(epochs, features, tmp_path / "fit.h5", model_name="m", spec=spec, device="cpu")
    other = seal(shutil.copy(features, tmp_path / "other.h5"), library="timm")
    assert main(["predict", "--fit", str(tmp_path / "fit.h5"), "--features", str(other), "--out",
                 str(tmp_path / "p.h5")]) == 1
    assert "other.h5: these features come from another network" in capsys.readouterr().err
    assert main(["predict", "--fit", str(tmp_path / "fit.h5"), "--features", str(features), "--out",
                 str(tmp_path / "p.h5")]) == 0

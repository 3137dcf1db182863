"""The family contract: every registered family, for every modality its schema entry names, in process.

Through the one driver from a spec alone: the fits file has the documented layout, a reload reproduces the
stored predictions, the family receives the rows' subjects and the targets' metadata in fit and predict,
and a family that checkpoints resumes a killed fit without redoing finished work.

A new family adds its tiny settings to TINY below (the test refuses a family without them), not a model to
the end-to-end runs.
"""

import inspect
import json

import h5py
import numpy as np
import pytest

from tbdencoder.config import load_schema
from tbdencoder.data.prepare_fmri import prepare_fmri
from tbdencoder.features.featureset import FeatureSet
from tbdencoder.fit import meg as fit_meg
from tbdencoder.fit.decode_fmri import decode_fmri
from tbdencoder.fit.decode_meg import decode_meg
from tbdencoder.fit.fmri import fit_fmri, load_fitted
from tbdencoder.io import write_strings
from tbdencoder.models import FAMILIES, trainer
from test_fit_meg import SPEC as MEG_FIT, _write_subject

# The smallest settings that exercise each family (its hyper-parameters, and the tokens it reads where the fit
# settings' below are not those; the fit settings are below).
TINY = {
    "ridge": {},
    "roi_ridge": {"roi_class": "streams"},
    "banded_ridge": {"n_gammas": 3},
    "mlp": {"hidden_units": 8, "max_epochs": 6, "patience": 3, "batch_size": 16},
    "pca_linear": {"n_components": 4},
    "subject_adapters": {"rank": 2, "max_epochs": 6, "patience": 3, "batch_size": 16},
    "clip_alignment": {"channels": 4, "hidden_units": 8, "max_epochs": 4, "patience": 2, "batch_size": 16},
    "factortopy": {"tokens": ["global", "map"], "width": 4, "hidden_units": 8, "n_frequencies": 4, "max_epochs": 4,
                   "patience": 2, "batch_size": 16, "regulariser_steps": 10},
    "neck_readout": {"tokens": ["global", "map"], "neck": "neck", "from_models": ["neck"], "width": 4, "max_epochs": 4,
                     "patience": 2, "batch_size": 16, "keep_top_k": 2},
}
# Families that read other models' fits: the family of the model they read (fitted with its TINY settings).
READS = {"neck_readout": "factortopy"}
DECODERS = sorted(family for family in TINY if getattr(FAMILIES[family], "decodes", False))
FMRI_FIT = {"backbone": "toy", "layers": [1], "tokens": ["global", "grid"], "alphas": [0.1, 10.0, 1000.0],
            "cv_folds": 3, "seed": 0}
CASES = [(family, modality) for family in sorted(set(TINY) - set(DECODERS))  # encoding families
         for modality in load_schema()["$defs"]["families"][family]["modalities"]]


def test_every_registered_family_has_tiny_settings_and_a_schema_entry():
    families = {name for name, cls in FAMILIES.items() if cls.__module__.startswith("tbdencoder.")}
    assert families == set(TINY), "give each family tiny settings here"
    assert families == set(load_schema()["$defs"]["families"])
    for name in families:  # the workflow reads the schema's flag, the driver the class's: they must agree
        assert bool(load_schema()["$defs"]["families"][name].get("many_subjects")) == \
            bool(getattr(FAMILIES[name], "many_subjects", False)), name
        assert bool(load_schema()["$defs"]["families"][name].get("decodes")) == \
            bool(getattr(FAMILIES[name], "decodes", False)), name
        assert bool(load_schema()["$defs"]["families"][name].get("calibrates")) == \
            hasattr(FAMILIES[name], "calibrate"), name


def _of_subject(family: str, targets: dict, subject: str) -> dict:
    """The targets' metadata of `subject`: a family fitted on several subjects at once gets it per subject."""
    return targets[subject] if getattr(FAMILIES[family], "many_subjects", False) else targets


class Spy:
    """Wraps a family class: records the keyword arguments its models' fit and predict receive."""

    def __init__(self, monkeypatch, family):
        self.calls = []
        cls = FAMILIES[family]
        spy = self

        class Recorded(cls):
            def fit(self, X, Y, **kwargs):
                spy.calls.append(("fit", kwargs))
                return super().fit(X, Y, **kwargs)

            def predict(self, X, **kwargs):
                spy.calls.append(("predict", kwargs))
                return super().predict(X, **kwargs)

        monkeypatch.setitem(FAMILIES, family, Recorded)

    def seen(self, call, key):
        return [kwargs[key] for name, kwargs in self.calls if name == call]


@pytest.fixture(scope="module")
def fmri_problem(tiny_fmri_dataset, tmp_path_factory):
    """responses.h5 of the tiny dataset and a features file with a global, a grid and a map block."""
    root = tmp_path_factory.mktemp("fmri_contract")
    responses = root / "responses.h5"
    prepare_fmri(tiny_fmri_dataset, "subj01", ["lh"], ["streams"], 0.2, 0, responses, root / "stimuli.h5")
    with h5py.File(responses) as h5:
        ids = [*h5["train_stimulus_id"].asstr()[:], *h5["test_stimulus_id"].asstr()[:],
               *h5["submission_stimulus_id"].asstr()[:]]
    ids = list(dict.fromkeys(ids))
    rng = np.random.default_rng(0)
    features = root / "features.h5"
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", ids)
        h5["layers/block01/global"] = rng.standard_normal((len(ids), 6)).astype(np.float32)
        h5["layers/block01/grid"] = rng.standard_normal((len(ids), 8)).astype(np.float32)
        h5["layers/block01/map"] = rng.standard_normal((len(ids), 2 * 2 * 3)).astype(np.float32)
        h5["layers/block01/map"].attrs["shape"] = [2, 2, 3]
    return responses, features


def _fmri_from_fits(family: str, fmri_problem, root) -> dict[str, str] | None:
    """The fits a family of READS reads: its `from_models` model, fitted on the same problem."""
    if family not in READS:
        return None
    responses, features = fmri_problem
    (name,) = TINY[family]["from_models"]
    out = root / f"{name}.h5"
    if not out.exists():
        fit_fmri(features, responses, "lh", name, {"family": READS[family], **FMRI_FIT, **TINY[READS[family]]}, out,
                 device="cpu")
    return {name: str(out)}


@pytest.mark.parametrize("family", sorted(f for f, m in CASES if m == "fmri"))
def test_fmri_fit_has_the_layout_reloads_and_passes_targets(family, fmri_problem, tmp_path, monkeypatch):
    responses, features = fmri_problem
    from_fits = _fmri_from_fits(family, fmri_problem, tmp_path)
    spy = Spy(monkeypatch, family)
    spec = {"family": family, **FMRI_FIT, **TINY[family]}
    out = tmp_path / "fit.h5"
    fit_fmri(features, responses, "lh", "m", spec, out, device="cpu", from_fits=from_fits)
    with h5py.File(responses) as h5:
        n_vertices, test_ids = h5["lh/train"].shape[1], list(h5["test_stimulus_id"].asstr()[:])
        n_submission = len(h5["submission_stimulus_id"])
    with h5py.File(out) as h5:
        assert h5["test_prediction"].shape == (len(test_ids), n_vertices)
        assert h5["submission_prediction"].shape == (n_submission, n_vertices)
        assert h5["test_prediction"].dtype == np.float32 and np.isfinite(h5["test_prediction"][:]).all()
        state = [key for key in h5 if key not in ("test_prediction", "submission_prediction", "feature_blocks",
                                                  "block_sizes", "folds")]
        assert state and all(h5[key].shape[0] == n_vertices for key in state)  # per-target arrays
        assert list(h5["feature_blocks"].asstr()[:]) == [f"block01/{token}" for token in spec["tokens"]]
        assert json.loads(h5.attrs["spec"]) == spec and h5.attrs["family"] == family
        stored = h5["test_prediction"][:]
    # the driver gave the family the targets' metadata, in fit and in predict
    for call in ("fit", "predict"):
        targets = _of_subject(family, spy.seen(call, "targets")[0], "subj01")
        assert targets["hemisphere"] == "lh" and targets["roi"]["streams"].shape == (n_vertices,)
        assert targets["positions"].shape == (n_vertices, 3)
    reloaded = load_fitted(out, device="cpu").predict(features, test_ids)
    np.testing.assert_allclose(reloaded, stored, rtol=1e-4, atol=1e-4 * np.abs(stored).max())


@pytest.fixture(scope="module")
def meg_problem(tmp_path_factory):
    root = tmp_path_factory.mktemp("meg_contract")
    rng = np.random.default_rng(1)
    weights = rng.standard_normal((16, 6)) / 4, 0.8 * rng.standard_normal((16, 2)) / 4
    return [_write_subject(root, f"sub-0{k}", np.random.default_rng(k), weights, n_scenes=12) for k in (1, 2, 3)]


def _meg_spec(family):
    return {**MEG_FIT, "family": family, **TINY[family], "streams": ["foveal", "parafoveal"]}


@pytest.mark.parametrize("family", sorted(f for f, m in CASES if m == "meg"))
def test_meg_fit_has_the_layout_reloads_and_passes_targets(family, meg_problem, tmp_path, monkeypatch):
    (epochs, features, scenes), *_ = meg_problem
    spy = Spy(monkeypatch, family)
    out = tmp_path / "fit.h5"
    fit_meg.fit_meg_subject(epochs, features, out, model_name="m", spec=_meg_spec(family), device="cpu")
    with h5py.File(out) as h5:
        n_rows, n_channels, n_times = h5["prediction"].shape
        assert n_rows == len(scenes) and h5["fold"].shape == (n_rows,) and set(h5["fold"][:]) == {0, 1, 2, 3}
        assert all(f"folds/{k}/state" in h5 for k in range(4)) and h5.attrs["n_folds"] == 4
        stored = h5["prediction"][:]
    for call in ("fit", "predict"):
        targets = _of_subject(family, spy.seen(call, "targets")[0], "sub-01")
        assert targets["sensor_positions"].shape == (n_channels, 3) and len(targets["ch_names"]) == n_channels
        np.testing.assert_array_equal(targets["target_channel"][: n_times + 1], [0] * n_times + [1])
    assert {tuple(np.unique(s)) for s in spy.seen("fit", "subjects")} == {("sub-01",)}
    fitted = fit_meg.load_fitted_meg(out, device="cpu")
    np.testing.assert_allclose(fitted.fold_predictions(), stored, rtol=1e-4, atol=1e-4 * np.abs(stored).max())


@pytest.mark.parametrize("family", ["ridge", "subject_adapters"])  # pooled, and a model of subjects (a new one)
def test_a_heldout_subject_fit_reloads_and_predicts_new_fixations(meg_problem, tmp_path, family):
    (e1, f1, _), (e2, f2, _), (epochs, features, _) = meg_problem
    out = tmp_path / "heldout.h5"
    fit_meg.fit_meg_heldout([e1, e2], [f1, f2], epochs, features, out, model_name="m",
                            spec={**_meg_spec(family), "outer_folds": 3}, device="cpu")
    fitted = fit_meg.load_fitted_meg(out, device="cpu")
    with h5py.File(out) as h5:
        np.testing.assert_allclose(fitted.fold_predictions(), h5["prediction"][:], rtol=1e-4, atol=1e-5)
        assert json.loads(h5.attrs["inputs"])["train_epochs"] == [str(e1), str(e2)]
    # new fixations (here another subject's crops): the mean of the fold models
    ids = [i.removesuffix("_foveal") for i in h5py.File(f1)["stimulus_id"].asstr()[:] if i.endswith("_foveal")]
    from tbdencoder.cli import main

    assert main(["predict", "--fit", str(out), "--features", str(f1), "--out", str(tmp_path / "p.h5")]) == 0
    with h5py.File(tmp_path / "p.h5") as h5:
        assert sorted(h5["fixation_id"].asstr()[:]) == sorted(ids)
        order = list(h5["fixation_id"].asstr()[:])
        predicted = h5["prediction"][:]
    X = FeatureSet.side_by_side([FeatureSet.load(f1, [f"{i}_{stream}" for i in order], [1], ["global"], f"{stream}:")
                                 for stream in ("foveal", "parafoveal")])
    by_fold = [model.predict(X) for model in fitted.models]
    np.testing.assert_allclose(predicted.reshape(len(order), -1), np.mean(by_fold, axis=0), rtol=1e-5, atol=1e-6)


CHECKPOINTING = sorted(f for f in TINY if "checkpoint" in inspect.signature(FAMILIES[f]).parameters)
FMRI_ONLY = {f for f in TINY if load_schema()["$defs"]["families"][f]["modalities"] == ["fmri"]}


@pytest.mark.parametrize("family", sorted(set(CHECKPOINTING) - FMRI_ONLY))
def test_a_checkpointing_family_resumes_a_killed_fit_without_redoing_finished_folds(family, meg_problem, fmri_problem,
                                                                                   tmp_path, monkeypatch):
    """Killed in its third training (a fold; for a decoder, a window and fold), the rerun reloads the finished
    ones, trains the others, and writes what an uninterrupted run writes."""
    (epochs, features, _), *_ = meg_problem
    if family in DECODERS:
        def run(out):
            _decode(family, "meg", fmri_problem, meg_problem, out.parent / out.stem)
            return out.parent / out.stem / "sub-01.h5"
    else:
        def run(out):
            fit_meg.fit_meg_subject(epochs, features, out, model_name="m", spec=_meg_spec(family), device="cpu")
            return out
    reference = run(tmp_path / "reference.h5")
    real, epochs_run = trainer.train_on, []

    def counted(module, *args, **kwargs):
        """The trainer, counting the training epochs it runs (forward passes in training mode / batches)."""
        forwards = []
        handle = module.register_forward_hook(lambda m, *_: forwards.append(1) if m.training else None)
        try:
            result = real(module, *args, **kwargs)
        finally:
            handle.remove()
        epochs_run.append(len(forwards))
        return result

    def killed_in_third_fold(*args, **kwargs):
        if len(epochs_run) == 2:
            raise KeyboardInterrupt("killed")
        return counted(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_on", killed_in_third_fold)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "fit.h5")
    assert not list(tmp_path.glob("fit*/*.h5")) and not (tmp_path / "fit.h5").exists() and all(epochs_run)
    monkeypatch.setattr(trainer, "train_on", counted)
    epochs_run.clear()
    out = run(tmp_path / "fit.h5")
    assert epochs_run[:2] == [0, 0] and all(epochs_run[2:])  # finished folds reloaded, the others trained
    with h5py.File(out) as h5, h5py.File(reference) as expected:
        np.testing.assert_array_equal(h5["prediction"][:], expected["prediction"][:])


DECODING_CASES = [(family, modality) for family in ["ridge", *DECODERS] for modality in ("meg", "fmri")]


def _decode(family, modality, fmri_problem, meg_problem, out_dir):
    """Decode with a tiny model (the target: block01's global vector): the outputs, the inputs per subject."""
    spec = {"family": family, "backbone": "toy", "target_layer": 1, **TINY[family]}
    if modality == "meg":
        files = meg_problem[:2]
        outs = [out_dir / f"sub-0{k}.h5" for k in (1, 2)]
        decode_meg([f[0] for f in files], [f[1] for f in files], outs, model_name="d",
                   spec={**spec, **{k: MEG_FIT[k] for k in ("alphas", "outer_folds", "inner_folds", "seed")}},
                   window_s=0.1, step_s=0.1, device="cpu")
        return outs, [(f[0], f[1]) for f in files]
    responses, features = fmri_problem
    outs = [out_dir / "subj01.h5"]
    decode_fmri([responses], [features], outs, model_name="d", spec={**spec, **FMRI_FIT}, device="cpu")
    return outs, [(responses, features)]


@pytest.mark.parametrize("family, modality", DECODING_CASES)
def test_a_decoder_writes_the_layout_and_a_decoder_of_subjects_reloads(family, modality, fmri_problem, meg_problem,
                                                                         tmp_path):
    """The decoding direction through its driver: decoded embeddings of every scored row per window, the
    candidates, each window and fold's arrays; a decoder of several subjects rebuilt from them predicts as stored."""
    outs, inputs = _decode(family, modality, fmri_problem, meg_problem, tmp_path)
    subjects = []
    for out in outs:
        with h5py.File(out) as h5:
            n_windows, n_rows, d = h5["prediction"].shape
            assert d == 16 if modality == "meg" else d == 6  # block01/global: the foveal crops' / the images'
            assert h5["actual"].shape == (n_rows, d) and h5["fold"].shape == (n_rows,)
            assert n_windows == (2 if modality == "meg" else 1) and len(h5["window_s"]) == n_windows
            scored = h5["fold"][:] >= 0
            assert scored.any() and np.isfinite(h5["prediction"][:]).all()
            assert np.abs(h5["prediction"][:, scored]).max() > 0 and not h5["prediction"][:, ~scored].any()
            assert json.loads(h5.attrs["spec"])["family"] == family
            assert "windows/0/folds/0" in h5
            subjects.append(str(h5.attrs["subject"]))
    if family not in DECODERS:
        return
    from tbdencoder.fit.decode import reload_decoder
    from tbdencoder.fit.decode_fmri import fmri_decode_rows
    from tbdencoder.fit.decode_meg import meg_decode_rows

    with h5py.File(outs[0]) as h5:
        arrays = {}
        h5["windows/0/folds/0"].visititems(lambda name, item: arrays.__setitem__(name, item[()])
                                           if hasattr(item, "dtype") else None)
        stored, fold, spec = h5["prediction"][0], h5["fold"][:], json.loads(h5.attrs["spec"])
    model = reload_decoder(spec, arrays, subjects)
    if modality == "meg":
        rows = meg_decode_rows(*inputs[0], 1)
        brain = rows.brain[:, :, :2]  # window 0: the first 0.1 s, 2 samples at 20 Hz
    else:
        rows, _ = fmri_decode_rows(*inputs[0], 1)
        brain = rows.brain
    first = fold == 0
    decoded = model.predict({subjects[0]: brain[first]})[subjects[0]]
    np.testing.assert_allclose(decoded, stored[first], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", sorted(set(CHECKPOINTING) & FMRI_ONLY))
def test_an_fmri_family_resumes_a_killed_training_where_its_checkpoint_left_off(family, fmri_problem, tmp_path,
                                                                               monkeypatch):
    """Checkpointed after every epoch and killed in its third, the rerun trains only the epochs left and writes
    what an uninterrupted run writes."""
    import itertools
    import time

    responses, features = fmri_problem
    spec = {"family": family, **FMRI_FIT, **TINY[family]}
    from_fits = _fmri_from_fits(family, fmri_problem, tmp_path)
    fit_fmri(features, responses, "lh", "m", spec, tmp_path / "reference.h5", device="cpu", from_fits=from_fits)
    clock = itertools.count(step=1000.0)  # each reading of the trainer's clock is past the checkpoint interval
    monkeypatch.setattr(trainer.time, "monotonic", lambda: next(clock))
    real, epochs = trainer._mean_loss, []

    def killed_in_third_epoch(data, rows, batch_size, loss_of):
        if loss_of.__name__ == "training_step":
            epochs.append(1)
            if len(epochs) == 3:
                raise KeyboardInterrupt("killed")
        return real(data, rows, batch_size, loss_of)

    monkeypatch.setattr(trainer, "_mean_loss", killed_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit_fmri(features, responses, "lh", "m", spec, tmp_path / "fit.h5", device="cpu", from_fits=from_fits)
    assert not (tmp_path / "fit.h5").exists() and list((tmp_path / "fit.h5.checkpoints").glob("*.pt"))
    monkeypatch.setattr(trainer, "_mean_loss", real)
    resumed = []
    monkeypatch.setattr(trainer, "_mean_loss", lambda data, rows, batch_size, loss_of: (
        resumed.append(loss_of.__name__ == "training_step"), real(data, rows, batch_size, loss_of))[1])
    fit_fmri(features, responses, "lh", "m", spec, tmp_path / "fit.h5", device="cpu", from_fits=from_fits)
    with h5py.File(tmp_path / "fit.h5") as h5, h5py.File(tmp_path / "reference.h5") as expected:
        assert sum(resumed) == len(expected["folds/0/train_loss"]) - 2  # the two finished epochs are not redone
        np.testing.assert_array_equal(h5["test_prediction"][:], expected["test_prediction"][:])

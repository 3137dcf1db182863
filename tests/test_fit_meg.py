"""Time-resolved MEG encoding: scene-grouped CV, the dual stream, a held-out subject (synthetic files)."""

import json

import h5py
import numpy as np
import pytest

from tbdencoder.fit import meg as fit_meg
from tbdencoder.models import FAMILIES, RidgeEncoder
from tbdencoder.data.meg import read_epochs
from tbdencoder.evaluate.meg_fit import read_fit
from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.io import write_strings
from conftest import seal

N_CHANNELS, TIMES = 6, np.array([-0.05, 0.0, 0.05, 0.1, 0.15])
PROFILE = np.array([0.0, 0.0, 0.5, 1.0, 0.4])  # signal over time: none before the onset
P = 16
ALPHAS = [0.1, 1.0, 10.0, 100.0, 1000.0]


def _write_subject(tmp_path, subject, rng, weights=None, n_scenes=24, per_scene=10, n_channels=N_CHANNELS,
                   first_scene=0):
    """epochs.h5 (docs/meg.md layout) and a features file for one synthetic subject.

    Channels 0-2 follow foveal features only; channels 3-4 also the parafoveal ones; the others are noise.
    Without weights every channel is noise.
    """
    n = n_scenes * per_scene
    ids = [f"{subject}_ses-1_trial-{k // per_scene:03d}_fix-{k % per_scene + 1:02d}" for k in range(n)]
    scenes = np.repeat([f"scene{s:03d}" for s in range(first_scene, first_scene + n_scenes)], per_scene)
    foveal, parafoveal = rng.standard_normal((n, P)), rng.standard_normal((n, P))
    amplitude = np.zeros((n, n_channels))
    if weights is not None:
        w_fov, w_para = weights
        amplitude[:, :5] = foveal @ w_fov[:, :5]
        amplitude[:, 3:5] += parafoveal @ w_para
    data = amplitude[:, :, None] * PROFILE + 0.7 * rng.standard_normal((n, n_channels, len(TIMES)))
    epochs = tmp_path / f"{subject}_epochs.h5"
    with h5py.File(epochs, "w") as h5:
        onset = h5.create_dataset("grad/onset", data=(1e-11 * data).astype(np.float32))
        onset.attrs["times"] = TIMES
        write_strings(h5, "fixation_id", ids)
        group = h5.create_group("fixations")
        group.attrs["columns"] = ["fixation_id", "sceneID"]
        write_strings(group, "fixation_id", ids)
        write_strings(group, "sceneID", scenes)
        write_strings(h5, "channels/name", [f"MEG{c:03d}2" for c in range(n_channels)])
        h5["channels/loc"] = np.tile(np.arange(n_channels, dtype=np.float64)[:, None] / 100, (1, 12))
        h5.attrs["subject"] = subject
    features = tmp_path / f"{subject}_features.h5"
    rows = [f"{i}_foveal" for i in ids] + [f"{i}_parafoveal" for i in ids]
    order = rng.permutation(2 * n)  # features are found by id, not by row order
    with h5py.File(features, "w") as h5:
        write_strings(h5, "stimulus_id", np.array(rows)[order])
        h5["layers/block01/global"] = np.concatenate([foveal, parafoveal]).astype(np.float32)[order]
    seal(features)
    return epochs, features, scenes


@pytest.fixture
def weights():
    rng = np.random.default_rng(1)
    return rng.standard_normal((P, N_CHANNELS)) / np.sqrt(P), 0.8 * rng.standard_normal((P, 2)) / np.sqrt(P)


def _fit(epochs, features, out, streams, **kwargs):
    """Fit one subject; (r per channel x time as evaluate_meg scores it, attrs, prediction shape)."""
    fit_meg.fit_meg_subject(epochs, features, out, model_name="+".join(streams),
                            spec={**SPEC, "streams": streams, **kwargs}, device="cpu")
    with h5py.File(out) as h5:
        return _score(out, epochs).r, dict(h5.attrs), h5["prediction"].shape


SPEC = dict(family="ridge", backbone="toy", layers=[1], tokens=["global"], alphas=ALPHAS, outer_folds=4, inner_folds=3,
            seed=0)


def _score(fit_path, epochs):
    """evaluate_meg's reading of a fit: within-fold r against the epochs, joined by fixation id."""
    data, ids, times, _ = read_epochs(epochs)
    with h5py.File(epochs) as h5:
        ch_names = list(h5["channels/name"].asstr()[:])
    return read_fit(fit_path, data, ids, ch_names, times)


class _SpyRidge(RidgeEncoder):
    """Records the scenes each model trained on and the rows it predicted."""

    log = []

    def fit(self, X, Y, *, groups=None, **kwargs):
        _SpyRidge.log.append((set(groups), self))
        return super().fit(X, Y, groups=groups, **kwargs)

    def predict(self, X, **kwargs):
        self.predicted = {tuple(row) for row in np.round(X.flat(), 5)}
        return super().predict(X, **kwargs)


def test_folds_never_share_a_scene_and_signal_is_recovered(tmp_path, weights, monkeypatch):
    epochs, features, scenes = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)
    _SpyRidge.log = []
    monkeypatch.setitem(FAMILIES, "ridge", _SpyRidge)
    r, attrs, shape = _fit(epochs, features, tmp_path / "fov.h5", ["foveal"])
    assert len(_SpyRidge.log) == 4 and shape == (240, N_CHANNELS, len(TIMES))
    with h5py.File(tmp_path / "fov.h5") as h5:
        fitted_scenes, folds = h5["scene_id"].asstr()[:], h5["fold"][:]
        assert "r" not in h5
    assert sorted(fitted_scenes) == sorted(scenes)
    assert sorted(set(folds)) == [0, 1, 2, 3]
    assert all(len(set(folds[fitted_scenes == scene])) == 1 for scene in scenes)  # a scene in one fold only
    for train_scenes, model in _SpyRidge.log:
        assert train_scenes and not _predicted_scenes(model, epochs, features, scenes) & train_scenes
    assert sum(len(train) for train, _ in _SpyRidge.log) == 3 * 24  # each scene trains 3 of the 4 folds
    assert attrs["scheme"] == "scene_cv" and list(attrs["streams"]) == ["foveal"]
    assert r[:3, 3].min() > 0.5  # foveal channels at the peak
    assert np.abs(r[:, :2]).max() < 0.3 and abs(r[5]).max() < 0.3  # before the onset, and the noise channel


def test_a_subject_alone_and_a_model_of_all_share_folds_over_the_cohorts_scenes(tmp_path, weights):
    """Subjects seeing overlapping scene subsets: with the cohort's epochs a subject fitted alone predicts each
    of its rows from the fold the joint model predicts it from, and trains on none of that fold's scenes."""
    files = [_write_subject(tmp_path, f"sub-0{k}", np.random.default_rng(k), weights, first_scene=12 * (k - 1))
             for k in (1, 2, 3)]
    epochs, features = [str(f[0]) for f in files], [str(f[1]) for f in files]
    spec = {**SPEC, "streams": ["foveal"]}
    for k, (path, feature_path, scenes) in enumerate(files):
        alone = fit_meg.meg_problem(spec, str(path), str(feature_path), cohort_epochs=epochs)
        joint = fit_meg.meg_problem(spec, str(path), str(feature_path), joint_epochs=epochs, joint_features=features)
        assert [sorted(fold.predict) for fold in alone.folds] == [sorted(fold.predict) for fold in joint.folds]
        for fold in alone.folds:
            assert not set(scenes[fold.predict]) & set(alone.pool.groups[fold.train])
        own = fit_meg.meg_problem(spec, str(path), str(feature_path))
        assert [sorted(f.predict) for f in own.folds] != [sorted(f.predict) for f in alone.folds]
    out = tmp_path / "alone.h5"
    fit_meg.fit_meg_subject(files[1][0], files[1][1], out, model_name="foveal", spec=spec, device="cpu",
                            cohort_epochs=epochs)
    with h5py.File(out) as h5:
        assert json.loads(h5.attrs["inputs"])["cohort_epochs"] == epochs and h5.attrs["scheme"] == "scene_cv"
    fitted = fit_meg.load_fitted_meg(out, device="cpu")  # the reload rebuilds the cohort's folds
    np.testing.assert_allclose(fitted.fold_predictions(), h5py.File(out)["prediction"][:], atol=1e-5)
    with pytest.raises(ValueError, match="cohort folds are for a training subject among"):
        fit_meg.meg_problem(spec, str(files[0][0]), str(files[0][1]), cohort_epochs=epochs[1:])


def test_dual_stream_gains_only_where_parafoveal_signal_is(tmp_path, weights):
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)
    r_fov, _, _ = _fit(epochs, features, tmp_path / "fov.h5", ["foveal"])
    r_dual, _, _ = _fit(epochs, features, tmp_path / "dual.h5", ["foveal", "parafoveal"])
    gain = r_dual[:, 2:] - r_fov[:, 2:]
    assert gain[3:5].mean() > 0.05
    assert gain[:3].mean() < 0.02


def test_heldout_subject_is_predicted_without_its_test_scenes(tmp_path, weights, monkeypatch):
    train = [_write_subject(tmp_path, f"sub-0{k}", np.random.default_rng(k), weights) for k in (1, 2)]
    epochs, features, scenes = _write_subject(tmp_path, "sub-60", np.random.default_rng(60), weights, n_scenes=12)
    _SpyRidge.log = []
    monkeypatch.setitem(FAMILIES, "ridge", _SpyRidge)
    out = tmp_path / "heldout.h5"
    fit_meg.fit_meg_heldout([t[0] for t in train], [t[1] for t in train], epochs, features, out,
                            model_name="foveal", spec={**SPEC, "streams": ["foveal"], "outer_folds": 3}, device="cpu")
    for train_scenes, model in _SpyRidge.log:
        assert not _predicted_scenes(model, epochs, features, scenes) & train_scenes
    with h5py.File(out) as h5:
        attrs = dict(h5.attrs)
    r = _score(out, epochs).r
    assert attrs["scheme"] == "heldout_subject" and list(attrs["train_subjects"]) == ["sub-01", "sub-02"]
    assert r[:3, 3].min() > 0.4


def _predicted_scenes(model, epochs, features, scenes):
    """Scenes of the fixations a spied model predicted (rows recognised by their feature values)."""
    X = fit_meg.load_rows(epochs, features, ["foveal"], [1], ["global"]).X.flat()
    predicted = {scene for scene, row in zip(scenes, np.round(X, 5)) if tuple(row) in model.predicted}
    assert predicted
    return predicted


def test_missing_features_and_foreign_sensors_are_errors(tmp_path, weights):
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)
    other, other_features, _ = _write_subject(tmp_path, "sub-02", np.random.default_rng(2), weights)
    with pytest.raises(ValueError, match="no features for any fixation"):
        fit_meg.load_rows(epochs, other_features, ["foveal"], [1], ["global"])
    with h5py.File(other, "r+") as h5:
        del h5["channels/name"]
        write_strings(h5, "channels/name", [f"MEG{c:03d}3" for c in range(N_CHANNELS)])
    with pytest.raises(ValueError, match="shared sensor space"):
        fit_meg.fit_meg_heldout([other], [other_features], epochs, features, tmp_path / "x.h5",
                                model_name="m", spec={**SPEC, "streams": ["foveal"]}, device="cpu")
    assert not (tmp_path / "x.h5").exists()


def test_fold_counts_checked_against_the_scenes_before_fitting(tmp_path, weights, monkeypatch):
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)  # 24 scenes
    train = _write_subject(tmp_path, "sub-02", np.random.default_rng(2), weights)
    _SpyRidge.log = []
    monkeypatch.setitem(FAMILIES, "ridge", _SpyRidge)
    with pytest.raises(ValueError, match=r"sub-01: meg.fit.outer_folds = 30, but 24 scenes are available"):
        _fit(epochs, features, tmp_path / "x.h5", ["foveal"], outer_folds=30)
    # 4 outer folds of 24 scenes leave 18 training scenes in each
    with pytest.raises(ValueError, match=r"sub-01: meg.fit.inner_folds = 19, but the fewest training scenes of any "
                                         r"of the 4 outer folds are 18"):
        _fit(epochs, features, tmp_path / "x.h5", ["foveal"], inner_folds=19)
    with pytest.raises(ValueError, match=r"meg.fit.inner_folds = 1, but"):
        fit_meg.fit_meg_heldout([train[0]], [train[1]], epochs, features, tmp_path / "x.h5",
                                model_name="m", spec={**SPEC, "streams": ["foveal"], "inner_folds": 1}, device="cpu")
    assert not _SpyRidge.log and not (tmp_path / "x.h5").exists()


def test_scores_are_unbiased_on_pure_noise(tmp_path):
    """Targets independent of the features: the within-fold r of evaluate_meg averages to 0 over targets, for
    scene-grouped CV and the held-out subject; r pooled over folds is biased negative under scene-grouped CV
    (the training mean moves opposite to the test fold's mean)."""
    sizes = dict(n_scenes=40, per_scene=8, n_channels=60)  # 320 fixations, 300 targets
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(100), **sizes)
    pool = [_write_subject(tmp_path, f"sub-0{k}", np.random.default_rng(100 + k), **sizes) for k in (2, 3)]
    fit_meg.fit_meg_subject(epochs, features, tmp_path / "cv.h5", model_name="m",
                            spec={**SPEC, "streams": ["foveal"], "outer_folds": 5}, device="cpu")
    fit_meg.fit_meg_heldout([e for e, _, _ in pool], [f for _, f, _ in pool], epochs, features, tmp_path / "ho.h5",
                            model_name="m", spec={**SPEC, "streams": ["foveal"], "outer_folds": 5}, device="cpu")
    data, ids, _, _ = read_epochs(epochs)
    for name in ("cv.h5", "ho.h5"):
        r = _score(tmp_path / name, epochs).r.ravel()
        assert abs(r.mean()) < 2 * r.std() / np.sqrt(r.size), (name, r.mean(), r.std())
    with h5py.File(tmp_path / "cv.h5") as h5:
        rows = [ids.index(fid) for fid in h5["fixation_id"].asstr()[:]]
        pooled = pearson_r(h5["prediction"][:], data[rows]).ravel()
    assert pooled.mean() < -2 * pooled.std() / np.sqrt(pooled.size), (pooled.mean(), pooled.std())


def test_banded_ridge_weights_the_stream_that_drives_each_sensor(tmp_path, weights):
    """The same driver runs banded ridge from its spec; with one block per stream, sensors driven by the
    foveal crop only weight the foveal block, sensors that also see the parafoveal crop weight it more."""
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)
    out = tmp_path / "banded.h5"
    fit_meg.fit_meg_subject(epochs, features, out, model_name="banded", device="cpu",
                            spec={**SPEC, "family": "banded_ridge", "n_gammas": 12, "streams": ["foveal", "parafoveal"]})
    with h5py.File(out) as h5:
        assert list(h5["feature_blocks"].asstr()[:]) == ["foveal:block01/global", "parafoveal:block01/global"]
        block_weight = h5["block_weight"][:]  # (channels, times, blocks)
        assert h5.attrs["family"] == "banded_ridge"
    assert block_weight.shape == (N_CHANNELS, len(TIMES), 2)
    parafoveal = block_weight[:, PROFILE > 0.4, 1]  # times with signal
    assert parafoveal[:3].max() < 0.5 and parafoveal[3:5].mean() > parafoveal[:3].mean() + 0.2, parafoveal
    scored = _score(out, epochs)  # evaluate_meg reads the weights with the predictions
    assert scored.r[:5, 3].min() > 0.4
    np.testing.assert_array_equal(scored.block_weight, block_weight)
    assert scored.block_names == ["foveal:block01/global", "parafoveal:block01/global"]


MLP_SPEC = {**SPEC, "family": "mlp", "hidden_units": 32, "max_epochs": 60, "patience": 10, "learning_rate": 3e-3,
            "streams": ["foveal"]}


def test_mlp_runs_through_the_meg_driver_with_curves_per_fold(tmp_path, weights):
    """The MLP from its spec through the scene-CV driver: every sensor x time at once, a validation split by
    scene, curves per outer fold (resuming a killed fit: tests/test_family_contract.py, which counts the
    epochs run after the restart)."""
    epochs, features, _ = _write_subject(tmp_path, "sub-01", np.random.default_rng(0), weights)
    reference = tmp_path / "reference.h5"
    fit_meg.fit_meg_subject(epochs, features, reference, model_name="mlp", spec=MLP_SPEC, device="cpu")
    with h5py.File(reference) as h5:
        n_epochs = [len(h5[f"folds/{k}/validation_loss"]) for k in range(4)]
        assert h5["validation_r2"].shape == (N_CHANNELS, len(TIMES)) and h5.attrs["family"] == "mlp"
    assert all(n > 10 for n in n_epochs)
    r = _score(reference, epochs).r
    assert r[:5, 3].mean() > 0.3 and abs(r[:, 0].mean()) < 0.15  # driven sensors at the peak; none before onset

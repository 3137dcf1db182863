"""The subject_adapters family (issue 19) against a known truth: a shared latent read out by per-subject mixings,
new subjects by the mean / shared adapter and by k calibration samples, vertex sets that differ; and on the MEG
simulator, the k-shot scheme against pooled and per-subject ridge with the head positions differing or not."""

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import seal
from tbdencoder.data.avs import prepare_fixations
from tbdencoder.data.crops import DEFAULT_SCREEN, extract_dva_crop
from tbdencoder.data.meg import preprocess_meg, read_epochs
from tbdencoder.evaluate.meg_fit import r_halves
from tbdencoder.evaluate.meg_metrics import best_sensors_estimate
from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.fit.kshot import kshot_heldout
from tbdencoder.fit.meg import meg_problem, meg_targets
from tbdencoder.io import write_strings
from tbdencoder.models import RidgeEncoder, SubjectAdapters
from tbdencoder.simulate.meg import crop_statistics, simulate_meg

P, RANK, CHANNELS, TIMES = 30, 3, 24, 4
FAST = dict(rank=RANK, max_epochs=30, patience=5, batch_size=128, learning_rate=1e-2, seed=0, device="cpu")


def _latent_world(seed=0, n_subjects=4, spread=0.8):
    """A trunk W (p -> rank x T) shared by all subjects and each subject's mixing A_s = A + spread * noise."""
    rng = np.random.default_rng(seed)
    trunk = rng.standard_normal((P, RANK * TIMES)) / np.sqrt(P)
    common = rng.standard_normal((CHANNELS, RANK))
    return rng, trunk, [common + spread * rng.standard_normal((CHANNELS, RANK)) for _ in range(n_subjects)]


def _rows(rng, trunk, mixing, n, noise=1.0):
    X = rng.standard_normal((n, P))
    signal = np.einsum("nrt,cr->nct", (X @ trunk).reshape(n, RANK, TIMES), mixing).reshape(n, -1)
    return X, signal + noise * rng.standard_normal(signal.shape), signal


def _targets():
    return {"ch_names": [f"MEG{c:03d}" for c in range(CHANNELS)], "times": np.arange(TIMES) / 100}


def _fit(rng, trunk, mixings, n=300, **settings):
    data = {f"sub-{s}": _rows(rng, trunk, A, n) for s, A in enumerate(mixings)}
    subjects = np.repeat(list(data), n)
    model = SubjectAdapters(**{**FAST, **settings}).fit(
        np.concatenate([d[0] for d in data.values()]), {s: d[1] for s, d in data.items()}, subjects=subjects,
        targets={s: _targets() for s in data})
    return model, data


def test_training_subjects_are_read_out_by_their_own_mixing():
    """Held-out rows of each training subject: the joint model's prediction follows that subject's noiseless
    signal (r > 0.9) and predicts it better than another subject's adapter does."""
    rng, trunk, mixings = _latent_world()
    model, data = _fit(rng, trunk, mixings[:3])
    for s, A in enumerate(mixings[:3]):
        X, _, signal = _rows(rng, trunk, A, 200)
        own = model.predict(X, subjects=np.full(200, f"sub-{s}"), targets={f"sub-{s}": _targets()})[f"sub-{s}"]
        other = f"sub-{(s + 1) % 3}"
        theirs = model.predict(X, subjects=np.full(200, other), targets={other: _targets()})[other]
        assert np.median(pearson_r(own, signal)) > 0.9
        assert np.median(pearson_r(own, signal)) > np.median(pearson_r(theirs, signal)) + 0.1


def test_a_new_subject_by_the_mean_adapter_and_by_k_calibration_samples():
    """A new subject's mixing differs from every training one: the mean adapter (k = 0) predicts it about as well
    as ridge pooled over the training subjects; k calibration rows raise r with k, beyond ridge fitted on the same
    k rows alone at small k, and ridge approaches the calibrated model as k grows."""
    rng, trunk, mixings = _latent_world(seed=1)
    model, data = _fit(rng, trunk, mixings[:3])
    X_new, Y_new, _ = _rows(rng, trunk, mixings[3], 600)
    test, pool_rows = slice(400, 600), slice(0, 400)
    new = np.full(200, "new")

    def score(prediction):
        return float(np.median(pearson_r(prediction, Y_new[test])))

    mean_rule = score(model.predict(X_new[test], subjects=new, targets={"new": _targets()})["new"])
    pooled = RidgeEncoder(alphas=[0.1, 1, 10, 100, 1000], cv_folds=5).fit(
        np.concatenate([d[0] for d in data.values()]), np.concatenate([d[1] for d in data.values()]))
    assert abs(mean_rule - score(pooled.predict(X_new[test]))) < 0.05
    curve, alone = [], []
    for k in (10, 40, 160, 400):
        rows = np.arange(400)[pool_rows][:k]
        model.calibrate(X_new[rows], Y_new[rows], "new", targets=_targets())
        curve.append(score(model.predict(X_new[test], subjects=new, targets={"new": _targets()})["new"]))
        alone.append(score(RidgeEncoder(alphas=[0.1, 1, 10, 100, 1000], cv_folds=5).fit(X_new[rows], Y_new[rows])
                           .predict(X_new[test])))
    assert curve[0] > mean_rule + 0.05 and curve[-1] > curve[0]
    assert curve[0] > alone[0] + 0.2  # ten rows: 3 numbers per channel to learn, not 30 x 4
    assert curve[-1] - alone[-1] < curve[0] - alone[0]  # the per-subject reference closes in as k grows


def test_calibration_with_an_infinite_penalty_is_the_rule():
    rng, trunk, mixings = _latent_world(seed=2)
    model, _ = _fit(rng, trunk, mixings[:3], n=150)
    X, Y, _ = _rows(rng, trunk, mixings[3], 60)
    new = np.full(20, "new")
    before = model.predict(X[40:], subjects=new, targets={"new": _targets()})["new"]
    model.alphas = [1e12]
    model.calibrate(X[:40], Y[:40], "new", targets=_targets())
    after = model.predict(X[40:], subjects=new, targets={"new": _targets()})["new"]
    np.testing.assert_allclose(pearson_r(after, Y[40:]), pearson_r(before, Y[40:]), atol=1e-6)


def _vertex_targets(index, hemisphere="lh"):
    positions = np.stack([np.cos(index / 7.0), np.sin(index / 7.0), np.zeros(len(index))], 1)
    return {"fsaverage_index": np.asarray(index), "hemisphere": hemisphere, "positions": positions}


def test_different_vertex_sets_share_adapter_rows_by_fsaverage_vertex():
    """fMRI subjects own different vertices: the mean adapter at a vertex is the mean over the subjects that have
    it, and a vertex no training subject has takes the nearest known vertex's row."""
    rng = np.random.default_rng(3)
    index = {"a": np.arange(0, 20), "b": np.arange(10, 30)}
    X = rng.standard_normal((80, 6))
    Y = {s: rng.standard_normal((40, len(i))) for s, i in index.items()}
    model = SubjectAdapters(**{**FAST, "rank": 2, "subject_dropout": 0.0}).fit(
        X, Y, subjects=np.repeat(["a", "b"], 40), targets={s: _vertex_targets(i) for s, i in index.items()})
    weight = {s: model.network_.weight[k].detach().numpy() for k, s in enumerate("ab")}
    new_index = np.array([5, 15, 25, 31])  # a only, both, b only, nobody (nearest: 30? no: 29, b's last)
    rule, _ = model.rule_adapter(_vertex_targets(new_index), 4)
    np.testing.assert_allclose(rule[0], weight["a"][5])
    np.testing.assert_allclose(rule[1], (weight["a"][15] + weight["b"][5]) / 2)
    np.testing.assert_allclose(rule[2], weight["b"][15])
    np.testing.assert_allclose(rule[3], weight["b"][19])  # vertex 31 is nearest to vertex 29 on this circle
    with pytest.raises(ValueError, match="no positions to find the nearest"):
        model.rule_adapter({"fsaverage_index": new_index, "hemisphere": "lh"}, 4)


class _Rows:
    """The least array-like `fit` takes: a shape and rows read by sorted indices (nothing else of numpy's)."""

    def __init__(self, values):
        self.values, self.shape = values, values.shape

    def __getitem__(self, rows):
        rows = np.asarray(rows)
        assert rows.ndim == 1 and np.all(np.diff(rows) > 0)
        return self.values[rows]


@pytest.mark.parametrize("trunk", ["linear", "mlp"])
def test_targets_on_disk_fit_as_targets_in_memory(tmp_path, monkeypatch, trunk):
    """Targets as h5py datasets (read by blocks of rows: a few rows per block here) or as a bare array-like give
    the fit the in-memory targets give: the same standardisation, predictions and validation R^2."""
    import tbdencoder.models.subject_adapters as module

    rng = np.random.default_rng(6)
    index = {"a": np.arange(0, 20), "b": np.arange(10, 40)}
    X = rng.standard_normal((150, 6))
    Y = {"a": 3 + 2 * rng.standard_normal((70, 20)), "b": rng.standard_normal((80, 30)) - 1}
    subjects = np.repeat(["a", "b"], [70, 80])
    targets = {s: _vertex_targets(i) for s, i in index.items()}
    settings = {**FAST, "rank": 2, "trunk": trunk, "max_epochs": 8}
    memory = SubjectAdapters(**settings).fit(X, Y, subjects=subjects, targets=targets)
    monkeypatch.setattr(module, "READ_VALUES", 7 * 30)  # blocks of 7 to 10 rows: moments and R^2 combined
    with h5py.File(tmp_path / "targets.h5", "w") as h5:
        for s, y in Y.items():
            h5.create_dataset(s, data=y, chunks=(1, y.shape[1]))
    with h5py.File(tmp_path / "targets.h5", "r") as h5:
        disk = SubjectAdapters(**settings).fit(X, {s: h5[s] for s in Y}, subjects=subjects, targets=targets)
    bare = SubjectAdapters(**settings).fit(X, {s: _Rows(y) for s, y in Y.items()}, subjects=subjects, targets=targets)
    X_new = rng.standard_normal((30, 6))
    expected = memory.predict(X_new, subjects=np.repeat(["a", "b"], 15), targets=targets)
    for model in (disk, bare):
        for s in Y:
            np.testing.assert_allclose(model.intercept_[s], memory.intercept_[s], rtol=1e-6)
            np.testing.assert_allclose(model.y_scale_[s], memory.y_scale_[s], rtol=1e-6)
            np.testing.assert_allclose(model.validation_r2_[s], memory.validation_r2_[s], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.train_loss_, memory.train_loss_, rtol=1e-5)
        predicted = model.predict(X_new, subjects=np.repeat(["a", "b"], 15), targets=targets)
        for s in Y:
            np.testing.assert_allclose(predicted[s], expected[s], rtol=1e-5, atol=1e-5 * np.abs(expected[s]).max())


def test_rows_on_disk_are_read_in_the_order_asked():
    from tbdencoder.models.subject_adapters import read_rows

    values = np.arange(40.0).reshape(20, 2)
    for rows in ([3, 1, 1, 19], [5, 6, 7, 8, 6]):  # sparse: a point selection; dense: slices
        np.testing.assert_array_equal(read_rows(_Rows(values), np.array(sorted(set(rows)))), values[sorted(set(rows))])
    import io

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5["y"] = values
        for rows in ([3, 1, 1, 19], [5, 6, 7, 8, 6], []):
            np.testing.assert_array_equal(read_rows(h5["y"], np.array(rows, np.int64)), values[rows])


def test_the_shared_rule_needs_subject_dropout():
    with pytest.raises(ValueError, match="new_subject: shared needs subject_dropout > 0"):
        SubjectAdapters(new_subject="shared", subject_dropout=0.0)


CROP_DVA = 2.0


def simulated_subjects(root, head_shift_mm, head_rotation_deg, subjects=(1, 2, 3, 4), tmin_s=-0.1, tmax_s=0.3,
                       **simulation):
    """Simulated subjects (SNR 2, ~385 fixations each) preprocessed at 50 Hz, with the simulator's own foveal crop
    statistics as features (`layers/block01/global`, and as the `embedding`): [(epochs, features)]."""
    simulate_meg(root / "avs", subjects=list(subjects), crop_dva=CROP_DVA, n_sessions=1, n_trials_per_session=50,
                 n_scenes=50, seed=0, snr=2.0, head_shift_mm=head_shift_mm, head_rotation_deg=head_rotation_deg,
                 **simulation)
    files = []
    for subject in subjects:
        folder = root / f"sub-{subject}"
        folder.mkdir()
        prepare_fixations(root / "avs", subject, folder / "fixations.tsv", on_bad="drop")
        preprocess_meg(folder / "fixations.tsv", root / "avs", folder / "epochs.h5", line_freq_hz=50.0, l_freq_hz=0.5,
                       h_freq_hz=20.0, sfreq_hz=50.0, tmin_s=tmin_s, tmax_s=tmax_s, baseline_s=(tmin_s, 0.0),
                       reject_grad=None, on_bad="drop")
        _, ids, _, fixations = read_epochs(folder / "epochs.h5")
        features = [crop_statistics(extract_dva_crop(np.asarray(Image.open(path).convert("RGB")), (gx, gy), CROP_DVA,
                                                     DEFAULT_SCREEN))
                    for path, gx, gy in zip(fixations["scene_path"], fixations["gx"], fixations["gy"])]
        with h5py.File(folder / "features.h5", "w") as h5:
            write_strings(h5, "stimulus_id", [f"{i}_foveal" for i in ids])
            h5["layers/block01/global"] = h5["embedding"] = np.asarray(features, np.float32)
        files.append((str(folder / "epochs.h5"), str(seal(folder / "features.h5"))))
    return files


def _kshot_r_at_peak(root, head_shift_mm, head_rotation_deg) -> dict[str, float]:
    """Subject 4 held out: r at the peak of its 10 best sensors (cross-fitted) for every k-shot condition."""
    files = simulated_subjects(root, head_shift_mm, head_rotation_deg)
    spec = dict(family="subject_adapters", backbone="crop_statistics", layers=[1], tokens=["global"],
                streams=["foveal"], alphas=[1.0, 10.0, 100.0, 1e3, 1e4], outer_folds=4, inner_folds=3, seed=0,
                rank=4, learning_rate=1e-2, max_epochs=100, patience=5, batch_size=256)
    problem = meg_problem(spec, *files[3], [e for e, _ in files[:3]], [f for _, f in files[:3]])
    family = {**{k: v for k, v in spec.items() if k not in ("outer_folds", "inner_folds")}, "cv_folds": 3}
    result = kshot_heldout(family, problem.pool, problem.target.rows(), problem.folds, [25, 100, 200],
                           targets=meg_targets(problem.target))
    channels = len(problem.target.ch_names)
    return {name: float(best_sensors_estimate(r_halves(prediction, problem.target.Y, result.fold)
                                              .reshape(2, channels, -1), 10)["r_at_peak"])
            for name, prediction in result.predictions.items()}


def test_adapters_beat_pooled_ridge_where_head_positions_differ_and_not_where_they_agree(tmp_path):
    """The held-out subject's head sits elsewhere (sd 20 mm, 15 deg per subject): calibrated on 100 of its
    fixations, the adapter model beats ridge pooled over the training subjects; with every head at the nominal
    position (the control) the gain is gone. At k = 200 ridge on the subject's own fixations catches up."""
    differ = _kshot_r_at_peak(tmp_path / "differ", 20.0, 15.0)
    same = _kshot_r_at_peak(tmp_path / "same", 0.0, 0.0)
    gain, control_gain = (r["adapters_k100"] - r["pooled_ridge"] for r in (differ, same))
    assert gain > 0.03, differ
    assert abs(control_gain) < gain / 2, (differ, same)
    assert differ["adapters_k200"] > differ["k0_mean"] + 0.03  # the k-shot curve rises
    assert abs(differ["ridge_k200"] - differ["adapters_k200"]) < 0.03 < differ["adapters_k25"] - differ["ridge_k25"]


@pytest.mark.parametrize("shape", [(40, 6), (6, 40)])
def test_balanced_factors_are_the_truncated_svd_either_way(shape):
    from tbdencoder.models.subject_adapters import _balanced_factors

    matrix = np.random.default_rng(5).standard_normal(shape)
    left, right = _balanced_factors(matrix, 3)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(left @ right, (u[:, :3] * s[:3]) @ vt[:3], atol=1e-10)
    np.testing.assert_allclose(np.linalg.norm(left, axis=0), np.linalg.norm(right, axis=1), rtol=1e-10)

"""The shared trainer: losses against hand computations, batches of any structure, HDF5 data read batch by batch,
the top-k epochs, and checkpoints that are loaded safely, discarded when bad, and resumed bit for bit."""

import math
import shutil

import h5py
import numpy as np
import pytest
import torch

from tbdencoder.models.losses import ClipLoss, build_loss
from tbdencoder.models.mlp import mlp_network
from tbdencoder.models.train_data import ArrayData, HDF5Data
from tbdencoder.models.trainer import TrainSettings, train_on

from test_bad_input_fmri import _Payload  # unpickling it runs `touch marker`
from test_mlp import _data, _interrupt_after, _network

P = torch.tensor([[0.0, 1.0], [2.0, -3.0]])
T = torch.tensor([[0.5, 1.0], [0.0, -1.0]])  # differences -0.5, 0, 2, -2


@pytest.mark.parametrize("spec, expected", [
    ("mse", (0.25 + 0 + 4 + 4) / 4),
    ("smooth_l1", (0.5 * 0.25 + 0 + 1.5 + 1.5) / 4),  # beta 1: 0.5 d^2 below 1, |d| - 0.5 above
    ([("smooth_l1", 1.0, {"beta": 4.0})], (0.5 * 0.25 / 4 + 0 + 0.5 * 4 / 4 + 0.5 * 4 / 4) / 4),  # all below beta
    ({"mse": 1.0, "smooth_l1": 2.0}, 2.0625 + 2 * 0.78125),
    ([("smooth_l1", 0.5, {"beta": 4.0}), ("mse", 1.0)], 0.5 * 0.2578125 + 2.0625),
])
def test_regression_losses_and_weighted_sums_match_hand_computations(spec, expected):
    assert build_loss(spec)(P, T).item() == pytest.approx(expected, abs=1e-7)


def test_unknown_losses_are_refused_with_the_known_names():
    with pytest.raises(ValueError, match="unknown loss 'cosine'; known losses: clip, distillation, mse, smooth_l1"):
        build_loss({"mse": 1.0, "cosine": 0.5})


def test_clip_loss_is_the_symmetric_infonce_of_a_hand_computed_batch():
    a, b = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # cosines [[1, 1/sqrt2], [0, 1/sqrt2]] over temperature 0.5: scores [[2, sqrt2], [0, sqrt2]]
    s = math.sqrt(2)
    rows = math.log(1 + math.exp(s - 2)) + math.log(1 + math.exp(-s))  # -log softmax of the diagonal, per row
    columns = math.log(1 + math.exp(-2)) + math.log(2)  # and per column
    loss = ClipLoss(temperature=0.5)
    torch.testing.assert_close(loss.scores(a, b), torch.tensor([[2.0, s], [0.0, s]]))
    assert loss(a, b).item() == pytest.approx((rows / 2 + columns / 2) / 2, abs=1e-6)


def test_clip_loss_matches_numpy_on_multichannel_rows_and_its_temperature_gets_a_gradient():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 2, 3)), rng.standard_normal((5, 2, 3))  # MEG-like rows: channels x times
    unit = [m.reshape(5, -1) / np.linalg.norm(m.reshape(5, -1), axis=1, keepdims=True) for m in (a, b)]
    scores = unit[0] @ unit[1].T / 0.2
    log_rows = scores - np.log(np.exp(scores).sum(1, keepdims=True))
    log_columns = scores - np.log(np.exp(scores).sum(0, keepdims=True))
    expected = -(np.diag(log_rows).mean() + np.diag(log_columns).mean()) / 2
    loss = ClipLoss(temperature=0.2)
    value = loss(torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(loss.log_temperature.grad) and loss.log_temperature.grad != 0


def _embedding_data():
    X, Y, X_val, Y_val = _data()
    return ArrayData({"x": X, "y": Y}), ArrayData({"x": X_val, "y": Y_val})


def test_the_clip_temperature_is_trained_with_the_module():
    loss = ClipLoss(temperature=0.5)
    settings = TrainSettings(batch_size=32, max_epochs=5, patience=5, learning_rate=0.05)
    train_on(_network(), *_embedding_data(), settings, loss=loss, device="cpu")
    assert abs(loss.log_temperature.item() - math.log(0.5)) > 0.05


class SubjectLinear(torch.nn.Module):
    """One linear map per subject, picked by the row's subject index; outputs padded to the widest subject."""

    def __init__(self, n_subjects, n_features, width):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(n_subjects, width, n_features))

    def forward(self, x, subject):
        return torch.einsum("rwf,rf->rw", self.weight[subject], x)


def _subject_forward(module, batch):
    mask = batch["mask"]
    return module(batch["x"], batch["subject"])[mask], batch["y"][mask]


def test_a_batch_of_features_subject_indices_and_per_subject_targets_recovers_each_subjects_map():
    rng = np.random.default_rng(1)
    maps = [rng.standard_normal((3, 6)), rng.standard_normal((5, 6))]  # subjects of 3 and 5 targets
    x, subject = rng.standard_normal((240, 6)), rng.integers(0, 2, 240)
    y, mask = np.zeros((240, 5)), np.zeros((240, 5), dtype=bool)
    for s, W in enumerate(maps):
        y[subject == s, :len(W)] = x[subject == s] @ W.T
        mask[subject == s, :len(W)] = True
    arrays = {"x": x, "subject": subject, "y": y, "mask": mask}
    fit, validation = (ArrayData({k: v[rows] for k, v in arrays.items()}) for rows in (slice(0, 200), slice(200, None)))
    module = SubjectLinear(2, 6, 5)
    settings = TrainSettings(learning_rate=0.02, weight_decay=0.0, batch_size=20, max_epochs=150, patience=150)
    result = train_on(module, fit, validation, settings, forward=_subject_forward, device="cpu")
    assert result.validation_loss[result.best_epoch] < 1e-4
    for s, W in enumerate(maps):
        np.testing.assert_allclose(module.weight[s, :len(W)].detach().numpy(), W, atol=0.02)
    assert not module.weight[0, 3:].any()  # subject 0 has 3 targets: its padding was never trained


def _features_file(path, n_rows=500, attrs=None):
    X = np.random.default_rng(2).standard_normal((n_rows, 8)).astype(np.float32)
    with h5py.File(path, "w") as h5:
        h5.create_dataset("layers/block1/global", data=X, chunks=(10, 8))
        h5.attrs.update(attrs or {})
    return X


def test_hdf5_data_trains_like_the_same_arrays_in_memory_reading_only_each_batchs_rows(tmp_path, monkeypatch):
    X = _features_file(tmp_path / "features.h5")  # 500 rows in the file, 200 used, never more than 32 read at once
    rng = np.random.default_rng(3)
    fit, validation = np.split(rng.choice(500, 200, replace=False), [160])  # unsorted file rows
    Y = np.tanh(X[:, :3] @ rng.standard_normal((3, 4))).astype(np.float32)
    settings = TrainSettings(batch_size=32, max_epochs=6, patience=6, seed=2, validation_batch_size=16)
    expected = train_on(reference := _network(), ArrayData({"x": X[fit], "y": Y[fit]}),
                        ArrayData({"x": X[validation], "y": Y[validation]}), settings, device="cpu")

    reads, read = [], h5py.Dataset.__getitem__
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda self, key: reads.append(len(key)) or read(self, key))
    datasets = {"x": "layers/block1/global"}
    result = train_on(from_file := _network(), HDF5Data(tmp_path / "features.h5", datasets, fit, {"y": Y[fit]}),
                      HDF5Data(tmp_path / "features.h5", datasets, validation, {"y": Y[validation]}), settings,
                      device="cpu")
    np.testing.assert_array_equal(result.validation_loss, expected.validation_loss)
    np.testing.assert_array_equal(result.train_loss, expected.train_loss)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(from_file.state_dict()[name], value, rtol=0, atol=0)
    assert max(reads) == 32 and sum(reads) == 6 * 200 and len(reads) == 6 * (5 + 3)


def test_hdf5_fingerprint_follows_rows_and_content_or_the_files_cache_key(tmp_path):
    path, datasets, rows = tmp_path / "features.h5", {"x": "layers/block1/global"}, np.arange(10, 50)
    _features_file(path)
    first = HDF5Data(path, datasets, rows).fingerprint()
    assert HDF5Data(path, datasets, rows).fingerprint() == first != HDF5Data(path, datasets, rows[1:]).fingerprint()
    with h5py.File(path, "r+") as h5:
        h5["layers/block1/global"][10] += 1  # the first selected row changed: no cache_key, so it is sampled
    assert HDF5Data(path, datasets, rows).fingerprint() != first
    _features_file(path, attrs={"cache_key": "abc"})
    moved = shutil.copy(path, tmp_path / "elsewhere.h5")  # a cache key identifies the content wherever it is
    assert HDF5Data(path, datasets, rows).fingerprint() == HDF5Data(moved, datasets, rows).fingerprint()


def test_top_k_returns_the_k_best_epochs_weights_in_validation_loss_order():
    fit, validation = _embedding_data()
    noise = np.random.default_rng(9).standard_normal((40, 4)).astype(np.float32)  # nothing to learn: overfits
    validation = ArrayData({"x": validation.arrays["x"], "y": noise})
    settings = TrainSettings(batch_size=32, max_epochs=12, patience=12, learning_rate=0.05, keep_top_k=3)
    module = _network()
    result = train_on(module, fit, validation, settings, device="cpu")
    best = np.argsort(result.validation_loss, kind="stable")[:3]
    assert result.top_k_epochs == best.tolist() and result.best_epoch == best[0] and best.tolist() != [9, 10, 11]
    for epoch, weights in zip(result.top_k_epochs, result.top_k_weights):
        member = _network().eval()
        member.load_state_dict(weights)
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(member(validation.arrays["x"]), validation.arrays["y"])
        assert np.float32(loss.item()) == result.validation_loss[epoch]
    for name, value in module.state_dict().items():
        torch.testing.assert_close(result.top_k_weights[0][name], value, rtol=0, atol=0)
    assert train_on(_network(), fit, validation, TrainSettings(max_epochs=2), device="cpu").top_k_weights == []


SETTINGS = TrainSettings(batch_size=32, max_epochs=8, patience=8, seed=1, checkpoint_interval_s=0.0)


def _train(checkpoint=None, settings=SETTINGS, module=None, loss="mse"):
    module = _network() if module is None else module
    return train_on(module, *_embedding_data(), settings, loss=loss, device="cpu", checkpoint=checkpoint)


def test_a_crafted_pickle_checkpoint_is_not_run_but_discarded_with_a_warning(tmp_path, logs):
    marker, checkpoint = tmp_path / "pwned", tmp_path / "fold0.pt"
    torch.save({"fingerprint": "?", "epoch": _Payload(marker)}, checkpoint)
    result = _train(checkpoint)
    assert not marker.exists()
    assert f"{checkpoint}: unloadable checkpoint discarded, training starts afresh" in logs.text
    np.testing.assert_array_equal(result.validation_loss, _train().validation_loss)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 8  # replaced by the finished run's checkpoint
    torch.save(_Payload(marker), tmp_path / "other.pt")
    torch.load(tmp_path / "other.pt", weights_only=False)  # what loading it unsafely would have done
    assert marker.exists()


def test_a_truncated_checkpoint_is_discarded_and_training_completes(tmp_path, logs):
    checkpoint = tmp_path / "fold0.pt"
    _train(checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:checkpoint.stat().st_size // 2])
    result = _train(checkpoint)
    assert f"{checkpoint}: unloadable checkpoint discarded" in logs.text
    np.testing.assert_array_equal(result.validation_loss, _train().validation_loss)
    assert len(result.validation_loss) == 8


def test_a_checkpoint_whose_contents_do_not_fit_is_discarded_and_leaves_the_module_as_it_was(tmp_path, logs):
    checkpoint = tmp_path / "fold0.pt"
    _train(checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    state["optimiser"]["param_groups"] = []  # fails after the module was loaded: that load must be undone
    torch.save(state, checkpoint)
    module = _network()
    result = _train(checkpoint, module=module)
    assert f"{checkpoint}: checkpoint contents do not fit, discarded" in logs.text
    np.testing.assert_array_equal(result.validation_loss, _train().validation_loss)


def test_a_killed_run_with_a_learned_temperature_and_top_k_resumes_bit_for_bit(tmp_path):
    settings = TrainSettings(batch_size=32, max_epochs=20, patience=20, seed=1, keep_top_k=2, checkpoint_interval_s=0.0)
    spec = {"mse": 1.0, "clip": 0.1}
    reference, reference_loss = _network(), build_loss(spec)
    expected = _train(settings=settings, module=reference, loss=reference_loss)

    checkpoint, killed = tmp_path / "fold0.pt", _network()
    handle = _interrupt_after(killed, 5 * 7 + 2)  # 5 training batches per epoch: killed during epoch 8
    with pytest.raises(KeyboardInterrupt):
        _train(checkpoint, settings, killed, build_loss(spec))
    handle.remove()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 7

    calls = {"n": 0}
    resumed, resumed_loss = _network(), build_loss(spec)
    resumed.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    result = _train(checkpoint, settings, resumed, resumed_loss)
    assert calls["n"] == (20 - 7) * 6  # only the remaining epochs ran (5 training batches + 1 validation each)
    np.testing.assert_array_equal(result.validation_loss, expected.validation_loss)
    np.testing.assert_array_equal(result.train_loss, expected.train_loss)
    assert result.best_epoch == expected.best_epoch and result.top_k_epochs == expected.top_k_epochs
    pairs = [(resumed.state_dict(), reference.state_dict()), (resumed_loss.state_dict(), reference_loss.state_dict()),
             *zip(result.top_k_weights, expected.top_k_weights)]
    for got, want in pairs:
        for name, value in want.items():
            torch.testing.assert_close(got[name], value, rtol=0, atol=0)


def test_a_checkpoint_holds_the_module_and_adams_two_moments_and_little_else(tmp_path):
    torch.manual_seed(0)
    module = mlp_network(256, 1024, 512, 0.2)
    rng = np.random.default_rng(0)
    data = [ArrayData({"x": rng.standard_normal((n, 256)), "y": rng.standard_normal((n, 1024))}) for n in (64, 16)]
    settings = TrainSettings(max_epochs=1, checkpoint_interval_s=0.0)  # the kept (best) epoch is the last one
    train_on(module, *data, settings, device="cpu", checkpoint=tmp_path / "c.pt")
    parameter_bytes = sum(value.numel() * value.element_size() for value in module.state_dict().values())
    assert 3 < (tmp_path / "c.pt").stat().st_size / parameter_bytes < 3.01

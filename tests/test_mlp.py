"""The MLP head and the shared gradient trainer: non-linear targets, ridge as the baseline, seeds, resuming."""

import numpy as np
import pytest
import torch

from tbdencoder.evaluate.metrics import pearson_r
from tbdencoder.models import MLPEncoder, RidgeEncoder, build_encoder
from tbdencoder.models.mlp import mlp_network, validation_split
from tbdencoder.models.trainer import TrainSettings, train
from tbdencoder.simulate.encoding import simulate_encoding

ALPHAS = np.logspace(-2, 5, 15)
MLP = dict(hidden_units=128, max_epochs=300, patience=20, device="cpu")


@pytest.fixture(scope="module")
def problem():
    return simulate_encoding(1500, 32, {"linear": 20, "energy": 20, "none": 5}, snr=1.0, seed=0)


def test_mlp_beats_ridge_on_energy_targets_and_ridge_is_at_least_as_good_on_linear_ones(problem):
    train_rows, test_rows = slice(0, 1200), slice(1200, None)
    mlp = MLPEncoder(**MLP).fit(problem.X[train_rows], problem.Y[train_rows])
    ridge = RidgeEncoder(alphas=ALPHAS, device="cpu").fit(problem.X[train_rows], problem.Y[train_rows])
    r = {name: pearson_r(model.predict(problem.X[test_rows]), problem.Y[test_rows])
         for name, model in (("mlp", mlp), ("ridge", ridge))}
    energy, linear, none = (problem.family == name for name in ("energy", "linear", "none"))
    # energy targets: no linear correlation with any feature, so ridge predicts nothing and the MLP does
    assert abs(r["ridge"][energy].mean()) < 0.05 and r["mlp"][energy].mean() > 0.5, (r["ridge"][energy].mean(),
                                                                                    r["mlp"][energy].mean())
    # linear targets: ridge is the right model; the MLP comes close but does not beat it
    assert r["mlp"][linear].mean() > 0.6 and r["ridge"][linear].mean() >= r["mlp"][linear].mean()
    # the best achievable r (noiseless signal vs noisy response) bounds both
    ceiling = pearson_r(problem.signal[test_rows], problem.Y[test_rows])
    assert r["mlp"][energy].mean() < ceiling[energy].mean() and abs(r["mlp"][none].mean()) < 0.05
    assert mlp.validation_r2_.shape == (45,) and mlp.validation_r2_[energy].mean() > 0.2
    assert len(mlp.train_loss_) == len(mlp.validation_loss_) <= 300
    assert mlp.validation_loss_[mlp.best_epoch_] == mlp.validation_loss_.min()


def test_same_seed_gives_the_same_model_and_another_seed_another(problem):
    X, Y = problem.X[:300], problem.Y[:300]
    settings = dict(hidden_units=16, max_epochs=5, device="cpu")
    first, again = (MLPEncoder(**settings, seed=3).fit(X, Y).predict(X) for _ in range(2))
    other = MLPEncoder(**settings, seed=4).fit(X, Y).predict(X)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def _interrupt_after(module, n_calls):
    calls = {"n": 0}

    def hook(*_):
        calls["n"] += module.training
        if calls["n"] > n_calls:
            raise KeyboardInterrupt("killed")

    return module.register_forward_hook(hook)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    Y = np.tanh(X[:, :3] @ rng.standard_normal((3, 4))).astype(np.float32)
    return X[:160], Y[:160], X[160:], Y[160:]


def _network():
    torch.manual_seed(0)
    return mlp_network(8, 4, 16, 0.2)


def test_a_killed_training_resumes_from_its_checkpoint_to_the_uninterrupted_result(tmp_path):
    settings = TrainSettings(batch_size=32, max_epochs=30, patience=30, seed=1, checkpoint_interval_s=0.0)
    reference = _network()
    expected = train(reference, *_data(), settings, device="cpu")

    checkpoint = tmp_path / "fold0.pt"
    killed = _network()
    handle = _interrupt_after(killed, 5 * 12 + 3)  # 5 training batches per epoch: killed during epoch 13
    with pytest.raises(KeyboardInterrupt):
        train(killed, *_data(), settings, device="cpu", checkpoint=checkpoint)
    handle.remove()
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 12

    calls = {"n": 0}
    resumed = _network()
    resumed.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    result = train(resumed, *_data(), settings, device="cpu", checkpoint=checkpoint)
    assert calls["n"] == (30 - 12) * 6  # only the remaining epochs ran (5 training batches + 1 validation each)
    np.testing.assert_array_equal(result.validation_loss, expected.validation_loss)
    np.testing.assert_array_equal(result.train_loss, expected.train_loss)
    assert result.best_epoch == expected.best_epoch
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0)


def test_a_checkpoint_of_other_data_is_not_resumed(tmp_path):
    settings = TrainSettings(batch_size=32, max_epochs=8, patience=8, seed=1, checkpoint_interval_s=0.0)
    checkpoint = tmp_path / "fold0.pt"
    train(_network(), *_data(seed=0), settings, device="cpu", checkpoint=checkpoint)
    fresh = train(_network(), *_data(seed=5), settings, device="cpu")
    again = train(_network(), *_data(seed=5), settings, device="cpu", checkpoint=checkpoint)
    np.testing.assert_array_equal(again.validation_loss, fresh.validation_loss)
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 8


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    settings = TrainSettings(batch_size=32, max_epochs=500, patience=4, seed=0, learning_rate=0.05)
    X, Y, X_val, _ = _data()
    noise = np.random.default_rng(9).standard_normal((40, 4)).astype(np.float32)  # nothing to learn: overfits
    result = train(_network(), X, Y, X_val, noise, settings, device="cpu")
    assert len(result.validation_loss) == result.best_epoch + 1 + 4 < 500
    assert result.validation_loss[result.best_epoch] == result.validation_loss.min()


def test_validation_split_keeps_groups_whole_and_refuses_too_few_rows():
    groups = np.repeat(np.arange(20), 5)
    fit_rows, validation_rows = validation_split(100, 0.25, 0, groups)
    assert not set(groups[fit_rows]) & set(groups[validation_rows])
    assert len(validation_rows) == 25 and len(fit_rows) + len(validation_rows) == 100
    with pytest.raises(ValueError, match="validation_fraction = 0.01 of 10 rows"):
        validation_split(10, 0.01, 0)


def test_the_registry_builds_the_mlp_from_a_spec_with_a_checkpoint(tmp_path):
    model = build_encoder({"family": "mlp", "hidden_units": 7, "dropout": 0.1, "patience": 3, "layers": [1],
                           "alphas": [1.0]}, "cpu", tmp_path / "c.pt")
    assert isinstance(model, MLPEncoder)
    assert (model.hidden_units, model.dropout, model.settings.patience, model.checkpoint) == (7, 0.1, 3, tmp_path / "c.pt")


def test_unknown_response_family_is_refused():
    with pytest.raises(ValueError, match="unknown response families"):
        simulate_encoding(10, 4, {"quadratic": 2})

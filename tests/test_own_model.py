"""Bring your own model: a small MLP trained with Adam by a plain loop, wrapped with
``infcore.own_model.from_model``; every method that does not replay infcore's training runs on it,
TracInCP and influence functions equal captum's, and what is missing is named."""

import numpy as np
import pytest
import torch
from captum_oracle import captum_influence, captum_tracin_cp
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from infcore.errors import HessianTooLargeError, MissingPartError, NotPerExampleLossError
from infcore.methods import compute_scores
from infcore.own_model import as_split, from_model
from infcore.training import test_loss


class MLP(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.hidden = nn.Linear(6, hidden)
        self.head = nn.Linear(hidden, 3, bias=False)

    def features(self, x):
        return torch.tanh(self.hidden(x))

    def forward(self, x):
        return self.head(self.features(x))


class NoFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(6, 3)

    def forward(self, x):
        return self.layer(x)


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return as_split((x, (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 1).long()))


def fit(data, seed=0, steps=40, lr=0.05):
    """Full-batch Adam; a checkpoint every 10 steps."""
    torch.manual_seed(seed)
    net = MLP()
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    checkpoints = []
    for step in range(steps):
        optimiser.zero_grad()
        nn.functional.cross_entropy(net(data.x), data.y).backward()
        optimiser.step()
        if step % 10 == 9:
            checkpoints.append({k: v.clone() for k, v in net.state_dict().items()})
    return from_model(net, loss=nn.CrossEntropyLoss(reduction="none"), checkpoints=checkpoints,
                      lrs=lr)


@pytest.fixture(scope="module")
def setup(one_thread):
    train, test = _data(30, 0), _data(7, 1)
    return fit(train), train, test


@pytest.mark.parametrize("method, options", [
    ("grad_dot", {}), ("grad_cos", {}), ("tracin_cp", {}), ("representer", {"lam": 1e-2}),
    ("influence_function", {"damping": "auto"})])
def test_every_method_runs_on_an_own_model(setup, method, options):
    trained, train, test = setup
    scores = compute_scores(method, trained, train, test, **options)
    assert scores.shape == (len(test), len(train)) and np.all(np.isfinite(scores))


def test_tracin_cp_equals_captum_on_an_adam_trained_model(setup, tmp_path):
    trained, train, test = setup
    ours = compute_scores("tracin_cp", trained, train, test)
    theirs = captum_tracin_cp(trained, train, test, tmp_path)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5 * np.abs(ours).max())


def test_influence_function_equals_captum(setup, tmp_path):
    trained, train, test = setup
    hessian_reg = 3.0  # damping 0.1, above minus the smallest eigenvalue of H (about 0.034)
    ours = compute_scores("influence_function", trained, train, test,
                          damping=hessian_reg / len(train))
    theirs = captum_influence(trained, train, test, tmp_path, hessian_reg)
    np.testing.assert_allclose(ours, len(train) * theirs, rtol=0, atol=1e-3 * np.abs(ours).max())


def test_leave_one_out_retrains_with_the_users_function(setup):
    trained, train, test = setup
    scores = compute_scores("leave_one_out", trained, train, test, retrain=fit)
    without_3 = fit(train.subset([i for i in range(len(train)) if i != 3]))
    expected = (test_loss(without_3, test) - test_loss(trained, test)).numpy()
    np.testing.assert_allclose(scores[:, 3], expected, rtol=1e-12, atol=0)


def test_checkpoints_from_files(setup, tmp_path):
    trained, train, test = setup
    paths = []
    for k, params in enumerate(trained.checkpoints):
        paths.append(tmp_path / f"{k}.pt")
        torch.save(params, paths[-1])
    from_files = from_model(trained.model, checkpoints=paths, lrs=trained.lrs)
    np.testing.assert_array_equal(compute_scores("tracin_cp", from_files, train, test),
                                  compute_scores("tracin_cp", trained, train, test))


def test_data_as_tensors_dataset_or_loader():
    split = _data(10, 0)
    dataset = TensorDataset(split.x, split.y)
    for data in (dataset, DataLoader(dataset, batch_size=3)):
        converted = as_split(data)
        assert torch.equal(converted.x, split.x) and torch.equal(converted.y, split.y)
    with pytest.raises(ValueError, match="shuffle=False"):
        as_split(DataLoader(dataset, batch_size=3, shuffle=True))


def test_missing_parts_are_named(setup):
    trained, train, test = setup
    bare = from_model(trained.model)
    with pytest.raises(MissingPartError, match="checkpoints"):
        compute_scores("tracin_cp", bare, train, test)
    with pytest.raises(MissingPartError, match="retrain="):
        compute_scores("leave_one_out", bare, train, test)
    with pytest.raises(MissingPartError, match="replay"):
        compute_scores("tracin_ideal", bare, train, test)
    with pytest.raises(MissingPartError, match="features"):
        compute_scores("representer", from_model(NoFeatures()), train, test, lam=0.1)
    with pytest.raises(MissingPartError, match="lrs="):
        from_model(trained.model, checkpoints=trained.checkpoints)


def test_a_reduced_loss_is_refused(setup):
    trained, train, test = setup
    with pytest.raises(NotPerExampleLossError, match="reduction='none'"):
        from_model(trained.model, loss=nn.CrossEntropyLoss())
    mean_loss = from_model(trained.model, loss=lambda out, y: nn.functional.cross_entropy(out, y))
    with pytest.raises(NotPerExampleLossError, match=r"shape \(1,\)"):
        compute_scores("grad_dot", mean_loss, train, test)


def test_too_many_parameters_for_an_exact_hessian(setup):
    trained, train, test = setup
    with pytest.raises(HessianTooLargeError, match=r"max_params=10 .* about [0-9.]+ GB"):
        compute_scores("influence_function", trained, train, test, max_params=10)

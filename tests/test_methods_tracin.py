"""TracInCP against captum's TracInCP; TracInIdeal against a hand-written SGD loop and the
telescoping identity (a test example's scores sum to its loss at initialisation minus its final
loss)."""

import copy

import numpy as np
import pytest
import torch
from captum_oracle import captum_tracin_cp

from infcore.data import load_mnist
from infcore.methods.tracin import tracin_cp, tracin_ideal
from infcore.models import init_params
from infcore.training import TrainConfig, epoch_order, per_example_loss, train


@pytest.fixture(scope="module")
def splits():
    return load_mnist(n_train=40, n_test=10, seed=0)


@pytest.fixture(scope="module")
def sgd_model(splits):
    """Batch size 1, two epochs: the setting of TracInIdeal."""
    return train(TrainConfig(epochs=2, batch_size=1, lr=0.05), splits[0])


def test_tracin_cp_matches_captum(splits, tmp_path):
    train_split, test_split = splits
    trained = train(TrainConfig(epochs=3, batch_size=8), train_split)
    expected = captum_tracin_cp(trained, train_split, test_split, tmp_path)
    scores = tracin_cp(trained, train_split, test_split)
    assert scores.shape == (10, 40)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_tracin_ideal_telescopes(splits, sgd_model):
    train_split, test_split = splits
    scores = tracin_ideal(sgd_model, train_split, test_split)
    initial = init_params(sgd_model.model, sgd_model.config.init_seed)
    with torch.no_grad():
        first = per_example_loss(sgd_model.model, initial, test_split.x, test_split.y).double()
        last = per_example_loss(sgd_model.model, sgd_model.params, test_split.x, test_split.y)
    np.testing.assert_allclose(scores.sum(axis=1), (first - last.double()).numpy(), atol=1e-5)


def hand_written_tracin_ideal(trained, train_split, test_split):
    """The definition step by step: one example per SGD step, its change of every test loss."""
    config = trained.config
    params = init_params(trained.model, config.init_seed)
    expected = np.zeros((len(test_split), len(train_split)))

    def test_losses(p):
        with torch.no_grad():
            return per_example_loss(trained.model, p, test_split.x, test_split.y).double().numpy()

    for epoch in range(config.epochs):
        for i in epoch_order(len(train_split), config.order_seed, epoch).tolist():
            leaves = {k: p.detach().requires_grad_() for k, p in params.items()}
            loss = per_example_loss(trained.model, leaves, train_split.x[i : i + 1],
                                    train_split.y[i : i + 1]).mean()
            grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
            updated = {k: (p - config.lr * (grads[k] + config.weight_decay * p)).detach()
                       for k, p in params.items()}
            expected[:, i] += test_losses(params) - test_losses(updated)
            params = updated
    return expected


@pytest.mark.parametrize("n_train, epochs", [(40, 2), (37, 1)])
def test_tracin_ideal_matches_hand_written_sgd(splits, n_train, epochs):
    # 80 steps fill whole blocks of the test losses evaluated together (8 states); 37 end with a
    # partial block
    train_split, test_split = splits[0].subset(range(n_train)), splits[1]
    trained = train(TrainConfig(epochs=epochs, batch_size=1, lr=0.05), train_split)
    expected = hand_written_tracin_ideal(trained, train_split, test_split)
    scores = tracin_ideal(trained, train_split, test_split)
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-6)


def test_tracin_ideal_with_a_left_out_example(splits):
    train_split, test_split = splits
    trained = train(TrainConfig(epochs=1, batch_size=1), train_split, exclude=3)
    scores = tracin_ideal(trained, train_split, test_split)
    assert np.all(scores[:, 3] == 0) and np.all(scores.any(axis=0)[np.arange(40) != 3])


def test_tracin_ideal_rejects_batches_and_foreign_weights(splits, sgd_model):
    train_split, test_split = splits
    batched = train(TrainConfig(epochs=1, batch_size=8), train_split)
    with pytest.raises(ValueError, match="batch_size=1"):
        tracin_ideal(batched, train_split, test_split)
    foreign = copy.copy(sgd_model)
    foreign.params = {k: p + 1e-3 for k, p in sgd_model.params.items()}
    with pytest.raises(ValueError, match="does not reproduce trained.params"):
        tracin_ideal(foreign, train_split, test_split)

"""Representer points: the decomposition of the refitted logits, and the refit against sklearn."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn

from infcore.data import load_mnist
from infcore.methods.representer import last_hidden, refit_last_layer, representer, representer_weights
from infcore.models import SmallCNN
from infcore.training import TrainConfig, cross_entropy, train


@pytest.fixture(scope="module")
def task():
    train_split, test_split = load_mnist(n_train=40, n_test=10, seed=0)
    trained = train(TrainConfig(epochs=2, batch_size=8, weight_decay=0.01), train_split)
    return trained, train_split, test_split


def test_scores_sum_to_the_refitted_logit_of_the_test_label(task):
    trained, train_split, test_split = task
    alpha, features, weight = representer_weights(trained, train_split)
    test_features = last_hidden(trained.model, trained.params, test_split.x).double()
    logits = test_features @ weight.T
    # Every logit, for both classes, is the sum of the training examples' terms.
    torch.testing.assert_close(test_features @ features.T @ alpha, logits, rtol=0, atol=1e-6)
    scores = representer(trained, train_split, test_split)
    assert scores.shape == (10, 40) and scores.dtype == np.float64
    own = logits[torch.arange(len(test_split)), test_split.y].numpy()
    np.testing.assert_allclose(scores.sum(axis=1), own, rtol=0, atol=1e-6)


def test_refit_matches_sklearn_logistic_regression(task):
    """With two logits the optimum has W[1] = -W[0], and W[1] - W[0] solves binary logistic
    regression with penalty (lam / 2) ||w||^2 on the mean loss, i.e. sklearn's C = 1 / (lam n)."""
    trained, train_split, _ = task
    lam = trained.config.weight_decay / 2
    _, features, weight = representer_weights(trained, train_split)
    reference = LogisticRegression(C=1 / (lam * len(train_split)), fit_intercept=False,
                                   solver="newton-cholesky", tol=1e-12, max_iter=1000)
    reference.fit(features.numpy(), train_split.y.numpy())
    np.testing.assert_allclose(weight[0].numpy(), -weight[1].numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose((weight[1] - weight[0]).numpy(), reference.coef_[0], rtol=1e-6,
                               atol=1e-8)


def test_lam_must_be_positive(task):
    trained, train_split, test_split = task
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        representer(trained, train_split, test_split, lam=0.0)
    unpenalised = train(TrainConfig(epochs=1, batch_size=8, weight_decay=0.0), train_split)
    with pytest.raises(ValueError, match="weight_decay > 0"):
        representer(unpenalised, train_split, test_split)


class BiasedHead(SmallCNN):
    """The small CNN with a bias in its last layer: logits are no longer features @ W.T."""

    def __init__(self) -> None:
        super().__init__()
        self.fc2 = nn.Linear(16, 2, bias=True)


def test_last_layer_with_bias_is_rejected(task):
    _, train_split, test_split = task
    trained = train(TrainConfig(epochs=1, batch_size=8), train_split, model=BiasedHead())
    with pytest.raises(ValueError, match=r"logits are features\(x\) @ W.T"):
        representer(trained, train_split, test_split)


@pytest.mark.parametrize("offset", [1e8, 1e10])
def test_refit_converges_when_the_objective_is_lost_in_rounding(offset):
    # Terms of +-offset cancel in the mean but round it at offset * 1e-16: near the optimum the
    # Newton decrease is below that noise, the case of a paper-profile model on page 5 (gradient
    # norm stuck at 2.2e-10 > 1e-10 while the line search halved every step to nothing). The
    # offset is constant in the weights, so the optimum is that of the plain cross-entropy.
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 8, generator=generator)
    y = (features[:, 0] + 0.5 * torch.randn(300, generator=generator) > 0).long()
    signs = torch.ones(300, dtype=torch.float64)
    signs[1::2] = -1
    plain = refit_last_layer(features, y, torch.zeros(2, 8), 1e-3)
    noisy = refit_last_layer(features, y, torch.zeros(2, 8), 1e-3,
                             loss=lambda logits, t: cross_entropy(logits, t) + offset * signs)
    torch.testing.assert_close(noisy, plain, rtol=0, atol=1e-9)

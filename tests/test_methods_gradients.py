"""Per-example gradients, Grad-Dot and Grad-Cos against a loop of single-example autograd calls."""

import copy

import numpy as np
import pytest
import torch

from infcore.data import load_mnist
from infcore.methods.gradients import grad_cos, grad_dot, per_example_grads
from infcore.training import TrainConfig, per_example_loss, train


@pytest.fixture(scope="module")
def task():
    train_split, test_split = load_mnist(n_train=40, n_test=10, seed=0)
    trained = train(TrainConfig(epochs=2, batch_size=8), train_split)
    return trained, train_split, test_split


def loop_grads(trained, split):
    """One ``torch.autograd.grad`` call per example: the brute-force oracle, shape (n, P)."""
    rows = []
    for i in range(len(split)):
        leaves = {k: p.detach().clone().requires_grad_() for k, p in trained.params.items()}
        loss = per_example_loss(trained.model, leaves, split.x[i : i + 1], split.y[i : i + 1])[0]
        grads = torch.autograd.grad(loss, list(leaves.values()))
        rows.append(torch.cat([g.reshape(-1) for g in grads]).double())
    return torch.stack(rows)


def test_per_example_grads_match_loop_in_chunks(task):
    trained, train_split, _ = task
    fast = per_example_grads(trained.model, trained.params, train_split.x, train_split.y,
                             chunk_size=7)
    assert fast.shape == (40, 3008)
    np.testing.assert_allclose(fast.double(), loop_grads(trained, train_split), rtol=0, atol=1e-6)


def test_grad_dot_and_grad_cos_match_loop(task):
    trained, train_split, test_split = task
    g_train, g_test = loop_grads(trained, train_split), loop_grads(trained, test_split)
    dot = (g_test @ g_train.T).numpy()
    cos = dot / np.outer(g_test.norm(dim=1), g_train.norm(dim=1))
    scores = grad_dot(trained, train_split, test_split)
    assert scores.shape == (10, 40) and scores.dtype == np.float64
    np.testing.assert_allclose(scores, dot, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_cos(trained, train_split, test_split), cos, rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunk_size", [0, 2.5, True])
def test_per_example_grads_rejects_bad_chunk_size(task, chunk_size):
    trained, train_split, _ = task
    with pytest.raises(ValueError, match="chunk_size"):
        per_example_grads(trained.model, trained.params, train_split.x, train_split.y,
                          chunk_size=chunk_size)


def test_grad_cos_of_a_zero_gradient_is_zero(task):
    """With all weights zero every hidden unit is 0 and every gradient vanishes."""
    trained, train_split, test_split = task
    zero = copy.copy(trained)
    zero.params = {k: torch.zeros_like(p) for k, p in trained.params.items()}
    assert not grad_dot(zero, train_split, test_split).any()
    assert not grad_cos(zero, train_split, test_split).any()

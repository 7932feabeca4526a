"""The exact Hessian against torch.func.hessian, and influence functions against retraining a
convex model (L2-regularised logistic regression) with an independent solver (scipy)."""

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.func import hessian as torch_hessian

from infcore.data import Split
from infcore.methods.influence import (
    AUTO_DAMPING_MARGIN,
    _layer_chunks,
    hessian,
    influence_function,
    smallest_working_damping,
)
from infcore.training import TrainConfig, TrainedModel

N_TRAIN, N_TEST, DIM, WEIGHT_DECAY = 200, 10, 3, 0.05


class TinyNet(nn.Module):
    """A convolution, max-pooling and two linear layers on 6x6 images: every kind of layer of
    the small CNN, small enough for ``torch.func.hessian`` over all its parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3)
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.fc2(torch.relu(self.fc1(h.flatten(1))))


def _tiny(seed: int) -> tuple[TinyNet, dict, Split]:
    """TinyNet in float64, its parameters and 12 random images."""
    model = TinyNet().double()
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    data = Split(torch.rand(12, 1, 6, 6, generator=generator, dtype=torch.float64),
                 torch.randint(0, 2, (12,), generator=generator))
    return model, params, data


def _reference_hessian(model: nn.Module, params: dict, data: Split, weight_decay: float):
    """``torch.func.hessian`` of the mean cross-entropy plus the L2 term, over all parameters
    flattened in the order of ``params``."""
    names = list(params)

    def objective(theta):
        pieces = theta.split([params[k].numel() for k in names])
        unflat = {k: v.reshape(params[k].shape) for k, v in zip(names, pieces)}
        logits = functional_call(model, unflat, (data.x,))
        return F.cross_entropy(logits, data.y) + 0.5 * weight_decay * (theta * theta).sum()

    return torch_hessian(objective)(torch.cat([params[k].reshape(-1) for k in names]))


def test_hessian_matches_torch_func_hessian():
    model, params, data = _tiny(0)
    expected = _reference_hessian(model, params, data, 0.01)
    result = hessian(model, params, data, 0.01, chunk_size=5)
    size = sum(p.numel() for p in params.values())
    assert result.shape == (size, size)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-10)


def test_later_layers_take_larger_chunks_with_the_same_hessian():
    model, params, data = _tiny(1)
    # outputs per example: conv 2x4x4 = 32, fc1 4, fc2 2, so from each layer on 38, 6 and 2;
    # chunks 5, 5 * sqrt(38 / 6) = 12.6 and 5 * sqrt(38 / 2) = 21.8, the last capped at fc2's 8
    layers = [["conv.weight", "conv.bias"], ["fc1.weight", "fc1.bias"], ["fc2.weight"]]
    assert _layer_chunks(model, params, data, layers, 5) == [5, 13, 8]
    one_at_a_time = hessian(model, params, data, 0.01, chunk_size=1)
    torch.testing.assert_close(hessian(model, params, data, 0.01, chunk_size=5), one_at_a_time,
                               rtol=0, atol=1e-12)


class _FunctionalHead(nn.Module):
    """A submodule whose parameters the forward pass uses directly, without calling it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.fc(x)), self.head.weight)


def test_a_parameter_outside_called_modules_keeps_the_chunk_size():
    torch.manual_seed(0)
    model = _FunctionalHead().double()
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    data = Split(torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,)))
    layers = [["fc.weight", "fc.bias"], ["head.weight"]]
    assert _layer_chunks(model, params, data, layers, 3) == [3, 3]
    torch.testing.assert_close(hessian(model, params, data, 0.01, chunk_size=3),
                               _reference_hessian(model, params, data, 0.01), rtol=0, atol=1e-10)


# --- a convex model: softmax regression with two logits, no bias, L2 penalty ---

def _task():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N_TRAIN + N_TEST)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)) + np.where(y[:, None] == 1, 0.7, -0.7)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _losses(w, x, y):
    logits = x @ w.reshape(2, DIM).T
    return np.logaddexp(logits[:, 0], logits[:, 1]) - logits[np.arange(len(y)), y]


def _fit(x, y, weights):
    """argmin_w sum_i weights_i * CE_i(w) + WEIGHT_DECAY / 2 * ||w||^2, by scipy's trust-region
    Newton method and numpy Newton steps, with the closed-form gradient and Hessian."""

    def parts(w):
        logits = x @ w.reshape(2, DIM).T
        log_norm = np.logaddexp(logits[:, 0], logits[:, 1])
        prob = np.exp(logits - log_norm[:, None])
        residual = prob.copy()
        residual[np.arange(len(y)), y] -= 1
        value = weights @ (log_norm - logits[np.arange(len(y)), y]) + 0.5 * WEIGHT_DECAY * w @ w
        gradient = ((residual * weights[:, None]).T @ x).ravel() + WEIGHT_DECAY * w
        curvature = prob[:, :, None] * np.eye(2) - prob[:, :, None] * prob[:, None, :]
        hess = np.einsum("n,nab,nd,ne->adbe", weights, curvature, x, x).reshape(2 * DIM, 2 * DIM)
        return value, gradient, hess + WEIGHT_DECAY * np.eye(2 * DIM)

    result = scipy.optimize.minimize(lambda w: parts(w)[:2], np.zeros(2 * DIM), jac=True,
                                     hess=lambda w: parts(w)[2], method="trust-exact")
    # The trust region stops once the objective no longer changes in float64 (gradient ~1e-10);
    # plain Newton steps from there reach the gradient norm the tests need.
    w = result.x
    for _ in range(5):
        _, gradient, hess = parts(w)
        if np.linalg.norm(gradient) < 1e-14:
            break
        w = w - np.linalg.solve(hess, gradient)
    assert np.linalg.norm(parts(w)[1]) < 1e-14
    return w


@pytest.fixture(scope="module")
def convex():
    x, y, x_test, y_test = _task()
    w = _fit(x, y, np.full(N_TRAIN, 1 / N_TRAIN))
    model = nn.Linear(DIM, 2, bias=False).double()
    params = {"weight": torch.tensor(w.reshape(2, DIM))}
    trained = TrainedModel(model=model, params=params, checkpoints=[params], lrs=[0.1],
                           config=TrainConfig(weight_decay=WEIGHT_DECAY))
    train_split = Split(torch.tensor(x), torch.tensor(y))
    test_split = Split(torch.tensor(x_test), torch.tensor(y_test))
    scores = influence_function(trained, train_split, test_split, damping=0.0)
    return trained, train_split, test_split, w, scores


def test_influence_is_the_derivative_of_removing_an_example(convex):
    """Down-weighting example i by eps changes test losses by eps * scores[:, i] / n to first
    order; central differences of scipy refits (error O(eps^2)) measure that derivative."""
    _, train_split, test_split, _, scores = convex
    x, y = train_split.x.numpy(), train_split.y.numpy()
    eps, checked = 1e-4, 20
    derivative = np.empty((N_TEST, checked))
    for i in range(checked):
        shifted = []
        for sign in (1, -1):
            weights = np.full(N_TRAIN, 1 / N_TRAIN)
            weights[i] -= sign * eps / N_TRAIN
            shifted.append(_losses(_fit(x, y, weights), test_split.x.numpy(), test_split.y.numpy()))
        derivative[:, i] = (shifted[0] - shifted[1]) / (2 * eps)
    np.testing.assert_allclose(scores[:, :checked] / N_TRAIN, derivative, rtol=1e-4, atol=1e-8)


def test_influence_approximates_leave_one_out_retraining(convex):
    _, train_split, test_split, w, scores = convex
    x, y = train_split.x.numpy(), train_split.y.numpy()
    x_test, y_test = test_split.x.numpy(), test_split.y.numpy()
    with_all = _losses(w, x_test, y_test)
    loo = np.stack([
        _losses(_fit(np.delete(x, i, 0), np.delete(y, i), np.full(N_TRAIN - 1, 1 / (N_TRAIN - 1))),
                x_test, y_test) - with_all
        for i in range(N_TRAIN)
    ], axis=1)
    # Second-order effects make leave-one-out somewhat larger than its linearisation.
    assert scipy.stats.pearsonr(scores.ravel(), loo.ravel())[0] >= 0.99
    slope = np.polyfit(scores.ravel() / N_TRAIN, loo.ravel(), 1)[0]
    assert 0.95 <= slope <= 1.1


def test_precomputed_hessian_and_damping(convex):
    trained, train_split, test_split, _, scores = convex
    hess = hessian(trained.model, trained.params, train_split, WEIGHT_DECAY)
    np.testing.assert_allclose(
        influence_function(trained, train_split, test_split, damping=0.0, hess=hess), scores,
        rtol=1e-10, atol=1e-12)
    # Closed-form gradients of softmax regression, (p - onehot(y)) outer x, and numpy's solve.
    def gradients(split):
        x, y = split.x.numpy(), split.y.numpy()
        residual = scipy.special.softmax(x @ trained.params["weight"].numpy().T, axis=1)
        residual[np.arange(len(y)), y] -= 1
        return np.einsum("nc,nd->ncd", residual, x).reshape(len(y), -1)

    expected = gradients(test_split) @ np.linalg.solve(
        hess.numpy() + 0.5 * np.eye(2 * DIM), gradients(train_split).T)
    damped = influence_function(trained, train_split, test_split, damping=0.5, hess=hess)
    np.testing.assert_allclose(damped, expected, rtol=1e-8, atol=1e-12)


def test_indefinite_hessian_names_smallest_eigenvalue(convex):
    trained, train_split, test_split, _, _ = convex
    hess = torch.diag(torch.tensor([-0.25, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"smallest eigenvalue of the Hessian is -0\.25.*> 0\.25"):
        influence_function(trained, train_split, test_split, damping=0.1, hess=hess)
    assert np.isfinite(influence_function(trained, train_split, test_split, damping=0.3,
                                          hess=hess)).all()


def test_auto_damping_is_the_smallest_working_one_plus_the_margin(convex):
    trained, train_split, test_split, _, _ = convex
    hess = torch.diag(torch.tensor([-0.25, 1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64))
    assert smallest_working_damping(hess) == pytest.approx(0.25 + AUTO_DAMPING_MARGIN, abs=1e-12)
    np.testing.assert_allclose(
        influence_function(trained, train_split, test_split, damping="auto", hess=hess),
        influence_function(trained, train_split, test_split, damping=0.25 + AUTO_DAMPING_MARGIN,
                           hess=hess), rtol=1e-12)


@pytest.mark.parametrize("options, match", [
    ({"damping": -1.0}, "damping"),
    ({"damping": float("nan")}, "damping"),
    ({"hess": torch.eye(3)}, r"hess must have shape \(6, 6\)"),
])
def test_influence_function_rejects_bad_options(convex, options, match):
    trained, train_split, test_split, _, _ = convex
    with pytest.raises(ValueError, match=match):
        influence_function(trained, train_split, test_split, **options)

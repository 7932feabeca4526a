"""Tests of the 2-D classification toys: the fit against scipy, the removal effects, and the claims
of the "Rethinking influence" page as checks that fail if the effect vanishes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from infcore.methods import leave_one_out, tracin_cp, tracin_ideal
from infcore.models import init_params
from infcore.toys import (
    TOY_C,
    LinearBoundary,
    LogisticModel,
    fit_boundary,
    identical_class_toy,
    identical_instance_toy,
    loo_credit_decomposition,
    lr_weighted_grad_dot,
    near_duplicates_toy,
    removal_effect,
    toy_loo_scores,
    toy_split,
)
from infcore.training import TrainConfig, epoch_order, train


def _scipy_fit(x: np.ndarray, y: np.ndarray, C: float) -> np.ndarray:
    """Minimise ||w||^2 / 2 + C * sum log(1 + exp(-s (w x + b))) (bias not penalised) with BFGS."""
    s = np.where(y == 1, 1.0, -1.0)

    def objective(theta):
        margin = s * (x @ theta[:2] + theta[2])
        value = 0.5 * theta[:2] @ theta[:2] + C * np.logaddexp(0.0, -margin).sum()
        weight = -C * s / (1.0 + np.exp(margin))
        gradient = np.concatenate([theta[:2] + x.T @ weight, [weight.sum()]])
        return value, gradient

    result = minimize(objective, np.zeros(3), jac=True, method="BFGS", options={"gtol": 1e-10})
    return result.x


def test_fit_matches_scipy_minimiser():
    toy = near_duplicates_toy()
    boundary = fit_boundary(toy.x_train, toy.y_train)
    theta = _scipy_fit(toy.x_train, toy.y_train, TOY_C)
    np.testing.assert_allclose(boundary.weights, theta[:2], rtol=0, atol=1e-5)
    assert boundary.bias == pytest.approx(theta[2], abs=1e-5)


def test_log_loss_and_line():
    boundary = LinearBoundary(weights=np.array([2.0, -1.0]), bias=0.5)
    x = np.array([[0.0, 0.0], [1.0, 3.0], [-2.0, 1.0]])
    y = np.array([1, 0, 0])
    p1 = 1.0 / (1.0 + np.exp(-(x @ boundary.weights + 0.5)))
    expected = -np.log(np.where(y == 1, p1, 1 - p1))
    np.testing.assert_allclose(boundary.log_loss(x, y), expected, rtol=1e-12)
    np.testing.assert_array_equal(boundary.predict(x), (p1 > 0.5).astype(int))
    x1 = np.array([-1.0, 0.0, 2.0])
    on_line = np.column_stack([x1, boundary.line(x1)])
    np.testing.assert_allclose(boundary.decision(on_line), 0.0, atol=1e-12)
    assert boundary.angle_deg == pytest.approx(np.degrees(np.arctan2(-1.0, 2.0)), abs=1e-12)


def test_removal_effect_matches_manual_refit_and_loo_columns():
    toy = identical_class_toy()
    removed = [0, 16]
    effect = removal_effect(toy, removed)
    kept = np.setdiff1d(np.arange(len(toy.y_train)), removed)
    full = _scipy_fit(toy.x_train, toy.y_train, TOY_C)
    without = _scipy_fit(toy.x_train[kept], toy.y_train[kept], TOY_C)

    def loss(theta):
        margin = np.where(toy.y_test == 1, 1.0, -1.0) * (toy.x_test @ theta[:2] + theta[2])
        return np.logaddexp(0.0, -margin)

    np.testing.assert_allclose(effect.test_loss_change, loss(without) - loss(full), atol=1e-5)
    cos = full[:2] @ without[:2] / np.linalg.norm(full[:2]) / np.linalg.norm(without[:2])
    assert abs(effect.rotation_deg) == pytest.approx(np.degrees(np.arccos(cos)), abs=1e-3)

    loo = toy_loo_scores(toy)
    assert loo.shape == (len(toy.y_test), len(toy.y_train))
    np.testing.assert_allclose(loo[:, 3], removal_effect(toy, [3]).test_loss_change, rtol=0, atol=0)


def test_rotation_is_wrapped_into_half_turn():
    toy = near_duplicates_toy()
    for group in toy.groups.values():
        rotation = removal_effect(toy, group).rotation_deg
        assert -180.0 <= rotation < 180.0


def test_near_duplicates_one_removal_small_both_large():
    toy = near_duplicates_toy()
    for name, pair in toy.groups.items():
        target = 0 if name == "pair_class1" else 1  # the test point next to the pair
        singles = [removal_effect(toy, [i]) for i in pair]
        both = removal_effect(toy, pair)
        single_change = max(abs(e.test_loss_change[target]) for e in singles)
        single_rotation = max(abs(e.rotation_deg) for e in singles)
        assert both.test_loss_change[target] > 10 * sum(e.test_loss_change[target] for e in singles)
        assert both.test_loss_change[target] > 0.1 > single_change
        assert abs(both.rotation_deg) > 5 * single_rotation
        assert abs(both.rotation_deg) > 10.0


def test_near_duplicates_are_symmetric():
    toy = near_duplicates_toy()
    np.testing.assert_allclose(
        toy.x_train[toy.groups["pair_class0"]], -toy.x_train[toy.groups["pair_class1"]]
    )
    boundary = fit_boundary(toy.x_train, toy.y_train)
    assert boundary.bias == pytest.approx(0.0, abs=1e-6)


def test_identical_instance_toy_names_the_wrong_point():
    toy = identical_instance_toy()
    boundary = fit_boundary(toy.x_train, toy.y_train)
    copied, support = toy.groups["copied"][0], toy.groups["support"][0]
    np.testing.assert_array_equal(toy.x_test[0], toy.x_train[copied])
    assert toy.copy_of[0] == copied
    assert boundary.predict(toy.x_test)[0] == toy.y_test[0]
    loo = toy_loo_scores(toy)
    assert int(np.argmax(loo[0])) == support
    assert loo[0, support] > 10 * max(loo[0, copied], 1e-4)


def test_identical_class_toy_evidence_from_other_class():
    toy = identical_class_toy()
    boundary = fit_boundary(toy.x_train, toy.y_train)
    anchor = toy.groups["anchor"][0]
    assert boundary.predict(toy.x_test)[0] == 0
    assert toy.y_train[anchor] == 1
    loo = toy_loo_scores(toy)
    order = np.argsort(-loo[0])
    assert order[0] == anchor
    assert loo[0, anchor] > 3 * loo[0, order[1]]


def test_toys_are_deterministic_and_seeded():
    a, b, c = near_duplicates_toy(seed=3), near_duplicates_toy(seed=3), near_duplicates_toy(seed=4)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: fit_boundary(np.zeros((3, 3)), np.array([0, 1, 0])), "x_train must have shape"),
        (lambda: fit_boundary(np.zeros((3, 2)), np.array([0, 1])), "y_train must have shape"),
        (lambda: fit_boundary(np.zeros((3, 2)), np.array([0, 2, 1])), "classes 0 and 1"),
        (lambda: fit_boundary(np.zeros((2, 2)), np.array([1, 1])), "both classes"),
        (lambda: fit_boundary(np.eye(2), np.array([0, 1]), C=0.0), "C must be"),
        (lambda: removal_effect(near_duplicates_toy(), []), "at least one"),
        (lambda: removal_effect(near_duplicates_toy(), [1, 1]), "without repeats"),
        (lambda: removal_effect(near_duplicates_toy(), [99]), "training indices in"),
        (lambda: near_duplicates_toy(seed=-1), "seed must be"),
        (lambda: near_duplicates_toy(n_bulk=1), "n_bulk must be"),
        (lambda: near_duplicates_toy(gap=0.0), "gap must be"),
        (lambda: LinearBoundary(np.array([1.0, 0.0]), 0.0).line(np.zeros(2)), "vertical"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_toy_boundaries_figure():
    import matplotlib.pyplot as plt

    from infcore.plots import toy_boundaries

    toy = identical_instance_toy()
    effect = removal_effect(toy, toy.groups["support"])
    fig = toy_boundaries(
        toy,
        [("all", {"all points": effect.full}, []),
         ("without", {"all points": effect.full, "without": effect.without}, effect.removed)],
        markers={"copied": "^", "support": "P"},
    )
    try:
        assert len(fig.axes) == 2
        assert [len(ax.get_lines()) for ax in fig.axes] == [1, 2]
        line = fig.axes[1].get_lines()[1]
        points = np.column_stack(line.get_data())
        np.testing.assert_allclose(effect.without.decision(points), 0.0, atol=1e-9)
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="panels must hold"):
        toy_boundaries(toy, [], markers={})
    with pytest.raises(ValueError, match="markers names groups"):
        toy_boundaries(toy, [("all", {"all points": effect.full}, [])], markers={"anchor": "s"})


# --- SGD on a toy -----------------------------------------------------------------------------------



def _sgd_setup(order_seed: int = 0, epochs: int = 3):
    toy = near_duplicates_toy()
    train_split, test_split = toy_split(toy.x_train, toy.y_train), toy_split(toy.x_test, toy.y_test)
    config = TrainConfig(epochs=epochs, lr=0.1, batch_size=1, init_seed=0, order_seed=order_seed)
    return toy, train_split, test_split, train(config, train_split, model=LogisticModel())


def test_logistic_model_and_toy_split():
    toy = near_duplicates_toy()
    split = toy_split(toy.x_train, toy.y_train)
    assert split.x.dtype == torch.float32 and split.x.shape == (len(toy.y_train), 2)
    assert split.y.dtype == torch.int64
    model = LogisticModel()
    w, b = model.linear.weight.detach(), model.linear.bias.detach()
    np.testing.assert_allclose(model(split.x).detach().numpy(), (split.x @ w.T + b).numpy(),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="y_split must have shape"):
        toy_split(toy.x_train, toy.y_train[:-1])


def _numpy_grads(params, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradients of softmax cross-entropy of a linear model, by hand: (n, 2 * 2 + 2)."""
    w = params["linear.weight"].double().numpy()
    b = params["linear.bias"].double().numpy()
    logits = x @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    residual = p - np.eye(2)[y]
    return np.concatenate([(residual[:, :, None] * x[:, None, :]).reshape(len(x), -1), residual],
                          axis=1)


def test_lr_weighted_grad_dot_matches_hand_gradients_and_tracin_cp():
    toy, train_split, test_split, trained = _sgd_setup()
    expected = np.zeros((len(toy.y_test), len(toy.y_train)))
    x_train, x_test = train_split.x.double().numpy(), test_split.x.double().numpy()
    for params, lr in zip(trained.checkpoints, trained.lrs):
        expected += lr * _numpy_grads(params, x_test, toy.y_test) @ _numpy_grads(
            params, x_train, toy.y_train).T
    result = lr_weighted_grad_dot(trained, train_split, test_split)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(result, tracin_cp(trained, train_split, test_split),
                               rtol=1e-12, atol=1e-12)


def test_loo_credit_decomposition_against_leave_one_out_and_tracin_ideal():
    toy, train_split, test_split, trained = _sgd_setup()
    examples = [16, 3]
    split = loo_credit_decomposition(trained, train_split, test_split, examples)
    np.testing.assert_array_equal(split.examples, examples)
    loo = leave_one_out(trained, train_split, test_split)  # batched retraining, an independent path
    np.testing.assert_allclose(split.loo, loo[:, examples], rtol=0, atol=1e-5)
    credit = tracin_ideal(trained, train_split, test_split)
    np.testing.assert_allclose(split.own_credit, credit[:, examples], rtol=0, atol=0)
    np.testing.assert_allclose(split.loo, split.own_credit + split.others_shift, rtol=0, atol=1e-9)
    # the telescoping that the split rests on: credits sum to L(W_0) - L(W_T)
    initial = _numpy_loss(init_params(trained.model, 0), test_split)
    final = _numpy_loss(trained.params, test_split)
    np.testing.assert_allclose(credit.sum(axis=1), initial - final, rtol=0, atol=1e-5)


def _numpy_loss(params, split) -> np.ndarray:
    w = params["linear.weight"].double().numpy()
    b = params["linear.bias"].double().numpy()
    logits = split.x.double().numpy() @ w.T + b
    log_norm = np.logaddexp.reduce(logits, axis=1)
    return log_norm - logits[np.arange(len(logits)), split.y.numpy()]


def test_state_dependence_claims():
    """The claims of the page: credits follow the data order; LOO is far from the own credit."""
    credits, firsts, runs = [], [], []
    for order_seed in (0, 1):
        toy, train_split, test_split, trained = _sgd_setup(order_seed=order_seed, epochs=5)
        pair = toy.groups["pair_class1"]
        runs.append(trained)
        credits.append(tracin_ideal(trained, train_split, test_split)[0, pair])
        order = epoch_order(len(train_split), order_seed, 0).tolist()
        firsts.append([order.index(i) for i in pair])
    for credit, first in zip(credits, firsts):
        assert np.argmax(credit) == np.argmin(first)
    assert np.argmax(credits[0]) != np.argmax(credits[1])
    split = loo_credit_decomposition(runs[0], train_split, test_split, pair[:1])
    assert abs(split.loo[0, 0] - split.own_credit[0, 0]) > 10 * abs(split.loo[0, 0])


def test_loo_credit_decomposition_errors():
    toy, train_split, test_split, trained = _sgd_setup(epochs=1)
    with pytest.raises(ValueError, match="examples must hold at least one"):
        loo_credit_decomposition(trained, train_split, test_split, [])
    with pytest.raises(ValueError, match="examples must hold training indices"):
        loo_credit_decomposition(trained, train_split, test_split, [len(toy.y_train)])
    without = train(trained.config, train_split, model=trained.model, exclude=0)
    with pytest.raises(ValueError, match="every training example"):
        loo_credit_decomposition(without, train_split, test_split, [1])

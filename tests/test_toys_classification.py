"""Tests of the 2-D classification toys: the fit against scipy, the removal effects, and the claims
of the "Rethinking influence" page as checks that fail if the effect vanishes."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from infcore.toys import (
    TOY_C,
    LinearBoundary,
    fit_boundary,
    identical_class_toy,
    identical_instance_toy,
    near_duplicates_toy,
    removal_effect,
    toy_loo_scores,
)


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
        assert -180.0 < rotation <= 180.0


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
        toy_boundaries(toy, [])

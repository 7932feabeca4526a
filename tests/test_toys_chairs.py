"""The chair regression against statsmodels' OLS influence diagnostics."""

import numpy as np
import pytest
import statsmodels.api as sm
from statsmodels.stats.outliers_influence import OLSInfluence

from infcore import toys


def _ols(points: np.ndarray):
    return sm.OLS(points[:, 1], sm.add_constant(points[:, 0])).fit()


@pytest.mark.parametrize(
    "points",
    [toys.CHAIRS, np.random.default_rng(0).normal(size=(12, 2)) * [3, 10] + [8, 80]],
    ids=["paper-chairs", "random"],
)
def test_cooks_distance_matches_statsmodels(points):
    expected = OLSInfluence(_ols(points)).cooks_distance[0]
    np.testing.assert_allclose(toys.cooks_distance(points), expected, rtol=1e-9, atol=1e-9)


def test_residual_mean_square_matches_statsmodels():
    assert toys.residual_mean_square(toys.CHAIRS) == pytest.approx(_ols(toys.CHAIRS).mse_resid, rel=1e-9)


def test_fit_and_loo_match_statsmodels():
    result = toys.chair_influence(toys.CHAIRS, leave_out=0, test_weight=10.0)
    full = _ols(toys.CHAIRS).params
    without = _ols(toys.CHAIRS[1:]).params
    assert (result.full.intercept, result.full.slope) == pytest.approx(tuple(full), rel=1e-9)
    assert (result.without.intercept, result.without.slope) == pytest.approx(tuple(without), abs=1e-9)
    # statsmodels' DFFIT-style quantity: change of the prediction at x=10 when row 0 is dropped
    predict = lambda p: p[0] + p[1] * 10.0  # noqa: E731
    assert result.loo_distance == pytest.approx(predict(without) - predict(full), abs=1e-9)
    # the paper's rounded figures: slope about 5.09, intercept about 44.3, slope 10 without the chair
    assert result.full.slope == pytest.approx(5.09, abs=0.01)
    assert result.full.intercept == pytest.approx(44.3, abs=0.05)
    assert result.without.slope == pytest.approx(10.0, abs=1e-9)


@pytest.mark.parametrize(
    "chairs, match",
    [
        (np.zeros((4, 3)), "shape"),
        (np.zeros((2, 2)) + [[1, 2], [3, 4]], "at least 3"),
        (np.array([[1.0, 2.0], [np.nan, 3.0], [2.0, 1.0]]), "finite"),
        (np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 1.0]]), "distinct weights"),
    ],
)
def test_bad_chairs_raise_a_clear_error(chairs, match):
    with pytest.raises(ValueError, match=match):
        toys.chair_influence(chairs)


def test_bad_leave_out_names_the_parameter():
    with pytest.raises(ValueError, match="leave_out must be in range"):
        toys.chair_influence(toys.CHAIRS, leave_out=4)


def test_points_on_a_line_have_no_cooks_distance():
    with pytest.raises(ValueError, match="residual variance"):
        toys.cooks_distance(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))

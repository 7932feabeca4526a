"""Tests of infcore.expected against hand-computed values and scipy."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from infcore.expected import expected_scores


def test_hand_computed_mean_and_standard_error():
    # Entry (0, 0) over three models: 1, 2, 6 -> mean 3, sample variance (4 + 1 + 9) / 2 = 7,
    # standard error sqrt(7 / 3). Entry (0, 1): 0, 0, 0 -> mean 0, standard error 0.
    scores = [np.array([[1.0, 0.0]]), np.array([[2.0, 0.0]]), np.array([[6.0, 0.0]])]
    mean, se = expected_scores(scores)
    np.testing.assert_allclose(mean, [[3.0, 0.0]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(se, [[math.sqrt(7 / 3), 0.0]], rtol=0, atol=1e-12)
    assert mean.dtype == np.float64 and se.dtype == np.float64


def test_list_and_stacked_array_agree_with_scipy():
    stacked = np.random.default_rng(0).normal(size=(5, 4, 6))
    mean, se = expected_scores(stacked)
    mean_list, se_list = expected_scores(list(stacked))
    np.testing.assert_array_equal(mean, mean_list)
    np.testing.assert_array_equal(se, se_list)
    np.testing.assert_allclose(mean, stacked.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(se, stats.sem(stacked, axis=0, ddof=1), rtol=1e-12, atol=0)


def test_single_model_gives_its_scores_and_nan_error():
    scores = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean, se = expected_scores(scores)
    np.testing.assert_array_equal(mean, scores[0])
    assert se.shape == (2, 3) and np.all(np.isnan(se))


def test_validation_errors():
    good = np.zeros((2, 3))
    with pytest.raises(ValueError, match="at least one model"):
        expected_scores([])
    with pytest.raises(ValueError, match=r"scores\[1\] has shape \(2, 2\)"):
        expected_scores([good, good[:, :2]])
    with pytest.raises(ValueError, match=r"scores\[0\] must be a score matrix"):
        expected_scores([good[0]])
    with pytest.raises(ValueError, match=r"shape \(n_models, n_test, n_train\)"):
        expected_scores(good)
    with pytest.raises(ValueError, match="finite"):
        expected_scores([good, np.full((2, 3), np.inf)])

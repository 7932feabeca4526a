"""Tests of infcore.stability against hand-computed values and scipy."""

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from infcore.stability import (
    MetricSummary,
    average_over_pairs,
    check_informative,
    compare,
    pairwise_stability,
    row_metrics,
    row_pearson,
    row_spearman,
    top_k,
    top_percentile_overlap,
)


def random_scores(seed, shape=(7, 30), ties=False):
    values = np.random.default_rng(seed).normal(size=shape)
    return np.round(values * 2) if ties else values


def overlap_oracle(a, b, k):
    """Top sets by sorting (score desc, index asc) in plain Python."""
    result = []
    for row_a, row_b in zip(a, b):
        top_a = {i for _, i in sorted((-s, i) for i, s in enumerate(row_a))[:k]}
        top_b = {i for _, i in sorted((-s, i) for i, s in enumerate(row_b))[:k]}
        result.append(100.0 * len(top_a & top_b) / k)
    return np.array(result)


# --- correlations -------------------------------------------------------------------------------


def test_hand_computed_correlations():
    # Row 0: a_c = (-1.5,-.5,.5,1.5), b_c = (-1.5,.5,-.5,1.5): r = 4 / 5.
    # Row 1: a_c = (-2,-1,0,3), b_c = (1,-1,0,0): r = -1 / sqrt(14 * 2); ranks of b are
    # (4,1,2.5,2.5), so Spearman = -1.5 / sqrt(5 * 4.5) = -1 / sqrt(10).
    a = np.array([[1.0, 2, 3, 4], [0, 1, 2, 5]])
    b = np.array([[1.0, 3, 2, 4], [2, 0, 1, 1]])
    np.testing.assert_allclose(row_pearson(a, b), [0.8, -1 / math.sqrt(28)], rtol=0, atol=1e-12)
    np.testing.assert_allclose(row_spearman(a, b), [0.8, -1 / math.sqrt(10)], rtol=0, atol=1e-12)


def test_spearman_ties_use_average_ranks():
    # Ranks of a: (1, 2.5, 2.5, 4); against 1..4: 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
    a = np.array([[1.0, 2, 2, 3]])
    b = np.array([[10.0, 20, 30, 40]])
    np.testing.assert_allclose(row_spearman(a, b), [math.sqrt(0.9)], rtol=0, atol=1e-12)
    assert row_spearman(a, b)[0] == pytest.approx(stats.spearmanr(a[0], b[0])[0], abs=1e-12)


@pytest.mark.parametrize("ties", [False, True])
def test_correlations_match_scipy(ties):
    a, b = random_scores(0, ties=ties), random_scores(1, ties=ties)
    pearson = [stats.pearsonr(x, y)[0] for x, y in zip(a, b)]
    spearman = [stats.spearmanr(x, y)[0] for x, y in zip(a, b)]
    np.testing.assert_allclose(row_pearson(a, b), pearson, rtol=0, atol=1e-12)
    np.testing.assert_allclose(row_spearman(a, b), spearman, rtol=0, atol=1e-12)


def test_perfect_and_reversed_agreement():
    a = random_scores(2)
    np.testing.assert_allclose(row_pearson(a, 3 * a + 1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(row_spearman(a, np.exp(a)), 1.0, rtol=0, atol=1e-12)
    assert np.all(row_pearson(a, np.exp(a)) < 1 - 1e-3)  # monotone but not linear
    np.testing.assert_allclose(row_pearson(a, -a), -1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(row_spearman(a, -a), -1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(top_percentile_overlap(a, 2 * a), 100.0)
    np.testing.assert_array_equal(top_percentile_overlap(a, -a), 0.0)


def test_constant_rows_give_nan_without_warning():
    a = np.array([[1.0, 2, 3, 4], [0.1, 0.1, 0.1, 0.1], [1.0, 2, 3, 4]])
    b = np.array([[4.0, 3, 2, 1], [4.0, 3, 2, 1], [5.0, 5, 5, 5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pearson, spearman = row_pearson(a, b), row_spearman(a, b)
        overlap = top_percentile_overlap(a, b, q=50)
    np.testing.assert_allclose(pearson, [-1.0, np.nan, np.nan], atol=1e-12)
    np.testing.assert_allclose(spearman, [-1.0, np.nan, np.nan], atol=1e-12)
    # k = 2; a constant row's top set is the lowest indices {0, 1}.
    np.testing.assert_array_equal(overlap, [0.0, 100.0, 0.0])
    # 0.1 - mean([0.1] * 3) is -1.4e-17, not 0: constancy is checked, not inferred from rounding.
    assert np.isnan(row_pearson([[0.1, 0.1, 0.1]], [[1.0, 2.0, 4.0]])[0])
    assert np.isnan(row_spearman([[1.0, 2.0, 4.0]], [[0.1, 0.1, 0.1]])[0])


# --- top-percentile overlap ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_train", "q", "k"),
    [(200, 90, 20), (21, 90, 3), (10, 90, 1), (10, 70, 3), (1000, 90.1, 99), (5, 99.9, 1)]
    + [(4, 0, 4)],
)
def test_top_k(n_train, q, k):
    assert top_k(n_train, q) == k


def test_hand_computed_overlap():
    a = np.array([[9.0, 8, 7, 6, 5, 4, 3, 2, 1, 0]] * 2)  # top 3 (q = 70): {0, 1, 2}
    b = np.array(
        [[0.0, 1, 2, 9, 8, 3, 4, 5, 6, 7], [9.0, 0, 7, 1, 8, 2, 3, 4, 5, 6]]
    )  # top 3: {3, 4, 9} and {0, 4, 2}
    np.testing.assert_allclose(top_percentile_overlap(a, b, q=70), [0.0, 200 / 3], atol=1e-12)


def test_overlap_ties_go_to_lower_index():
    # k = ceil(5 * 0.4) = 2: a's top set is {0, 1}, b's is {1, 2}.
    a = np.array([[1.0, 1, 1, 0, 0]])
    b = np.array([[0.0, 1, 1, 1, 0]])
    np.testing.assert_array_equal(top_percentile_overlap(a, b, q=60), [50.0])


@pytest.mark.parametrize("q", [50, 80, 90, 95])
def test_overlap_matches_sorting_oracle(q):
    a, b = random_scores(3, (6, 40), ties=True), random_scores(4, (6, 40), ties=True)
    expected = overlap_oracle(a, b, top_k(40, q))
    np.testing.assert_allclose(top_percentile_overlap(a, b, q=q), expected, rtol=0, atol=1e-12)


# --- summaries ----------------------------------------------------------------------------------


def test_row_metrics_columns():
    a, b = random_scores(5), random_scores(6)
    frame = row_metrics(a, b, q=80)
    assert list(frame.columns) == ["pearson", "spearman", "top_overlap"]
    np.testing.assert_allclose(frame["pearson"], row_pearson(a, b), atol=0)
    np.testing.assert_allclose(frame["spearman"], row_spearman(a, b), atol=0)
    np.testing.assert_allclose(frame["top_overlap"], top_percentile_overlap(a, b, 80), atol=0)


def test_compare_means_and_bootstrap_interval():
    a = random_scores(7, (60, 25))
    b = a + random_scores(8, (60, 25))
    result = compare(a, b, q=80, n_boot=4000, seed=1)
    per_row = row_metrics(a, b, q=80)
    for name, summary in result.items():
        assert isinstance(summary, MetricSummary)
        values = per_row[name].to_numpy()
        assert summary.mean == pytest.approx(values.mean(), abs=1e-12)
        assert summary.n_rows == 60
        # Independent resamples from scipy's percentile bootstrap agree up to Monte Carlo error.
        oracle = stats.bootstrap(
            (values,), np.mean, n_resamples=4000, method="percentile", random_state=2
        ).confidence_interval
        width = oracle.high - oracle.low
        assert summary.ci_low == pytest.approx(oracle.low, abs=0.15 * width)
        assert summary.ci_high == pytest.approx(oracle.high, abs=0.15 * width)
        assert summary.ci_low < summary.mean < summary.ci_high
    assert compare(a, b, n_boot=50, seed=3) == compare(a, b, n_boot=50, seed=3)
    assert compare(a, b, n_boot=50, seed=3) != compare(a, b, n_boot=50, seed=4)


def test_compare_leaves_out_constant_rows():
    a = random_scores(9, (5, 8))
    b = random_scores(10, (5, 8))
    a[1] = 2.0
    result = compare(a, b, n_boot=200)
    defined = np.array([0, 2, 3, 4])
    assert result["pearson"].n_rows == 4
    assert result["pearson"].mean == pytest.approx(row_pearson(a, b)[defined].mean(), abs=1e-12)
    assert result["top_overlap"].n_rows == 5
    a, b = a[:2], b[:2]
    b[0] = 3.0  # row 0 is constant in b, row 1 in a
    undefined = compare(a, b, n_boot=10)
    assert np.isnan(undefined["spearman"].mean) and undefined["spearman"].n_rows == 0


def test_matrices_constant_in_every_row_are_refused():
    """A dead network's scores are all zero: their top sets are tie-breaking, not agreement."""
    scores = random_scores(12, (3, 6))
    dead = np.zeros((3, 6))
    rows_constant = np.repeat([[1.0], [2.0], [3.0]], 6, axis=1)
    for degenerate in (dead, rows_constant):
        with pytest.raises(ValueError, match=r"score_list\[1\] are constant in every row"):
            pairwise_stability([scores, degenerate, scores + 1])
        with pytest.raises(ValueError, match="a are constant in every row"):
            compare(degenerate, scores, n_boot=10)
        with pytest.raises(ValueError, match="b are constant in every row"):
            row_metrics(scores, degenerate)
    with pytest.raises(ValueError, match=r"grad_dot of model 3 are constant in every row \(the first "
                                         r"row is all 0.0\)"):
        check_informative(dead, "grad_dot of model 3")
    check_informative(scores, "fine")


# --- pairwise protocol --------------------------------------------------------------------------


def test_four_runs_give_six_pairs():
    base = random_scores(11, (5, 20))
    runs = [base + 0.5 * random_scores(20 + r, (5, 20)) for r in range(4)]
    frame = pairwise_stability(runs, q=80)
    assert list(frame.columns) == ["i", "j", "pearson", "spearman", "top_overlap", "n_undefined"]
    assert list(zip(frame["i"], frame["j"])) == list(itertools.combinations(range(4), 2))
    for _, row in frame.iterrows():
        a, b = runs[int(row["i"])], runs[int(row["j"])]
        assert row["pearson"] == pytest.approx(row_pearson(a, b).mean(), abs=1e-12)
        assert row["spearman"] == pytest.approx(row_spearman(a, b).mean(), abs=1e-12)
        assert row["top_overlap"] == pytest.approx(
            top_percentile_overlap(a, b, 80).mean(), abs=1e-12
        )
        assert row["n_undefined"] == 0
    pd.testing.assert_frame_equal(pairwise_stability(np.stack(runs), q=80), frame)
    means = average_over_pairs(frame)
    assert list(means.index) == ["pearson", "spearman", "top_overlap"]
    assert means["pearson"] == pytest.approx(frame["pearson"].sum() / 6, abs=1e-12)


def test_pairwise_chosen_pairs_and_constant_rows():
    runs = [random_scores(30 + r, (4, 10)) for r in range(3)]
    runs[2][0] = 0.0
    frame = pairwise_stability(runs, pairs=[(2, 0), (1, 0)])
    assert list(zip(frame["i"], frame["j"])) == [(2, 0), (1, 0)]
    assert frame["n_undefined"].tolist() == [1, 0]
    assert frame["pearson"][0] == pytest.approx(
        np.nanmean(row_pearson(runs[2], runs[0])), abs=1e-12
    )


# --- validation ---------------------------------------------------------------------------------


def test_validation_errors():
    a = random_scores(40, (3, 5))
    with pytest.raises(ValueError, match="same shape"):
        row_pearson(a, a[:, :4])
    with pytest.raises(ValueError, match="b must be a 2-D array"):
        row_spearman(a, a[0])
    with pytest.raises(ValueError, match="n_train >= 2"):
        row_pearson(a[:, :1], a[:, :1])
    with pytest.raises(ValueError, match="a must contain only finite"):
        row_pearson(np.where(a > 0, np.nan, a), a)
    with pytest.raises(ValueError, match=r"q must be a percentile in \[0, 100\)"):
        top_percentile_overlap(a, a, q=100)
    with pytest.raises(ValueError, match="n_boot"):
        compare(a, a, n_boot=0)
    with pytest.raises(ValueError, match=r"score_list\[2\] has shape"):
        pairwise_stability([a, a, a[:2]])
    with pytest.raises(ValueError, match="at least 2 runs"):
        pairwise_stability([a])
    with pytest.raises(ValueError, match="two different run indices"):
        pairwise_stability([a, a], pairs=[(0, 0)])
    with pytest.raises(ValueError, match="two different run indices"):
        pairwise_stability([a, a], pairs=[(0, 2)])
    with pytest.raises(ValueError, match="missing columns"):
        average_over_pairs(pd.DataFrame({"pearson": [1.0]}))

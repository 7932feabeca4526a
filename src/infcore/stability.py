"""How much two score matrices agree: the metrics and the pairwise protocol of Tables 1 and 2.

For two score matrices of the same shape ``(n_test, n_train)`` (the same method, two model states),
each test example (row) gets three numbers: the Pearson and Spearman correlation of its training
scores, and the overlap of its top-scored training examples (the paper's "90th percentile overlap").
The tables report their means over test examples, averaged over pairs of runs.

Conventions
-----------
Constant rows
    A correlation is undefined when a row of either matrix is constant (every training example gets
    the same score). Such a row gets ``nan`` (without scipy's warning); means over test examples
    ignore it, and how many rows they cover is reported beside them (``n_rows`` in :func:`compare`,
    ``n_undefined`` in :func:`pairwise_stability`). The top-k overlap is always defined.
Degenerate matrices
    A matrix that is constant in every row ranks no training example (a dead or diverged model,
    or a failed method, gives such scores): its top sets come from tie-breaking alone, so every
    overlap with it would be an artefact. :func:`check_informative` refuses it, and so do
    :func:`row_metrics`, :func:`compare` and :func:`pairwise_stability`; the per-row functions
    (:func:`row_pearson`, :func:`row_spearman`, :func:`top_percentile_overlap`) keep returning
    nan or the tie-broken overlap for each row.
Ties
    Spearman's correlation is Pearson's correlation of average ranks (scipy's default), so tied
    scores share the mean of the ranks they span.
Top-k set
    For a percentile ``q`` (90 in the paper) the top set of a row holds the
    ``k = max(1, ceil(n_train * (100 - q) / 100))`` training examples with the largest scores
    (``n_train * (100 - q) / 100`` is rounded to 9 decimals first, so that floating-point noise in
    ``100 - q`` cannot add an example). Ties at the boundary go to the lower training index, so the
    set is deterministic. The overlap is ``100 * |A & B| / k`` percent.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import rankdata

#: the three agreement metrics of Tables 1 and 2, as named in every table
METRICS = ("pearson", "spearman", "top_overlap")


class MetricSummary(NamedTuple):
    """Mean of a per-test-example metric with a percentile-bootstrap confidence interval.

    Attributes
    ----------
    mean : float
        Mean over the test examples where the metric is defined.
    ci_low, ci_high : float
        Bounds of the bootstrap confidence interval of that mean.
    n_rows : int
        Number of test examples the mean is over (rows with an undefined metric are left out).
    """

    mean: float
    ci_low: float
    ci_high: float
    n_rows: int


def _as_scores(scores: ArrayLike, name: str) -> np.ndarray:
    """``scores`` as a finite float64 matrix of shape (n_test, n_train) with n_train >= 2."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_test, n_train) with n_test >= 1 and "
            f"n_train >= 2, got shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must contain only finite values (found nan or inf)")
    return array


def _refuse_constant(array: np.ndarray, name: str) -> None:
    if np.all(np.ptp(array, axis=1) == 0):
        raise ValueError(
            f"{name} are constant in every row (the first row is all {float(array[0, 0])!r}), so "
            "they rank no training example and any agreement with them is an artefact; a dead or "
            "diverged model, or a method that failed, gives such scores"
        )


def check_informative(scores: ArrayLike, name: str) -> None:
    """Refuse a score matrix that is constant in every row (see the module docstring).

    Parameters
    ----------
    scores : array_like of shape (n_test, n_train)
    name : str
        What the scores are (method and model), for the message.

    Raises
    ------
    ValueError
        If ``scores`` is not a finite matrix with n_train >= 2, or every row is constant.
    """
    _refuse_constant(_as_scores(scores, name), name)


def _as_pair(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_scores(a, "a"), _as_scores(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {a.shape} and {b.shape}")
    return a, b


def _check_q(q: float) -> float:
    if isinstance(q, bool) or not isinstance(q, (int, float, np.integer, np.floating)):
        raise TypeError(f"q must be a number in [0, 100), got {q!r}")
    if not 0.0 <= q < 100.0:
        raise ValueError(f"q must be a percentile in [0, 100), got {q}")
    return float(q)


def top_k(n_train: int, q: float = 90.0) -> int:
    """Size of the top set above the ``q``-th percentile of ``n_train`` scores.

    Parameters
    ----------
    n_train : int
        Number of training examples (>= 1).
    q : float, default 90.0
        Percentile in [0, 100).

    Returns
    -------
    int
        ``max(1, ceil(round(n_train * (100 - q) / 100, 9)))``, for example 20 for 200 examples at
        ``q=90`` and 3 for 21 examples.
    """
    q = _check_q(q)
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise ValueError(f"n_train must be a positive integer, got {n_train!r}")
    return max(1, math.ceil(round(n_train * (100.0 - q) / 100.0, 9)))


def _correlation_of_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows; nan where either row is constant."""
    constant = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    a_centred = a - a.mean(axis=1, keepdims=True)
    b_centred = b - b.mean(axis=1, keepdims=True)
    # Normalising each row before the product avoids overflow for very large scores.
    with np.errstate(divide="ignore", invalid="ignore"):
        a_unit = a_centred / np.linalg.norm(a_centred, axis=1, keepdims=True)
        b_unit = b_centred / np.linalg.norm(b_centred, axis=1, keepdims=True)
    r = np.clip(np.einsum("ij,ij->i", a_unit, b_unit), -1.0, 1.0)
    r[constant] = np.nan
    return r


def _top_mask(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of each row's k largest scores, ties to the lower index."""
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _overlap(a: np.ndarray, b: np.ndarray, q: float) -> np.ndarray:
    """Per-row top-set overlap in percent."""
    k = top_k(a.shape[1], q)
    return 100.0 * np.count_nonzero(_top_mask(a, k) & _top_mask(b, k), axis=1) / k


def row_pearson(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Pearson correlation between ``a[t]`` and ``b[t]`` for every test example ``t``.

    Parameters
    ----------
    a, b : array_like of shape (n_test, n_train)
        Two score matrices (finite, ``n_train >= 2``).

    Returns
    -------
    ndarray of shape (n_test,)
        Values in [-1, 1]; ``nan`` for a row that is constant in ``a`` or in ``b``.
    """
    a, b = _as_pair(a, b)
    return _correlation_of_rows(a, b)


def row_spearman(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Spearman rank correlation between ``a[t]`` and ``b[t]`` for every test example ``t``.

    Ties get average ranks, as in :func:`scipy.stats.spearmanr`.

    Parameters
    ----------
    a, b : array_like of shape (n_test, n_train)
        Two score matrices (finite, ``n_train >= 2``).

    Returns
    -------
    ndarray of shape (n_test,)
        Values in [-1, 1]; ``nan`` for a row that is constant in ``a`` or in ``b``.
    """
    a, b = _as_pair(a, b)
    return _correlation_of_rows(rankdata(a, axis=1), rankdata(b, axis=1))


def top_percentile_overlap(a: ArrayLike, b: ArrayLike, q: float = 90.0) -> np.ndarray:
    """Overlap, in percent, of the training examples above the ``q``-th percentile in a and b.

    Parameters
    ----------
    a, b : array_like of shape (n_test, n_train)
        Two score matrices (finite, ``n_train >= 2``).
    q : float, default 90.0
        Percentile in [0, 100); the top set of a row holds ``k = top_k(n_train, q)`` examples, the
        largest scores first, ties to the lower training index.

    Returns
    -------
    ndarray of shape (n_test,)
        ``100 * |top(a[t]) & top(b[t])| / k``, in [0, 100].
    """
    a, b = _as_pair(a, b)
    return _overlap(a, b, _check_q(q))


def row_metrics(a: ArrayLike, b: ArrayLike, q: float = 90.0) -> pd.DataFrame:
    """All three agreement metrics for every test example.

    Parameters
    ----------
    a, b : array_like of shape (n_test, n_train)
        Two score matrices (finite, ``n_train >= 2``).
    q : float, default 90.0
        Percentile of the top set, see :func:`top_percentile_overlap`.

    Returns
    -------
    DataFrame of n_test rows
        Columns ``pearson``, ``spearman`` (nan for constant rows) and ``top_overlap`` (percent),
        indexed by test example.

    Raises
    ------
    ValueError
        If ``a`` or ``b`` is constant in every row (see :func:`check_informative`).
    """
    a, b = _as_pair(a, b)
    _refuse_constant(a, "a")
    _refuse_constant(b, "b")
    q = _check_q(q)
    return pd.DataFrame(
        {
            "pearson": _correlation_of_rows(a, b),
            "spearman": _correlation_of_rows(rankdata(a, axis=1), rankdata(b, axis=1)),
            "top_overlap": _overlap(a, b, q),
        }
    )


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice" -> nan is intended
        return np.nanmean(values, axis=axis)


def compare(
    a: ArrayLike,
    b: ArrayLike,
    q: float = 90.0,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, MetricSummary]:
    """Mean of each agreement metric over test examples, with a bootstrap confidence interval.

    The bootstrap resamples test examples with replacement (the same resamples for every metric),
    takes the mean of each resample over its defined rows, and reports the ``(1 - confidence) / 2``
    and ``(1 + confidence) / 2`` quantiles of those means (percentile bootstrap).

    Parameters
    ----------
    a, b : array_like of shape (n_test, n_train)
        Two score matrices (finite, ``n_train >= 2``).
    q : float, default 90.0
        Percentile of the top set, see :func:`top_percentile_overlap`.
    n_boot : int, default 1000
        Number of bootstrap resamples (>= 1).
    seed : int, default 0
        Seed of the :class:`numpy.random.Generator` that draws the resamples.
    confidence : float, default 0.95
        Coverage of the interval, in (0, 1).

    Returns
    -------
    dict
        ``{"pearson": MetricSummary, "spearman": ..., "top_overlap": ...}``. Every field is nan
        (and ``n_rows`` 0) for a correlation that is undefined on every row.
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    per_row = row_metrics(a, b, q)
    n_test = len(per_row)
    resamples = np.random.default_rng(seed).integers(0, n_test, size=(n_boot, n_test))
    tail = 100.0 * (1.0 - confidence) / 2.0
    summary = {}
    for name in METRICS:
        values = per_row[name].to_numpy()
        n_rows = int(np.count_nonzero(~np.isnan(values)))
        if n_rows == 0:
            summary[name] = MetricSummary(np.nan, np.nan, np.nan, 0)
            continue
        boot_means = _nanmean(values[resamples], axis=1)
        low, high = np.nanpercentile(boot_means, [tail, 100.0 - tail])
        summary[name] = MetricSummary(float(_nanmean(values)), float(low), float(high), n_rows)
    return summary


def _check_pairs(pairs: Sequence[tuple[int, int]], n_runs: int) -> list[tuple[int, int]]:
    checked = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs must hold (i, j) index pairs, got {pair!r}")
        i, j = pair
        if not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in (i, j)):
            raise ValueError(f"pairs must hold integer indices, got {pair!r}")
        if not (0 <= i < n_runs and 0 <= j < n_runs) or i == j:
            raise ValueError(
                f"pairs must hold two different run indices in [0, {n_runs}), got {pair!r}"
            )
        checked.append((int(i), int(j)))
    if not checked:
        raise ValueError("pairs must not be empty")
    return checked


def pairwise_stability(
    score_list: Sequence[ArrayLike] | np.ndarray,
    q: float = 90.0,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> pd.DataFrame:
    """Agreement of every pair of runs, each metric averaged over test examples (Tables 1 and 2).

    Parameters
    ----------
    score_list : sequence of array_like of shape (n_test, n_train), or ndarray of shape
        (n_runs, n_test, n_train)
        Scores of the same method from ``n_runs >= 2`` runs (seeds, orderings, batch sizes, or sets
        of models for expected scores).
    q : float, default 90.0
        Percentile of the top set, see :func:`top_percentile_overlap`.
    pairs : sequence of (int, int), optional
        Which runs to compare (for example a sample of pairs); by default every unordered pair
        ``i < j``, so 4 runs give 6 pairs.

    Returns
    -------
    DataFrame with one row per pair
        Columns ``i``, ``j`` (run indices), ``pearson``, ``spearman``, ``top_overlap`` (means over
        test examples, correlations over the rows where they are defined) and ``n_undefined`` (test
        examples left out of the correlation means because a row was constant).

    Raises
    ------
    ValueError
        If a run's scores are constant in every row (see :func:`check_informative`).
    """
    if len(score_list) < 2:
        raise ValueError(f"score_list must hold at least 2 runs, got {len(score_list)}")
    runs = [_as_scores(scores, f"score_list[{r}]") for r, scores in enumerate(score_list)]
    for r, scores in enumerate(runs):
        _refuse_constant(scores, f"score_list[{r}]")
    for r, scores in enumerate(runs[1:], start=1):
        if scores.shape != runs[0].shape:
            raise ValueError(
                f"score_list[{r}] has shape {scores.shape}, but score_list[0] has shape "
                f"{runs[0].shape}: every run must score the same test and training examples"
            )
    q = _check_q(q)
    if pairs is None:
        pairs = list(itertools.combinations(range(len(runs)), 2))
    pairs = _check_pairs(pairs, len(runs))
    # Ranks and top sets depend on one run only: compute them once per run, not once per pair.
    ranks = [rankdata(scores, axis=1) for scores in runs]
    k = top_k(runs[0].shape[1], q)
    masks = [_top_mask(scores, k) for scores in runs]
    rows = []
    for i, j in pairs:
        pearson = _correlation_of_rows(runs[i], runs[j])
        rows.append(
            {
                "i": i,
                "j": j,
                "pearson": _nanmean(pearson),
                "spearman": _nanmean(_correlation_of_rows(ranks[i], ranks[j])),
                "top_overlap": 100.0 * np.count_nonzero(masks[i] & masks[j], axis=1).mean() / k,
                "n_undefined": int(np.count_nonzero(np.isnan(pearson))),
            }
        )
    return pd.DataFrame(rows, columns=["i", "j", *METRICS, "n_undefined"])


def average_over_pairs(pairwise: pd.DataFrame) -> pd.Series:
    """Mean of each metric over the pairs of :func:`pairwise_stability` (one line of Table 1).

    Parameters
    ----------
    pairwise : DataFrame
        The result of :func:`pairwise_stability`.

    Returns
    -------
    Series
        ``pearson``, ``spearman`` and ``top_overlap`` averaged over pairs (a pair whose correlation
        is undefined on every test example is left out of that correlation's mean).
    """
    missing = [name for name in METRICS if name not in pairwise.columns]
    if missing:
        raise ValueError(
            f"pairwise must be a result of pairwise_stability, missing columns {missing}"
        )
    return pairwise[list(METRICS)].mean(axis=0, skipna=True)

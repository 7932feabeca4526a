"""Expected influence: a method's scores averaged over sampled model states (Table 2, Figure 3).

The paper samples model states by training models with different initialisation and data-order
seeds, scores the training examples with each model, and takes the mean. :func:`expected_scores`
does the averaging and also returns the standard error of that mean, which says how many models
are enough; :func:`expected_curve` compares the expected scores of two disjoint sets of models as
the sets grow (Table 2 and its curve).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from infcore import stability


def _stack(scores: Sequence[ArrayLike] | np.ndarray) -> np.ndarray:
    """``scores`` as a finite float64 array of shape (n_models, n_test, n_train)."""
    if isinstance(scores, np.ndarray):
        stacked = scores.astype(np.float64, copy=False)
        if stacked.ndim != 3:
            raise ValueError(
                "scores must be an array of shape (n_models, n_test, n_train) or a sequence of "
                f"arrays of shape (n_test, n_train), got an array of shape {stacked.shape}"
            )
    else:
        matrices = [np.asarray(matrix, dtype=np.float64) for matrix in scores]
        for m, matrix in enumerate(matrices):
            if matrix.ndim != 2:
                raise ValueError(
                    f"scores[{m}] must be a score matrix of shape (n_test, n_train), "
                    f"got shape {matrix.shape}"
                )
            if matrix.shape != matrices[0].shape:
                raise ValueError(
                    f"scores[{m}] has shape {matrix.shape}, but scores[0] has shape "
                    f"{matrices[0].shape}: every model must score the same examples"
                )
        stacked = np.stack(matrices) if matrices else np.empty((0, 0, 0))
    if stacked.shape[0] == 0:
        raise ValueError("scores must hold the scores of at least one model, got none")
    if not np.all(np.isfinite(stacked)):
        raise ValueError("scores must contain only finite values (found nan or inf)")
    return stacked


def expected_scores(scores: Sequence[ArrayLike] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the scores over models, and the standard error of that mean.

    Parameters
    ----------
    scores : sequence of array_like of shape (n_test, n_train), or ndarray of shape
        (n_models, n_test, n_train)
        The same method's scores from ``n_models >= 1`` models.

    Returns
    -------
    mean : ndarray of shape (n_test, n_train)
        Expected score of every (test, training) pair, float64.
    standard_error : ndarray of shape (n_test, n_train)
        ``std(ddof=1) / sqrt(n_models)``. With a single model the spread is unknown, so every entry
        is ``nan`` (no warning); the mean is still that model's scores.
    """
    stacked = _stack(scores)
    n_models = stacked.shape[0]
    mean = stacked.mean(axis=0)
    if n_models == 1:
        return mean, np.full(mean.shape, np.nan)
    return mean, stacked.std(axis=0, ddof=1) / np.sqrt(n_models)


def expected_curve(
    set_a: Sequence[ArrayLike], set_b: Sequence[ArrayLike], sizes: Sequence[int], q: float = 90.0
) -> pd.DataFrame:
    """Agreement of the expected scores of the first m models of two disjoint sets, for each m.

    For m = 1 (the single-model baseline) the models are compared pair by pair, ``(A_k, B_k)``
    for every k; for m > 1 the mean scores of ``A[:m]`` and ``B[:m]`` form the single pair.

    Parameters
    ----------
    set_a, set_b : sequences of n_models array_like of shape (n_test, n_train)
        The same method's scores from two sets of models trained with disjoint seeds.
    sizes : sequence of int
        Set sizes m, each in ``[1, n_models]``.
    q : float
        Percentile of the top set, see :func:`infcore.stability.top_percentile_overlap`.

    Returns
    -------
    DataFrame with columns n_models, pair, pearson, spearman, top_overlap
        One row per compared pair: the means over test examples of :func:`infcore.stability.row_metrics`.
    """
    rows = []
    for m in sizes:
        if m == 1:
            pairs = [(set_a[k], set_b[k]) for k in range(min(len(set_a), len(set_b)))]
        else:
            pairs = [(expected_scores(set_a[:m])[0], expected_scores(set_b[:m])[0])]
        for p, (a, b) in enumerate(pairs):
            summary = stability.row_metrics(a, b, q=q).mean()
            rows.append({"n_models": m, "pair": p, **summary.to_dict()})
    return pd.DataFrame(rows)

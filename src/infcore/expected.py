"""Expected influence: a method's scores averaged over sampled model states (Table 2, Figure 3).

The paper samples model states by training models with different initialisation and data-order
seeds, scores the training examples with each model, and takes the mean. :func:`expected_scores`
does the averaging and also returns the standard error of that mean, which says how many models
are enough.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


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

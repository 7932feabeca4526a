"""The exact L2-regularised logistic regression (two logits, no bias) fitted by scipy: the convex
oracle of ``tests/test_datamodels.py`` and ``tests/test_mislabel.py``."""

from __future__ import annotations

import numpy as np
import scipy.optimize


def fit_logistic(x: np.ndarray, y: np.ndarray, weight_decay: float, maxiter: int = 15_000) -> np.ndarray:
    """argmin_w mean_i CE_i(w) + weight_decay / 2 * ||w||^2 for two logits without bias
    (L-BFGS-B with the closed-form gradient); returns w of shape (2, x.shape[1])."""
    dim = x.shape[1]

    def objective(w):
        logits = x @ w.reshape(2, dim).T
        log_norm = np.logaddexp(logits[:, 0], logits[:, 1])
        prob = np.exp(logits - log_norm[:, None])
        prob[np.arange(len(y)), y] -= 1
        value = np.mean(log_norm - logits[np.arange(len(y)), y]) + 0.5 * weight_decay * w @ w
        return value, (prob.T @ x).ravel() / len(y) + weight_decay * w

    result = scipy.optimize.minimize(objective, np.zeros(2 * dim), jac=True, method="L-BFGS-B",
                                     options={"gtol": 1e-12, "ftol": 0, "maxiter": maxiter})
    return result.x.reshape(2, dim)

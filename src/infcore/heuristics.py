"""The sanity heuristics of Hanawa et al. (2021), applied to a score matrix.

Two heuristics judge an influence method without a gold standard:

identical-instance test
    When a test example is a copy of a training example and the model classifies it correctly, the
    training example it copies should be the most influential one.
identical-class test
    The most influential training example of a test example should belong to the class that the
    model predicts for it.

Their top-k forms relax "the most influential" to "among the k most influential" (instance test)
and require all k most influential examples to share the predicted class (class test).
:func:`heuristic_table` runs the four tests for several methods; :func:`copies_and_held_out` and
:func:`predicted_classes` prepare their inputs for a trained network.

Conventions
-----------
Scores
    ``scores[t, i]`` is the influence of training example ``i`` on test example ``t``, shape
    ``(n_test, n_train)``; positive means helpful, so "most influential" is the largest score.
Ties
    Training examples are ranked by decreasing score; equal scores go to the lower training index
    first, so the ranking is deterministic (as in :mod:`infcore.stability`).
Which test examples count
    The instance test applies only to test examples that copy a training example (``copy_of >= 0``)
    and, when ``correct`` is given, that the model classifies correctly. The class test applies to
    every test example. A result with no applicable test example has a ``nan`` pass rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.func import functional_call

from infcore.data import Split
from infcore.training import TrainedModel


@dataclass(frozen=True)
class HeuristicResult:
    """The outcome of one heuristic test over the test examples it applies to.

    Attributes
    ----------
    evaluated : ndarray of shape (n_evaluated,), int
        Indices of the test examples the test applies to, increasing.
    passed : ndarray of shape (n_evaluated,), bool
        Whether each of them passes.
    """

    evaluated: np.ndarray
    passed: np.ndarray

    @property
    def pass_rate(self) -> float:
        """Fraction of the evaluated test examples that pass; ``nan`` when none is evaluated."""
        return float(self.passed.mean()) if len(self.passed) else float("nan")


def _check_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(
            f"scores must have shape (n_test, n_train) with n_train >= 1; got shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite (no nan or inf)")
    return scores


def _check_vector(values: np.ndarray, name: str, length: int, length_name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (length,):
        raise ValueError(
            f"{name} must have shape ({length_name},) = ({length},); got {values.shape}"
        )
    return values


def _check_int_vector(values: np.ndarray, name: str, length: int, length_name: str) -> np.ndarray:
    values = _check_vector(values, name, length, length_name)
    if length and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must hold integers; got dtype {values.dtype}")
    return values.astype(np.int64)


def _check_k(k: int, n_train: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n_train:
        raise ValueError(f"k must be an integer in [1, n_train] = [1, {n_train}]; got {k!r}")


def top_k_training_examples(scores: np.ndarray, k: int) -> np.ndarray:
    """The k most influential training examples of every test example.

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
        Influence scores, positive = helpful.
    k : int
        How many to return, in [1, n_train].

    Returns
    -------
    ndarray of shape (n_test, k), int
        Training indices by decreasing score; equal scores go to the lower index first.
    """
    scores = _check_scores(scores)
    _check_k(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def top_k_identical_instance_test(
    scores: np.ndarray, copy_of: np.ndarray, k: int, correct: np.ndarray | None = None
) -> HeuristicResult:
    """Whether the training example that a test example copies is among its k most influential.

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
        Influence scores, positive = helpful.
    copy_of : ndarray of shape (n_test,), int
        Index of the training example that each test example copies, or -1 if it copies none.
    k : int
        Size of the top set, in [1, n_train]; ``k = 1`` is the identical-instance test.
    correct : ndarray of shape (n_test,), bool, optional
        Whether the model classifies each test example correctly; only those are evaluated.

    Returns
    -------
    HeuristicResult
    """
    scores = _check_scores(scores)
    n_test, n_train = scores.shape
    copy_of = _check_int_vector(copy_of, "copy_of", n_test, "n_test")
    if np.any((copy_of < -1) | (copy_of >= n_train)):
        raise ValueError(f"copy_of must hold -1 or training indices in [0, {n_train - 1}]")
    applies = copy_of >= 0
    if correct is not None:
        correct = _check_vector(correct, "correct", n_test, "n_test")
        if correct.dtype != bool:
            raise ValueError(f"correct must be a boolean array; got dtype {correct.dtype}")
        applies &= correct
    evaluated = np.flatnonzero(applies)
    top = top_k_training_examples(scores[evaluated], k)
    passed = np.any(top == copy_of[evaluated, None], axis=1)
    return HeuristicResult(evaluated=evaluated, passed=passed)


def identical_instance_test(
    scores: np.ndarray, copy_of: np.ndarray, correct: np.ndarray | None = None
) -> HeuristicResult:
    """Whether the training example that a test example copies is its most influential one.

    The top-1 case of :func:`top_k_identical_instance_test`; see it for the parameters.
    """
    return top_k_identical_instance_test(scores, copy_of, 1, correct)


def top_k_identical_class_test(
    scores: np.ndarray, train_labels: np.ndarray, predicted: np.ndarray, k: int
) -> HeuristicResult:
    """Whether the k most influential training examples all have the predicted class.

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
        Influence scores, positive = helpful.
    train_labels : ndarray of shape (n_train,), int
        Class of each training example.
    predicted : ndarray of shape (n_test,), int
        Class that the model predicts for each test example.
    k : int
        Size of the top set, in [1, n_train]; ``k = 1`` is the identical-class test.

    Returns
    -------
    HeuristicResult
        Every test example is evaluated.
    """
    scores = _check_scores(scores)
    n_test, n_train = scores.shape
    train_labels = _check_int_vector(train_labels, "train_labels", n_train, "n_train")
    predicted = _check_int_vector(predicted, "predicted", n_test, "n_test")
    top = top_k_training_examples(scores, k)
    passed = np.all(train_labels[top] == predicted[:, None], axis=1)
    return HeuristicResult(evaluated=np.arange(n_test), passed=passed)


def identical_class_test(
    scores: np.ndarray, train_labels: np.ndarray, predicted: np.ndarray
) -> HeuristicResult:
    """Whether the most influential training example has the predicted class.

    The top-1 case of :func:`top_k_identical_class_test`; see it for the parameters.
    """
    return top_k_identical_class_test(scores, train_labels, predicted, 1)


def heuristic_table(
    scores_by_method: Mapping[str, np.ndarray],
    *,
    copy_of: np.ndarray,
    correct: np.ndarray,
    train_labels: np.ndarray,
    predicted: np.ndarray,
    k: int,
) -> pd.DataFrame:
    """Pass rates of the four tests for several methods scored on the same examples.

    Parameters
    ----------
    scores_by_method : mapping of str to ndarray of shape (n_test, n_train)
        One score matrix per method name.
    copy_of, correct
        As in :func:`top_k_identical_instance_test`.
    train_labels, predicted
        As in :func:`top_k_identical_class_test`.
    k : int
        Size of the top set of the top-k forms.

    Returns
    -------
    pandas.DataFrame
        One row per method (in the mapping's order) and the columns ``identical instance``,
        ``top-k identical instance``, ``identical class``, ``top-k identical class``.
    """
    if len(scores_by_method) == 0:
        raise ValueError("scores_by_method must hold at least one method")
    rows = {}
    for method, scores in scores_by_method.items():
        rows[method] = {
            "identical instance": identical_instance_test(scores, copy_of, correct).pass_rate,
            "top-k identical instance": top_k_identical_instance_test(
                scores, copy_of, k, correct
            ).pass_rate,
            "identical class": identical_class_test(scores, train_labels, predicted).pass_rate,
            "top-k identical class": top_k_identical_class_test(
                scores, train_labels, predicted, k
            ).pass_rate,
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def predicted_classes(trained: TrainedModel, data: Split) -> np.ndarray:
    """The class that ``trained`` predicts (largest logit under its final weights) for ``data``.

    Returns
    -------
    ndarray of shape (len(data),), int
    """
    with torch.no_grad():
        logits = functional_call(trained.model, trained.params, (data.x,))
    return logits.argmax(dim=1).numpy().astype(np.int64)


def copies_and_held_out(train: Split, held_out: Split, n_copies: int) -> tuple[Split, np.ndarray]:
    """A test split for the identical-instance test: copies of training examples, then others.

    Parameters
    ----------
    train : Split of n_train examples
    held_out : Split of n_held_out examples
    n_copies : int
        How many of the first training examples to copy, in [0, n_train].

    Returns
    -------
    test : Split of n_copies + n_held_out examples
        ``train``'s first ``n_copies`` examples (with their labels), followed by ``held_out``.
    copy_of : ndarray of shape (n_copies + n_held_out,), int
        ``copy_of[t]`` is the training index that test example ``t`` copies, -1 for held-out ones.
    """
    if isinstance(n_copies, bool) or not isinstance(n_copies, (int, np.integer)):
        raise ValueError(f"n_copies must be an integer in [0, {len(train)}]; got {n_copies!r}")
    if not 0 <= n_copies <= len(train):
        raise ValueError(f"n_copies must be an integer in [0, {len(train)}]; got {n_copies!r}")
    test = Split(
        torch.cat([train.x[:n_copies], held_out.x]), torch.cat([train.y[:n_copies], held_out.y])
    )
    copy_of = np.concatenate([np.arange(n_copies), np.full(len(held_out), -1)]).astype(np.int64)
    return test, copy_of

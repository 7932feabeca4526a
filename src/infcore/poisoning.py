"""Backdoor poisoning as a test of influence methods (the paper's Figure 3).

Some training examples of a source class get a trigger and the target label; test examples of the
source class get the same trigger and are labelled as the target. A model that learned the backdoor
predicts the target for them *because of* the poisoned training examples, so a meaningful influence
method should rank those examples first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score

from infcore.data import Split, poison
from infcore.expected import expected_scores
from infcore.training import TrainedModel, accuracy

#: the three groups of training examples of Figure 3
GROUPS = ("poisoned", "clean source", "clean target")


@dataclass(frozen=True)
class PoisonedTask:
    """Poisoned training set, all-poisoned test set, and which training examples were poisoned.

    Attributes
    ----------
    train : Split
        Training set in which ``poisoned`` examples carry the trigger and the target label.
    test : Split
        Source-class test examples with the trigger, labelled as the target.
    clean_test : Split
        The original test set (both classes, no trigger), for clean accuracy.
    poisoned : ndarray of shape (n_train,), bool
    groups : ndarray of shape (n_train,), int
        Index into :data:`GROUPS` of every training example.
    source, target : int
        Class indices.
    """

    train: Split
    test: Split
    clean_test: Split
    poisoned: np.ndarray
    groups: np.ndarray
    source: int
    target: int


def poisoned_task(
    train: Split,
    test: Split,
    n_poison: int = 100,
    n_test_poison: int = 100,
    source: int = 0,
    target: int = 1,
    seed: int = 0,
) -> PoisonedTask:
    """Poison ``n_poison`` source-class training examples and ``n_test_poison`` test examples.

    Parameters
    ----------
    train, test : Split
        Clean splits with labels 0/1.
    n_poison : int
        Training examples of the source class to poison (paper: 100).
    n_test_poison : int
        Source-class test examples that carry the trigger (paper: 100); the poisoned test set has
        only these.
    source, target : {0, 1}
        Class whose examples are poisoned, and the label they get; must differ.
    seed : int
        Seed of the choice of training examples to poison.

    Returns
    -------
    PoisonedTask
    """
    if {source, target} != {0, 1}:
        raise ValueError(f"source and target must be 0 and 1 in some order; got {source}, {target}")
    source_train = np.flatnonzero(train.y.numpy() == source)
    source_test = np.flatnonzero(test.y.numpy() == source)
    if not 1 <= n_poison <= len(source_train):
        raise ValueError(f"n_poison must be in [1, {len(source_train)}] (source-class training "
                         f"examples available); got {n_poison}")
    if not 1 <= n_test_poison <= len(source_test):
        raise ValueError(f"n_test_poison must be in [1, {len(source_test)}] (source-class test "
                         f"examples available); got {n_test_poison}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(source_train, size=n_poison, replace=False))
    poisoned = np.zeros(len(train), dtype=bool)
    poisoned[chosen] = True
    groups = np.where(poisoned, 0, np.where(train.y.numpy() == source, 1, 2))
    test_index = torch.as_tensor(source_test[:n_test_poison])
    poisoned_test = poison(test.subset(test_index), torch.arange(n_test_poison), target)
    return PoisonedTask(poison(train, torch.as_tensor(chosen), target), poisoned_test, test,
                        poisoned, groups, source, target)


def group_shares(scores: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean influence of each training group on the test examples, L1-normalised (one Figure 3 bar set).

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
    groups : ndarray of shape (n_train,)
        Group index in ``range(len(GROUPS))`` of every training example.

    Returns
    -------
    ndarray of shape (3,)
        For each group, the mean over test examples of the mean score of its training examples,
        divided by the sum of the three absolute values.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.shape[1] != len(groups):
        raise ValueError(f"scores must have shape (n_test, {len(groups)}); got {scores.shape}")
    means = np.array([scores[:, groups == g].mean() for g in range(len(GROUPS))])
    total = np.abs(means).sum()
    return means / total if total > 0 else means


def figure3(per_model: list[np.ndarray], groups: np.ndarray) -> pd.DataFrame:
    """The bars of Figure 3 for one method: expected shares with single-model min and max.

    Parameters
    ----------
    per_model : list of ndarray of shape (n_test, n_train)
        The method's scores from each model trained on the poisoned data.
    groups : ndarray of shape (n_train,)

    Returns
    -------
    DataFrame with one row per group: group, share (from the expected scores), low, high (min and
    max over the single models' shares).
    """
    single = np.stack([group_shares(s, groups) for s in per_model])
    expected = group_shares(expected_scores(per_model)[0], groups)
    return pd.DataFrame({"group": GROUPS, "share": expected,
                         "low": single.min(axis=0), "high": single.max(axis=0)})


def detection(scores: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """How well ranking training examples by their mean influence on the test set finds the poison.

    Parameters
    ----------
    scores : ndarray of shape (n_test, n_train)
    poisoned : ndarray of shape (n_train,), bool

    Returns
    -------
    dict with ``auprc`` (average precision, scikit-learn) and ``precision_at_k`` (fraction of
    poisoned examples among the k highest, k = number of poisoned examples).
    """
    ranking = np.asarray(scores, dtype=float).mean(axis=0)
    k = int(poisoned.sum())
    top = np.argsort(-ranking, kind="stable")[:k]
    return {"auprc": float(average_precision_score(poisoned, ranking)),
            "precision_at_k": float(poisoned[top].mean())}


def attack_report(models: list[TrainedModel], task: PoisonedTask, min_success: float = 0.9) -> pd.DataFrame:
    """Attack success rate and clean accuracy of each poisoned model; refuses a failed attack.

    Returns
    -------
    DataFrame with one row per model: attack_success (share of poisoned test examples predicted
    as the target), clean_accuracy (on the clean test set) and clean_source_accuracy (on its
    source-class examples).

    Raises
    ------
    RuntimeError
        If some model predicts the target on fewer than ``min_success`` of the poisoned test
        examples, or the source class on fewer than half of the clean source-class test examples:
        the backdoor was not learned and Figure 3 would be meaningless.
    """
    clean_source = task.clean_test.subset(torch.nonzero(task.clean_test.y == task.source).flatten())
    report = pd.DataFrame({
        "attack_success": [accuracy(m, task.test) for m in models],
        "clean_accuracy": [accuracy(m, task.clean_test) for m in models],
        "clean_source_accuracy": [accuracy(m, clean_source) for m in models],
    })
    worst = float(report.attack_success.min())
    if worst < min_success:
        raise RuntimeError(
            f"the backdoor was not learned: a model predicts the target on only {worst:.1%} of the "
            f"poisoned test examples (need {min_success:.0%}); train longer or poison more examples")
    # A model that predicts the target everywhere "succeeds" without any backdoor.
    blind = float(report.clean_source_accuracy.min())
    if blind < 0.5:
        raise RuntimeError(
            f"the backdoor was not learned: a model predicts the source class for only {blind:.1%} "
            "of the clean source-class test examples, so its target predictions are not caused by "
            "the trigger; train longer")
    return report

"""The Figure 3 protocol on hand-made splits and score matrices."""

import numpy as np
import pytest
import torch

from infcore import poisoning
from infcore.data import Split


def _split(labels):
    y = torch.tensor(labels, dtype=torch.long)
    return Split(torch.zeros(len(y), 1, 28, 28), y)


def test_poisoned_task_relabels_and_marks_the_chosen_source_examples():
    train = _split([0] * 10 + [1] * 10)
    test = _split([0] * 4 + [1] * 4)
    task = poisoning.poisoned_task(train, test, n_poison=3, n_test_poison=4, seed=1)
    assert task.poisoned.sum() == 3
    assert np.all(train.y.numpy()[task.poisoned] == 0)          # chosen among the source class
    assert np.all(task.train.y.numpy()[task.poisoned] == 1)     # relabelled to the target
    assert task.train.x[task.poisoned].sum() > 0 and task.train.x[~task.poisoned].sum() == 0
    assert len(task.test) == 4 and np.all(task.test.y.numpy() == 1) and task.test.x.sum() > 0
    assert list(np.bincount(task.groups)) == [3, 7, 10]
    assert train.x.sum() == 0 and train.y[:10].sum() == 0       # inputs untouched


def test_poisoned_task_validates_counts():
    train, test = _split([0] * 5 + [1] * 5), _split([0, 1])
    with pytest.raises(ValueError, match=r"n_poison must be in \[1, 5\]"):
        poisoning.poisoned_task(train, test, n_poison=6, n_test_poison=1)
    with pytest.raises(ValueError, match=r"n_test_poison must be in \[1, 1\]"):
        poisoning.poisoned_task(train, test, n_poison=1, n_test_poison=2)


def test_group_shares_hand_computed():
    groups = np.array([0, 0, 1, 2])
    scores = np.array([[4.0, 2.0, -1.0, 0.0], [2.0, 0.0, -1.0, 2.0]])
    # group means: poisoned (4+2+2+0)/4 = 2, source -1, target 1 -> / (2+1+1)
    np.testing.assert_allclose(poisoning.group_shares(scores, groups), [0.5, -0.25, 0.25])


def test_figure3_bars_and_error_range():
    groups = np.array([0, 1, 2])
    per_model = [np.array([[3.0, 1.0, 0.0]]), np.array([[1.0, 0.0, 1.0]])]
    bars = poisoning.figure3(per_model, groups)
    np.testing.assert_allclose(bars.share, [2 / 3, 0.5 / 3, 0.5 / 3])  # mean scores [2, .5, .5]
    np.testing.assert_allclose(bars.low, [0.5, 0.0, 0.0])
    np.testing.assert_allclose(bars.high, [0.75, 0.25, 0.5])


def test_detection_perfect_and_worst_rankings():
    poisoned = np.array([True, True, False, False, False])
    perfect = np.array([[5.0, 4.0, 1.0, 0.0, -1.0]])
    assert poisoning.detection(perfect, poisoned) == {"auprc": 1.0, "precision_at_k": 1.0}
    worst = -perfect
    result = poisoning.detection(worst, poisoned)
    assert result["precision_at_k"] == 0.0
    # poisoned at ranks 4 and 5: AP = (1/4 + 2/5) / 2
    assert result["auprc"] == pytest.approx((1 / 4 + 2 / 5) / 2)

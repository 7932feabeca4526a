"""Tests of the identical-instance and identical-class heuristics against brute-force oracles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from infcore.data import Split
from infcore.heuristics import (
    HeuristicResult,
    copies_and_held_out,
    heuristic_table,
    identical_class_test,
    identical_instance_test,
    top_k_identical_class_test,
    top_k_identical_instance_test,
    predicted_classes,
    top_k_training_examples,
)
from infcore.training import TrainConfig, TrainedModel


def _ranking_oracle(row: np.ndarray) -> list[int]:
    """Training indices by decreasing score, equal scores by increasing index (plain sorted())."""
    return sorted(range(len(row)), key=lambda i: (-row[i], i))


def _random_case(seed: int, n_test: int = 30, n_train: int = 12):
    rng = np.random.default_rng(seed)
    # Rounded scores make ties common, so the tie rule is exercised.
    scores = np.round(rng.normal(size=(n_test, n_train)), 1)
    copy_of = rng.integers(-1, n_train, size=n_test)
    correct = rng.random(n_test) < 0.7
    labels = rng.integers(0, 2, size=n_train)
    predicted = rng.integers(0, 2, size=n_test)
    return scores, copy_of, correct, labels, predicted


def test_hand_computed_case():
    scores = np.array(
        [
            [0.1, 0.9, 0.5],  # copies 1, which scores highest: passes
            [0.8, 0.2, 0.5],  # copies 2, ranked second: fails top-1, passes top-2
            [0.3, 0.3, 0.1],  # copies 1, tied with 0 at the top: the lower index 0 wins, fails
            [0.0, 1.0, 2.0],  # copies nothing: not evaluated
        ]
    )
    copy_of = np.array([1, 2, 1, -1])
    top1 = identical_instance_test(scores, copy_of)
    np.testing.assert_array_equal(top1.evaluated, [0, 1, 2])
    np.testing.assert_array_equal(top1.passed, [True, False, False])
    assert top1.pass_rate == pytest.approx(1 / 3, abs=1e-12)
    top2 = top_k_identical_instance_test(scores, copy_of, 2)
    np.testing.assert_array_equal(top2.passed, [True, True, True])

    labels = np.array([0, 1, 1])
    predicted = np.array([1, 0, 0, 1])
    cls = identical_class_test(scores, labels, predicted)
    np.testing.assert_array_equal(cls.evaluated, [0, 1, 2, 3])
    np.testing.assert_array_equal(cls.passed, [True, True, True, True])
    cls2 = top_k_identical_class_test(scores, labels, predicted, 2)
    # top-2 sets: {1, 2}, {0, 2}, {0, 1}, {2, 1}
    np.testing.assert_array_equal(cls2.passed, [True, False, False, True])
    assert cls2.pass_rate == pytest.approx(0.5, abs=1e-12)


def test_correct_mask_restricts_the_instance_test():
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    result = identical_instance_test(scores, np.array([0, 1, 1]), np.array([True, False, True]))
    np.testing.assert_array_equal(result.evaluated, [0, 2])
    np.testing.assert_array_equal(result.passed, [True, True])
    assert result.pass_rate == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 3, 12])
def test_against_brute_force_oracle(seed, k):
    scores, copy_of, correct, labels, predicted = _random_case(seed)
    rankings = [_ranking_oracle(row) for row in scores]
    np.testing.assert_array_equal(top_k_training_examples(scores, k), [r[:k] for r in rankings])

    instance = top_k_identical_instance_test(scores, copy_of, k, correct)
    expected_eval = [t for t in range(len(scores)) if copy_of[t] >= 0 and correct[t]]
    np.testing.assert_array_equal(instance.evaluated, expected_eval)
    np.testing.assert_array_equal(
        instance.passed, [copy_of[t] in rankings[t][:k] for t in expected_eval]
    )
    if k == scores.shape[1]:
        assert instance.pass_rate == 1.0

    cls = top_k_identical_class_test(scores, labels, predicted, k)
    expected = [all(labels[i] == predicted[t] for i in rankings[t][:k]) for t in range(len(scores))]
    np.testing.assert_array_equal(cls.passed, expected)
    assert cls.pass_rate == pytest.approx(np.mean(expected), abs=1e-12)


def test_top1_forms_equal_k_equals_one():
    scores, copy_of, correct, labels, predicted = _random_case(5)
    a = identical_instance_test(scores, copy_of, correct)
    b = top_k_identical_instance_test(scores, copy_of, 1, correct)
    np.testing.assert_array_equal(a.passed, b.passed)
    c = identical_class_test(scores, labels, predicted)
    d = top_k_identical_class_test(scores, labels, predicted, 1)
    np.testing.assert_array_equal(c.passed, d.passed)


def test_no_applicable_example_gives_nan():
    result = identical_instance_test(np.zeros((2, 3)), np.array([-1, -1]))
    assert len(result.evaluated) == 0 and np.isnan(result.pass_rate)
    assert np.isnan(HeuristicResult(np.array([], int), np.array([], bool)).pass_rate)


def test_heuristic_table_matches_the_functions():
    scores, copy_of, correct, labels, predicted = _random_case(7)
    other = -scores
    table = heuristic_table(
        {"a": scores, "b": other}, copy_of=copy_of, correct=correct, train_labels=labels,
        predicted=predicted, k=3,
    )
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["a", "b"]
    for name, s in (("a", scores), ("b", other)):
        row = table.loc[name]
        assert row["identical instance"] == identical_instance_test(s, copy_of, correct).pass_rate
        assert row["top-k identical instance"] == top_k_identical_instance_test(
            s, copy_of, 3, correct).pass_rate
        assert row["identical class"] == identical_class_test(s, labels, predicted).pass_rate
        assert row["top-k identical class"] == top_k_identical_class_test(
            s, labels, predicted, 3).pass_rate


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: identical_instance_test(np.zeros(3), np.array([0])), "scores must have shape"),
        (lambda: identical_instance_test(np.array([[np.nan, 1.0]]), np.array([0])), "finite"),
        (lambda: identical_instance_test(np.zeros((1, 2)), np.array([2])), "copy_of must hold"),
        (lambda: identical_instance_test(np.zeros((1, 2)), np.array([0.0])), "integers"),
        (lambda: identical_instance_test(np.zeros((2, 2)), np.array([0])), r"copy_of must have"),
        (lambda: identical_instance_test(np.zeros((1, 2)), np.array([0]), np.array([1])),
         "boolean"),
        (lambda: top_k_identical_instance_test(np.zeros((1, 2)), np.array([0]), 3), "k must be"),
        (lambda: top_k_identical_class_test(np.zeros((1, 2)), np.array([0, 1]), np.array([0]), 0),
         "k must be"),
        (lambda: identical_class_test(np.zeros((1, 2)), np.array([0]), np.array([0])),
         "train_labels must have"),
        (lambda: identical_class_test(np.zeros((1, 2)), np.array([0, 1]), np.array([0, 1])),
         "predicted must have"),
        (lambda: heuristic_table({}, copy_of=np.array([0]), correct=np.array([True]),
                                 train_labels=np.array([0]), predicted=np.array([0]), k=1),
         "at least one method"),
    ],
)
def test_errors_name_the_parameter(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_copies_and_held_out():
    x = torch.arange(5 * 4, dtype=torch.float32).view(5, 1, 2, 2)
    train = Split(x, torch.tensor([0, 1, 1, 0, 1]))
    held_out = Split(-torch.ones(2, 1, 2, 2), torch.tensor([1, 0]))
    test, copy_of = copies_and_held_out(train, held_out, 3)
    assert len(test) == 5
    np.testing.assert_array_equal(copy_of, [0, 1, 2, -1, -1])
    for t, i in enumerate(copy_of):
        source = (train.x[i], train.y[i]) if i >= 0 else (held_out.x[t - 3], held_out.y[t - 3])
        assert torch.equal(test.x[t], source[0]) and test.y[t] == source[1]
    with pytest.raises(ValueError, match="n_copies must be"):
        copies_and_held_out(train, held_out, 6)


def test_predicted_classes_is_argmax_of_logits():
    model = torch.nn.Linear(3, 2)
    params = {name: p.detach() for name, p in model.named_parameters()}
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    trained = TrainedModel(model=model, params=params, checkpoints=[params], lrs=[0.1],
                           config=TrainConfig())
    logits = x @ params["weight"].T + params["bias"]
    np.testing.assert_array_equal(
        predicted_classes(trained, Split(x, torch.zeros(7, dtype=torch.long))),
        (logits[:, 1] > logits[:, 0]).long().numpy(),
    )


def test_heuristic_pass_rates_figure():
    import matplotlib.pyplot as plt

    from infcore.plots import heuristic_pass_rates

    scores, copy_of, correct, labels, predicted = _random_case(3)
    table = heuristic_table({"a": scores, "b": -scores}, copy_of=copy_of, correct=correct,
                            train_labels=labels, predicted=predicted, k=4)
    fig = heuristic_pass_rates(table, k=4)
    try:
        ax = fig.axes[0]
        shown = [float(text.get_text()) for text in ax.texts]
        np.testing.assert_allclose(shown, np.round(table.to_numpy().ravel(), 2), atol=1e-12)
        assert "top-4 identical class" in [label.get_text() for label in ax.get_xticklabels()]
    finally:
        plt.close(fig)

"""The method registry: the seven names of the book, dispatch by name, and unknown names."""

import numpy as np
import torch
import pytest

from infcore.data import Split, fingerprint, load_mnist
from infcore.methods import METHODS, compute_scores, grad_dot, representer
from infcore.training import TrainConfig, train


def test_registry_holds_the_seven_methods():
    assert set(METHODS) == {"leave_one_out", "influence_function", "tracin_ideal", "tracin_cp",
                            "representer", "grad_dot", "grad_cos"}


def test_compute_scores_dispatches_with_options():
    train_split, test_split = load_mnist(n_train=20, n_test=6, seed=1)
    trained = train(TrainConfig(epochs=1, batch_size=5), train_split)
    np.testing.assert_array_equal(compute_scores("grad_dot", trained, train_split, test_split),
                                  grad_dot(trained, train_split, test_split))
    np.testing.assert_array_equal(
        compute_scores("representer", trained, train_split, test_split, lam=0.05),
        representer(trained, train_split, test_split, lam=0.05))


def test_unknown_method_lists_the_allowed_names():
    with pytest.raises(ValueError, match="unknown method 'loo'; allowed: leave_one_out, "):
        compute_scores("loo", None, None, None)


@pytest.fixture(scope="module")
def tiny():
    train_split, test_split = load_mnist(n_train=20, n_test=6, seed=1)
    return train(TrainConfig(epochs=1, batch_size=5), train_split), train_split, test_split


def test_a_model_is_refused_against_another_training_split(tiny):
    """Flipped labels are another split: the model of the original labels must not be scored."""
    trained, train_split, test_split = tiny
    flipped = Split(train_split.x, 1 - train_split.y)
    with pytest.raises(ValueError, match=(
            f"trained on a split of 20 examples with fingerprint {trained.train_fingerprint[:16]}, "
            f"but train has 20 examples with fingerprint {fingerprint(flipped)[:16]}")):
        compute_scores("grad_dot", trained, flipped, test_split)


def _nan_at(split: Split, index: int) -> Split:
    x = split.x.clone()
    x[index, 0, 0, 0] = float("nan")
    return Split(x, split.y)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.subset([]), "test split is empty"),
        (lambda s: _nan_at(s, 3), r"test split: x\[3\] holds nan"),
        (lambda s: Split(s.x[:, 0], s.y), r"test split: inputs of shape \(6, 28, 28\) do not fit"),
        (lambda s: Split(s.x, torch.full_like(s.y, 3)), r"test split: y\[0\] = 3 is not a class of SmallCNN"),
    ],
    ids=["empty", "nan", "shape", "label"],
)
def test_bad_test_data_is_refused_before_scoring(tiny, change, message):
    trained, train_split, test_split = tiny
    with pytest.raises(ValueError, match=message):
        compute_scores("grad_dot", trained, train_split, change(test_split))


def test_nan_training_inputs_are_refused_before_scoring(tiny):
    trained, train_split, test_split = tiny
    with pytest.raises(ValueError, match=r"train split: x\[0\] holds nan"):
        compute_scores("grad_dot", trained, _nan_at(train_split, 0), test_split)


def test_non_finite_scores_are_refused_naming_method_and_model(tiny, monkeypatch):
    trained, train_split, test_split = tiny
    monkeypatch.setitem(METHODS, "grad_dot", lambda *args: np.full((6, 20), np.nan))
    with pytest.raises(ValueError, match=r"grad_dot gave 120 nan or inf scores of 120 for the model "
                                         r"trained with TrainConfig\(epochs=1, lr=0.1, batch_size=5"):
        compute_scores("grad_dot", trained, train_split, test_split)

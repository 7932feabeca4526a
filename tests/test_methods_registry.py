"""The method registry: the seven names of the book, dispatch by name, and unknown names."""

import numpy as np
import pytest

from infcore.data import load_mnist
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

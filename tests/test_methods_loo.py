"""Leave-one-out with the batched trainer against one sequential retraining per example."""

from dataclasses import replace

import numpy as np
import pytest

from infcore.data import load_mnist
from infcore.methods.loo import first_batches, leave_one_out, rounding_noise
import torch
from torch.func import functional_call

from infcore.methods.tracin import tracin_ideal
from infcore.training import TrainConfig, epoch_order, test_loss, train, train_many


@pytest.fixture(scope="module")
def task():
    train_split, test_split = load_mnist(n_train=20, n_test=10, seed=0)
    config = TrainConfig(epochs=2, batch_size=6)
    return train(config, train_split), train_split, test_split


def _float64_losses(trained, params, test_split):
    """Oracle: the float64 formula (-log softmax) of the test examples under ``params``."""
    with torch.no_grad():
        logits = functional_call(trained.model, {k: v.double() for k, v in params.items()},
                                 (test_split.x.double(),))
    return -logits.log_softmax(dim=1)[torch.arange(len(test_split)), test_split.y]


def test_leave_one_out_matches_sequential_retraining(task):
    trained, train_split, test_split = task
    scores = leave_one_out(trained, train_split, test_split, chunk_size=8)
    assert scores.shape == (10, 20) and scores.dtype == np.float64
    with_all = _float64_losses(trained, trained.params, test_split)
    for i in (0, 7, 19):
        retrained = train(trained.config, train_split, exclude=i)
        # batched and sequential retraining agree to float32 rounding of the weights
        without = _float64_losses(trained, retrained.params, test_split)
        np.testing.assert_allclose(scores[:, i], (without - with_all).numpy(), rtol=0, atol=1e-6)


def test_leave_one_out_needs_a_model_trained_on_everything(task):
    trained, train_split, test_split = task
    partial = train(trained.config, train_split, exclude=2)
    with pytest.raises(ValueError, match="left out example 2"):
        leave_one_out(partial, train_split, test_split)


def test_replaying_methods_refuse_a_model_trained_on_a_subset(task):
    trained, train_split, test_split = task
    keep = np.ones(len(train_split), dtype=bool)
    keep[::2] = False
    subset_model = train_many([trained.config], train_split, keep=[keep])[0]
    with pytest.raises(ValueError, match="subset of 10 of its 20 examples"):
        leave_one_out(subset_model, train_split, test_split)
    ideal = train_many([replace(trained.config, batch_size=1)], train_split, keep=[keep])[0]
    with pytest.raises(ValueError, match="subset of 10 of its 20 examples"):
        tracin_ideal(ideal, train_split, test_split)


def test_rounding_noise_is_tiny_against_leave_one_out(task):
    trained, train_split, test_split = task
    noise = rounding_noise(trained, train_split, test_split, copies=4)
    assert noise.shape == (10, 4) and noise.dtype == np.float64
    # the two batchings agree to float32 rounding of the weights, far below a real removal effect
    assert np.abs(noise).max() < 1e-5
    scores = leave_one_out(trained, train_split, test_split, chunk_size=8)
    assert np.median(np.abs(scores)) > 100 * np.abs(noise).max()


@pytest.mark.parametrize("copies", [1, 21, 2.5])
def test_rounding_noise_checks_copies(task, copies):
    trained, train_split, test_split = task
    with pytest.raises(ValueError, match=r"copies must be an integer in \[2, 20\]"):
        rounding_noise(trained, train_split, test_split, copies=copies)


def test_first_batches_name_the_first_batch_that_holds_each_example(task):
    trained, train_split, _ = task
    config = trained.config
    first = first_batches(config, len(train_split))
    # brute force: walk the first epoch's batches
    order = epoch_order(len(train_split), config.order_seed, 0)
    for step, batch in enumerate(order.split(config.batch_size)):
        for i in batch.tolist():
            assert first[i] == step


def test_sharing_the_prefix_changes_the_scores_only_by_rounding(task):
    trained, train_split, test_split = task
    shared = leave_one_out(trained, train_split, test_split, chunk_size=8)
    plain = leave_one_out(trained, train_split, test_split, chunk_size=8, share_prefix=False)
    # measured: 0 to 1.3e-7 apart (float32 rounding of the grouped convolutions), against
    # scores of 1e-3 to 1e-1
    np.testing.assert_allclose(shared, plain, rtol=0, atol=1e-6)
    assert np.abs(plain).max() > 1e-3


@pytest.mark.parametrize("share_prefix", [True, False])
def test_leave_one_out_on_columns_matches_sequential_retraining(task, share_prefix):
    trained, train_split, test_split = task
    # unsorted, with examples of the first and of later batches: the result keeps this order
    columns = [19, 0, 7, 12]
    scores = leave_one_out(trained, train_split, test_split, chunk_size=3, columns=columns,
                           share_prefix=share_prefix)
    assert scores.shape == (10, 4) and scores.dtype == np.float64
    with_all = _float64_losses(trained, trained.params, test_split)
    for k, i in enumerate(columns):
        retrained = train(trained.config, train_split, exclude=i)
        without = _float64_losses(trained, retrained.params, test_split)
        np.testing.assert_allclose(scores[:, k], (without - with_all).numpy(), rtol=0, atol=1e-6)
    assert np.abs(scores).max() > 1e-3


def test_leave_one_out_on_columns_with_a_retrain_function(task):
    trained, train_split, test_split = task
    calls = []

    def retrain(data):
        calls.append(len(data))
        return train(trained.config, data)

    scores = leave_one_out(trained, train_split, test_split, retrain=retrain, columns=[5, 3])
    assert scores.shape == (10, 2) and calls == [19, 19]
    # oracle: the same retraining written out for each column
    for k, i in enumerate([5, 3]):
        kept = [j for j in range(len(train_split)) if j != i]
        expected = (test_loss(train(trained.config, train_split.subset(torch.tensor(kept))),
                              test_split) - test_loss(trained, test_split)).numpy()
        np.testing.assert_array_equal(scores[:, k], expected)


@pytest.mark.parametrize("columns", [[], [0, 0], [20], [-1], [1.5], [True]])
def test_leave_one_out_refuses_bad_columns(task, columns):
    trained, train_split, test_split = task
    with pytest.raises(ValueError, match=r"columns must be distinct integer training indices in \[0, 19\]"):
        leave_one_out(trained, train_split, test_split, columns=columns)

"""The linear datamodeling score against a brute-force loop and two oracles on a convex model:
the exact influence function of an L2-regularised logistic regression has a high LDS, random
scores an LDS near 0; and training on subsets (``train_many(keep=...)``) against leave-one-out."""

import numpy as np
import pytest
import torch
from logistic_oracle import fit_logistic
from scipy import stats
from torch import nn

from infcore.cache import Cache
from infcore.data import Split
from infcore.datamodels import (
    SubsetOutputs,
    lds_curve,
    draw_subsets,
    linear_datamodeling_score,
    margins,
    subset_outputs,
)
from infcore.experiments import Experiment, Task
from infcore.methods.influence import influence_function
from infcore.training import TrainConfig, TrainedModel, train_many

N_TRAIN, N_TEST, DIM, WEIGHT_DECAY, N_SUBSETS = 100, 20, 5, 0.01, 300


def _task(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, N_TRAIN + N_TEST)
    x = rng.normal(size=(N_TRAIN + N_TEST, DIM)) + np.where(y[:, None] == 1, 0.5, -0.5)
    return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]


def _fit(x, y):
    """The exact fit (scipy): the model trained on a subset is this fit on the subset's examples."""
    return fit_logistic(x, y, WEIGHT_DECAY, maxiter=10_000)


def _margins(w, x, y):
    logits = x @ w.T
    return logits[np.arange(len(y)), y] - logits[np.arange(len(y)), 1 - y]


@pytest.fixture(scope="module")
def convex():
    """Exact influence-function scores of the full fit, and the margins of subset refits."""
    x, y, x_test, y_test = _task()
    model = nn.Linear(DIM, 2, bias=False).double()
    params = {"weight": torch.tensor(_fit(x, y))}
    trained = TrainedModel(model=model, params=params, checkpoints=[params], lrs=[0.1],
                           config=TrainConfig(weight_decay=WEIGHT_DECAY))
    train, test = Split(torch.tensor(x), torch.tensor(y)), Split(torch.tensor(x_test), torch.tensor(y_test))
    scores = influence_function(trained, train, test, damping=0.0)
    subsets = draw_subsets(N_TRAIN, N_SUBSETS, alpha=0.5, seed=1)
    outputs = np.stack([_margins(_fit(x[s], y[s]), x_test, y_test) for s in subsets])
    return trained, test, scores, subsets, outputs


def test_exact_influence_function_has_a_high_lds(convex):
    _, _, scores, subsets, outputs = convex
    result = linear_datamodeling_score(scores, subsets, outputs)
    # measured: 0.969 (bootstrap interval 0.962 to 0.974) with 300 subsets of half the 100 training
    # points; 0.966 with the first 100 subsets, 0.969 with the first 20
    assert result.mean >= 0.8
    assert result.low <= result.mean <= result.high
    assert result.n_undefined == 0
    # the sign convention: helpful is positive, so negated scores predict the opposite
    assert linear_datamodeling_score(-scores, subsets, outputs).mean <= -0.8


def test_random_scores_have_an_lds_near_zero(convex):
    _, _, scores, subsets, outputs = convex
    noise = np.random.default_rng(0).normal(size=scores.shape)
    result = linear_datamodeling_score(noise, subsets, outputs)
    # measured: -0.015 (bootstrap interval -0.056 to 0.026)
    assert abs(result.mean) < 0.05
    assert result.low < 0 < result.high


def test_lds_matches_a_brute_force_loop(convex):
    _, _, scores, subsets, outputs = convex
    scores, subsets, outputs = scores[:, :], subsets[:40], outputs[:40]
    expected = []
    for t in range(scores.shape[0]):
        predicted = [sum(scores[t, i] for i in range(N_TRAIN) if subsets[j, i])
                     for j in range(len(subsets))]
        expected.append(stats.spearmanr(predicted, outputs[:, t]).statistic)
    result = linear_datamodeling_score(scores, subsets, outputs)
    np.testing.assert_allclose(result.per_test, expected, rtol=0, atol=1e-12)
    assert result.mean == pytest.approx(np.mean(expected), abs=1e-12)


def test_removed_examples_predict_the_loss_change(convex):
    # the same LDS from the other reading of the sign: leave-one-out is L_{D\i} - L_D, positive
    # for a helpful example, so removing the examples outside a subset is predicted to raise the
    # loss by the sum of their scores (the total over all examples is the same for every subset)
    _, _, scores, subsets, outputs = convex
    losses = np.logaddexp(0, -outputs)
    predicted_change = (~subsets).astype(float) @ scores.T
    expected = [stats.spearmanr(predicted_change[:, t], losses[:, t]).statistic
                for t in range(scores.shape[0])]
    result = linear_datamodeling_score(scores, subsets, -losses)
    np.testing.assert_allclose(result.per_test, expected, rtol=0, atol=1e-12)


def test_margin_and_minus_loss_agree_for_one_model(convex):
    # the cross-entropy is softplus(-margin): one model's ranking of subsets is the same by both
    trained, test, scores, subsets, outputs = convex
    losses = np.logaddexp(0, -outputs)
    by_margin = linear_datamodeling_score(scores, subsets, outputs)
    by_loss = linear_datamodeling_score(scores, subsets, -losses)
    np.testing.assert_allclose(by_margin.per_test, by_loss.per_test, rtol=0, atol=1e-12)
    np.testing.assert_allclose(margins(trained, test), _margins(trained.params["weight"].numpy(),
                                                                test.x.numpy(), test.y.numpy()),
                               rtol=0, atol=1e-12)


def test_undefined_rows_are_left_out_and_shapes_checked():
    subsets = draw_subsets(10, 5, seed=0)
    outputs = np.random.default_rng(0).normal(size=(5, 3))
    outputs[:, 1] = 2.0  # the same output on every subset: no correlation
    result = linear_datamodeling_score(np.random.default_rng(1).normal(size=(3, 10)), subsets, outputs)
    assert np.isnan(result.per_test[1]) and result.n_undefined == 1
    assert result.mean == pytest.approx(np.nanmean(result.per_test))
    with pytest.raises(ValueError, match="shapes do not match"):
        linear_datamodeling_score(np.zeros((3, 9)), subsets, outputs)
    with pytest.raises(ValueError, match="alpha"):
        draw_subsets(10, 5, alpha=1.0)


def test_draw_subsets_sizes_and_seed():
    a, b = draw_subsets(11, 7, alpha=0.5, seed=3), draw_subsets(11, 7, alpha=0.5, seed=3)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (7, 11) and a.dtype == bool and set(a.sum(axis=1)) == {6}


def test_train_many_keep_generalises_exclude():
    generator = torch.Generator().manual_seed(0)
    data = Split(torch.rand(30, 1, 28, 28, generator=generator), torch.arange(30) % 2)
    configs = [TrainConfig(epochs=2, init_seed=s, order_seed=s) for s in range(3)]
    all_but_4 = np.ones(30, dtype=bool)
    all_but_4[4] = False
    kept = train_many(configs, data, keep=[all_but_4, None, np.ones(30, dtype=bool)])
    left_out = train_many(configs, data, exclude=[4, None, None])
    for a, b in zip(kept, left_out):
        for name in a.params:
            torch.testing.assert_close(a.params[name], b.params[name], rtol=0, atol=0)
    assert kept[0].kept is not None and kept[1].kept is None
    with pytest.raises(ValueError, match="keeps no training example"):
        train_many(configs[:1], data, keep=[np.zeros(30, dtype=bool)])
    with pytest.raises(ValueError, match="bool mask of shape"):
        train_many(configs[:1], data, keep=[np.ones(29, dtype=bool)])


def test_subset_outputs_are_cached(tmp_path):
    experiment = Experiment(Task(n_train=20, n_test=6), Cache(tmp_path), progress=False)
    subsets = draw_subsets(20, 3, seed=0)
    base = TrainConfig(epochs=1)
    first = subset_outputs(experiment, base, subsets, n_seeds=2)
    assert first.margin.shape == (3, 2, 6) and first.mean().shape == (3, 6)
    np.testing.assert_allclose(first.loss, np.logaddexp(0, -first.margin), rtol=1e-9, atol=1e-12)
    # each subset model is the train_many model of its config on its subset
    model = train_many([first.configs[3]], experiment.train, keep=[subsets[1]])[0]
    # trained in another company of models: equal to float32 rounding (see DESIGN.md)
    np.testing.assert_allclose(first.margin[1, 1], margins(model, experiment.test), rtol=0, atol=1e-5)
    files = sorted(p.name for p in (tmp_path / "subset_outputs").iterdir())
    again = subset_outputs(experiment, base, subsets, n_seeds=2)
    np.testing.assert_array_equal(again.margin, first.margin)
    assert sorted(p.name for p in (tmp_path / "subset_outputs").iterdir()) == files


def test_lds_curve_interval_is_that_of_the_mean_over_groups(convex):
    _, _, scores, subsets, outputs = convex
    # one good model and three of noise: the single-model LDS is their mean, far below the first
    rng = np.random.default_rng(3)
    per_model = [scores] + [rng.normal(size=scores.shape) for _ in range(3)]
    wrapped = SubsetOutputs(subsets, outputs[:, None, :], -outputs[:, None, :], [])
    single, whole = lds_curve(per_model, wrapped, [1, 4])
    each = [linear_datamodeling_score(s, subsets, outputs) for s in per_model]
    assert single["lds"] == pytest.approx(np.mean([e.mean for e in each]), abs=1e-12)
    assert single["lds_max"] == pytest.approx(each[0].mean, abs=1e-12)
    # the interval brackets the mean over groups (not the first group's LDS, outside it)
    assert single["low"] <= single["lds"] <= single["high"] < each[0].mean
    # one group: the interval is linear_datamodeling_score's own (same resampling seed)
    alone = linear_datamodeling_score(np.mean(per_model, axis=0), subsets, outputs)
    assert (whole["low"], whole["high"]) == pytest.approx((alone.low, alone.high), abs=1e-12)

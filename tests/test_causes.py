"""The variants of page 7 (why our Table 1 differs from the paper's), each against an oracle."""

from __future__ import annotations

import ast

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Subset, TensorDataset

from infcore import causes, experiments
from infcore.cache import Cache
from infcore.data import load_mnist
from infcore.methods import compute_scores
from infcore.methods.influence import gauss_newton, hessian, influence_function
from infcore.methods.loo import leave_one_out
from infcore.training import (
    TrainConfig,
    TrainedModel,
    epoch_order,
    epoch_seed,
    retraining_order,
    train,
    train_many,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task():
    train_split, test_split = load_mnist(n_train=20, n_test=10, seed=0)
    config = TrainConfig(epochs=2, batch_size=6)
    return train(config, train_split), train_split, test_split


# ----------------------------------------------------------------------------- orders


@pytest.mark.parametrize("epoch", [0, 2])
def test_redrawn_order_equals_a_shuffling_dataloader(epoch):
    n, exclude, order_seed = 20, 7, 3
    remaining = [i for i in range(n) if i != exclude]
    loader = DataLoader(Subset(TensorDataset(torch.arange(n)), remaining), batch_size=6,
                        shuffle=True, generator=torch.Generator().manual_seed(epoch_seed(order_seed, epoch)))
    drawn = torch.cat([batch for (batch,) in loader])
    assert torch.equal(retraining_order(n, order_seed, epoch, exclude, "redrawn"), drawn)


def test_training_with_a_redrawn_order_visits_the_dataloader_batches(task):
    _, train_split, _ = task
    config = TrainConfig(epochs=2, batch_size=6, order_seed=4)
    seen = []
    train(config, train_split, exclude=5, order_variant="redrawn",
          on_step=lambda step, batch, before, after: seen.append(batch.tolist()))
    remaining = [i for i in range(len(train_split)) if i != 5]
    expected = []
    for epoch in range(config.epochs):
        loader = DataLoader(Subset(TensorDataset(torch.arange(len(train_split))), remaining),
                            batch_size=6, shuffle=True,
                            generator=torch.Generator().manual_seed(epoch_seed(4, epoch)))
        expected += [batch.tolist() for (batch,) in loader]
    assert seen == expected


def test_fresh_orders_are_permutations_of_the_rest_that_differ_per_example():
    orders = {i: retraining_order(30, 1, 0, i, "fresh") for i in (3, 4)}
    for i, order in orders.items():
        assert sorted(order.tolist()) == [j for j in range(30) if j != i]
        assert torch.equal(order, retraining_order(30, 1, 0, i, "fresh"))  # deterministic
    kept = [epoch_order(30, 1, 0, i) for i in (3, 4)]
    assert not torch.equal(orders[3], kept[0]) and not torch.equal(orders[4], kept[1])
    # the full run is the same under every variant
    for variant in ("kept", "redrawn", "fresh"):
        assert torch.equal(retraining_order(30, 1, 0, None, variant), epoch_order(30, 1, 0))


@pytest.mark.parametrize("variant", ["redrawn", "fresh"])
def test_train_many_takes_the_steps_of_train_under_an_order_variant(task, variant):
    trained, train_split, _ = task
    batched = train_many([trained.config] * 3, train_split, exclude=[0, 9, 19], chunk_size=3,
                         order_variant=variant)
    for model, i in zip(batched, [0, 9, 19]):
        alone = train(trained.config, train_split, exclude=i, order_variant=variant)
        for name in alone.params:
            torch.testing.assert_close(model.params[name], alone.params[name], rtol=0, atol=1e-6)


def test_an_unknown_order_variant_is_refused_before_training(task, monkeypatch):
    trained, train_split, _ = task
    monkeypatch.setattr("infcore.training._train_chunk", lambda *a: pytest.fail("trained"))
    with pytest.raises(ValueError, match=r"order_variant must be one of \['kept', 'redrawn', 'fresh'\]"):
        train_many([trained.config], train_split, exclude=[1], order_variant="shuffled")
    with pytest.raises(ValueError, match="order_variant"):
        causes.loo_variants(trained, train_split, train_split, order_variant="shuffled")


# ----------------------------------------------------------------------------- loss precision


def test_loo_variants_give_the_books_scores_and_float32_ones_from_the_same_weights(task):
    trained, train_split, test_split = task
    both = causes.loo_variants(trained, train_split, test_split, chunk_size=64)
    np.testing.assert_array_equal(both["float64"],
                                  leave_one_out(trained, train_split, test_split, chunk_size=64))
    # oracle: float32 cross-entropy of one sequential retraining, by hand
    def float32_losses(params):
        with torch.no_grad():
            logits = functional_call(trained.model, params, (test_split.x,))
        return (-logits.log_softmax(dim=1)[torch.arange(len(test_split)), test_split.y]).double()

    retrained = train(trained.config, train_split, exclude=7)
    by_hand = (float32_losses(retrained.params) - float32_losses(trained.params)).numpy()
    np.testing.assert_allclose(both["float32"][:, 7], by_hand, rtol=0, atol=3e-6)
    np.testing.assert_allclose(both["float32"], both["float64"], rtol=0, atol=3e-6)


def test_another_batching_of_the_retrainings_changes_only_rounding(task):
    trained, train_split, test_split = task
    a = causes.loo_variants(trained, train_split, test_split, chunk_size=64)["float64"]
    b = causes.loo_variants(trained, train_split, test_split, chunk_size=7)["float64"]
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- curvature


def _linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 2))


def test_gauss_newton_of_a_linear_model_is_its_hessian(task):
    _, train_split, _ = task
    model = _linear_model()
    params = {k: v.detach().double() for k, v in model.named_parameters()}
    split = type(train_split)(train_split.x.double(), train_split.y)
    # logits linear in the weights: the network has no curvature of its own
    torch.testing.assert_close(gauss_newton(model, params, split, 0.01),
                               hessian(model, params, split, 0.01), rtol=1e-10, atol=1e-12)


def test_gauss_newton_equals_jacobian_products_built_by_hand(task):
    _, train_split, _ = task
    torch.manual_seed(1)
    model = nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 3), nn.Tanh(),
                          nn.Linear(3, 2)).double()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = train_split.x.double()
    names, shapes = list(params), [p.shape for p in params.values()]
    flat = torch.cat([p.reshape(-1) for p in params.values()])

    def logits(theta, xi):
        pieces = theta.split([int(np.prod(s)) for s in shapes])
        return functional_call(model, {n: v.reshape(s) for n, v, s in zip(names, pieces, shapes)},
                               (xi.unsqueeze(0),))[0]

    by_hand = torch.zeros(len(flat), len(flat), dtype=torch.float64)
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda t: logits(t, xi), flat)  # (2, P)
        p = logits(flat, xi).softmax(dim=0)
        by_hand += jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac
    by_hand = by_hand / len(x) + 0.003 * torch.eye(len(flat), dtype=torch.float64)
    ggn = gauss_newton(model, params, type(train_split)(x, train_split.y), 0.003)
    torch.testing.assert_close(ggn, by_hand, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(ggn)[0] > 0.003 - 1e-10  # positive semi-definite plus the decay


def test_curvature_without_the_weight_decay_term_drops_exactly_that(small):
    trained, train_split, _ = small
    with_term = causes.curvature(trained, train_split, "gauss_newton", True)
    without = causes.curvature(trained, train_split, "gauss_newton", False)
    eye = torch.eye(len(with_term), dtype=torch.float64)
    torch.testing.assert_close(with_term - without, trained.weight_decay * eye, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- damping


@pytest.fixture(scope="module")
def small(task):
    """A tiny non-convex network (114 parameters) whose trained Hessian is indefinite: the
    curvature tests need no 3,008 x 3,008 eigendecomposition."""
    _, train_split, test_split = task
    torch.manual_seed(0)
    net = nn.Sequential(nn.AvgPool2d(7), nn.Flatten(), nn.Linear(16, 6), nn.Tanh(),
                        nn.Linear(6, 2, bias=False))
    trained = train(TrainConfig(epochs=2, batch_size=6, lr=0.5), train_split, model=net)
    return trained, train_split, test_split


@pytest.fixture(scope="module")
def hess(small):
    trained, train_split, _ = small
    return causes.curvature(trained, train_split)


def test_damped_influence_equals_influence_function(small, hess):
    trained, train_split, test_split = small
    matrix = hess
    low, high = causes.damped_influence(trained, train_split, test_split, matrix, ["auto", 2.0])
    np.testing.assert_allclose(low, influence_function(trained, train_split, test_split,
                                                       damping="auto", hess=matrix),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(high, influence_function(trained, train_split, test_split,
                                                        damping=2.0, hess=matrix),
                               rtol=1e-6, atol=1e-9)


def test_resolved_dampings_follow_the_smallest_eigenvalue():
    assert causes.resolve_damping("critical*1.01", -0.2) == pytest.approx(0.202)
    assert causes.resolve_damping("auto", -0.2) == pytest.approx(0.21)
    assert causes.resolve_damping("auto*1.1", -0.2) == pytest.approx(0.231)
    assert causes.resolve_damping(1e-3, -0.2) == 1e-3
    assert causes.resolve_damping("critical*2", 0.5) == 0.0  # already positive definite


@pytest.mark.parametrize("spec", ["critical*0.9", "critical", "auto*-1", "big", -0.1, 0, True])
def test_a_damping_that_means_nothing_is_refused(spec):
    with pytest.raises(ValueError, match="damping must be"):
        causes.parse_damping(spec)


def test_an_indefinite_damping_is_refused_before_any_gradient(small, hess, monkeypatch):
    trained, train_split, test_split = small
    matrix = hess
    smallest = float(torch.linalg.eigvalsh(matrix)[0])
    assert smallest < 0  # the trained network's Hessian is indefinite
    monkeypatch.setattr(causes, "per_example_grads", lambda *a, **k: pytest.fail("computed"))
    with pytest.raises(ValueError, match="leaves M \\+ damping\\*I indefinite"):
        causes.damped_influence(trained, train_split, test_split, matrix, ["auto", -smallest / 2])
    with pytest.raises(ValueError, match="damping must be"):
        causes.influence_scores(None, [], [("hessian", True, "critical*0.5")])
    with pytest.raises(ValueError, match="curvature must be"):
        causes.influence_scores(None, [], [("fisher", True, "auto")])


# ----------------------------------------------------------------------------- response targets


def _newton(objective, theta, iterations=40):
    for _ in range(iterations):
        g = torch.func.grad(objective)(theta)
        theta = theta - torch.linalg.solve(torch.func.hessian(objective)(theta), g)
    return theta


@pytest.fixture(scope="module")
def convex(task):
    """A model whose logits are linear in its weights, so every objective below is convex."""
    _, train_split, test_split = task
    model = _linear_model()
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    decay = 0.1

    def unflat(theta):
        pieces = theta.split([int(np.prod(s)) for s in shapes])
        return {n: v.reshape(s) for n, v, s in zip(names, pieces, shapes)}

    def losses(theta, split):
        return nn.functional.cross_entropy(functional_call(model, unflat(theta), (split.x.double(),)),
                                           split.y, reduction="none")

    def objective(weights):
        return lambda theta: (losses(theta, train_split) * weights).sum() + decay / 2 * theta @ theta

    n = len(train_split)
    start = torch.zeros(sum(int(np.prod(s)) for s in shapes), dtype=torch.float64)
    optimum = _newton(objective(torch.full((n,), 1.0 / n, dtype=torch.float64)), start)
    trained = TrainedModel(model, {k: v.float() for k, v in unflat(optimum).items()}, [], [], None,
                           weight_decay=decay)
    return trained, train_split, test_split, objective, losses, optimum


def test_warm_start_loo_on_a_convex_model_equals_the_exact_refit(convex):
    trained, train_split, test_split, objective, losses, optimum = convex
    n, columns = len(train_split), [0, 5, 13]
    scores = causes.response_scores(trained, train_split, test_split, target="warm_start",
                                    columns=columns, steps=1500, lr=0.5)
    for c, i in enumerate(columns):
        weights = torch.full((n,), 1.0 / (n - 1), dtype=torch.float64)
        weights[i] = 0
        refit = _newton(objective(weights), optimum)
        exact = (losses(refit, test_split) - losses(optimum, test_split)).detach().numpy()
        np.testing.assert_allclose(scores[:, c], exact, rtol=0, atol=2e-5)
        assert np.abs(exact).max() > 1e-3  # a real effect, not rounding


def test_pbrf_on_a_convex_model_at_its_optimum_is_the_downweighted_refit(convex):
    trained, train_split, test_split, objective, losses, optimum = convex
    n, columns = len(train_split), [2, 11]
    scores = causes.response_scores(trained, train_split, test_split, target="pbrf",
                                    columns=columns, steps=1500, lr=0.5, damping=0.0)
    for c, i in enumerate(columns):
        # with logits linear in the weights, the Bregman divergence of the outputs is that of the
        # loss itself: at the optimum the PBRF is the objective with example i weighted 0 of 1/n
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        weights[i] = 0
        refit = _newton(objective(weights), optimum)
        exact = (losses(refit, test_split) - losses(optimum, test_split)).detach().numpy()
        np.testing.assert_allclose(scores[:, c], exact, rtol=0, atol=2e-5)


def test_pbrf_is_approximated_by_gauss_newton_influence(small):
    """For small steps the PBRF moves along (G + decay + damping)^-1 g_i / n, as Bae et al. say."""
    trained, train_split, test_split = small
    pbrf = causes.response_scores(trained, train_split, test_split, target="pbrf",
                                  columns=list(range(20)), steps=60, lr=0.5, damping=1.0)
    matrix = causes.curvature(trained, train_split, "gauss_newton")
    ggn = influence_function(trained, train_split, test_split, damping=1.0, hess=matrix)
    assert causes.agreement([pbrf], [ggn])["pearson"] > 0.99


def test_response_scores_refuse_bad_input(task):
    trained, train_split, test_split = task
    with pytest.raises(ValueError, match="target must be one of"):
        causes.response_scores(trained, train_split, test_split, target="refit", columns=[0],
                               steps=1, lr=0.1)
    with pytest.raises(ValueError, match="columns must be distinct"):
        causes.response_scores(trained, train_split, test_split, target="pbrf", columns=[0, 0],
                               steps=1, lr=0.1)


# ----------------------------------------------------------------------------- sweeps, verdicts


def test_sweeps_reuse_the_books_cache_entries_and_their_own(tmp_path, monkeypatch):
    experiment = experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(tmp_path),
                                        progress=False)
    configs = [TrainConfig(epochs=1, batch_size=8, init_seed=s) for s in (0, 1)]
    book = experiment.scores("leave_one_out", configs)
    baseline, seconds = causes.loo_scores(experiment, configs)
    assert seconds == 0 and all(np.array_equal(a, b) for a, b in zip(book, baseline))
    redrawn, spent = causes.loo_scores(experiment, configs, order_variant="redrawn")
    assert spent > 0
    monkeypatch.setattr(causes, "loo_variants", lambda *a, **k: pytest.fail("recomputed"))
    again, spent_again = causes.loo_scores(experiment, configs, order_variant="redrawn",
                                           precision="float32")
    assert spent_again == spent  # the cost recorded when it was computed
    np.testing.assert_allclose(again[0], redrawn[0], rtol=0, atol=3e-6)
    variants = [("hessian", True, "auto"), ("hessian", False, "auto"), ("hessian", True, 1e-9)]
    scores, _ = causes.influence_scores(experiment, configs[:1], variants)
    assert np.array_equal(scores[variants[0]][0],
                          experiment.scores("influence_function", configs[:1], damping="auto")[0])
    # the book's entry, written from the variants' Hessian, is what page 2 would compute
    model = experiment.models(configs[:1])[0]
    np.testing.assert_allclose(scores[variants[0]][0], compute_scores(
        "influence_function", model, experiment.train, experiment.test, damping="auto"),
        rtol=1e-9, atol=0)
    assert scores[variants[2]] == [None]  # indefinite: not allowed, recorded as such
    assert scores[variants[1]][0].shape == (4, 20)


def test_page_sweeps_on_columns_retrain_only_for_those_examples(tmp_path):
    experiment = experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(tmp_path),
                                        progress=False)
    configs = [TrainConfig(epochs=1, batch_size=8, init_seed=s) for s in (0, 1)]
    columns = causes.draw_columns(20, 6, seed=3)
    assert columns == sorted(set(columns)) and len(columns) == 6
    assert causes.draw_columns(20, 6, seed=3) == columns and causes.draw_columns(20, None) is None
    book = experiment.scores("leave_one_out", configs)
    # the book's own variant: page 2's matrices restricted, nothing retrained
    baseline, seconds = causes.loo_scores(experiment, configs, columns=columns)
    assert seconds == 0 and all(np.array_equal(a, b[:, columns]) for a, b in zip(baseline, book))
    # another variant: its own cache entry, equal to the full variant's columns (float32 rounding
    # of retrainings batched in other company)
    subset, spent = causes.loo_scores(experiment, configs, order_variant="fresh", columns=columns)
    full, spent_full = causes.loo_scores(experiment, configs, order_variant="fresh")
    assert subset[0].shape == (4, 6) and full[0].shape == (4, 20) and spent > 0
    for a, b in zip(subset, full):
        np.testing.assert_allclose(a, b[:, columns], rtol=0, atol=1e-6)
    # longer training: leave-one-out over the columns only, against the full matrices' columns
    base = configs[0]
    rows, curve = causes.convergence(experiment, base, [0, 1], [2], [2], columns)
    longer = [replace(c, epochs=2) for c in configs]
    expected = causes.between_runs([s[:, columns] for s in experiment.scores("leave_one_out", longer)])
    measured = curve.set_index(["epochs", "method"]).loc[(2, "leave_one_out")]
    assert measured.n_pairs == 1
    np.testing.assert_allclose(measured.pearson, expected["pearson"], rtol=0, atol=1e-5)
    short = curve.set_index(["epochs", "method"]).loc[(1, "leave_one_out")]
    assert short.pearson == causes.between_runs([s[:, columns] for s in book])["pearson"]
    with pytest.raises(ValueError, match=r"number of columns must be None or an integer in \[2, 20\]"):
        causes.draw_columns(20, 21)


def test_verdicts_on_the_papers_own_numbers():
    for method, ours in (("leave_one_out", 0.653), ("influence_function", 0.652)):
        theirs = causes.PAPER[method]["pearson"]
        assert causes.verdict(theirs, ours, theirs) == causes.MOVES
        assert causes.verdict(ours, ours, theirs) == causes.DOES_NOT
        assert causes.verdict(float("nan"), ours, theirs) == causes.DOES_NOT
    assert causes.PAPER["leave_one_out"]["pearson"] == 0.043
    assert causes.PAPER["influence_function"]["pearson"] == 0.023


@pytest.mark.parametrize("override, message", [
    ({"dampings": ["auto", "critical*0.5"]}, "dampings: damping must be"),
    ({"joint_orders": ["shuffled"]}, "joint_orders must be"),
    ({"noise_chunk": 64}, "noise_chunk must differ"),
    ({"long_loo_seeds": [4]}, "long_loo_seeds must be 0"),
    ({"variant_seeds": 4}, "variant_seeds must lie"),
    ({"long_epochs": [5]}, "long_epochs must all exceed"),
    ({"loo_columns": 1}, "loo_columns must be None or an integer >= 2"),
    ({"loo_columns": 101}, "loo_columns must be at most"),
])
def test_the_page_refuses_bad_parameters(override, message):
    from infcore.profiles import profile_parameters
    from infcore.runbook import declared_parameters
    from infcore.validation import ParameterError, check_page
    from pathlib import Path

    source = Path(__file__).parents[1] / "notebooks" / "07_why_they_differ.py"
    declared = {k: ast.literal_eval(v) for k, v in declared_parameters(source).items()}
    parameters = {**declared, **profile_parameters("quick", "07_why_they_differ")}
    check_page("07_why_they_differ", parameters)
    with pytest.raises(ParameterError, match=message):
        check_page("07_why_they_differ", {**parameters, **override})


def test_summary_puts_each_change_beside_ours_and_the_papers():
    def row(cause, change, method, pearson, measured=causes.BETWEEN):
        return {"cause": cause, "change": change, "method": method, "measured": measured,
                "pearson": pearson, "spearman": 0.0, "top_overlap": 0.0, "n_pairs": 1,
                "seconds": 0.0}

    rows = pd.DataFrame([row("baseline", "ours", causes.LOO, 0.65),
                         row("baseline", "ours", causes.IF, 0.65),
                         row("2. order", "fresh", causes.LOO, 0.05),
                         row("2. order", "fresh", causes.LOO, 0.9, "agreement with ours, same model"),
                         row("6. damping", "1.0", causes.IF, 0.6),
                         row("3. noise floor", "same seeds", causes.LOO, 0.01, "agreement with itself")])
    table = causes.summary(rows)
    assert list(table.cause) == ["ours (baseline)", "the paper", "2. order", "6. damping",
                                 "3. noise floor"]
    # a value of agreement with itself, however low, is not judged against the paper's
    assert table.verdict.tolist()[2:] == [f"LOO: {causes.MOVES}", f"IF: {causes.DOES_NOT}", ""]
    assert np.isnan(table.IF[2]) and np.isnan(table.LOO[3])
    note = causes.closing_note(table)
    assert "Moves at least halfway to the paper's value: 2. order: fresh." in note


def test_damping_rows_count_the_pairs_of_models_and_skip_points_not_allowed():
    curve = pd.DataFrame([
        {"damping": "auto", "damping_low": 0.1, "damping_high": 0.2, "allowed": 4,
         **{f"stability_{m}": 0.5 for m in ("pearson", "spearman", "top_overlap")}},
        {"damping": "0.001", "damping_low": 0.001, "damping_high": 0.001, "allowed": 0,
         **{f"stability_{m}": np.nan for m in ("pearson", "spearman", "top_overlap")}}])
    rows = causes.damping_rows(curve)
    assert len(rows) == 1 and rows.n_pairs.tolist() == [6]  # 4 models: 6 pairs
    assert rows.change[0] == "damping auto (0.1 to 0.2)" and rows.pearson[0] == 0.5

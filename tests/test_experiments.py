"""Sweeps: caching, resuming after an interruption, the Table 1/2 protocols on tiny runs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from infcore import experiments, stability
from infcore.cache import Cache
from infcore.data import Split, fingerprint
from infcore.methods import compute_scores
from infcore.training import TrainConfig, train_many

BASE = TrainConfig(epochs=1, batch_size=8)


@pytest.fixture
def experiment(tmp_path):
    return experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(tmp_path),
                                  progress=False)


def test_models_are_trained_once_and_reloaded_identically(experiment, monkeypatch):
    configs = [replace(BASE, init_seed=s) for s in range(3)]
    first = experiment.models(configs)
    monkeypatch.setattr(experiments, "train_many", lambda *a, **k: pytest.fail("retrained a cached model"))
    again = experiment.models(configs)
    for a, b in zip(first, again):
        assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
        assert len(a.checkpoints) == len(b.checkpoints) and a.lrs == b.lrs


def test_scores_equal_a_direct_computation(experiment):
    config = replace(BASE, init_seed=1)
    cached = experiment.scores("grad_dot", [config])[0]
    model = train_many([config], experiment.train)[0]
    np.testing.assert_allclose(cached, compute_scores("grad_dot", model, experiment.train, experiment.test),
                               rtol=1e-6, atol=1e-9)


def test_an_interrupted_sweep_resumes_with_identical_results(tmp_path, monkeypatch):
    configs = [replace(BASE, init_seed=s) for s in range(4)]
    reference = experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(None),
                                       progress=False).scores("tracin_cp", configs)

    experiment = experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(tmp_path),
                                        progress=False)
    real, calls = experiments.compute_scores, []

    def interrupted(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user stops the run after two models
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(experiments, "compute_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        experiment.scores("tracin_cp", configs)
    monkeypatch.setattr(experiments, "compute_scores",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    resumed = experiment.scores("tracin_cp", configs)
    assert len(calls) == 4  # two before the interruption, only the two missing ones after it
    for a, b in zip(reference, resumed):
        np.testing.assert_array_equal(a, b)


def test_different_options_are_cached_apart(experiment):
    a = experiment.scores("representer", [BASE], lam=0.01)[0]
    b = experiment.scores("representer", [BASE], lam=1.0)[0]
    assert not np.allclose(a, b)


def test_instability_has_one_row_per_pair_and_no_batch_size_row_for_tracin_ideal(experiment):
    pairs = experiments.instability(
        experiment, ["grad_cos", "tracin_ideal"], ["initialization", "batch_size"], BASE,
        seeds=[0, 1, 2], batch_sizes=[4, 8], ideal_base=replace(BASE, batch_size=1, lr=0.01))
    counts = pairs.groupby(["perturbation", "method"]).size().to_dict()
    assert counts == {("initialization", "grad_cos"): 3, ("initialization", "tracin_ideal"): 3,
                      ("batch_size", "grad_cos"): 1}
    assert pairs[list(stability.METRICS)].notna().all().all()


def test_expected_stability_baseline_pairs_and_set_sizes(experiment):
    curve = experiments.expected_stability(experiment, ["grad_dot"], BASE, BASE, n_models=3, sizes=[1, 3])
    assert curve.groupby("n_models").size().to_dict() == {1: 3, 3: 1}
    sets = experiments.model_sets(3, BASE, 0) + experiments.model_sets(3, BASE, 3)
    assert len({(c.init_seed, c.order_seed) for c in sets}) == 6


def test_models_to_reach():
    curve = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "n_models": [1, 2, 5] * 2,
                          "pearson": [0.5, 0.92, 0.95, 0.3, 0.6, 0.5]})
    result = experiments.models_to_reach(curve, 0.9).set_index("method")
    assert result.loc["a", "reached"] and result.loc["a", "n_models"] == 2
    assert not result.loc["b", "reached"] and result.loc["b", "n_models"] == 2


def test_poisoning_study_refuses_a_backdoor_that_was_not_learned(tmp_path):
    with pytest.raises(RuntimeError, match="backdoor was not learned"):
        experiments.poisoning_study(experiments.Task(n_train=20, n_test=8), ["grad_dot"], BASE, BASE,
                                    n_models=1, n_poison=2, n_test_poison=2, cache=Cache(tmp_path),
                                    progress=False)


def test_loo_resolution_summarises_its_pieces(experiment):
    from infcore.methods.loo import rounding_noise

    result = experiments.loo_resolution(experiment, BASE, copies=3)
    loo = np.abs(experiment.scores("leave_one_out", [BASE])[0])
    model = experiment.models([BASE])[0]
    noise = np.abs(rounding_noise(model, experiment.train, experiment.test, copies=3))
    p95 = np.quantile(noise, 0.95)
    assert result == pytest.approx({"median_abs_loo": np.median(loo), "noise_p95": p95,
                                    "noise_max": noise.max(),
                                    "share_below_noise": np.mean(loo < p95)})


def test_scores_of_an_older_revision_are_not_reused(experiment):
    # a leave-one-out matrix stored before revision 2 (float32 losses) has a key without revision
    stale = {**experiment._model_key(BASE), "method": "leave_one_out", "options": {}}
    experiment.cache.save("scores", stale, np.full((4, 20), 123.0))
    fresh = experiment.scores("leave_one_out", [BASE])[0]
    assert not np.any(fresh == 123.0)
    # methods without a revision keep their keys: scores stored that way are still found
    plain = {**experiment._model_key(BASE), "method": "grad_dot", "options": {}}
    experiment.cache.save("scores", plain, np.full((4, 20), 7.0))
    assert np.all(experiment.scores("grad_dot", [BASE])[0] == 7.0)


def test_table2_summary_takes_single_pairs_and_the_largest_sets():
    curve = pd.DataFrame({
        "dataset": "mnist", "method": "grad_dot", "n_models": [1, 1, 2, 3],
        "pair": [0, 1, 0, 0], "pearson": [0.2, 0.4, 0.7, 0.9], "spearman": 0.5,
        "top_overlap": 50.0})
    table = experiments.table2_summary(curve).set_index(["setting", "metric"])["value"]
    assert table["baseline", "pearson"] == pytest.approx(0.3)
    assert table["expected", "pearson"] == pytest.approx(0.9)
    assert len(table) == 2 * len(stability.METRICS)


def test_table2_summary_needs_a_set_larger_than_one():
    curve = pd.DataFrame({"dataset": "mnist", "method": "grad_dot", "n_models": [1, 1], "pair": [0, 1],
                          "pearson": 0.5, "spearman": 0.5, "top_overlap": 50.0})
    with pytest.raises(ValueError, match="set size >= 2"):
        experiments.table2_summary(curve)


def test_table1_summary_means_over_pairs():
    pairs = pd.DataFrame({"dataset": "mnist", "perturbation": "ordering", "method": "grad_dot",
                          "pearson": [0.2, 0.6], "spearman": [0.1, 0.3], "top_overlap": [10.0, 30.0]})
    table = experiments.table1_summary(pairs).set_index("metric")["value"]
    assert table.to_dict() == pytest.approx({"pearson": 0.4, "spearman": 0.2, "top_overlap": 20.0})


def test_instability_refuses_a_run_compared_with_itself(experiment, monkeypatch):
    """seeds [0, 1, 1] made a pair of identical runs count as perfect agreement."""
    monkeypatch.setattr(experiments, "compute_scores", lambda *a, **k: pytest.fail("scored"))
    with pytest.raises(ValueError, match=r"initialization: runs 1 and 2 are the same config "
                                         r"TrainConfig\(.*init_seed=1"):
        experiments.instability(experiment, ["grad_dot"], ["initialization"], BASE, seeds=[0, 1, 1],
                                batch_sizes=[], ideal_base=BASE)
    with pytest.raises(ValueError, match="batch_size: runs 0 and 1 are the same config"):
        experiments.instability(experiment, ["grad_dot"], ["batch_size"], BASE, seeds=[0, 1],
                                batch_sizes=[8, 8], ideal_base=BASE)


def test_constant_scores_are_refused_naming_method_and_model(experiment, monkeypatch):
    """A dead network scores every pair 0: Table 1 then reported a top-10% overlap of 100."""
    monkeypatch.setattr(experiments, "compute_scores",
                        lambda name, trained, train, test, **k: np.zeros((len(test), len(train))))
    with pytest.raises(ValueError, match=r"grad_dot scores of the model TrainConfig\(.*init_seed=0.*"
                                         r"are constant in every row"):
        experiments.instability(experiment, ["grad_dot"], ["initialization"], BASE, seeds=[0, 1],
                                batch_sizes=[], ideal_base=BASE)
    with pytest.raises(ValueError, match="grad_dot scores of model 0 of set A are constant"):
        experiments.expected_stability(experiment, ["grad_dot"], BASE, BASE, n_models=2, sizes=[1])


def test_splits_without_a_task_key_are_refused():
    train_split, test_split = experiments.Task(n_train=20, n_test=4).load()
    with pytest.raises(ValueError, match=r"Experiment\(splits=...\) needs a task_key"):
        experiments.Experiment(experiments.Task(n_train=20, n_test=4), Cache(None),
                               splits=(train_split, test_split))


def test_a_model_is_never_reused_for_another_training_split(experiment, tmp_path):
    """Flipped labels under the same task key got the cached model of the original labels back."""
    original = experiment.models([BASE])[0]
    flipped = Split(experiment.train.x, 1 - experiment.train.y)
    other = experiments.Experiment(experiment.task, experiment.cache, splits=(flipped, experiment.test),
                                   task_key=experiment.task_key, progress=False)
    model = other.models([BASE])[0]
    assert model.train_fingerprint == fingerprint(flipped) != original.train_fingerprint
    assert not torch.equal(model.params["fc2.weight"], original.params["fc2.weight"])
    reloaded = experiments.Experiment(experiment.task, experiment.cache, progress=False).models([BASE])[0]
    assert reloaded.n_train == 20 and reloaded.train_fingerprint == original.train_fingerprint
    assert torch.equal(reloaded.params["fc2.weight"], original.params["fc2.weight"])

"""Agreement with leave-one-out over groups of models, and the rank agreement of yardsticks,
against hand-computed values and scipy."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from infcore import stability
from infcore.cache import Cache
from infcore.datamodels import draw_subsets, linear_datamodeling_score, subset_outputs
from infcore.experiments import Experiment, Task, model_sets
from infcore.training import TrainConfig
from infcore.yardsticks import (attribution_yardsticks, lds_gain_sentence, lds_gains, loo_agreement, rank_agreement,
                                rank_sentence, rank_verdicts)


def test_loo_agreement_compares_group_means():
    rng = np.random.default_rng(0)
    method = [rng.normal(size=(3, 8)) for _ in range(4)]
    loo = [rng.normal(size=(3, 8)) for _ in range(4)]
    rows = loo_agreement(method, loo, [1, 2, 4])
    singles = np.mean([stability.row_pearson(a, b).mean() for a, b in zip(method, loo)])
    assert rows[0]["loo_pearson"] == pytest.approx(singles, abs=1e-12)
    pairs = [(np.mean(method[g:g + 2], axis=0), np.mean(loo[g:g + 2], axis=0)) for g in (0, 2)]
    assert rows[1]["loo_spearman"] == pytest.approx(
        np.mean([stability.row_spearman(a, b).mean() for a, b in pairs]), abs=1e-12)
    whole = stability.row_pearson(np.mean(method, axis=0), np.mean(loo, axis=0)).mean()
    assert rows[2]["loo_pearson"] == pytest.approx(whole, abs=1e-12)
    assert loo_agreement(loo, loo, [1])[0]["loo_pearson"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same models"):
        loo_agreement(method, loo[:3], [1])


def test_rank_agreement_verdicts():
    table = pd.DataFrame({"method": list("abcde"), "x": [1, 2, 3, 4, 5.0],
                          "y": [10, 20, 30, 40, 50.0], "z": [5, 4, 3, 2, np.nan]})
    result = rank_agreement(table, ["x", "y", "z"]).set_index(["first", "second"])
    assert result.loc[("x", "y"), "spearman"] == pytest.approx(1.0)
    assert result.loc[("x", "y"), "verdict"] == "agree" and result.loc[("x", "y"), "same_best"]
    # z leaves out e (nan): four methods, reversed
    assert result.loc[("x", "z"), "n_methods"] == 4
    assert result.loc[("x", "z"), "spearman"] == pytest.approx(-1.0)
    assert result.loc[("x", "z"), "verdict"] == "disagree"
    assert result.loc[("x", "z"), "best_second"] == "a"
    mixed = pd.DataFrame({"method": list("abcde"), "x": [1, 2, 3, 4, 5.0], "y": [2, 1, 5, 3, 4.0]})
    row = rank_agreement(mixed, ["x", "y"]).iloc[0]
    assert row.spearman == pytest.approx(stats.spearmanr(mixed.x, mixed.y).statistic)
    assert row.kendall == pytest.approx(stats.kendalltau(mixed.x, mixed.y).statistic)
    assert row.verdict == "partly"
    assert rank_agreement(mixed.head(2), ["x", "y"]).iloc[0].verdict == "too few methods"


def test_rank_verdicts_per_size_and_in_words():
    # at 1 model the three yardsticks order a-e alike; at 4 models lds reverses the order
    table = pd.DataFrame({"method": list("abcde") * 2, "n_models": [1] * 5 + [4] * 5,
                          "loo_pearson": [1, 2, 3, 4, 5.0] * 2,
                          "lds": [1, 2, 3, 4, 5.0] + [5, 4, 3, 2, 1.0],
                          "auprc": [0.1, 0.2, 0.3, 0.4, np.nan] * 2,
                          "lds_low": [0.0, 0.0, 2.5, 3.9, 4.9] * 2,
                          "lds_high": [2.0, 4.0, 3.5, 4.1, 5.1] * 2})
    verdicts = rank_verdicts(table, [1, 4])
    assert list(verdicts.n_models) == [1, 1, 1, 4, 4, 4]
    assert (verdicts[verdicts.n_models == 1].verdict == "agree").all()
    assert rank_sentence(verdicts[verdicts.n_models == 1]) == "yes: every pair of yardsticks agrees"
    assert rank_sentence(verdicts) == ("no: agreement with leave-one-out and the LDS disagree at "
                                       "4 models; the LDS and mislabel detection disagree at 4 "
                                       "models")
    gains = lds_gains(table).set_index("method")
    assert gains.loc["a"].tolist() == [1.0, 5.0, 4, 4.0, 1.0]
    assert gains.loc["e", "gain"] == -4.0 and len(gains) == 5
    # a gains 4 (half-width 1), b gains 2 (half-width 2: not more), c gains 0
    assert lds_gain_sentence(table) == ("averaging over 4 models raises the LDS by more than its "
                                        "bootstrap half-width for 1 of 5 methods (a 1.000 to 5.000)")


def test_attribution_yardsticks_reuse_the_expected_influence_scores(tmp_path):
    experiment = Experiment(Task(n_train=20, n_test=6), Cache(tmp_path), progress=False)
    base = TrainConfig(epochs=1)
    ideal = TrainConfig(epochs=1, batch_size=1, lr=0.01)
    subsets = draw_subsets(20, 6, seed=0)
    outputs = subset_outputs(experiment, base, subsets, n_seeds=1)
    table = attribution_yardsticks(experiment, ["leave_one_out", "grad_dot"], base, ideal, 2,
                                   [1, 2], outputs)
    assert table[["method", "n_models"]].values.tolist() == [
        ["leave_one_out", 1], ["leave_one_out", 2], ["grad_dot", 1], ["grad_dot", 2]]
    assert table.query("method == 'leave_one_out'").loo_pearson.isna().all()
    # the scores are the cached ones of set A (model_sets(n, base)), as on the expected page
    grad_dot = experiment.scores("grad_dot", model_sets(2, base))
    expected = linear_datamodeling_score(np.mean(grad_dot, axis=0), subsets, outputs.mean()).mean
    row = table.query("method == 'grad_dot' and n_models == 2").iloc[0]
    assert row.lds == pytest.approx(expected, abs=1e-12)
    assert row.n_groups == 1

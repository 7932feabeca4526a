"""Three yardsticks side by side: agreement with leave-one-out, the LDS, mislabel detection.

The paper judges methods against leave-one-out and finds that yardstick wanting; the field has
since settled on the linear datamodeling score (:mod:`infcore.datamodels`) and on finding
mislabelled training examples (:mod:`infcore.mislabel`). This module computes the first two for
the same models and scores as the expected-influence page (set A of
:func:`infcore.experiments.expected_stability`, so a run computes the scores once), and asks
whether the three yardsticks order the methods alike.

What it holds:

loo_agreement
    Correlation of a method's (expected) scores with the (expected) leave-one-out scores of the
    same models.
attribution_yardsticks
    For each method and number of models averaged: LOO agreement and LDS.
rank_agreement, rank_verdicts, rank_sentence
    Rank correlation between the orderings of the methods by each pair of yardsticks, with a
    verdict, at one or several numbers of models averaged, and that verdict in words.
lds_gains, lds_gain_sentence
    Each method's LDS with one model and with the most models averaged, and which rise, in words.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from infcore import stability
from infcore.datamodels import SubsetOutputs, lds_curve
from infcore.experiments import Experiment, check_methods, model_sets
from infcore.training import TrainConfig

#: the orderings of two yardsticks agree from this Spearman correlation on, and disagree below
#: :data:`DISAGREE`; between the two they agree in part
AGREE, DISAGREE = 0.7, 0.3
#: yardstick column -> what it measures, for the page's tables (larger is better for all three)
YARDSTICKS = {"loo_pearson": "agreement with leave-one-out (Pearson)",
              "lds": "linear datamodeling score", "auprc": "mislabel detection (AUPRC)"}


def _groups(per_model: Sequence[np.ndarray], m: int) -> list[np.ndarray]:
    """Expected scores of the ``len(per_model) // m`` disjoint groups of m consecutive models."""
    return [np.mean(per_model[g * m:(g + 1) * m], axis=0) for g in range(len(per_model) // m)]


def loo_agreement(
    per_model: Sequence[np.ndarray], per_model_loo: Sequence[np.ndarray], sizes: Sequence[int]
) -> list[dict[str, float]]:
    """Mean over test examples of the correlation between a method's scores and leave-one-out's.

    For each m in ``sizes``, the models are taken in disjoint groups of m (``per_model[k]`` and
    ``per_model_loo[k]`` come from the same model k); each group's expected scores are compared
    with that group's expected leave-one-out scores, and the rows give the mean over groups.

    Returns
    -------
    list of dicts with n_models, loo_pearson, loo_spearman
    """
    if len(per_model) != len(per_model_loo):
        raise ValueError(f"need leave-one-out scores of the same models: {len(per_model)} against "
                         f"{len(per_model_loo)}")
    rows = []
    for m in sizes:
        pairs = list(zip(_groups(per_model, m), _groups(per_model_loo, m)))
        if not pairs:
            raise ValueError(f"size {m} exceeds the {len(per_model)} models")
        means = pd.DataFrame([stability.row_metrics(a, b).mean() for a, b in pairs]).mean()
        rows.append({"n_models": m, "loo_pearson": float(means["pearson"]),
                     "loo_spearman": float(means["spearman"])})
    return rows


def attribution_yardsticks(
    experiment: Experiment,
    methods: Sequence[str],
    base: TrainConfig,
    ideal_base: TrainConfig,
    n_models: int,
    sizes: Sequence[int],
    outputs: SubsetOutputs,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    output: str = "margin",
) -> pd.DataFrame:
    """LOO agreement and LDS of each method, single and expected over groups of models.

    The scores are those of set A of :func:`infcore.experiments.expected_stability`
    (``model_sets(n_models, base)``; TracInIdeal's on ``ideal_base``), read from the cache when the
    expected-influence page computed them. TracInIdeal's batch-size-1 models are compared with
    the leave-one-out scores of the models of ``base`` with the same seeds (leave-one-out of a
    batch-size-1 model would be one batch-size-1 retraining per example).

    Returns
    -------
    DataFrame with columns method, n_models, loo_pearson, loo_spearman (nan for leave-one-out
    itself), lds, lds_min, lds_max (over groups), lds_low, lds_high (bootstrap interval of the
    mean over groups, test examples resampled), n_groups
    """
    methods = check_methods(methods)
    options = options or {}
    loo = experiment.scores("leave_one_out", model_sets(n_models, base),
                            **options.get("leave_one_out", {}))
    rows = []
    for method in methods:
        configs = model_sets(n_models, ideal_base if method == "tracin_ideal" else base)
        per_model = loo if method == "leave_one_out" else experiment.scores(
            method, configs, **options.get(method, {}))
        lds = lds_curve(per_model, outputs, sizes, output)
        agreement = ([{"loo_pearson": np.nan, "loo_spearman": np.nan}] * len(lds)
                     if method == "leave_one_out" else loo_agreement(per_model, loo, sizes))
        for row, agree in zip(lds, agreement):
            rows.append({"method": method, "n_models": row["n_models"],
                         "loo_pearson": agree["loo_pearson"], "loo_spearman": agree["loo_spearman"],
                         "lds": row["lds"], "lds_min": row["lds_min"], "lds_max": row["lds_max"],
                         "lds_low": row["low"], "lds_high": row["high"],
                         "n_groups": row["n_groups"]})
    return pd.DataFrame(rows)


def rank_agreement(table: pd.DataFrame, yardsticks: Sequence[str] = tuple(YARDSTICKS)) -> pd.DataFrame:
    """Do two yardsticks order the methods alike? Spearman and Kendall correlation of orderings.

    Parameters
    ----------
    table : DataFrame
        One row per method (column ``method``) with a column per yardstick, larger is better; nan
        where a yardstick does not judge a method (leave-one-out against itself, Grad-Cos's
        self-influence), which leaves the method out of that pair.
    yardsticks : sequence of str
        Columns to compare.

    Returns
    -------
    DataFrame with one row per pair: first, second, n_methods (judged by both), spearman,
    kendall, same_best (whether both put the same method first), best_first, best_second, verdict
    (``agree`` from :data:`AGREE` on, ``disagree`` below :data:`DISAGREE`, else ``partly``;
    ``too few methods`` under 3)
    """
    rows = []
    for first, second in itertools.combinations(yardsticks, 2):
        both = table[["method", first, second]].dropna()
        row = {"first": first, "second": second, "n_methods": len(both)}
        if len(both) < 3:
            rows.append({**row, "spearman": np.nan, "kendall": np.nan, "same_best": False,
                         "best_first": None, "best_second": None, "verdict": "too few methods"})
            continue
        rho = float(stats.spearmanr(both[first], both[second]).statistic)
        tau = float(stats.kendalltau(both[first], both[second]).statistic)
        best_first = both.method.iloc[int(np.argmax(both[first].to_numpy()))]
        best_second = both.method.iloc[int(np.argmax(both[second].to_numpy()))]
        verdict = "agree" if rho >= AGREE else "disagree" if rho < DISAGREE else "partly"
        rows.append({**row, "spearman": rho, "kendall": tau, "same_best": best_first == best_second,
                     "best_first": best_first, "best_second": best_second, "verdict": verdict})
    return pd.DataFrame(rows)


def side_by_side(attribution: pd.DataFrame, detection: pd.DataFrame) -> pd.DataFrame:
    """The three yardsticks in one long table: one row per method and number of models averaged.

    Parameters
    ----------
    attribution : DataFrame
        Rows of :func:`attribution_yardsticks`.
    detection : DataFrame
        The ``detection`` rows of :func:`infcore.mislabel.mislabel_study` (method, n_models, auprc,
        found_10, found_20); a method or size it lacks gets nan.

    Returns
    -------
    DataFrame with columns method, n_models, loo_pearson, lds, lds_low, lds_high, auprc, found_10,
    found_20
    """
    merged = attribution.merge(detection.drop(columns="n_groups", errors="ignore"),
                               on=["method", "n_models"], how="outer", sort=False)
    order = list(dict.fromkeys([*attribution.method, *detection.method]))
    merged["method"] = pd.Categorical(merged.method, order)
    merged = merged.sort_values(["method", "n_models"]).reset_index(drop=True)
    merged["method"] = merged.method.astype(str)
    return merged[["method", "n_models", "loo_pearson", "lds", "lds_low", "lds_high", "auprc",
                   "found_10", "found_20"]]


def rank_verdicts(table: pd.DataFrame, sizes: Sequence[int]) -> pd.DataFrame:
    """:func:`rank_agreement` of a :func:`side_by_side` table at each number of models in ``sizes``.

    Returns
    -------
    DataFrame with the columns of :func:`rank_agreement` and n_models, one block per size
    """
    return pd.concat([rank_agreement(table[table.n_models == m]).assign(n_models=m)
                      for m in sizes], ignore_index=True)


#: how :func:`rank_sentence` names the yardsticks
NAMES = {"loo_pearson": "agreement with leave-one-out", "lds": "the LDS",
         "auprc": "mislabel detection"}


def rank_sentence(verdicts: pd.DataFrame) -> str:
    """Whether every pair of yardsticks orders the methods alike, in words (from
    :func:`rank_verdicts`): ``yes: ...``, or ``no:`` with each pair that does not agree."""
    if (verdicts.verdict == "agree").all():
        return "yes: every pair of yardsticks agrees"
    words = {"partly": "agree only partly", "disagree": "disagree",
             "too few methods": "judge too few methods in common"}
    return "no: " + "; ".join(
        f"{NAMES.get(r.first, r.first)} and {NAMES.get(r.second, r.second)} "
        f"{words.get(r.verdict, r.verdict)} at {r.n_models} model{'s' if r.n_models > 1 else ''}"
        for r in verdicts.itertuples() if r.verdict != "agree")


def lds_gains(table: pd.DataFrame) -> pd.DataFrame:
    """How much averaging over models raises each method's LDS (from a :func:`side_by_side`
    table): its LDS with one model and with the most models averaged.

    Returns
    -------
    DataFrame with columns method, lds_single, lds_expected, n_models (of the expected one),
    gain (``lds_expected - lds_single``), half_width (half the bootstrap interval of the mean
    single-model LDS, over test examples), one row per method with an LDS
    """
    rows = []
    for method, group in table.dropna(subset=["lds"]).groupby("method", sort=False):
        single, most = group.loc[group.n_models.idxmin()], group.loc[group.n_models.idxmax()]
        rows.append({"method": method, "lds_single": float(single.lds),
                     "lds_expected": float(most.lds), "n_models": int(most.n_models),
                     "gain": float(most.lds - single.lds),
                     "half_width": float(single.lds_high - single.lds_low) / 2})
    return pd.DataFrame(rows)


def lds_gain_sentence(table: pd.DataFrame) -> str:
    """Which methods' LDS averaging raises by more than the noise of the test sample, in words
    (from a :func:`side_by_side` table): a gain counts when it exceeds the half-width of the
    single model's bootstrap interval (:func:`lds_gains`)."""
    gains = lds_gains(table)
    up = gains[gains.gain > gains.half_width]
    listed = ", ".join(f"{r.method} {r.lds_single:.3f} to {r.lds_expected:.3f}" for r in up.itertuples())
    return (f"averaging over {gains.n_models.max()} models raises the LDS by more than its "
            f"bootstrap half-width for {len(up)} of {len(gains)} methods"
            + (f" ({listed})" if listed else ""))

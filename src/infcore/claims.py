"""The paper's qualitative claims, as checks computed on our results.

Each function returns a table with one row per claim: the claim in words, whether it holds in this
run, and the numbers it was decided on. The book prints these tables instead of asserting, so a
claim that fails in a run is shown as failing, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

LEAST_STABLE = ("leave_one_out", "influence_function")
MOST_STABLE = ("representer", "grad_dot", "grad_cos")
#: methods whose expected scores rank the poisoned group first in the paper's Figure 3, per dataset
#: (None: every method)
FIGURE3_DETECTORS: dict[str, tuple[str, ...] | None] = {
    "mnist": None, "comnist": ("tracin_ideal", "tracin_cp", "grad_cos")}


def _claim(text: str, holds: bool, detail: str) -> dict[str, object]:
    return {"claim": text, "holds": bool(holds), "detail": detail}


def _fmt(series: pd.Series) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in series.items())


def table1_claims(summary: pd.DataFrame, metric: str = "pearson") -> pd.DataFrame:
    """Check the claims the paper makes about its Table 1 on one dataset's results.

    Parameters
    ----------
    summary : DataFrame
        Long form with columns perturbation, method, metric, value (means over pairs) for one
        dataset.
    metric : str
        Which metric the rankings use.

    Returns
    -------
    DataFrame with columns claim, holds, detail
    """
    values = summary[summary.metric == metric]
    by_method = values.groupby("method")["value"].mean().sort_values()
    rows = []
    present = [m for m in LEAST_STABLE if m in by_method]
    if present:
        lowest = set(by_method.index[: len(present)])
        rows.append(_claim(
            "leave-one-out and influence functions are the least stable methods",
            lowest == set(present), f"mean {metric} over perturbations: {_fmt(by_method)}"))
    present = [m for m in MOST_STABLE if m in by_method]
    if present:
        highest = set(by_method.index[-len(present):])
        rows.append(_claim(
            "representer points and the gradient heuristics are the most stable methods",
            highest == set(present), f"mean {metric} over perturbations: {_fmt(by_method)}"))
    order = values[values.perturbation == "ordering"].set_index("method")["value"]
    if {"tracin_ideal", "tracin_cp"} <= set(order.index):
        rows.append(_claim(
            "TracInIdeal is more sensitive to the data order than TracInCP",
            order["tracin_ideal"] < order["tracin_cp"],
            f"{metric} under reordering: tracin_ideal {order['tracin_ideal']:.3f}, "
            f"tracin_cp {order['tracin_cp']:.3f}"))
    return pd.DataFrame(rows, columns=["claim", "holds", "detail"])


def table2_claims(summary: pd.DataFrame, metric: str = "pearson", margin: float = 0.05) -> pd.DataFrame:
    """Check Table 2's claim: every method but LOO and IF is much more stable in expectation.

    Parameters
    ----------
    summary : DataFrame
        Columns method, setting (``baseline`` or ``expected``), metric, value, for one dataset.
    metric : str
        Which metric is compared.
    margin : float
        How much higher the expected value must be to count as "much more stable".

    Returns
    -------
    DataFrame with columns claim, holds, detail (one row per method)
    """
    values = summary[summary.metric == metric].pivot(index="method", columns="setting", values="value")
    rows = []
    for method, row in values.iterrows():
        gain = row["expected"] - row["baseline"]
        detail = f"{metric}: single models {row['baseline']:.3f}, expected {row['expected']:.3f}"
        if method in LEAST_STABLE:
            rows.append(_claim(f"{method} stays unstable in expectation",
                               row["expected"] < 0.5, detail))
        else:
            rows.append(_claim(f"{method} becomes more stable in expectation (by > {margin})",
                               gain > margin, detail))
    return pd.DataFrame(rows, columns=["claim", "holds", "detail"])


def figure3_claims(bars: pd.DataFrame, methods_expected_to_detect: list[str]) -> pd.DataFrame:
    """Check whether each method's expected influence ranks the poisoned group first.

    Parameters
    ----------
    bars : DataFrame
        Columns method, group, share (the expected shares of Figure 3 for one dataset).
    methods_expected_to_detect : list of str
        Methods the paper reports as detecting the poison on this dataset; the others are
        reported as failing.

    Returns
    -------
    DataFrame with columns claim, holds, detail (one row per method)
    """
    rows = []
    for method, group in bars.groupby("method", sort=False):
        shares = group.set_index("group")["share"]
        detects = shares.idxmax() == "poisoned"
        expected = method in methods_expected_to_detect
        verb = "ranks" if expected else "does not rank"
        rows.append(_claim(f"expected {method} {verb} the poisoned examples first",
                           detects == expected, _fmt(shares)))
    return pd.DataFrame(rows, columns=["claim", "holds", "detail"])


def by_dataset(table: pd.DataFrame, check: Callable[[str, pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """``check(dataset, rows)`` for each dataset's rows of ``table``, stacked with a dataset column.

    Parameters
    ----------
    table : DataFrame
        Has a ``dataset`` column (e.g. a summary of :func:`infcore.experiments.summarise`).
    check : callable
        Returns a claims table (claim, holds, detail) for one dataset.
    """
    return pd.concat([check(dataset, rows).assign(dataset=dataset)
                      for dataset, rows in table.groupby("dataset", sort=False)], ignore_index=True)


def figure3_paper_claims(dataset: str, bars: pd.DataFrame) -> pd.DataFrame:
    """:func:`figure3_claims` with the methods the paper finds to detect the poison on ``dataset``."""
    if dataset not in FIGURE3_DETECTORS:
        raise ValueError(f"dataset must be one of {sorted(FIGURE3_DETECTORS)}; got {dataset!r}")
    detectors = FIGURE3_DETECTORS[dataset]
    methods = list(bars.method.unique()) if detectors is None else list(detectors)
    return figure3_claims(bars, methods)


def report(checks: pd.DataFrame) -> str:
    """One line per claim (``[dataset] claim: holds`` or ``does NOT hold``) and its numbers."""
    return "\n".join(f"[{row.dataset}] {row.claim}: {'holds' if row.holds else 'does NOT hold'}"
                     f"\n    ({row.detail})" for row in checks.itertuples())

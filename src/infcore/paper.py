"""The numbers the paper reports (Karthikeyan K and Søgaard, AAAI 2022), transcribed from its text.

Tables 1 and 2 are CSV files shipped with the package (``infcore/paper_results``), in long form here
so that the book can put them beside ours.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

#: our metric names (as in :mod:`infcore.stability`) and the CSV columns that hold them
METRIC_COLUMNS = {"pearson": "pearson", "spearman": "spearman", "top_overlap": "top10_overlap_pct"}
DATASETS = ("mnist", "comnist")


def _load(name: str, group_column: str) -> pd.DataFrame:
    with resources.files("infcore").joinpath("paper_results", name).open() as f:
        wide = pd.read_csv(f)
    rows = []
    for _, row in wide.iterrows():
        for dataset in DATASETS:
            for metric, column in METRIC_COLUMNS.items():
                rows.append({group_column: row[group_column], "method": row["method"],
                             "dataset": dataset, "metric": metric,
                             "value": float(row[f"{dataset}_{column}"])})
    return pd.DataFrame(rows)


def table1() -> pd.DataFrame:
    """The paper's Table 1 (sensitivity to initialisation, data order and batch size).

    Returns
    -------
    DataFrame with columns perturbation (``initialization``, ``ordering``, ``batch_size``), method,
    dataset (``mnist``, ``comnist``), metric (``pearson``, ``spearman``, ``top_overlap`` in percent),
    value.
    """
    return _load("table1_instability.csv", "perturbation")


def table2() -> pd.DataFrame:
    """The paper's Table 2 (single-model pairs vs expected influence from two sets of 20 models).

    Returns
    -------
    DataFrame with columns setting (``baseline``, ``expected``), method, dataset, metric, value.
    """
    return _load("table2_expected.csv", "setting")


def side_by_side(ours: pd.DataFrame, theirs: pd.DataFrame, group_column: str) -> pd.DataFrame:
    """Our numbers beside the paper's, with the difference.

    Parameters
    ----------
    ours : DataFrame
        Long form with columns ``group_column``, method, dataset, metric (``pearson``,
        ``spearman``, ``top_overlap``) and value.
    theirs : DataFrame
        :func:`table1` or :func:`table2`.
    group_column : str
        ``"perturbation"`` (Table 1) or ``"setting"`` (Table 2).

    Returns
    -------
    DataFrame with columns group_column, method, dataset, metric, ours, paper, difference
    (ours - paper); rows of ours that the paper does not report have a missing paper value.
    """
    keys = [group_column, "method", "dataset", "metric"]
    merged = ours.rename(columns={"value": "ours"}).merge(
        theirs.rename(columns={"value": "paper"}), on=keys, how="left")
    merged["difference"] = merged["ours"] - merged["paper"]
    return merged[keys + ["ours", "paper", "difference"]]


def comparison(ours: pd.DataFrame, theirs: pd.DataFrame, group_column: str) -> pd.DataFrame:
    """:func:`side_by_side` laid out for reading: one row per dataset, group and method.

    Returns
    -------
    DataFrame indexed by (dataset, group_column, method), with columns (metric, source) for the
    metrics pearson, spearman, top_overlap and the sources ours, paper, difference
    """
    table = side_by_side(ours, theirs, group_column)
    wide = table.pivot_table(index=["dataset", group_column, "method"], columns="metric",
                             values=["ours", "paper", "difference"], sort=False)
    return wide.swaplevel(0, 1, axis=1)[list(METRIC_COLUMNS)]


def method_means(ours: pd.DataFrame, theirs: pd.DataFrame, group_column: str,
                 metric: str = "pearson") -> pd.DataFrame:
    """Each method's ``metric`` averaged over the groups (perturbations or settings), ours and the paper's.

    Returns
    -------
    DataFrame with columns dataset, method, ours, paper (the paper's mean is over the groups
    that it reports)
    """
    table = side_by_side(ours, theirs, group_column)
    rows = table[table.metric == metric]
    return rows.groupby(["dataset", "method"], sort=False)[["ours", "paper"]].mean().reset_index()


def metric_table(ours: pd.DataFrame, theirs: pd.DataFrame, group_column: str, metric: str,
                 dataset: str = "mnist") -> pd.DataFrame:
    """One metric of :func:`side_by_side` on one dataset, narrow enough for the text column.

    Returns
    -------
    DataFrame indexed by (group_column, method), with columns ours, paper, difference
    """
    table = side_by_side(ours, theirs, group_column)
    rows = table[(table.metric == metric) & (table.dataset == dataset)]
    return rows.set_index([group_column, "method"])[["ours", "paper", "difference"]]

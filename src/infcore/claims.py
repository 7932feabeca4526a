"""The paper's qualitative claims, as checks computed on a table of results.

Contents
--------
Claim, CLAIMS
    The registry: one entry per claim of the paper (its section, its words paraphrased, the table
    it is decided on and the function that decides it). A new claim is one more entry.
check, calibrated
    Run every claim of one table on a summary, one row per decision; ``calibrated`` adds the
    verdict of the same check on the paper's own numbers, so that a check that fails on them too
    says so.
findings
    The book's findings at a glance: one row per claim, a verdict per scale of evidence.
beyond_the_tables
    The answers of the two pages that go past the paper (why our Table 1 differs; the three
    yardsticks), one column per run.
table1_claims, table2_claims, figure3_claims, figure3_paper_claims, by_dataset, report
    The checks of each table (used by ``check``), and helpers to stack and print them.

A check never asserts: a claim that fails in a run is shown as failing, with the numbers it was
decided on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from infcore import causes, paper, results, yardsticks

LEAST_STABLE = ("leave_one_out", "influence_function")
#: methods whose expected scores rank the poisoned group first in the paper's Figure 3, per dataset
#: (None: every method)
FIGURE3_DETECTORS: dict[str, tuple[str, ...] | None] = {
    "mnist": None, "comnist": ("tracin_ideal", "tracin_cp", "grad_cos")}
#: how much higher an expected Pearson correlation must be to count as "much more stable"
GAIN_MARGIN = 0.05
#: Columns of every check's table: the claim's key, its words, whether it holds, the numbers.
COLUMNS = ["key", "claim", "holds", "detail"]
#: What a check that fails on the paper's own numbers says beside its verdict.
PAPER_FAILS = "fails on the paper's own numbers too"


def _claim(key: str, text: str, holds: bool, detail: str) -> dict[str, object]:
    return {"key": key, "claim": text, "holds": bool(holds), "detail": detail}


def _fmt(series: pd.Series) -> str:
    return ", ".join(f"{name} {value:.3f}" for name, value in series.items())


def _means(summary: pd.DataFrame, metric: str) -> pd.Series:
    return summary[summary.metric == metric].groupby("method")["value"].mean().sort_values()


def least_stable(summary: pd.DataFrame, metric: str = "pearson") -> list[dict[str, object]]:
    """§3: leave-one-out and influence functions have the lowest mean agreement over perturbations."""
    by_method = _means(summary, metric)
    present = [m for m in LEAST_STABLE if m in by_method]
    if not present:
        return []
    return [_claim("least_stable", "leave-one-out and influence functions are the least stable methods",
                   set(by_method.index[: len(present)]) == set(present),
                   f"mean {metric} over perturbations: {_fmt(by_method)}")]


def representer_over_influence(summary: pd.DataFrame, metric: str = "pearson") -> list[dict[str, object]]:
    """§5: influence functions are extremely unstable, representer points less so."""
    by_method = _means(summary, metric)
    if not {"representer", "influence_function"} <= set(by_method.index):
        return []
    return [_claim("representer_over_if", "representer points are more stable than influence functions",
                   by_method["representer"] > by_method["influence_function"],
                   f"mean {metric}: representer {by_method['representer']:.3f}, "
                   f"influence_function {by_method['influence_function']:.3f}")]


def ideal_order(summary: pd.DataFrame, metric: str = "pearson") -> list[dict[str, object]]:
    """§3: TracInIdeal is more sensitive to the data order than TracInCP."""
    values = summary[(summary.metric == metric) & (summary.perturbation == "ordering")]
    order = values.set_index("method")["value"]
    if not {"tracin_ideal", "tracin_cp"} <= set(order.index):
        return []
    return [_claim("ideal_order", "TracInIdeal is more sensitive to the data order than TracInCP",
                   order["tracin_ideal"] < order["tracin_cp"],
                   f"{metric} under reordering: tracin_ideal {order['tracin_ideal']:.3f}, "
                   f"tracin_cp {order['tracin_cp']:.3f}")]


def _gains(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    values = summary[summary.metric == metric].pivot(index="method", columns="setting", values="value")
    return values.assign(gain=values["expected"] - values["baseline"])


def expected_gain(summary: pd.DataFrame, metric: str = "pearson",
                  margin: float = GAIN_MARGIN) -> list[dict[str, object]]:
    """§4.2: every method but leave-one-out and influence functions is much more stable in expectation."""
    return [_claim("expected_gain", f"{method} becomes more stable in expectation (by > {margin})",
                   row.gain > margin,
                   f"{metric}: single models {row.baseline:.3f}, expected {row.expected:.3f}")
            for method, row in _gains(summary, metric).iterrows() if method not in LEAST_STABLE]


def expected_no_gain(summary: pd.DataFrame, metric: str = "pearson",
                     margin: float = GAIN_MARGIN) -> list[dict[str, object]]:
    """§4.2: leave-one-out and influence functions are the exceptions: not much more stable."""
    return [_claim("expected_no_gain", f"{method} does not become more stable in expectation "
                   f"(by at most {margin})", row.gain <= margin,
                   f"{metric}: single models {row.baseline:.3f}, expected {row.expected:.3f}")
            for method, row in _gains(summary, metric).iterrows() if method in LEAST_STABLE]


def figure3_claims(bars: pd.DataFrame, methods_expected_to_detect: list[str],
                   key: str = "figure3") -> pd.DataFrame:
    """Check whether each method's expected influence ranks the poisoned group first.

    Parameters
    ----------
    bars : DataFrame
        Columns method, group, share (the expected shares of Figure 3 for one dataset).
    methods_expected_to_detect : list of str
        Methods the paper reports as detecting the poison on this dataset; the others are
        reported as failing.
    key : str
        The registry key the rows are filed under.

    Returns
    -------
    DataFrame with columns key, claim, holds, detail (one row per method)
    """
    rows = []
    for method, group in bars.groupby("method", sort=False):
        shares = group.set_index("group")["share"]
        detects = shares.idxmax() == "poisoned"
        expected = method in methods_expected_to_detect
        verb = "ranks" if expected else "does not rank"
        rows.append(_claim(key, f"expected {method} {verb} the poisoned examples first",
                           detects == expected, _fmt(shares)))
    return pd.DataFrame(rows, columns=COLUMNS)


def figure3_paper_claims(dataset: str, bars: pd.DataFrame) -> pd.DataFrame:
    """:func:`figure3_claims` with the methods the paper finds to detect the poison on ``dataset``."""
    if dataset not in FIGURE3_DETECTORS:
        raise ValueError(f"dataset must be one of {sorted(FIGURE3_DETECTORS)}; got {dataset!r}")
    detectors = FIGURE3_DETECTORS[dataset]
    methods = list(bars.method.unique()) if detectors is None else list(detectors)
    return figure3_claims(bars, methods, key=f"figure3_{dataset}")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as the book checks it.

    Attributes
    ----------
    key : str
        Short name; the rows of its check carry it.
    section : str
        Where the paper makes it, e.g. ``"§3, Table 1"``.
    statement : str
        The claim in our words.
    table : str
        What it is decided on: ``"table1"``, ``"table2"`` (long summaries of
        :func:`infcore.experiments.table1_summary` / ``table2_summary``) or ``"figure3"``
        (the bars of :func:`infcore.poisoning.figure3`, with a dataset column).
    decide : callable
        ``decide(dataset, rows)`` returns rows (dicts with the :data:`COLUMNS`) for one dataset.
    datasets : tuple of str, optional
        The datasets the claim is about (all when empty).
    """

    key: str
    section: str
    statement: str
    table: str
    decide: Callable[[str, pd.DataFrame], list[dict[str, object]] | pd.DataFrame]
    datasets: tuple[str, ...] = ()


def _figure3(dataset: str) -> Callable[[str, pd.DataFrame], pd.DataFrame]:
    return lambda _, bars: figure3_paper_claims(dataset, bars)


CLAIMS: tuple[Claim, ...] = (
    Claim("least_stable", "§3, Table 1", "Leave-one-out and influence functions are the least "
          "stable methods.", "table1", lambda _, rows: least_stable(rows)),
    Claim("ideal_order", "§3, Table 1", "TracInIdeal is more sensitive to the data order than "
          "TracInCP.", "table1", lambda _, rows: ideal_order(rows)),
    Claim("representer_over_if", "§5", "Influence functions are extremely unstable, representer "
          "points less so.", "table1", lambda _, rows: representer_over_influence(rows)),
    Claim("expected_gain", "§4.2, Table 2", "Expected influence is much more stable than single "
          "models for every other method.", "table2", lambda _, rows: expected_gain(rows)),
    Claim("expected_no_gain", "§4.2, Table 2", "Leave-one-out and influence functions are the "
          "exceptions: averaging does not make them much more stable.", "table2",
          lambda _, rows: expected_no_gain(rows)),
    Claim("figure3_mnist", "§4.3, Figure 3", "On MNIST every expected method ranks the poisoned "
          "training examples first.", "figure3", _figure3("mnist"), ("mnist",)),
    Claim("figure3_comnist", "§4.3, Figure 3", "On CoMNIST only expected TracInIdeal, TracInCP and "
          "Grad-Cos do.", "figure3", _figure3("comnist"), ("comnist",)),
)


def check(table: str, summary: pd.DataFrame) -> pd.DataFrame:
    """Every registered claim decided on ``table``, per dataset of ``summary``.

    Parameters
    ----------
    table : str
        ``"table1"``, ``"table2"`` or ``"figure3"`` (see :class:`Claim`).
    summary : DataFrame
        The table's long form, with a dataset column.

    Returns
    -------
    DataFrame with columns dataset, key, claim, holds, detail (one row per decision)
    """
    frames = []
    for dataset, rows in summary.groupby("dataset", sort=False):
        for claim in CLAIMS:
            if claim.table == table and (not claim.datasets or dataset in claim.datasets):
                decided = pd.DataFrame(claim.decide(dataset, rows), columns=COLUMNS)
                frames.append(decided.assign(dataset=dataset))
    if not frames:
        return pd.DataFrame(columns=["dataset", *COLUMNS])
    return pd.concat(frames, ignore_index=True)[["dataset", *COLUMNS]]


def paper_tables() -> dict[str, pd.DataFrame]:
    """The paper's own numbers as the checks read them (Figure 3 has no numbers: absent)."""
    return {"table1": paper.table1(), "table2": paper.table2()}


def calibrated(table: str, summary: pd.DataFrame) -> pd.DataFrame:
    """:func:`check`, laid out for the page: with the same check's verdict on the paper's numbers.

    Returns
    -------
    DataFrame with columns dataset, claim, verdict (``holds`` / ``does NOT hold``), on the
    paper's numbers (``holds``, :data:`PAPER_FAILS`, or ``no numbers`` for Figure 3) and numbers
    (what this run's verdict was decided on)
    """
    ours = check(table, summary)
    theirs = paper_tables().get(table)
    paper_verdict = {}
    if theirs is not None:
        paper_verdict = {(r.dataset, r.claim): r.holds for r in check(table, theirs).itertuples()}
    out = ours.assign(
        verdict=ours.holds.map({True: "holds", False: "does NOT hold"}),
        paper=[("no numbers (a figure)" if theirs is None else
                "holds" if paper_verdict.get((r.dataset, r.claim), True) else PAPER_FAILS)
               for r in ours.itertuples()])
    return out.rename(columns={"paper": "on the paper's numbers", "detail": "numbers"})[
        ["dataset", "claim", "verdict", "on the paper's numbers", "numbers"]]


def verdict(decisions: pd.DataFrame) -> str:
    """One cell of the findings: ``holds``, or ``fails`` and what failed, or ``not run``."""
    if decisions.empty:
        return "not run"
    if decisions.holds.all():
        return "holds" if len(decisions) == 1 else f"holds ({len(decisions)} of {len(decisions)})"
    if len(decisions) == 1:
        return "fails"
    # the subject of each failed decision: its method (the first word after "expected")
    failed = [next(w for w in text.split() if w != "expected")
              for text in decisions[~decisions.holds].claim]
    return f"fails ({len(decisions) - len(failed)} of {len(decisions)} hold; not {', '.join(failed)})"


def findings(scales: Mapping[str, Mapping[str, pd.DataFrame]], dataset: str = "mnist",
             other: str = "comnist") -> pd.DataFrame:
    """The findings at a glance: one row per claim, one verdict per scale of evidence.

    Parameters
    ----------
    scales : mapping of column title to tables
        Each value maps ``"table1"``, ``"table2"``, ``"figure3"`` to the long tables of one run
        (:func:`infcore.experiments.claim_tables`) or to the paper's numbers
        (:func:`paper_tables`, under a title that starts with ``paper's``); a missing table gives
        ``not run``, or ``no numbers (a figure)`` for the paper's Figure 3.
    dataset : str
        The dataset of the scale columns (a claim only about ``other`` reads ``-`` there).
    other : str
        The dataset of the last column: the verdict on the paper's numbers for it, and ours where
        a run holds it (``ours: not run`` when none does).

    Returns
    -------
    DataFrame with columns claim (with its section), one per scale, and ``other``
    """
    rows = []
    for claim in CLAIMS:
        row = {"claim": f"{claim.statement} ({claim.section})"}
        for title, tables in scales.items():
            row[title] = _cell(claim, tables, dataset, title)
        cells = {title: _cell(claim, tables, other, title) for title, tables in scales.items()}
        ours = {t: c for t, c in cells.items() if not t.startswith("paper's") and c not in {"not run", "-"}}
        parts = [f"paper: {c}" for t, c in cells.items() if t.startswith("paper's") and c != "-"]
        parts += [f"{t}: {c}" for t, c in ours.items()] or ["ours: not run"]
        row[other] = "; ".join(parts)
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(claim: Claim, tables: Mapping[str, pd.DataFrame], dataset: str, title: str) -> str:
    if claim.datasets and dataset not in claim.datasets:
        return "-"
    table = tables.get(claim.table)
    if table is None:
        return "no numbers (a figure)" if title.startswith("paper's") else "not run"
    rows = table[table.dataset == dataset]
    if rows.empty:
        return "not run"
    decided = pd.DataFrame(claim.decide(dataset, rows), columns=COLUMNS)
    return verdict(decided)


def table1_claims(summary: pd.DataFrame, metric: str = "pearson") -> pd.DataFrame:
    """The claims the paper makes about its Table 1, on one dataset's long summary.

    Returns
    -------
    DataFrame with columns key, claim, holds, detail
    """
    rows = least_stable(summary, metric) + representer_over_influence(summary, metric) + \
        ideal_order(summary, metric)
    return pd.DataFrame(rows, columns=COLUMNS)


def table2_claims(summary: pd.DataFrame, metric: str = "pearson", margin: float = GAIN_MARGIN) -> pd.DataFrame:
    """Table 2's claims on one dataset: every method but LOO and IF much more stable in expectation.

    Returns
    -------
    DataFrame with columns key, claim, holds, detail (one row per method)
    """
    rows = expected_no_gain(summary, metric, margin) + expected_gain(summary, metric, margin)
    return pd.DataFrame(rows, columns=COLUMNS)


def by_dataset(table: pd.DataFrame, check: Callable[[str, pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """``check(dataset, rows)`` for each dataset's rows of ``table``, stacked with a dataset column."""
    return pd.concat([check(dataset, rows).assign(dataset=dataset)
                      for dataset, rows in table.groupby("dataset", sort=False)], ignore_index=True)


def report(checks: pd.DataFrame) -> str:
    """One line per claim (``[dataset] claim: holds`` or ``does NOT hold``) and its numbers."""
    return "\n".join(f"[{row.dataset}] {row.claim}: {'holds' if row.holds else 'does NOT hold'}"
                     f"\n    ({row.detail})" for row in checks.itertuples())


def _moved_to_the_paper(section: results.Section) -> str:
    movers = causes.moved(causes.summary(section.tables["causes_rows"]))
    return "; ".join(movers) if movers else "no single change"


def _yardsticks_alike(section: results.Section) -> str:
    sizes = sorted({1, max(section.parameters["table_sizes"])})
    table = section.tables["yardsticks_table"]
    return yardsticks.rank_sentence(yardsticks.rank_verdicts(table, sizes))


def _lds_gains(section: results.Section) -> str:
    return yardsticks.lds_gain_sentence(section.tables["yardsticks_table"])


#: The questions of :func:`beyond_the_tables`: text, the page that answers it, its tables, and
#: the function that answers it from that page's :class:`~infcore.results.Section`.
BEYOND: list[tuple[str, str, list[str], Callable[[results.Section], str]]] = [
    ("Which single change moves our Table 1 to the paper's? (why Table 1 differs)",
     "07_why_they_differ", ["causes_rows"], _moved_to_the_paper),
    ("Do agreement with leave-one-out, the LDS and mislabel detection order the methods alike? "
     "(three yardsticks)", "08_yardsticks", ["yardsticks_table"], _yardsticks_alike),
    ("Does averaging over models raise the LDS? (three yardsticks)", "08_yardsticks",
     ["yardsticks_table"], _lds_gains)]


def beyond_the_tables(directories: Mapping[str, object]) -> pd.DataFrame:
    """The answers of pages 7 and 8, one row per question of :data:`BEYOND`, one column per run.

    Parameters
    ----------
    directories : mapping of column title to results folder
        Folders written by ``runbook --results`` (:mod:`infcore.results`); a folder that does not
        record a page answers its questions with ``not run``.

    Returns
    -------
    DataFrame with columns question (with the page that answers it) and one per run
    """
    def answer(page: str, names: list[str], decide: Callable[[results.Section], str],
               directory: object) -> str:
        try:
            section = results.load_section(directory, page, names, "run")
        except FileNotFoundError:
            return "not run"
        return decide(section)

    return pd.DataFrame([{"question": question,
                          **{title: answer(page, names, decide, directory)
                             for title, directory in directories.items()}}
                         for question, page, names, decide in BEYOND])

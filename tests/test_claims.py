"""The claim checks decide correctly on hand-made summaries, both ways."""

import pandas as pd
import pytest

from infcore import claims, paper

METHODS = ["leave_one_out", "influence_function", "tracin_ideal", "tracin_cp", "representer",
           "grad_dot", "grad_cos"]


def _table1(values):
    rows = []
    for perturbation in ["initialization", "ordering"]:
        for method, value in zip(METHODS, values):
            rows.append({"perturbation": perturbation, "method": method, "metric": "pearson", "value": value})
    return pd.DataFrame(rows)


def test_table1_claims_hold_on_the_papers_ordering():
    result = claims.table1_claims(_table1([0.05, 0.02, 0.4, 0.8, 0.9, 0.85, 0.95]))
    assert result.holds.tolist() == [True, True, True]
    assert result.key.tolist() == ["least_stable", "representer_over_if", "ideal_order"]


def test_table1_claims_fail_when_the_ordering_is_reversed():
    result = claims.table1_claims(_table1([0.95, 0.9, 0.85, 0.4, 0.05, 0.02, 0.03]))
    assert result.holds.tolist() == [False, False, False]


def test_table2_claims():
    rows = []
    for method, base, exp in [("leave_one_out", 0.2, 0.22), ("grad_cos", 0.9, 0.99), ("tracin_cp", 0.8, 0.81)]:
        rows += [{"method": method, "setting": "baseline", "metric": "pearson", "value": base},
                 {"method": method, "setting": "expected", "metric": "pearson", "value": exp}]
    result = claims.table2_claims(pd.DataFrame(rows))
    holds = {claim.split()[0]: ok for claim, ok in zip(result.claim, result.holds)}
    # LOO gains only 0.02 (holds), grad_cos gains 0.09 (holds), tracin_cp gains only 0.01 (fails)
    assert holds == {"leave_one_out": True, "grad_cos": True, "tracin_cp": False}


def test_figure3_claims():
    bars = pd.DataFrame([
        {"method": "grad_cos", "group": "poisoned", "share": 0.8},
        {"method": "grad_cos", "group": "clean source", "share": 0.1},
        {"method": "grad_cos", "group": "clean target", "share": 0.1},
        {"method": "representer", "group": "poisoned", "share": 0.1},
        {"method": "representer", "group": "clean source", "share": 0.1},
        {"method": "representer", "group": "clean target", "share": 0.8},
    ])
    assert claims.figure3_claims(bars, ["grad_cos"]).holds.tolist() == [True, True]
    assert claims.figure3_claims(bars, ["grad_cos", "representer"]).holds.tolist() == [True, False]


def test_by_dataset_and_report():
    summary = pd.concat([_table1([0.05, 0.02, 0.4, 0.8, 0.9, 0.85, 0.95]).assign(dataset="mnist"),
                         _table1([0.95, 0.9, 0.85, 0.4, 0.05, 0.02, 0.03]).assign(dataset="comnist")])
    checks = claims.by_dataset(summary, lambda dataset, rows: claims.table1_claims(rows))
    assert checks.groupby("dataset", sort=False).holds.sum().to_dict() == {"mnist": 3, "comnist": 0}
    lines = claims.report(checks).splitlines()
    assert len(lines) == 12
    assert lines[0].startswith("[mnist] ") and lines[0].endswith(": holds")
    assert lines[6].startswith("[comnist] ") and lines[6].endswith(": does NOT hold")


def test_figure3_paper_claims_use_the_papers_detectors_per_dataset():
    bars = pd.DataFrame({"method": ["grad_dot"] * 2 + ["grad_cos"] * 2,
                         "group": ["poisoned", "clean source"] * 2, "share": [0.9, 0.1, 0.8, 0.2]})
    # on MNIST the paper finds every method detects the poison; on CoMNIST, Grad-Dot does not
    assert claims.figure3_paper_claims("mnist", bars).holds.tolist() == [True, True]
    assert claims.figure3_paper_claims("comnist", bars).holds.tolist() == [False, True]


def test_figure3_paper_claims_refuse_an_unknown_dataset():
    bars = pd.DataFrame({"method": ["grad_dot"], "group": ["poisoned"], "share": [1.0]})
    with pytest.raises(ValueError, match="dataset must be one of"):
        claims.figure3_paper_claims("cifar", bars)


# Calibration: every check is first run on the paper's own numbers. Those that fail there are the
# ones the book must show as failing on the paper's numbers too; nothing else may fail.
PAPER_FAILURES = {
    # Table 2, MNIST: the paper's LOO goes from 0.238 to 0.595 (Pearson), although its text names
    # LOO among the methods that averaging does not help
    ("mnist", "leave_one_out does not become more stable in expectation (by at most 0.05)"),
    # Table 2, CoMNIST: Grad-Cos is already at 0.988 for single models; the paper's 1.000 gains 0.012
    ("comnist", "grad_cos becomes more stable in expectation (by > 0.05)"),
}


@pytest.mark.parametrize("table", ["table1", "table2"])
def test_every_check_on_the_papers_own_numbers(table):
    theirs = claims.paper_tables()[table]
    decided = claims.check(table, theirs)
    assert set(decided.dataset) == {"mnist", "comnist"}
    want = {c.key for c in claims.CLAIMS if c.table == table}
    assert set(decided.key) == want
    failing = {(r.dataset, r.claim) for r in decided.itertuples() if not r.holds}
    assert failing == {f for f in PAPER_FAILURES if f in {(r.dataset, r.claim) for r in decided.itertuples()}}


def test_calibrated_says_which_checks_fail_on_the_papers_numbers_too():
    table = claims.calibrated("table2", paper.table2())
    flagged = table[table["on the paper's numbers"] == claims.PAPER_FAILS]
    assert set(zip(flagged.dataset, flagged.claim)) == PAPER_FAILURES
    # on the paper's own numbers, a check fails exactly where the paper's numbers fail it
    assert (table.verdict == "does NOT hold").sum() == len(PAPER_FAILURES)
    assert list(table.columns) == ["dataset", "claim", "verdict", "on the paper's numbers", "numbers"]


def test_figure3_checks_hold_on_bars_drawn_as_the_paper_states():
    rows = []
    for dataset, detectors in claims.FIGURE3_DETECTORS.items():
        for method in ["influence_function", "tracin_ideal", "tracin_cp", "representer",
                       "grad_dot", "grad_cos"]:
            detects = detectors is None or method in detectors
            for group, share in [("poisoned", 0.6 if detects else 0.1), ("clean source", 0.2),
                                 ("clean target", 0.2 if detects else 0.7)]:
                rows.append({"dataset": dataset, "method": method, "group": group, "share": share})
    decided = claims.check("figure3", pd.DataFrame(rows))
    assert decided.holds.all()
    assert set(decided.key) == {"figure3_mnist", "figure3_comnist"}
    table = claims.calibrated("figure3", pd.DataFrame(rows))
    assert set(table["on the paper's numbers"]) == {"no numbers (a figure)"}


def test_findings_one_row_per_registered_claim():
    found = claims.findings({"paper's numbers": claims.paper_tables(), "quick run": {}})
    assert found.claim.tolist() == [f"{c.statement} ({c.section})" for c in claims.CLAIMS]
    assert list(found.columns) == ["claim", "paper's numbers", "quick run", "comnist"]
    by_key = dict(zip([c.key for c in claims.CLAIMS], found.itertuples(index=False)))
    assert by_key["least_stable"][1] == "holds"
    assert by_key["expected_no_gain"][1] == "fails (1 of 2 hold; not leave_one_out)"
    assert by_key["figure3_mnist"][1] == "no numbers (a figure)"
    assert by_key["figure3_comnist"][1] == "-"  # a claim about CoMNIST only
    assert set(found["quick run"]) <= {"not run", "-"}
    assert by_key["expected_gain"][3] == "paper: fails (4 of 5 hold; not grad_cos); ours: not run"


def test_findings_decide_a_run_from_its_tables():
    table1 = paper.table1().assign(value=lambda t: t.value.where(t.method != "influence_function", 0.99))
    found = claims.findings({"paper's numbers": claims.paper_tables(), "run": {"table1": table1}})
    row = found.set_index("claim").loc[f"{claims.CLAIMS[0].statement} ({claims.CLAIMS[0].section})"]
    assert row["paper's numbers"] == "holds" and row["run"] == "fails"
    assert row["comnist"] == "paper: holds; run: fails"


def test_a_new_claim_is_one_registry_entry(monkeypatch):
    extra = claims.Claim("grad_cos_top", "§3", "Grad-Cos is the most stable method.", "table1",
                         lambda _, rows: [claims._claim(
                             "grad_cos_top", "grad_cos is the most stable",
                             claims._means(rows, "pearson").index[-1] == "grad_cos", "")])
    monkeypatch.setattr(claims, "CLAIMS", claims.CLAIMS + (extra,))
    found = claims.findings({"paper's numbers": claims.paper_tables()})
    assert found.iloc[-1].tolist() == ["Grad-Cos is the most stable method. (§3)", "holds",
                                       "paper: holds; ours: not run"]


def test_beyond_the_tables_answers_from_saved_runs_and_says_not_run(tmp_path):
    from infcore import results

    # a hand-made causes table: one change crosses halfway to the paper's LOO, one does not
    rows = pd.DataFrame([
        {"cause": "baseline", "change": "", "method": "leave_one_out", "measured": "between initialisations", "pearson": 0.6},
        {"cause": "baseline", "change": "", "method": "influence_function", "measured": "between initialisations", "pearson": 0.6},
        {"cause": "2. order", "change": "fresh", "method": "leave_one_out", "measured": "between initialisations", "pearson": 0.1},
        {"cause": "4. epochs", "change": "50", "method": "leave_one_out", "measured": "between initialisations", "pearson": 0.5}])
    table = pd.DataFrame({"method": list("abc") * 2, "n_models": [1] * 3 + [5] * 3,
                          "loo_pearson": [0.1, 0.2, 0.3] * 2, "lds": [0.1, 0.2, 0.3, 0.3, 0.2, 0.1],
                          "auprc": [0.1, 0.2, 0.3] * 2, "lds_low": [0.0, 0.1, 0.2] * 2,
                          "lds_high": [0.2, 0.3, 0.4] * 2})
    full, empty = tmp_path / "full", tmp_path / "empty"
    results.save_tables(full, {"causes_rows": rows, "yardsticks_table": table})
    sizes = {"n_train": 3, "n_test": 2}
    for page, parameters in (("07_why_they_differ", sizes), ("08_yardsticks", {**sizes, "table_sizes": [1, 5]})):
        results.record_notebook(full, page, {"parameters": parameters, "seconds": 60.0},
                                {"profile": "paper"})
    results.record_notebook(empty, "02_instability", {"parameters": {}, "seconds": 60.0},
                            {"profile": "paper"})
    found = claims.beyond_the_tables({"run": full, "other": empty})
    assert list(found.columns) == ["question", "run", "other"]
    assert (found.other == "not run").all()
    assert found.run[0] == "2. order: fresh"
    assert found.run[1] == ("no: agreement with leave-one-out and the LDS disagree at 5 models; "
                            "the LDS and mislabel detection disagree at 5 models")
    assert found.run[2] == ("averaging over 5 models raises the LDS by more than its bootstrap "
                            "half-width for 1 of 3 methods (a 0.100 to 0.300)")

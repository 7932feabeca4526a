"""The claim checks decide correctly on hand-made summaries, both ways."""

import pandas as pd
import pytest

from infcore import claims

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


def test_table1_claims_fail_when_the_ordering_is_reversed():
    result = claims.table1_claims(_table1([0.95, 0.9, 0.85, 0.4, 0.05, 0.02, 0.03]))
    assert result.holds.tolist() == [False, False, False]


def test_table2_claims():
    rows = []
    for method, base, exp in [("leave_one_out", 0.2, 0.3), ("grad_cos", 0.9, 0.99), ("tracin_cp", 0.8, 0.81)]:
        rows += [{"method": method, "setting": "baseline", "metric": "pearson", "value": base},
                 {"method": method, "setting": "expected", "metric": "pearson", "value": exp}]
    result = claims.table2_claims(pd.DataFrame(rows))
    holds = {claim.split()[0]: ok for claim, ok in zip(result.claim, result.holds)}
    # LOO stays below 0.5 (holds), grad_cos gains 0.09 (holds), tracin_cp gains only 0.01 (fails)
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

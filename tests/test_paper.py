"""The transcribed tables load in long form with the values of the paper's text."""

from infcore import paper


def test_table1_shape_and_spot_values():
    t = paper.table1()
    # 7 methods x 2 perturbations + 6 methods for batch size, 2 datasets x 3 metrics each
    assert len(t) == (7 + 7 + 6) * 6
    pick = t.set_index(["perturbation", "method", "dataset", "metric"])["value"]
    assert pick["initialization", "leave_one_out", "mnist", "pearson"] == 0.043
    assert pick["ordering", "tracin_ideal", "comnist", "top_overlap"] == 22.30
    assert "tracin_ideal" not in set(t[t.perturbation == "batch_size"].method)


def test_table2_shape_and_spot_values():
    t = paper.table2()
    assert len(t) == 14 * 6
    pick = t.set_index(["setting", "method", "dataset", "metric"])["value"]
    assert pick["expected", "grad_cos", "comnist", "pearson"] == 1.000
    assert pick["baseline", "representer", "mnist", "spearman"] == 0.935


def test_side_by_side_differences_and_unreported_rows():
    ours = paper.pd.DataFrame([
        {"perturbation": "ordering", "method": "grad_cos", "dataset": "mnist", "metric": "pearson", "value": 0.9},
        {"perturbation": "batch_size", "method": "tracin_ideal", "dataset": "mnist", "metric": "pearson", "value": 0.5},
    ])
    table = paper.side_by_side(ours, paper.table1(), "perturbation")
    assert table.loc[0, "paper"] == 0.976
    assert table.loc[0, "difference"] == paper.pd.Series([0.9 - 0.976]).iloc[0]
    assert paper.pd.isna(table.loc[1, "paper"])  # the paper has no batch-size row for TracInIdeal


def test_comparison_lays_out_side_by_side():
    ours = paper.pd.DataFrame([
        {"perturbation": "ordering", "method": "grad_cos", "dataset": "mnist", "metric": m, "value": v}
        for m, v in [("pearson", 0.5), ("spearman", 0.4), ("top_overlap", 30.0)]])
    wide = paper.comparison(ours, paper.table1(), "perturbation")
    row = wide.loc[("mnist", "ordering", "grad_cos")]
    assert row[("pearson", "ours")] == 0.5 and row[("pearson", "paper")] == 0.976
    assert abs(row[("top_overlap", "difference")] - (30.0 - 71.24)) < 1e-9


def test_method_means_average_over_perturbations():
    ours = paper.pd.DataFrame([
        {"perturbation": p, "method": "grad_cos", "dataset": "mnist", "metric": "pearson", "value": v}
        for p, v in [("initialization", 0.2), ("ordering", 0.4), ("batch_size", 0.9)]])
    means = paper.method_means(ours, paper.table1(), "perturbation").set_index("method")
    assert abs(means.loc["grad_cos", "ours"] - 0.5) < 1e-12
    assert abs(means.loc["grad_cos", "paper"] - (0.955 + 0.976 + 0.972) / 3) < 1e-12


def test_metric_table_is_one_metric_of_one_dataset():
    table = paper.metric_table(paper.table1(), paper.table1(), "perturbation", "pearson")
    assert list(table.columns) == ["ours", "paper", "difference"]
    assert table.loc[("initialization", "leave_one_out"), "paper"] == 0.043
    assert (table.difference == 0).all() and len(table) == 20

"""Result tables of a run: CSV round trip, run record, and the runbook's --results option."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from infcore import results, runbook

ROOT = Path(__file__).resolve().parents[1]


def test_tables_round_trip_and_leave_no_temporary_files(tmp_path):
    table = pd.DataFrame({"method": ["grad_dot", "loo"], "pearson": [0.123456789, float("nan")]})
    results.save_tables(tmp_path / "out", {"table1_pairs": table})
    back = results.load_tables(tmp_path / "out", ["table1_pairs"])["table1_pairs"]
    pd.testing.assert_frame_equal(back, table)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["table1_pairs.csv"]


def test_missing_tables_are_named_with_the_command_that_writes_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lacks table2_curve.csv.*--results"):
        results.load_tables(tmp_path, ["table2_curve"])


def test_bad_table_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="plain file stems"):
        results.save_tables(tmp_path, {"../escape": pd.DataFrame()})


def test_run_record_keeps_earlier_notebooks(tmp_path):
    results.record_notebook(tmp_path, "02_instability", {"seconds": 1.0}, {"profile": "paper"})
    results.record_notebook(tmp_path, "05_poisoning", {"seconds": 2.0}, {"profile": "paper"})
    record = results.load_run(tmp_path)
    assert record["profile"] == "paper"
    assert {k: v["seconds"] for k, v in record["notebooks"].items()} == {
        "02_instability": 1.0, "05_poisoning": 2.0}


TINY = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
n = 2
results_dir = None

# %%
import pandas as pd
from infcore import results
if results_dir is not None:
    results.save_tables(results_dir, {"squares": pd.DataFrame({"k": range(n), "k2": [k * k for k in range(n)]})})
'''


def test_runbook_results_option_writes_tables_and_run_record(tmp_path):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "notebooks" / "00_tiny.py").write_text(TINY)
    for item in runbook.BOOK_FRAME:
        shutil.copy2(ROOT / item, root / item)
    out = tmp_path / "results"
    runbook.main(["--root", str(root), "--results", str(out), "--no-html", "--quiet",
                  "-p", "n", "3"])
    squares = results.load_tables(out, ["squares"])["squares"]
    assert squares.k2.tolist() == [0, 1, 4]
    record = json.loads((out / results.RUN_FILE).read_text())
    entry = record["notebooks"]["00_tiny"]
    assert entry["parameters"] == {"n": 3, "results_dir": str(out.resolve())}
    assert entry["seconds"] > 0 and record["machine"]["cpu_count"] >= 1
    # the committed pages are untouched: the run went to _build/runs/
    assert not (root / "book" / "00_tiny.ipynb").exists()
    assert (root / "_build" / "runs" / "quick_n-3" / "book" / "00_tiny.ipynb").exists()


def test_tables_get_the_permissions_of_an_ordinary_file(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    results.save_tables(tmp_path, {"t": pd.DataFrame({"a": [1]})})
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o666 & ~umask

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



def test_pages_run_on_another_machine_keep_each_its_own(tmp_path):
    avx512 = {"cpu": "AMD EPYC", "cpu_capability": "AVX512", "cpu_count": 2, "torch": "2.14.1",
              "torch_threads": 2}
    avx2 = {**avx512, "cpu_capability": "AVX2"}
    for page in ("01_chairs", "02_instability"):
        results.record_notebook(tmp_path, page, {"seconds": 1.0}, {"profile": "paper", "machine": avx512})
    assert "machine" not in results.load_run(tmp_path)["notebooks"]["01_chairs"]  # one machine so far
    results.record_notebook(tmp_path, "02_instability", {"seconds": 2.0},
                            {"profile": "paper", "machine": avx2})
    results.record_notebook(tmp_path, "07_why_they_differ", {"seconds": 3.0},
                            {"profile": "paper", "machine": avx2})
    record = results.load_run(tmp_path)
    assert record["machine"] == avx2
    assert results.page_machines(record) == {"01_chairs": avx512, "02_instability": avx2,
                                             "07_why_they_differ": avx2}
    assert results.describe_machine(avx2) == "2 CPU cores (AMD EPYC, AVX2 kernels; torch 2.14.1, 2 threads)"
    assert results.describe_machine({}) == "? CPU cores (model not recorded; torch ?, ? threads)"
    assert results.describe_machine(avx2, brief=True) == "AMD EPYC (2 cores), AVX2, 2 threads"


def test_run_seconds_adds_first_executions_and_leaves_out_reruns(tmp_path):
    for page, seconds in [("01_chairs", 5.0), ("02_instability", 1570.5),
                          ("02_instability_rerun", 44.0), ("07_why_they_differ", 3600.25)]:
        results.record_notebook(tmp_path, page, {"seconds": seconds}, {"profile": "paper"})
    assert results.run_seconds(tmp_path) == 5.0 + 1570.5 + 3600.25
    with pytest.raises(FileNotFoundError, match="run.json"):
        results.run_seconds(tmp_path / "nowhere")


@pytest.mark.parametrize("seconds, words", [(0, "0 s"), (44.4, "44 s"), (89.4, "89 s"),
                                            (90, "2 min"), (1570.7, "26 min"), (5399, "90 min"),
                                            (5400, "1.5 h"), (7020, "1.9 h")])
def test_duration_in_words(seconds, words):
    assert results.duration(seconds) == words


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan")])
def test_duration_refuses_impossible_times(bad):
    with pytest.raises(ValueError, match="seconds must be"):
        results.duration(bad)

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
if results.destination(results_dir) is not None:
    results.save_tables(results.destination(results_dir), {"squares": pd.DataFrame({"k": range(n), "k2": [k * k for k in range(n)]})})
'''


def test_runbook_results_option_writes_tables_and_run_record(tmp_path):
    root = _tiny_repo(tmp_path)
    out = tmp_path / "results"
    runbook.main(["--root", str(root), "--results", str(out), "--no-html", "--quiet",
                  "-p", "n", "3"])
    squares = results.load_tables(out, ["squares"])["squares"]
    assert squares.k2.tolist() == [0, 1, 4]
    record = json.loads((out / results.RUN_FILE).read_text())
    entry = record["notebooks"]["00_tiny"]
    assert entry["parameters"] == {"n": 3, "results_dir": str(out.resolve())}
    assert entry["defaults"] == {"n": "2", "results_dir": "None"}  # as written in the source
    assert entry["seconds"] > 0 and record["machine"]["cpu_count"] >= 1
    # the CPU as /proc/cpuinfo names it, and the kernels torch picked on it
    assert record["machine"]["cpu"] and record["machine"]["cpu_capability"] in {
        "DEFAULT", "AVX2", "AVX512", "NEON", "SVE256", "VSX", "ZVECTOR"}
    # the committed pages are untouched: the run went to _build/runs/
    assert not (root / "book" / "00_tiny.ipynb").exists()
    assert (root / "_build" / "runs" / runbook.run_name("quick", {"n": 3}) / "book" / "00_tiny.ipynb").exists()


def test_tables_get_the_permissions_of_an_ordinary_file(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    results.save_tables(tmp_path, {"t": pd.DataFrame({"a": [1]})})
    assert (tmp_path / "t.csv").stat().st_mode & 0o777 == 0o666 & ~umask


def _tiny_repo(tmp_path):
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "notebooks" / "00_tiny.py").write_text(TINY)
    for item in runbook.BOOK_FRAME:
        shutil.copy2(ROOT / item, root / item)
    return root


def test_results_of_a_default_run_leave_the_committed_pages_alone(tmp_path):
    root = _tiny_repo(tmp_path)
    runbook.main(["--root", str(root), "--results", str(root / "results" / "quick"), "--quiet",
                  "--no-html"])
    assert not (root / "book" / "00_tiny.ipynb").exists()
    assert (root / "_build" / "runs" / "quick" / "book" / "00_tiny.ipynb").exists()
    # inside the repository, the folder is passed and recorded relative to it
    record = results.load_run(root / "results" / "quick")
    assert record["notebooks"]["00_tiny"]["parameters"]["results_dir"] == "results/quick"


def test_results_folder_given_twice_is_refused(tmp_path, capsys):
    root = _tiny_repo(tmp_path)
    assert runbook.main(["--root", str(root), "--results", str(tmp_path / "a"),
                         "-p", "results_dir", str(tmp_path / "b")]) == 2
    assert "either as --results DIR or as -p results_dir" in capsys.readouterr().err


def test_run_record_never_mixes_profiles(tmp_path):
    results.record_notebook(tmp_path, "02_instability", {"seconds": 1.0}, {"profile": "paper"})
    with pytest.raises(results.RunMismatch, match="records the 'paper' profile"):
        results.record_notebook(tmp_path, "05_poisoning", {"seconds": 2.0}, {"profile": "quick"})
    assert results.load_run(tmp_path)["profile"] == "paper"


def _recorded(folder: Path, profile: str, parameters: dict) -> None:
    results.record_notebook(folder, "02_instability", {"parameters": parameters}, {"profile": profile})


def test_a_folder_of_another_run_is_refused(tmp_path):
    _recorded(tmp_path, "paper", {"n_train": 800, "results_dir": "/elsewhere"})
    # the same run, resumed from another folder name, and pages not recorded yet: accepted
    results.check_run(tmp_path, "paper", {"02_instability": {"n_train": 800, "results_dir": "r"},
                                          "05_poisoning": {"n_train": 5}})
    with pytest.raises(results.RunMismatch, match="'paper' profile, not 'quick'.*--overwrite"):
        results.check_run(tmp_path, "quick", {"02_instability": {"n_train": 800}})
    with pytest.raises(results.RunMismatch, match="records 02_instability with other parameters"):
        results.check_run(tmp_path, "paper", {"02_instability": {"n_train": 100}})


def test_a_file_or_a_foreign_folder_is_not_a_results_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(results.RunMismatch, match="is a file"):
        results.check_run(tmp_path / "notes.txt", "quick", {})
    with pytest.raises(results.RunMismatch, match="holds files but no run.json"):
        results.check_run(tmp_path, "quick", {})
    results.check_run(tmp_path / "new", "quick", {})


def test_runbook_refuses_a_results_folder_of_another_profile_unless_overwrite(tmp_path, capsys):
    root = _tiny_repo(tmp_path)
    out = tmp_path / "results"
    _recorded(out, "paper", {"n_train": 800})
    before = (out / results.RUN_FILE).read_text()
    args = ["--root", str(root), "--results", str(out), "--quiet", "--no-html"]
    assert runbook.main(args) == 2
    assert "records a run of the 'paper' profile, not 'quick'" in capsys.readouterr().err
    assert (out / results.RUN_FILE).read_text() == before
    assert not (root / "_build").exists()  # refused before any work
    assert runbook.main(args + ["--overwrite"]) == 0
    record = results.load_run(out)
    assert record["profile"] == "quick" and list(record["notebooks"]) == ["00_tiny"]


def test_overwrite_with_only_replaces_those_pages_and_keeps_the_others(tmp_path, capsys):
    root = _tiny_repo(tmp_path)
    out = tmp_path / "results"
    for page, n in (("00_tiny", 800), ("00_tiny_rerun", 800), ("05_poisoning", 5)):
        results.record_notebook(out, page, {"parameters": {"n": n}, "seconds": 9.0},
                                {"profile": "quick"})
    args = ["--root", str(root), "--results", str(out), "--quiet", "--only", "00_tiny",
            "-p", "n", "3"]
    assert runbook.main(args) == 2  # other parameters for 00_tiny: refused as before
    assert "records 00_tiny with other parameters" in capsys.readouterr().err
    assert runbook.main(args + ["--overwrite"]) == 0
    record = results.load_run(out)
    assert sorted(record["notebooks"]) == ["00_tiny", "05_poisoning"]  # the stale rerun is gone
    assert record["notebooks"]["00_tiny"]["parameters"]["n"] == 3
    assert record["notebooks"]["05_poisoning"] == {"parameters": {"n": 5}, "seconds": 9.0}
    assert results.load_tables(out, ["squares"])["squares"].k2.tolist() == [0, 1, 4]
    _recorded(tmp_path / "paper", "paper", {"n_train": 800})  # another profile: still refused
    assert runbook.main(["--root", str(root), "--results", str(tmp_path / "paper"), "--quiet",
                         "--only", "00_tiny", "--overwrite"]) == 2
    assert "'paper' profile, not 'quick'" in capsys.readouterr().err


def test_find_looks_in_parent_folders(tmp_path, monkeypatch):
    (tmp_path / "results" / "paper").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")
    assert results.find("results/paper") == tmp_path / "results" / "paper"
    assert results.find("results/none") == Path("results/none")


def test_missing_run_record_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="--results"):
        results.load_run(tmp_path)


def test_scale_label_names_the_run_and_its_sizes():
    assert results.scale_label("quick run", {"n_train": 100, "n_test": 20, "seeds": [0, 1, 2]}) == \
        "quick run: 100 / 20 images, 3 seeds"
    assert results.scale_label("paper-scale run", {"n_train": 800, "n_test": 200, "n_models": 20}) == \
        "paper-scale run: 800 / 200 images, 20 models per set"
    assert results.scale_label("run", {"n_train": 8, "n_test": 2, "n_models": 3, "n_poison": 1}) == \
        "run: 8 / 2 images, 1 poisoned, 3 models"


def test_load_section_reads_the_committed_paper_run():
    section = results.load_section(ROOT / "results" / "paper", "02_instability", ["table1_pairs"],
                                   "paper-scale run")
    assert section.label == "paper-scale run: 800 / 200 images, 4 seeds"
    record = results.load_run(ROOT / "results" / "paper")
    assert section.seconds == record["notebooks"]["02_instability"]["seconds"] > 0
    assert {"perturbation", "method", "pearson"} <= set(section.tables["table1_pairs"].columns)
    with pytest.raises(FileNotFoundError, match="does not record"):
        results.load_section(ROOT / "results" / "paper", "99_missing", [], "run")


def test_skipped_note_is_one_clean_line():
    reason = ("CoMNIST needs the network once, to download https://x/Latin.zip into /root/.cache: "
              "could not download https://x/Latin.zip: <urlopen error [Errno -2] Name unknown>")
    note = results.skipped_note({"comnist": reason})
    assert note == ("comnist is not in this run: it is downloaded once from its public "
                    "repository, and this machine is offline.")


def test_the_default_run_saves_its_tables_in_results_quick(tmp_path):
    root = _tiny_repo(tmp_path)
    assert runbook.main(["--root", str(root), "--quiet", "--no-html"]) == 0
    assert (root / "book" / "00_tiny.ipynb").exists()  # the committed pages
    assert results.load_tables(root / "results" / "quick", ["squares"])["squares"].k2.tolist() == [0, 1]
    record = results.load_run(root / "results" / "quick")
    assert record["profile"] == "quick"
    assert record["notebooks"]["00_tiny"]["parameters"] == {}  # the pages carry no trace of it
    assert results.BOOK_RESULTS_ENV not in os.environ
    # a second default run replaces the record instead of refusing it
    assert runbook.main(["--root", str(root), "--quiet", "--no-html"]) == 0


def test_accuracy_line_reads_the_saved_accuracies_or_says_they_are_missing(tmp_path):
    assert "predates the record" in results.accuracy_line(tmp_path, "table1_accuracy")
    results.save_tables(tmp_path, {"table1_accuracy": pd.DataFrame({"accuracy": [0.99, 1.0, 0.995]})})
    assert results.accuracy_line(tmp_path, "table1_accuracy") == \
        "test accuracy of its 3 models: 0.990 to 1.000"


def test_a_run_with_no_loadable_dataset_is_refused_naming_each():
    from infcore.results import require_some

    require_some(["mnist"], {"comnist": "CoMNIST needs the network once: could not download"})
    with pytest.raises(RuntimeError, match=r"none of the datasets.*comnist: CoMNIST needs the network once.*add mnist"):
        require_some([], {"comnist": "CoMNIST needs the network once: could not download"})

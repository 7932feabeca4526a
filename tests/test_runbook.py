"""The runbook's command line: values read as meant, every error early and in one line, nothing
left behind by a failed or interrupted page, one folder per parameter set."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from infcore import runbook
from infcore.validation import ParameterError

ROOT = Path(__file__).resolve().parents[1]

PAGE = '''# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% tags=["parameters"]
fail = False
marker = None

# %%
import os
import time
from pathlib import Path

if marker is not None:  # tell the test this kernel runs, then wait to be interrupted
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)
if fail:
    raise ValueError("the page refuses")
'''


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository with one tiny page, and a system temporary folder of its own."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "book").mkdir()
    (root / "notebooks" / "00_tiny.py").write_text(PAGE)
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return root


@pytest.fixture
def no_execution(monkeypatch):
    """Record the pages the runbook would execute instead of executing them."""
    calls = []
    monkeypatch.setattr(runbook, "execute", lambda source, *args: calls.append(source.stem))
    return calls


def test_exponents_are_numbers():
    assert runbook.parse_value("lr", "1e-3") == 0.001
    assert runbook.parse_value("lr", "-2E+4") == -20000.0
    assert runbook.parse_value("seeds", "[0, 1e1]") == [0, 10.0]
    assert runbook.parse_value("damping", "auto") == "auto"


def test_invalid_yaml_names_the_parameter_and_the_value():
    with pytest.raises(ParameterError, match=r"^parameter seeds: '\[0,1' is not valid YAML"):
        runbook.parse_value("seeds", "[0,1")


@pytest.mark.parametrize("argv, message", [
    (["-p", "seeds", "[0,1,1]"], "error: 02_instability: seeds must not repeat a value"),
    (["-p", "seeds", "3"], "error: 02_instability: seeds must be a list of distinct integers"),
    (["-p", "seeds", "[0,1"], "error: parameter seeds: '[0,1' is not valid YAML"),
    (["-p", "batch_sizes", "[32,32]"], "error: 02_instability: batch_sizes must not repeat"),
    (["-p", "perturbations", "[]"], "error: 02_instability: perturbations must be a non-empty list"),
    (["-p", "damping", "-1"], "error: 02_instability: damping must be 'auto' or a finite number > 0"),
    (["-p", "profile", "paper"], "error: profile is set by --profile"),
    (["--profile", "fast"], "error: profile must be one of"),
    (["-p", "no_such", "1"], "error: parameter(s) ['no_such'] are not declared"),
    (["--results", "README.md"], "is a file"),
    # page 4's values are checked before page 2 (the first page with work) runs
    (["-p", "n_models", "1"], "error: 04_expected_influence: n_models must be an integer >= 2"),
])
def test_user_errors_print_one_line_exit_2_and_run_nothing(argv, message, no_execution, capsys,
                                                            tmp_path):
    assert runbook.main(["--root", str(ROOT), "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert no_execution == []


def test_cuda_without_a_gpu_is_refused_before_any_page(monkeypatch, no_execution, capsys, tmp_path):
    monkeypatch.setattr(runbook.torch.cuda, "is_available", lambda: False)
    assert runbook.main(["--root", str(ROOT), "--out", str(tmp_path), "-p", "device", "cuda"]) == 2
    assert "device is 'cuda' but torch.cuda.is_available() is False" in capsys.readouterr().err
    assert no_execution == []


def test_an_exponent_reaches_the_pages_as_a_float(no_execution, tmp_path):
    jobs = runbook.plan(ROOT, "quick", {"lr": runbook.parse_value("lr", "1e-3")}, ["02_instability"])
    assert [p["lr"] for p in jobs.values()] == [0.001]


def test_a_failing_page_prints_its_error_in_one_line_and_exits_1(repo, tmp_path, capsys):
    out = tmp_path / "out"
    assert runbook.main(["--root", str(repo), "--out", str(out), "--quiet", "-p", "fail", "true"]) == 1
    err = capsys.readouterr().err
    assert "error: 00_tiny.py failed: ValueError: the page refuses" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    failed = Path(tempfile.gettempdir()) / "00_tiny.failed.ipynb"
    assert f"(traceback in {failed})" in err and failed.exists()
    assert not out.exists() or not any(out.iterdir())


def test_a_page_executes_outside_the_book_and_lands_whole(repo, tmp_path):
    out = tmp_path / "out"
    assert runbook.main(["--root", str(repo), "--out", str(out), "--quiet", "-p", "fail", "false"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00_tiny.ipynb"]
    assert not any(Path(tempfile.gettempdir()).iterdir())


def test_sigterm_leaves_nothing_behind(repo, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "kernel.pid"
    env = {**os.environ, "TMPDIR": tempfile.gettempdir(),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.Popen([sys.executable, "-m", "infcore.runbook", "--root", str(repo), "--out",
                            str(out), "--quiet", "-p", "marker", str(marker)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the page did not start"
    assert not out.exists() or not any(out.iterdir())  # nothing in the target folder while it runs
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 128 + signal.SIGTERM
    assert not out.exists() or not any(out.iterdir())
    assert not any(Path(tempfile.gettempdir()).iterdir())
    kernel = int(marker.read_text())
    deadline = time.monotonic() + 20
    while _alive(kernel) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(kernel), "the kernel outlived the runbook"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_run_names_keep_a_readable_prefix_and_never_collide():
    assert runbook.run_name("quick", {}) is None
    assert runbook.run_name("paper", {}) == "paper"
    assert runbook.run_name("quick", {"n_train": 200}).startswith("quick_n_train-200_")
    long = {"methods": ["leave_one_out", "influence_function", "tracin_ideal", "tracin_cp",
                        "representer", "grad_dot", "grad_cos"], "datasets": ["mnist"]}
    a = runbook.run_name("quick", {**long, "seeds": [0, 1]})
    b = runbook.run_name("quick", {**long, "seeds": [0, 2]})
    assert a != b and len(a) == len(b) == runbook.NAME_LENGTH
    assert a.startswith("quick_datasets-_mnist__methods-_leave_one_out")
    # two values that read the same once made a file name
    assert runbook.run_name("quick", {"x": "a b"}) != runbook.run_name("quick", {"x": "a_b"})


def test_parameters_cells_are_folded_in_the_rendered_book(tmp_path):
    import nbformat

    from infcore.runbook import fold_parameters

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("print(a)")])
    path = tmp_path / "page.ipynb"
    nbformat.write(notebook, path)
    fold_parameters(path)
    tags = [cell.metadata.get("tags", []) for cell in nbformat.read(path, as_version=4).cells]
    assert tags == [["parameters", "hide-input"], ["injected-parameters", "hide-input"], []]

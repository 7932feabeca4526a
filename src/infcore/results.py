"""Result tables of a book run, kept as CSV so that a long run can be shown without re-running it.

``python -m infcore.runbook --profile paper --results results/paper`` makes every notebook that
declares a ``results_dir`` parameter write its tables into that folder, and the runbook adds
``run.json``: the parameters and the seconds of each notebook and the machine it ran on. The
committed book's own run (the quick profile) saves its tables into ``results/quick/`` the same way.
Pages 2, 4, 5, 7 and 8 open with the paper-scale run read back by :func:`load_section`; the
findings of the first page read both folders.
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from infcore.cache import atomic_write

RUN_FILE = "run.json"
#: set by ``infcore.runbook`` while it executes the committed book: where its pages save their
#: tables (``results/quick``); an environment variable, not a parameter, so that the committed
#: pages, and re-executions of them, carry no trace of it
BOOK_RESULTS_ENV = "INFCORE_BOOK_RESULTS"
#: parameters that say where a run's tables go, not what they hold: left out when runs are compared
_LOCATIONS = {"results_dir", "results_path"}


class RunMismatch(ValueError):
    """A results folder that holds another run than the one about to write into it."""


def save_tables(directory: str | Path, tables: Mapping[str, pd.DataFrame]) -> None:
    """Write each table to ``directory/<name>.csv``, each file whole or not at all.

    Parameters
    ----------
    directory : str or Path
        Created if missing.
    tables : mapping of name to DataFrame
        Names must be plain file stems (letters, digits, ``_``, ``-``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ValueError(f"table names must be plain file stems; got {name!r}")
        text = table.to_csv(index=False).encode()
        atomic_write(directory / f"{name}.csv", lambda file: file.write(text))


def destination(results_dir: str | Path | None) -> Path | None:
    """Where a page saves its tables: ``results_dir`` when given (``--results DIR``), else the
    folder of the committed book's run while ``infcore.runbook`` executes it, else nowhere."""
    if results_dir is not None:
        return Path(results_dir)
    book = os.environ.get(BOOK_RESULTS_ENV)
    return Path(book) if book else None


def load_tables(directory: str | Path, names: Iterable[str]) -> dict[str, pd.DataFrame]:
    """Read tables written by :func:`save_tables`.

    Raises
    ------
    FileNotFoundError
        Naming the missing files and the command that writes them.
    """
    directory = Path(directory)
    names = list(names)
    missing = [n for n in names if not (directory / f"{n}.csv").exists()]
    if missing:
        raise FileNotFoundError(
            f"{directory} lacks {', '.join(f'{n}.csv' for n in missing)}: write them with "
            f"`python -m infcore.runbook --profile <profile> --results {directory}`")
    return {n: pd.read_csv(directory / f"{n}.csv") for n in names}


def find(path: str | Path) -> Path:
    """A results folder, looked up from the current directory and then from each of its parents.

    The book's pages run from the repository root (``infcore.runbook``) or from ``book/``
    (``pytest --nbval``); either way ``find("results/paper")`` is the repository's folder. An
    absolute path, or one found nowhere, is returned as given (the loaders then say what is
    missing).
    """
    path = Path(path)
    if path.is_absolute():
        return path
    for base in [Path.cwd(), *Path.cwd().parents]:
        if (base / path).is_dir():
            return base / path
    return path


def load_run(directory: str | Path) -> dict[str, Any]:
    """The run record (``run.json``) of a results folder.

    Raises
    ------
    FileNotFoundError
        If the folder has no run record.
    """
    path = Path(directory) / RUN_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it is written by "
                                f"`python -m infcore.runbook --profile <profile> --results {directory}`")
    return json.loads(path.read_text())


def _comparable(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as run.json holds them (JSON values), without the folder locations."""
    kept = {k: v for k, v in parameters.items() if k not in _LOCATIONS}
    return json.loads(json.dumps(kept, default=str))


def check_run(directory: str | Path, profile: str, parameters: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse to write a run into a folder that holds another one.

    A folder that does not exist yet, or whose ``run.json`` records the same profile and, for each
    notebook of ``parameters`` that it lists, the same parameters (an interrupted run resumed, or
    other pages of the same run) is accepted.

    Parameters
    ----------
    directory : str or Path
    profile : str
        Profile of the run about to write.
    parameters : mapping of notebook stem to its parameters
        What each notebook of the run will be given (``results_dir`` and ``results_path`` are
        not compared).

    Raises
    ------
    RunMismatch
        If ``directory`` is a file, holds files but no ``run.json``, or its ``run.json`` records
        another profile or other parameters for one of the notebooks.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise RunMismatch(f"the results folder {directory} is a file")
    if not directory.exists() or not any(directory.iterdir()):
        return
    if not (directory / RUN_FILE).exists():
        raise RunMismatch(f"{directory} holds files but no {RUN_FILE}: it is not a results folder "
                          "of infcore.runbook; choose another folder, or pass --overwrite")
    record = load_run(directory)
    if record.get("profile") != profile:
        raise RunMismatch(f"{directory / RUN_FILE} records a run of the {record.get('profile')!r} "
                          f"profile, not {profile!r}: choose another folder, or pass --overwrite "
                          "to replace that run")
    for notebook, given in parameters.items():
        entry = record.get("notebooks", {}).get(notebook)
        if entry is not None and _comparable(entry["parameters"]) != _comparable(given):
            raise RunMismatch(f"{directory / RUN_FILE} records {notebook} with other parameters "
                              f"({_comparable(entry['parameters'])}, now {_comparable(given)}): "
                              "choose another folder, or pass --overwrite to replace that run")


def _write_run(directory: Path, record: Mapping[str, Any]) -> None:
    """Write ``run.json`` whole or not at all."""
    text = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode()
    atomic_write(directory / RUN_FILE, lambda file: file.write(text))


def record_notebook(directory: str | Path, notebook: str, entry: Mapping[str, Any],
                    run: Mapping[str, Any]) -> None:
    """Add one notebook's entry (parameters, seconds, ...) to ``run.json``, keeping the others.

    Parameters
    ----------
    directory : str or Path
    notebook : str
        File stem, e.g. ``"02_instability"``.
    entry : mapping
        What to record for this notebook (JSON-serialisable).
    run : mapping
        Fields of the whole run (profile, machine, ...), updated in place of the old ones. An
        entry without a ``machine`` of its own ran on the record's machine: when ``run`` names
        another machine (a run resumed, or a page re-run, elsewhere), the earlier entries keep
        theirs (see :func:`page_machines`).

    Raises
    ------
    RunMismatch
        If ``run.json`` records another profile than ``run["profile"]``: one record never mixes
        two runs.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = load_run(directory) if (directory / RUN_FILE).exists() else {}
    if record.get("profile", run.get("profile")) != run.get("profile"):
        raise RunMismatch(f"{directory / RUN_FILE} records the {record['profile']!r} profile; "
                          f"not adding a {run.get('profile')!r} entry to it")
    earlier = record.get("machine")
    if earlier is not None and "machine" in run and run["machine"] != earlier:
        for kept in record.get("notebooks", {}).values():
            kept.setdefault("machine", earlier)
    record.update(run)
    record.setdefault("notebooks", {})[notebook] = dict(entry)
    _write_run(directory, record)


def scale_label(run: str, parameters: Mapping[str, Any]) -> str:
    """The scale of a run in words, for titles and captions.

    Parameters
    ----------
    run : str
        What the run is, e.g. ``"quick run"`` or ``"paper-scale run"``.
    parameters : mapping
        The page's parameters: ``n_train`` and ``n_test``, and where present ``seeds`` (Table 1),
        ``n_models`` (models per set or poisoned models) and ``n_poison``.

    Returns
    -------
    str, e.g. ``"quick run: 100 / 20 images, 3 seeds"``
    """
    parts = [f"{parameters['n_train']} / {parameters['n_test']} images"]
    if "seeds" in parameters:
        parts.append(f"{len(parameters['seeds'])} seeds")
    if "n_poison" in parameters:
        parts.append(f"{parameters['n_poison']} poisoned, {parameters['n_models']} models")
    elif "n_models" in parameters:
        parts.append(f"{parameters['n_models']} models per set")
    return f"{run}: " + ", ".join(parts)


@dataclass(frozen=True)
class Section:
    """One page's tables of a saved run, with the parameters and the scale they were made at.

    Attributes
    ----------
    tables : dict of name to DataFrame
    parameters : dict
        The page's parameters in that run (its declared defaults, then what the run set).
    label : str
        :func:`scale_label` of the run.
    seconds : float
        How long the page took in that run (``run.json``).
    """

    tables: dict[str, pd.DataFrame]
    parameters: dict[str, Any]
    label: str
    seconds: float


def load_section(directory: str | Path, page: str, names: Iterable[str], run: str) -> Section:
    """The tables that one page saved in a results folder, and the scale of that run.

    Parameters
    ----------
    directory : str or Path
        Looked up with :func:`find`.
    page : str
        Notebook stem, e.g. ``"02_instability"``.
    names : iterable of str
        Tables to read.
    run : str
        How to call the run in its label, e.g. ``"paper-scale run"``.

    Raises
    ------
    FileNotFoundError
        If the folder lacks the tables or its run record does not list the page.
    """
    folder = find(directory)
    record = load_run(folder)
    if page not in record.get("notebooks", {}):
        raise FileNotFoundError(f"{folder / RUN_FILE} does not record {page}")
    entry = record["notebooks"][page]
    defaults = {}
    for name, text in entry.get("defaults", {}).items():
        try:
            defaults[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):  # a default that is an expression: kept as its text
            defaults[name] = text
    parameters = {**defaults, **entry["parameters"]}
    return Section(load_tables(folder, names), parameters, scale_label(run, parameters),
                   float(entry["seconds"]))


def duration(seconds: float) -> str:
    """A duration in words for the book's prose: ``"45 s"``, ``"26 min"``, ``"1.9 h"``.

    Raises
    ------
    ValueError
        If ``seconds`` is negative or not finite.
    """
    if not 0 <= seconds < float("inf"):
        raise ValueError(f"seconds must be a finite number >= 0; got {seconds!r}")
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def forget_pages(directory: str | Path, notebooks: Iterable[str]) -> None:
    """Remove the entries of ``notebooks`` (and of their ``NAME_rerun`` entries) from ``run.json``.

    ``infcore.runbook --only PAGES --overwrite`` calls it before it executes those pages again, so
    that the record never vouches for tables that are being replaced; the other pages' entries,
    and the run's profile, stay. A folder without a record is left as it is.
    """
    directory = Path(directory)
    if not (directory / RUN_FILE).exists():
        return
    record = load_run(directory)
    gone = {name for notebook in notebooks for name in (notebook, f"{notebook}_rerun")}
    record["notebooks"] = {name: entry for name, entry in record.get("notebooks", {}).items()
                           if name not in gone}
    _write_run(directory, record)


def page_machines(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The machine each page of a run record ran on: its own, else the record's.

    Parameters
    ----------
    record : mapping
        A run record (:func:`load_run`).

    Returns
    -------
    dict of notebook name to its machine (an empty dict where neither records one)
    """
    default = record.get("machine", {})
    return {name: dict(entry.get("machine", default))
            for name, entry in record.get("notebooks", {}).items()}


def describe_machine(machine: Mapping[str, Any], brief: bool = False) -> str:
    """A machine of :func:`page_machines` in words, e.g. ``"2 CPU cores (AMD EPYC, AVX2 kernels;
    torch 2.14.1, 2 threads)"``, or with ``brief`` ``"AMD EPYC (2 cores), AVX2, 2 threads"`` (for
    a table column)."""
    kernels = f", {machine['cpu_capability']} kernels" if machine.get("cpu_capability") else ""
    device = f", GPU {machine['cuda_device']}" if machine.get("cuda_device") else ""
    if brief:
        return (f"{machine.get('cpu', 'model not recorded')} ({machine.get('cpu_count', '?')} cores)"
                f"{kernels.removesuffix(' kernels')}, "
                f"{machine.get('torch_threads', '?')} threads{device}")
    return (f"{machine.get('cpu_count', '?')} CPU cores ({machine.get('cpu', 'model not recorded')}"
            f"{kernels}; torch {machine.get('torch', '?')}, {machine.get('torch_threads', '?')} "
            f"threads){device}")


def run_seconds(directory: str | Path) -> float:
    """The time of a whole run: the sum of its pages' first executions (``NAME_rerun`` entries,
    pages executed again from the run's cache, are left out).

    Raises
    ------
    FileNotFoundError
        If the folder has no run record.
    """
    record = load_run(find(directory))
    return sum(float(entry["seconds"]) for name, entry in record.get("notebooks", {}).items()
               if not name.endswith("_rerun"))


def skipped_note(skipped: Mapping[str, str]) -> str:
    """One clean line per dataset left out of a run, instead of the loader's whole error.

    Parameters
    ----------
    skipped : mapping of dataset to the error message that left it out
    """
    lines = []
    for dataset, reason in skipped.items():
        offline = "network" in reason or "urlopen" in reason
        why = ("it is downloaded once from its public repository, and this machine is offline"
               if offline else reason.split(": ")[0])
        lines.append(f"{dataset} is not in this run: {why}.")
    return "\n".join(lines)


def require_some(ran: Collection[str], skipped: Mapping[str, str]) -> None:
    """Refuse a run in which none of the datasets could be loaded (e.g. CoMNIST alone, offline).

    Parameters
    ----------
    ran : collection of the datasets that were loaded
    skipped : mapping of dataset to the error message that left it out

    Raises
    ------
    RuntimeError
        Naming every dataset and why it is missing, and the dataset that needs no network.
    """
    if not ran:
        reasons = "; ".join(f"{dataset}: {reason.split(': ')[0]}" for dataset, reason in skipped.items())
        raise RuntimeError(f"none of the datasets of this run could be loaded ({reasons}); add "
                           "mnist to datasets, whose digits ship with the installed packages")


def accuracy_line(directory: str | Path, name: str) -> str:
    """The range of test accuracies a run saved as table ``name`` (column accuracy), in words.

    A run made before its pages saved the accuracies says so instead.
    """
    path = find(directory) / f"{name}.csv"
    if not path.exists():
        return (f"this run predates the record of its models' test accuracy ({path.name}); the "
                "next run of the paper profile records it")
    accuracy = pd.read_csv(path)["accuracy"]
    return f"test accuracy of its {len(accuracy)} models: {accuracy.min():.3f} to {accuracy.max():.3f}"

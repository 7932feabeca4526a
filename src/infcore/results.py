"""Result tables of a book run, kept as CSV so that a long run can be shown without re-running it.

``python -m infcore.runbook --profile paper --results results/paper`` makes every notebook that
declares a ``results_dir`` parameter write its tables into that folder, and the runbook adds
``run.json``: the parameters and the seconds of each notebook and the machine it ran on. The page
*At the paper's scale* reads them back with :func:`load_tables` and :func:`load_run`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from infcore.cache import atomic_write

RUN_FILE = "run.json"


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
        Fields of the whole run (profile, machine, ...), updated in place of the old ones.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = load_run(directory) if (directory / RUN_FILE).exists() else {}
    record.update(run)
    record.setdefault("notebooks", {})[notebook] = dict(entry)
    text = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode()
    atomic_write(directory / RUN_FILE, lambda file: file.write(text))

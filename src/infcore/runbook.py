"""Execute the book's notebooks with papermill and build the HTML book with jupyter-book.

Run as ``python -m infcore.runbook --profile quick [-p NAME VALUE ...]``. The default profile with
no overrides writes the executed notebooks into ``book/`` (the committed pages); any other profile
or override writes them, with a copy of the book's frame, into ``_build/runs/<name>/`` and leaves
the committed book untouched.

Every page's parameters are checked (:func:`infcore.validation.check_page`), and the results folder
too, before the first page runs; a user error prints one message and exits with status 2, a page
that fails prints its error and exits with status 1. A page executes in a temporary folder outside
the book and replaces its target only when it has run to the end, also when interrupted by SIGTERM.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill
import torch
import yaml
from papermill.exceptions import PapermillExecutionError

from infcore import results
from infcore.profiles import PROFILES, profile_parameters
from infcore.validation import PAGES, ParameterError, check_page

DEFAULT_PROFILE = "quick"
#: where the committed book's run (the default profile, no overrides) saves its tables: the
#: findings on the first page read them back
QUICK_RESULTS = Path("results") / "quick"
BOOK_FRAME = ["_config.yml", "_toc.yml"]
#: longest folder name of a run under _build/runs, its hash suffix included
NAME_LENGTH = 120
_HASH_LENGTH = 10


class PageFailed(RuntimeError):
    """A page raised an error while it executed."""


class _Loader(yaml.SafeLoader):
    """PyYAML's YAML 1.1 reader, but with YAML 1.2's floats: ``1e-3`` is a number, not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"), list("-+.0123456789"))


def parse_value(name: str, text: str) -> Any:
    """The value of ``-p NAME TEXT``: ``text`` read as YAML, with ``1e-3`` a float.

    Raises
    ------
    ParameterError
        If ``text`` is not valid YAML; the message names the parameter and the value.
    """
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error)
        raise ParameterError(f"parameter {name}: {text!r} is not valid YAML ({problem})") from None


def notebook_sources(root: Path) -> list[Path]:
    """The jupytext sources ``notebooks/*.py`` under ``root``, in book order."""
    return sorted((root / "notebooks").glob("*.py"))


def declared_parameters(source: Path) -> dict[str, Any]:
    """Names and default values of the ``parameters`` cell of a jupytext source."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (source.stem + ".ipynb")
        jupytext.write(jupytext.read(source), path)
        found = papermill.inspect_notebook(str(path))
    return {name: info["default"] for name, info in found.items()}


def run_name(profile: str, overrides: dict[str, Any]) -> str | None:
    """Folder name of a run under ``_build/runs``, or ``None`` for the committed book.

    With overrides the name is a readable prefix (profile and overrides, cut to fit
    :data:`NAME_LENGTH`) and a hash of the whole parameter set, so that two runs never share a folder.
    """
    if profile == DEFAULT_PROFILE and not overrides:
        return None
    if not overrides:
        return profile
    parts = [profile] + [f"{k}-{v}" for k, v in sorted(overrides.items())]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(parts))
    digest = hashlib.sha256(json.dumps([profile, overrides], sort_keys=True, default=str).encode())
    return f"{readable[:NAME_LENGTH - _HASH_LENGTH - 1]}_{digest.hexdigest()[:_HASH_LENGTH]}"


def plan(
    root: Path,
    profile: str,
    overrides: dict[str, Any],
    only: list[str] | None = None,
    results_dir: Path | None = None,
    overwrite: bool = False,
) -> dict[Path, dict[str, Any]]:
    """Parameters for every notebook (or the ``only`` ones), all validated before anything runs.

    Parameters
    ----------
    root : Path
        Repository root.
    profile : str
        One of :data:`infcore.profiles.PROFILES`.
    overrides : dict
        Parameters set on top of the profile (``-p NAME VALUE``).
    only : list of str, optional
        Notebook stems to run.
    results_dir : Path, optional
        The pages that declare ``results_dir`` write their tables there and those that declare
        ``results_path`` read them from there (relative to ``root`` when inside it).
    overwrite : bool
        Accept a results folder that holds another run; with ``only``, one that holds the same
        profile with other parameters for those pages (they are replaced, the others kept).

    Returns
    -------
    dict of source path to the parameters papermill injects into it

    Raises
    ------
    ParameterError
        If the profile is unknown or set by an override, ``only`` names a notebook that does not
        exist, an override names a parameter that none of the notebooks to run declares, or a
        page's parameters break its rules (:func:`infcore.validation.check_page`).
    infcore.results.RunMismatch
        If ``results_dir`` holds another run and ``overwrite`` is false.
    """
    if profile not in PROFILES:
        raise ParameterError(f"profile must be one of {sorted(PROFILES)}; got {profile!r}")
    if "profile" in overrides:
        raise ParameterError("profile is set by --profile (it labels the pages); drop -p profile")
    if results_dir is not None and "results_dir" in overrides:
        raise ParameterError("give the results folder either as --results DIR or as "
                             "-p results_dir, not both")
    sources = notebook_sources(root)
    if not sources:
        raise ParameterError(f"no jupytext sources found in {root / 'notebooks'}")
    if only:
        stems = [s.stem for s in sources]
        unknown = sorted(set(only) - set(stems))
        if unknown:
            raise ParameterError(f"only must name notebooks among {stems}; got unknown {unknown}")
        sources = [s for s in sources if s.stem in only]
    declared = {src: declared_parameters(src) for src in sources}
    known = set().union(*declared.values())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParameterError(
            f"parameter(s) {unknown} are not declared by any notebook; known parameters: {sorted(known)}"
        )
    if results_dir is not None:
        # the kernels run in `root`: a folder inside it is passed (and recorded) relative to it
        shown = str(results_dir.relative_to(root) if results_dir.is_relative_to(root) else results_dir)
        overrides = {**overrides, "results_dir": shown, "results_path": shown}
    result = {}
    for src, names in declared.items():
        params = profile_parameters(profile, src.stem)
        params.update({k: v for k, v in overrides.items() if k in names})
        if src.stem in PAGES:  # every page of the book (tests/test_validation.py)
            check_page(src.stem, {**{k: ast.literal_eval(v) for k, v in names.items()}, **params})
        result[src] = params
    if results_dir is not None and (only or not overwrite):
        # --overwrite with --only replaces those pages of the run: only its profile must match
        results.check_run(results_dir, profile,
                          {} if overwrite else {src.stem: p for src, p in result.items()})
    return result


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Within the block SIGTERM raises SystemExit, as Ctrl-C raises KeyboardInterrupt, so that
    temporary folders and files are removed on the way out."""
    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(source: Path, target: Path, parameters: dict[str, Any], show_progress: bool = True) -> None:
    """Execute one jupytext source into ``target``; ``target`` is replaced only on success.

    The notebook executes in a temporary folder outside the book (nothing a later build or test
    collects is left if the run is interrupted) and is then moved into place atomically, through a
    hidden ``.NAME.partial`` file beside ``target``. With ``show_progress`` the kernel's stderr
    (the tqdm bars of the sweeps: models done, total and ETA) is copied live to this process's
    stderr.

    Raises
    ------
    PageFailed
        If a cell raised: the message names the page and the error, and points to the executed
        notebook (with the traceback), kept in the system's temporary folder.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="infcore-runbook-") as tmp:
        raw, executed = Path(tmp) / "in.ipynb", Path(tmp) / target.name
        jupytext.write(jupytext.read(source), raw)
        try:
            papermill.execute_notebook(
                str(raw), str(executed), parameters=parameters, cwd=str(source.parent.parent),
                kernel_name="python3", progress_bar=False, log_output=False,
                stderr_file=sys.stderr if show_progress else None,
            )
        except PapermillExecutionError as error:
            failed = Path(tempfile.gettempdir()) / f"{source.stem}.failed.ipynb"
            shutil.copyfile(executed, failed)
            raise PageFailed(f"{source.name} failed: {error.ename}: {error.evalue} "
                             f"(traceback in {failed})") from None
        fold_parameters(executed)
        partial = target.with_name(f".{target.name}.partial")
        try:
            shutil.copyfile(executed, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def fold_parameters(path: Path) -> None:
    """Collapse the parameters cells of an executed notebook in the rendered book.

    The notebook's own ``parameters`` cell and the one papermill injects get the ``hide-input``
    tag: a reader sees a "Show code cell source" line instead of two dozen settings before the
    page's first sentence, and can still open them.
    """
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if {"parameters", "injected-parameters"} & set(tags) and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(notebook, path)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What a run's timings depend on: CPU model and count, torch version and threads, a GPU."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def build_html(book_root: Path) -> None:
    """``jupyter-book build`` with warnings as errors; the HTML lands in ``book_root/_build/html``."""
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book_root),
           "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"), help="override one parameter (value read as YAML)")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    parser.add_argument("--no-html", action="store_true", help="execute the notebooks only")
    parser.add_argument("--results", type=Path, metavar="DIR",
                        help="notebooks that declare results_dir write their tables (CSV) into "
                             "DIR, those that declare results_path read them from there, and "
                             "DIR/run.json records each notebook's parameters (set and default) "
                             "and seconds; a DIR that holds another run is refused")
    parser.add_argument("--overwrite", action="store_true",
                        help="with --results: replace the run that DIR holds (a fresh run.json); "
                             "with --only too, replace only those pages of it (same profile)")
    parser.add_argument("--quiet", action="store_true",
                        help="do not copy the notebooks' progress bars to the terminal")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                        help="execute only these notebooks (file stems, e.g. 02_instability); "
                             "implies --no-html")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write the executed notebooks into DIR instead of the book (no HTML); "
                             "with the default profile this re-executes the book without touching "
                             "book/, e.g. to compare it with the committed pages")
    return parser


def _run(args: argparse.Namespace) -> int:
    root = args.root.resolve()
    overrides = {name: parse_value(name, value) for name, value in args.parameter}
    results_dir = None if args.results is None else args.results.resolve()
    name = run_name(args.profile, overrides)
    if name is None and results_dir is not None:
        name = args.profile  # injecting results_dir changes the pages: keep the committed book
    jobs = plan(root, args.profile, overrides, args.only, results_dir, args.overwrite)
    overwrite = args.overwrite
    if name is None and args.out is None and not args.only:
        # the committed book saves its tables beside it (a fresh record each time) for the
        # findings of its first page; its pages still read the paper-scale run from results/paper
        results_dir, overwrite = root / QUICK_RESULTS, True
        saving = {results.BOOK_RESULTS_ENV: str(results_dir)}
    else:
        saving = {}
    declared = {src: declared_parameters(src) for src in jobs}
    if args.only and name is None and args.out is None:
        raise ParameterError("--only with the default profile and no overrides would leave the "
                             "committed book half re-executed: run `make book`, or pass a profile "
                             "or an override so that the run goes to _build/runs/")
    if results_dir is not None and overwrite and args.only:
        results.forget_pages(results_dir, [src.stem for src in jobs])
    elif results_dir is not None and overwrite:
        (results_dir / results.RUN_FILE).unlink(missing_ok=True)
    book_root = root if name is None else root / "_build" / "runs" / name
    pages = book_root / "book" if args.out is None else args.out.resolve()
    if name is not None and args.out is None:
        (book_root / "book").mkdir(parents=True, exist_ok=True)
        for item in BOOK_FRAME:
            shutil.copy2(root / item, book_root / item)
        for page in (root / "book").glob("*"):
            if page.suffix in {".md", ".bib"}:
                shutil.copy2(page, book_root / "book" / page.name)
    with _environment(saving):
        _execute_all(jobs, declared, pages, results_dir, args)
    if not (args.no_html or args.only or args.out):
        build_html(book_root)
        print(f"HTML book: {book_root / '_build' / 'html' / 'index.html'}")
    return 0


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """Within the block the kernels (started from this process) see ``variables`` too."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _execute_all(jobs: dict[Path, dict[str, Any]], declared: dict[Path, dict[str, Any]],
                 pages: Path, results_dir: Path | None, args: argparse.Namespace) -> None:
    """Execute each page into ``pages``, recording it in ``results_dir`` when there is one."""
    for i, (src, params) in enumerate(jobs.items(), 1):
        print(f"[{i}/{len(jobs)}] {src.name} -> {pages / (src.stem + '.ipynb')} {params}", flush=True)
        start, started = time.perf_counter(), datetime.now(timezone.utc)
        execute(src, pages / f"{src.stem}.ipynb", params, not args.quiet)
        seconds = time.perf_counter() - start
        print(f"[{i}/{len(jobs)}] {src.name} done in {seconds:.0f} s", flush=True)
        if results_dir is not None:
            results.record_notebook(
                results_dir, src.stem,
                {"parameters": params, "defaults": declared[src], "seconds": round(seconds, 1),
                 "started": started.isoformat(timespec="seconds")},
                {"profile": args.profile, "machine": machine()})


def main(argv: list[str] | None = None) -> int:
    """The command line; returns 0, 1 if a page failed, or 2 for a user error (nothing ran)."""
    args = _parser().parse_args(argv)
    try:
        with sigterm_as_exit():
            return _run(args)
    except (ParameterError, results.RunMismatch) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except PageFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

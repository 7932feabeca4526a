"""Execute the book's notebooks with papermill and build the HTML book with jupyter-book.

Run as ``python -m infcore.runbook --profile quick [-p NAME VALUE ...]``. The default profile with
no overrides writes the executed notebooks into ``book/`` (the committed pages); any other profile
or override writes them, with a copy of the book's frame, into ``_build/runs/<name>/`` and leaves
the committed book untouched.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jupytext
import papermill
import torch
import yaml

from infcore import results
from infcore.profiles import PROFILES, profile_parameters

DEFAULT_PROFILE = "quick"
BOOK_FRAME = ["_config.yml", "_toc.yml"]


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
    """Folder name of a run under ``_build/runs``, or ``None`` for the committed book."""
    if profile == DEFAULT_PROFILE and not overrides:
        return None
    parts = [profile] + [f"{k}-{v}" for k, v in sorted(overrides.items())]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "_".join(parts))[:120]


def plan(
    root: Path, profile: str, overrides: dict[str, Any], only: list[str] | None = None
) -> dict[Path, dict[str, Any]]:
    """Parameters for every notebook (or the ``only`` ones), validated before anything runs.

    Raises
    ------
    ValueError
        If the profile is unknown, ``only`` names a notebook that does not exist, or an override
        names a parameter that none of the notebooks to run declares.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}; got {profile!r}")
    sources = notebook_sources(root)
    if not sources:
        raise ValueError(f"no jupytext sources found in {root / 'notebooks'}")
    if only:
        stems = [s.stem for s in sources]
        unknown = sorted(set(only) - set(stems))
        if unknown:
            raise ValueError(f"only must name notebooks among {stems}; got unknown {unknown}")
        sources = [s for s in sources if s.stem in only]
    declared = {src: declared_parameters(src) for src in sources}
    known = set().union(*declared.values())
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(
            f"parameter(s) {unknown} are not declared by any notebook; known parameters: {sorted(known)}"
        )
    result = {}
    for src, names in declared.items():
        params = profile_parameters(profile, src.stem)
        params.update({k: v for k, v in overrides.items() if k in names})
        result[src] = params
    return result


def execute(source: Path, target: Path, parameters: dict[str, Any], show_progress: bool = True) -> None:
    """Execute one jupytext source into ``target``; ``target`` is replaced only on success.

    With ``show_progress`` the kernel's stderr (the tqdm bars of the sweeps: models done, total
    and ETA) is copied live to this process's stderr.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        raw, executed = Path(tmp) / "in.ipynb", Path(tmp) / target.name
        jupytext.write(jupytext.read(source), raw)
        papermill.execute_notebook(
            str(raw), str(executed), parameters=parameters, cwd=str(source.parent.parent),
            kernel_name="python3", progress_bar=False, log_output=False,
            stderr_file=sys.stderr if show_progress else None,
        )
        os.replace(executed, target)


def machine() -> dict[str, Any]:
    """What a run's timings depend on: CPU count, torch version and threads, a GPU if any."""
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def build_html(book_root: Path) -> None:
    """``jupyter-book build`` with warnings as errors; the HTML lands in ``book_root/_build/html``."""
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(book_root),
           "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
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
                             "and seconds")
    parser.add_argument("--quiet", action="store_true",
                        help="do not copy the notebooks' progress bars to the terminal")
    parser.add_argument("--only", nargs="+", metavar="NOTEBOOK",
                        help="execute only these notebooks (file stems, e.g. 02_instability); "
                             "implies --no-html")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="write the executed notebooks into DIR instead of the book (no HTML); "
                             "with the default profile this re-executes the book without touching "
                             "book/, e.g. to compare it with the committed pages")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    if args.results is not None and "results_dir" in overrides:
        raise SystemExit("give the results folder either as --results DIR or as -p results_dir, "
                         "not both")
    jobs = plan(root, args.profile, overrides, args.only)
    declared = {src: declared_parameters(src) for src in jobs}
    if args.results is not None:
        results_dir = args.results.resolve()
        # the kernels run in `root`: a folder inside it is passed (and recorded) relative to it
        shown = results_dir.relative_to(root) if results_dir.is_relative_to(root) else results_dir
        for src, params in jobs.items():
            if "results_dir" in declared[src]:  # pages that write their tables
                params["results_dir"] = str(shown)
            if "results_path" in declared[src]:  # pages that read a run's tables
                params["results_path"] = str(shown)
    name = run_name(args.profile, overrides)
    if name is None and args.results is not None:
        name = args.profile  # injecting results_dir changes the pages: keep the committed book
    if args.only and name is None and args.out is None:
        raise SystemExit("--only with the default profile and no overrides would leave the "
                         "committed book half re-executed: run `make book`, or pass a profile or "
                         "an override so that the run goes to _build/runs/")
    book_root = root if name is None else root / "_build" / "runs" / name
    pages = book_root / "book" if args.out is None else args.out.resolve()
    if name is not None and args.out is None:
        (book_root / "book").mkdir(parents=True, exist_ok=True)
        for item in BOOK_FRAME:
            shutil.copy2(root / item, book_root / item)
        for page in (root / "book").glob("*"):
            if page.suffix in {".md", ".bib"}:
                shutil.copy2(page, book_root / "book" / page.name)
    for i, (src, params) in enumerate(jobs.items(), 1):
        print(f"[{i}/{len(jobs)}] {src.name} -> {pages / (src.stem + '.ipynb')} {params}", flush=True)
        start, started = time.perf_counter(), datetime.now(timezone.utc)
        execute(src, pages / f"{src.stem}.ipynb", params, not args.quiet)
        seconds = time.perf_counter() - start
        print(f"[{i}/{len(jobs)}] {src.name} done in {seconds:.0f} s", flush=True)
        if args.results is not None:
            results.record_notebook(
                results_dir, src.stem,
                {"parameters": params, "defaults": declared[src], "seconds": round(seconds, 1),
                 "started": started.isoformat(timespec="seconds")},
                {"profile": args.profile, "machine": machine()})
    if not (args.no_html or args.only or args.out):
        build_html(book_root)
        print(f"HTML book: {book_root / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Wall-clock time of every notebook of the book, executed end to end from a cold cache.

Each jupytext source is executed with papermill (as ``python -m infcore.runbook --no-html`` does)
into a temporary folder, with the profile's parameters, and with ``INFCORE_CACHE`` pointing at a
fresh temporary cache, so that every model and score matrix is computed and neither the committed
book nor the user's cache is touched. ``--warm`` executes the notebooks a second time on the now
filled cache: the cost of re-running a page whose results are cached.

Run: ``python benchmarks/bench_book.py [--profile quick] [--only 02_instability ...]`` (the quick
profile takes minutes on a 2-core laptop; the paper profile hours).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from infcore import runbook
from infcore.cache import ENV_VAR
from infcore.profiles import PROFILES

ROOT = Path(__file__).resolve().parent.parent


def run_pass(jobs: dict[Path, dict[str, Any]], out: Path) -> dict[str, float]:
    """Execute every notebook of ``jobs`` into ``out``; seconds per notebook, in order."""
    times = {}
    for source, parameters in jobs.items():
        start = time.perf_counter()
        runbook.execute(source, out / f"{source.stem}.ipynb", parameters)
        times[source.stem] = time.perf_counter() - start
        print(f"  {source.stem:24} {times[source.stem]:8.1f} s", flush=True)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=runbook.DEFAULT_PROFILE, choices=sorted(PROFILES),
                        help="profile whose parameters the notebooks get (default: quick)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                        metavar=("NAME", "VALUE"),
                        help="override one parameter (value read as YAML)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NOTEBOOK",
                        help="notebook stems to run (default: all), e.g. 02_instability")
    parser.add_argument("--warm", action="store_true",
                        help="run the notebooks a second time on the filled cache")
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)

    overrides = {name: yaml.safe_load(value) for name, value in args.parameter}
    jobs = runbook.plan(args.root.resolve(), args.profile, overrides)
    if args.only is not None:
        known = [source.stem for source in jobs]
        unknown = sorted(set(args.only) - set(known))
        if unknown:
            parser.error(f"--only: unknown notebook(s) {unknown}; known: {known}")
        jobs = {source: params for source, params in jobs.items() if source.stem in args.only}

    previous = os.environ.get(ENV_VAR)
    with tempfile.TemporaryDirectory(prefix="infcore-bench-book-") as tmp:
        os.environ[ENV_VAR] = str(Path(tmp) / "cache")  # the notebooks' kernels inherit it
        try:
            print(f"profile {args.profile}, overrides {overrides or 'none'}; cold cache in {tmp}")
            cold = run_pass(jobs, Path(tmp) / "book")
            print(f"  {'total':24} {sum(cold.values()):8.1f} s")
            if args.warm:
                print("again, on the filled cache")
                warm = run_pass(jobs, Path(tmp) / "book")
                print(f"  {'total':24} {sum(warm.values()):8.1f} s")
        finally:
            if previous is None:
                del os.environ[ENV_VAR]
            else:
                os.environ[ENV_VAR] = previous
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Threads or processes: the same sweep in this process with N torch threads, and in N loky workers.

The paper profile's sweeps are leave-one-out matrices (batched retrainings, which use threads
well) and TracInIdeal (batch-size-1 steps and small float64 evaluations, which do not). Both run
through ``infcore.experiments.Experiment.scores``, which sends independent jobs (chunks of
retrainings; each model's scores) to ``backend=None`` (this process) or ``backend="loky"`` (local
worker processes, one torch thread each, as joblib sets). This script times one sweep of each
kind both ways, each from an empty temporary cache, and prints the ratio and the largest
difference of the scores (float32 rounding: the two runs sum in other orders).

Run: ``python benchmarks/bench_workers.py`` (about 5 minutes on a 2-core laptop at 800 / 200).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace

import numpy as np
import torch

from infcore.cache import Cache
from infcore.experiments import Experiment, Task
from infcore.training import TrainConfig


def sweep(method: str, configs: list[TrainConfig], task: Task, backend: str | None,
          n_jobs: int | None, chunk_size: int) -> tuple[float, list[np.ndarray]]:
    """Seconds of ``Experiment.scores(method, configs)`` from an empty cache (models included)."""
    with tempfile.TemporaryDirectory() as folder:
        experiment = Experiment(task, Cache(folder), progress=False, backend=backend,
                                n_jobs=n_jobs, chunk_size=chunk_size)
        start = time.perf_counter()
        scores = experiment.scores(method, configs)
        return time.perf_counter() - start, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--loo-models", type=int, default=2)
    parser.add_argument("--ideal-models", type=int, default=4)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="torch threads of this process, and loky workers")
    parser.add_argument("--chunk-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.workers)
    print(f"torch {torch.__version__}; this process {torch.get_num_threads()} threads, against "
          f"{args.workers} loky workers of one thread each")
    task = Task(n_train=args.n_train, n_test=args.n_test)
    base = TrainConfig()
    sweeps = {"leave_one_out": [replace(base, init_seed=s) for s in range(args.loo_models)],
              "tracin_ideal": [replace(base, batch_size=1, lr=0.01, init_seed=s)
                               for s in range(args.ideal_models)]}
    for method, configs in sweeps.items():
        threads_s, threads = sweep(method, configs, task, None, None, args.chunk_size)
        workers_s, workers = sweep(method, configs, task, "loky", args.workers, args.chunk_size)
        difference = max(np.abs(a - b).max() / np.abs(a).max() for a, b in zip(threads, workers))
        print(f"{method}, {len(configs)} models at {args.n_train} / {args.n_test} (models "
              f"trained in the sweep):")
        print(f"  one process, {args.workers} threads  {threads_s:8.1f} s")
        print(f"  {args.workers} loky workers        {workers_s:8.1f} s")
        print(f"  ratio {threads_s / workers_s:.2f}x; max |difference| relative to max |score| = "
              f"{difference:.2g}")


if __name__ == "__main__":
    main()

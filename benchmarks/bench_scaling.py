"""How the cost of the expensive parts grows with the training set and with the number of models.

1. One leave-one-out score matrix (n_train retrainings with ``train_many``) and one exact Hessian
   (``infcore.methods.hessian``) of the small CNN, for each training-set size.
2. ``train_many`` of K models (separate seeds) on a fixed training set, for each K.

Each series ends with its growth exponent: the slope of log(time) against log(size) between the
smallest and the largest size (1 = linear). Before each timed call the same shapes are run once for
one epoch, so that one-off kernel set-up is not counted; the LOO and ``train_many`` times are the
best of ``--repeats`` runs (other processes only ever add time), the Hessian runs once.

Run: ``python benchmarks/bench_scaling.py`` (about 2-3 minutes on a 2-core laptop).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from infcore.data import load_mnist
from infcore.methods import hessian, leave_one_out
from infcore.training import TrainConfig, train, train_many


def seconds(work: Callable[[], object], repeats: int = 1) -> float:
    """Best wall-clock time of ``repeats`` runs of ``work``."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def exponent(sizes: list[int], times: list[float]) -> float:
    """Slope of log(time) against log(size) between the first and the last point."""
    return math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])


def by_training_size(sizes: list[int], n_test: int, config: TrainConfig, repeats: int) -> None:
    print(f"One model's leave-one-out matrix and exact Hessian, {config.epochs} epochs, "
          f"batch size {config.batch_size}, {n_test} test examples")
    print(f"  {'n_train':>7}  {'LOO (s)':>8}  {'LOO s/retraining':>16}  {'Hessian (s)':>11}")
    loo_s, hessian_s = [], []
    for n in sizes:
        train_split, test_split = load_mnist(n_train=n, n_test=n_test, seed=0)
        trained = train(config, train_split)
        warm = replace(trained, config=replace(config, epochs=1))
        leave_one_out(warm, train_split, test_split)
        loo_s.append(seconds(lambda: leave_one_out(trained, train_split, test_split), repeats))
        hessian_s.append(seconds(lambda: hessian(trained.model, trained.params, train_split,
                                                 config.weight_decay)))
        print(f"  {n:7d}  {loo_s[-1]:8.2f}  {loo_s[-1] / n:16.4f}  {hessian_s[-1]:11.2f}",
              flush=True)
    print(f"  growth exponent in n_train: LOO {exponent(sizes, loo_s):.2f}, "
          f"Hessian {exponent(sizes, hessian_s):.2f}")


def by_number_of_models(
    counts: list[int], n_train: int, config: TrainConfig, repeats: int
) -> None:
    train_split, _ = load_mnist(n_train=n_train, n_test=2, seed=0)
    print(f"train_many of K models, {n_train} examples, {config.epochs} epochs, "
          f"batch size {config.batch_size}")
    print(f"  {'K':>4}  {'total (s)':>9}  {'s/model':>8}")
    totals = []
    for k in counts:
        configs = [replace(config, init_seed=i, order_seed=i) for i in range(k)]
        train_many([replace(c, epochs=1) for c in configs], train_split)
        totals.append(seconds(lambda: train_many(configs, train_split), repeats))
        print(f"  {k:4d}  {totals[-1]:9.2f}  {totals[-1] / k:8.4f}", flush=True)
    print(f"  growth exponent in K: {exponent(counts, totals):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, nargs="+", default=[50, 100, 200],
                        help="training-set sizes of the LOO and Hessian series")
    parser.add_argument("--n-test", type=int, default=20, help="test examples of the LOO matrix")
    parser.add_argument("--models", type=int, nargs="+", default=[8, 32, 64],
                        help="numbers of models K of the train_many series")
    parser.add_argument("--models-n-train", type=int, default=100,
                        help="training-set size of the train_many series")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs of each LOO and train_many timing; the best is kept")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    for name in ("n_train", "models"):
        sizes = sorted(set(getattr(args, name)))
        if len(sizes) < 2 or sizes[0] < 2:
            parser.error(f"--{name.replace('_', '-')} needs at least two distinct sizes >= 2")
        setattr(args, name, sizes)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    config = TrainConfig(epochs=args.epochs)
    by_training_size(args.n_train, args.n_test, config, args.repeats)
    by_number_of_models(args.models, args.models_n_train, config, args.repeats)


if __name__ == "__main__":
    main()

"""Speed of one leave-one-out matrix, as ratios in one process.

One model is trained on 800 MNIST 0/1 images (the default config: 5 epochs, batches of 32) and
its leave-one-out matrix against 200 test images is computed three ways:

1. the sequential reference: one ``train(config, exclude=i)`` per training example (timed on
   ``--sample`` examples and scaled to all of them, since it is the slow one);
2. ``leave_one_out(share_prefix=False)``: every retraining from the initialisation, 64 at a time
   with ``train_many``;
3. ``leave_one_out()``: each retraining starts at the first batch that holds its example, from the
   full run's weights (prefix sharing), in chunks of retrainings whose examples come in nearby
   batches.

To split the gain of 3 over 2, the retrainings of 2 are also timed in the chunks of 3 but from the
initialisation (``train_many`` alone, no test losses): chunks of nearby left-out examples see the
same images at almost every step, which by itself makes the batched steps cheaper.

It prints retrainings per second of each, the ratios, the share of the batched time that prefix
sharing saves (and the share of SGD updates it skips, which bounds it), and how far the scores of
2 and 3 are apart.

Run: ``python benchmarks/bench_loo.py [--n-train 800] [--threads N] [--sample 16]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from infcore.data import load_mnist
from infcore.methods.loo import first_batches, leave_one_out
from infcore.training import TrainConfig, test_loss, train, train_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=800)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sample", type=int, default=16,
                        help="sequential retrainings timed (scaled to n-train)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    train_split, test_split = load_mnist(n_train=args.n_train, n_test=args.n_test, seed=0)
    config = TrainConfig(epochs=args.epochs)
    trained = train_many([config], train_split)[0]
    n = len(train_split)
    train(config, train_split, exclude=0)  # warm-up of the shapes

    start = time.perf_counter()
    with_all = test_loss(trained, test_split)
    sequential = [test_loss(train(config, train_split, exclude=i), test_split) - with_all
                  for i in range(args.sample)]
    sequential_s = (time.perf_counter() - start) / args.sample * n
    start = time.perf_counter()
    plain = leave_one_out(trained, train_split, test_split, share_prefix=False)
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    shared = leave_one_out(trained, train_split, test_split)
    shared_s = time.perf_counter() - start
    nearby = torch.argsort(first_batches(config, n), stable=True).tolist()
    start = time.perf_counter()
    train_many([config] * n, train_split, exclude=nearby)
    nearby_s = time.perf_counter() - start

    steps = -(-n // config.batch_size) * config.epochs
    skipped = first_batches(config, n).double().mean().item() / steps
    print(f"leave-one-out, {n} retrainings of {config.epochs} epochs, {len(test_split)} test images")
    for name, total in (("sequential train (scaled)", sequential_s),
                        ("train_many, from the start", plain_s),
                        ("  same, nearby chunks", nearby_s),
                        ("train_many, prefix shared", shared_s)):
        print(f"  {name:27} {n / total:6.1f} retrainings/s ({total:6.1f} s per matrix)")
    print(f"  ratio, prefix shared / sequential: {sequential_s / shared_s:.2f}x; "
          f"from the start / sequential: {sequential_s / plain_s:.2f}x")
    print(f"  prefix sharing saves {1 - shared_s / plain_s:.1%} of the batched time: "
          f"{1 - nearby_s / plain_s:.1%} from chunking nearby examples (retraining only, no "
          f"test losses), the rest from the {skipped:.1%} of the SGD updates it skips")
    reference = np.stack([s.numpy() for s in sequential], axis=1)
    print(f"  max |shared - from the start| = {np.abs(shared - plain).max():.1e}; "
          f"max |shared - sequential| over the timed columns = "
          f"{np.abs(shared[:, :args.sample] - reference).max():.1e}; "
          f"largest |score| {np.abs(plain).max():.1e}")


if __name__ == "__main__":
    main()
